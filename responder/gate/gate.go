// Package gate loads and attaches the cordon gate (bpf/gate.c): a tc program
// on ingress and egress of every interface of a host that, while its cordon
// flag is set, drops everything except ARP, IPv6 neighbour discovery and the
// management allowlist.
//
// The flag map is pinned at <PinDir>/gate_cordon (by default
// /sys/fs/bpf/driftsensor/gate_cordon): an array of one u32 at key 0, non-zero
// meaning cordoned. The sensor's reflex and other tools open that pin to flip
// the same flag (see SetPinned). A pin that already exists is reused, so a
// cordon survives a restart of whoever attached the gate.
package gate

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/internal/nldump"
	"github.com/driftsensor/driftsensor/responder/inns"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
)

// DefaultPinDir is where the flag map is pinned unless Options.PinDir says otherwise.
const DefaultPinDir = "/sys/fs/bpf/driftsensor"

// FlagPin is the file name of the pinned cordon flag inside the pin directory.
const FlagPin = "gate_cordon"

// MaxPorts is the most ports one allowlist rule can name.
const MaxPorts = 8

// Rule is one management allowlist entry: a peer prefix and, optionally, the
// ports (local or remote, TCP or UDP) allowed with it; no ports allows all.
type Rule struct {
	Prefix netip.Prefix
	Ports  []uint16
}

// String formats r the way ParseRule reads it.
func (r Rule) String() string {
	s := r.Prefix.String()
	if len(r.Ports) == 0 {
		return s
	}
	if r.Prefix.Addr().Is6() {
		s = "[" + s + "]"
	}
	ps := make([]string, len(r.Ports))
	for i, p := range r.Ports {
		ps[i] = strconv.Itoa(int(p))
	}
	return s + ":" + strings.Join(ps, ",")
}

// ParseRule reads "CIDR", "CIDR:port,port" or "[IPv6-CIDR]:port,port"; an
// address without a prefix length means that address alone.
func ParseRule(s string) (Rule, error) {
	var r Rule
	addr, ports := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return r, fmt.Errorf("allowlist rule %q: missing ']'", s)
		}
		addr, ports = s[1:end], strings.TrimPrefix(s[end+1:], ":")
		if rest := s[end+1:]; rest != "" && !strings.HasPrefix(rest, ":") {
			return r, fmt.Errorf("allowlist rule %q: want [CIDR]:ports", s)
		}
	} else if strings.Count(s, ":") == 1 {
		addr, ports, _ = strings.Cut(s, ":")
	}
	if strings.Contains(addr, "/") {
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return r, fmt.Errorf("allowlist rule %q: %w", s, err)
		}
		r.Prefix = p.Masked()
	} else {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return r, fmt.Errorf("allowlist rule %q: %w (want CIDR[:port,...])", s, err)
		}
		r.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if ports != "" {
		for _, f := range strings.Split(ports, ",") {
			n, err := strconv.ParseUint(f, 10, 16)
			if err != nil || n == 0 {
				return r, fmt.Errorf("allowlist rule %q: port %q: want 1-65535", s, f)
			}
			r.Ports = append(r.Ports, uint16(n))
		}
		if len(r.Ports) > MaxPorts {
			return r, fmt.Errorf("allowlist rule %q: %d ports (at most %d per rule; split it)", s, len(r.Ports), MaxPorts)
		}
	}
	return r, nil
}

// Mode says how the programs are attached.
type Mode string

// Attach modes.
const (
	ModeAuto   Mode = ""       // tcx where the kernel has it, clsact otherwise
	ModeTCX    Mode = "tcx"    // bpf links (kernel 6.6+); survive nothing but their fd
	ModeClsact Mode = "clsact" // a clsact qdisc with direct-action bpf filters
)

// Options tune Attach.
type Options struct {
	PinDir string // bpffs directory of the flag pin; DefaultPinDir if empty
	Mode   Mode
}

// Counters are the gate's packet counts, summed over CPUs.
type Counters struct {
	DroppedIn, DroppedOut uint64 // dropped while cordoned
	PassedIn, PassedOut   uint64 // allowed while cordoned
}

// Gate is the gate attached to every interface of one network namespace.
type Gate struct {
	objs    gateObjects
	mode    Mode
	pin     string
	ownPin  bool // this Gate created the pin and removes it on Close
	links   []link.Link
	nl      *netlink.Handle
	filters []netlink.Filter
	qdiscs  []netlink.Qdisc // clsact qdiscs this Gate added
	ifaces  []string
	closed  bool
}

// Attach loads the gate, fills the allowlist and attaches it ingress and
// egress on every interface but loopback of the network namespace at
// netnsPath ("" for the caller's). Interfaces added later are not covered.
func Attach(netnsPath string, allow []Rule, opts Options) (*Gate, error) {
	g, err := load(allow, opts)
	if err != nil {
		return nil, err
	}
	if err := g.attachAll(netnsPath); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

func (g *Gate) attachAll(netnsPath string) (err error) {
	ns := netns.None()
	if netnsPath != "" {
		if ns, err = netns.GetFromPath(netnsPath); err != nil {
			return fmt.Errorf("gate: open network namespace %s: %w", netnsPath, err)
		}
		defer ns.Close()
	}
	if netnsPath != "" {
		g.nl, err = netlink.NewHandleAt(ns)
	} else {
		g.nl, err = netlink.NewHandle()
	}
	if err != nil {
		return fmt.Errorf("gate: netlink in %q: %w", netnsPath, err)
	}
	links, err := nldump.Retry(g.nl.LinkList)
	if err != nil {
		return fmt.Errorf("gate: list interfaces in %q: %w", netnsPath, err)
	}
	err = inns.Do(netnsPath, func() error {
		for _, l := range links {
			a := l.Attrs()
			if a.Flags&net.FlagLoopback != 0 {
				continue
			}
			if a.EncapType != "" && a.EncapType != "ether" {
				one := uint8(1)
				if err := g.objs.GateL3dev.Put(uint32(a.Index), one); err != nil {
					return fmt.Errorf("mark %s as layer 3: %w", a.Name, err)
				}
			}
			if err := g.attach(a); err != nil {
				return fmt.Errorf("attach to %s: %w", a.Name, err)
			}
			g.ifaces = append(g.ifaces, a.Name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gate in %q: %w", netnsPath, err)
	}
	return nil
}

// load loads the programs and maps and fills the allowlist, attaching nothing.
func load(allow []Rule, opts Options) (g *Gate, err error) {
	if _, err := sysfs.EnsureBPFFS(); err != nil {
		return nil, err
	}
	dir := opts.PinDir
	if dir == "" {
		dir = DefaultPinDir
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("gate: create pin directory %s: %w", dir, err)
	}
	g = &Gate{pin: filepath.Join(dir, FlagPin), mode: opts.Mode}
	if _, err := os.Stat(g.pin); os.IsNotExist(err) {
		g.ownPin = true
	}

	spec, err := loadGate()
	if err != nil {
		return nil, fmt.Errorf("gate: load spec: %w", err)
	}
	spec.Maps[gateMapGateCordon].Pinning = ebpf.PinByName
	if err := spec.LoadAndAssign(&g.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("gate: load programs: %+v", ve)
		}
		return nil, fmt.Errorf("gate: load programs (pin %s): %w", g.pin, err)
	}
	for _, r := range allow {
		if err := g.allow(r); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

func (g *Gate) allow(r Rule) error {
	var k gateGateKey
	a := r.Prefix.Addr()
	bits := r.Prefix.Bits()
	if a.Is4() {
		a = netip.AddrFrom16(a.As16()) // ::ffff:a.b.c.d
		bits += 96
	}
	k.Prefixlen = uint32(bits)
	k.Addr = a.As16()
	var v gateGateRule
	if len(r.Ports) > MaxPorts {
		return fmt.Errorf("gate: rule %s: more than %d ports", r, MaxPorts)
	}
	copy(v.Ports[:], r.Ports)
	v.Nports = uint32(len(r.Ports))
	if err := g.objs.GateAllow.Put(&k, &v); err != nil {
		return fmt.Errorf("gate: add allowlist rule %s: %w", r, err)
	}
	return nil
}

// attach runs inside the target namespace: tcx resolves the ifindex there.
func (g *Gate) attach(a *netlink.LinkAttrs) error {
	if g.mode != ModeClsact {
		err := g.attachTCX(a.Index)
		if err == nil {
			g.mode = ModeTCX
			return nil
		}
		if g.mode == ModeTCX || !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
	}
	g.mode = ModeClsact
	return g.attachClsact(a.Index)
}

func (g *Gate) attachTCX(ifindex int) error {
	for _, p := range []struct {
		prog *ebpf.Program
		at   ebpf.AttachType
	}{{g.objs.GateIngress, ebpf.AttachTCXIngress}, {g.objs.GateEgress, ebpf.AttachTCXEgress}} {
		// At the head, so no program before it can pass a packet first.
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: p.prog, Attach: p.at, Anchor: link.Head()})
		if err != nil {
			return fmt.Errorf("tcx %v: %w", p.at, err)
		}
		g.links = append(g.links, l)
	}
	return nil
}

func (g *Gate) attachClsact(ifindex int) error {
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	switch err := g.nl.QdiscAdd(q); {
	case err == nil:
		g.qdiscs = append(g.qdiscs, q)
	case errors.Is(err, unix.EEXIST):
	default:
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	for _, p := range []struct {
		prog   *ebpf.Program
		parent uint32
		name   string
	}{{g.objs.GateIngress, netlink.HANDLE_MIN_INGRESS, "gate_ingress"}, {g.objs.GateEgress, netlink.HANDLE_MIN_EGRESS, "gate_egress"}} {
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: ifindex,
				Parent:    p.parent,
				Handle:    netlink.MakeHandle(0, 1),
				Priority:  1, // first
				Protocol:  unix.ETH_P_ALL,
			},
			Fd:           p.prog.FD(),
			Name:         p.name,
			DirectAction: true,
		}
		if err := g.nl.FilterAdd(f); err != nil {
			return fmt.Errorf("add bpf filter %s: %w", p.name, err)
		}
		g.filters = append(g.filters, f)
	}
	return nil
}

// Mode says how the gate ended up attached.
func (g *Gate) Mode() Mode { return g.mode }

// Interfaces lists the interfaces the gate is attached to.
func (g *Gate) Interfaces() []string { return append([]string(nil), g.ifaces...) }

// PinPath is the bpffs path of the cordon flag.
func (g *Gate) PinPath() string { return g.pin }

// Flag is the cordon flag map, for a sensor's in-kernel reflex to share.
func (g *Gate) Flag() *ebpf.Map { return g.objs.GateCordon }

// SetCordon sets or clears the cordon flag; it takes effect with the next packet.
func (g *Gate) SetCordon(on bool) error { return setFlag(g.objs.GateCordon, on) }

// Cordoned reads the flag.
func (g *Gate) Cordoned() (bool, error) {
	var v uint32
	if err := g.objs.GateCordon.Lookup(uint32(0), &v); err != nil {
		return false, fmt.Errorf("gate: read cordon flag: %w", err)
	}
	return v != 0, nil
}

// Counters sums the per-CPU packet counters.
func (g *Gate) Counters() (Counters, error) {
	var c Counters
	dst := []*uint64{&c.DroppedIn, &c.DroppedOut, &c.PassedIn, &c.PassedOut}
	for i, d := range dst {
		var per []uint64
		if err := g.objs.GateCounters.Lookup(uint32(i), &per); err != nil {
			return c, fmt.Errorf("gate: read counter %d: %w", i, err)
		}
		for _, v := range per {
			*d += v
		}
	}
	return c, nil
}

// Close detaches the gate and, if this Gate created the flag pin, removes it.
// The flag's last value does not matter once no program reads it.
func (g *Gate) Close() error {
	if g.closed {
		return nil
	}
	g.closed = true
	var errs []error
	for _, l := range g.links {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if g.nl != nil {
		for _, f := range g.filters {
			if err := g.nl.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("gate: delete filter: %w", err))
			}
		}
		for _, q := range g.qdiscs {
			if err := g.nl.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("gate: delete clsact qdisc: %w", err))
			}
		}
		g.nl.Close()
	}
	if g.ownPin && g.objs.GateCordon != nil {
		if err := g.objs.GateCordon.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("gate: unpin %s: %w", g.pin, err))
		}
		// Leave no empty pin directories behind (best effort: others may share them).
		for dir := filepath.Dir(g.pin); dir != filepath.Dir(DefaultPinDir) && dir != "/"; dir = filepath.Dir(dir) {
			if os.Remove(dir) != nil {
				break
			}
		}
	}
	if err := g.objs.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SetPinned flips the cordon flag through its pin in pinDir ("" for
// DefaultPinDir), for a process that did not attach the gate itself.
func SetPinned(pinDir string, on bool) error {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	p := filepath.Join(pinDir, FlagPin)
	m, err := ebpf.LoadPinnedMap(p, nil)
	if err != nil {
		return fmt.Errorf("gate: open pinned flag %s: %w (is the gate attached?)", p, err)
	}
	defer m.Close()
	return setFlag(m, on)
}

func setFlag(m *ebpf.Map, on bool) error {
	var v uint32
	if on {
		v = 1
	}
	if err := m.Update(uint32(0), v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("gate: set cordon flag to %d: %w", v, err)
	}
	return nil
}
