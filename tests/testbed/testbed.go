// Package testbed builds a fleet of test hosts on one machine: each host is a
// network namespace plus a cgroup v2 subtree, joined by a veth pair to a bridge
// of the bed's own in the root namespace, with an address from 192.0.2.0/24
// (TEST-NET-1) on its veth only. Nothing of the machine's own network is
// touched, and everything a bed creates is removed at the test's cleanup.
package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/driftsensor/driftsensor/internal/nldump"
	"github.com/driftsensor/driftsensor/responder/inns"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
)

// Net is the only network test hosts get addresses from.
var Net = netip.MustParsePrefix("192.0.2.0/24")

// HostIf is the name of a host's interface inside its namespace.
const HostIf = "eth0"

// Bed is one fleet: a bridge, and hosts hanging off it.
type Bed struct {
	t      TB     // nil for a bed made by Create: Close removes it
	ID     string // random hex (tests) or the bed's name (Create), part of every name the bed creates
	Prefix string // every bridge, link, namespace and cgroup of the bed starts with it (Down)
	Bridge string // bridge name in the root namespace
	Cgroup string // cgroup v2 directory holding every host's subtree

	mu       sync.Mutex
	next     int                 // last host octet handed out
	taken    map[netip.Addr]bool // the machine's own addresses and gateways
	hosts    map[string]*Host
	cleanups []func() error // Create's beds: undone by Close, last first
}

// Host is one test host.
type Host struct {
	Name      string
	Addr      netip.Addr // on HostIf, inside the namespace
	Netns     string     // namespace name (ip netns exec Netns ...)
	NetnsPath string     // /run/netns/Netns
	Link      string     // the veth's peer in the root namespace, a port of the bridge
	Cgroup    string     // the host's cgroup v2 directory

	bed *Bed
}

// TestPrefix starts the names of every bed New makes; CLIPrefix those of
// the beds Create makes (driftctl testbed, the demo), whose names are
// letters only, so a CLI bed never matches a test bed's hex ID.
const (
	TestPrefix = "dtb"
	CLIPrefix  = "dtc"
)

// TB is what a bed made by New needs of its test; testing.TB has it. The
// bed does not import testing, so that driftctl, which runs drills on beds
// of its own outside any test, does not link it.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// New creates an empty bed with its bridge and parent cgroup; t.Cleanup
// removes both, after every host.
func New(t TB) *Bed {
	t.Helper()
	var raw [3]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	id := hex.EncodeToString(raw[:])
	b := &Bed{t: t, ID: id, Prefix: TestPrefix + id, hosts: map[string]*Host{}}
	if err := b.create(); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return b
}

// Create makes an empty bed outside a test, called name (1-6 lowercase
// letters): every name it creates starts with CLIPrefix+name. Close removes
// it; Down removes what a crashed process left of it.
func Create(name string) (*Bed, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	b := &Bed{ID: name, Prefix: CLIPrefix + name, hosts: map[string]*Host{}}
	if err := b.create(); err != nil {
		return nil, errors.Join(err, b.Close())
	}
	return b, nil
}

// ValidName checks the name of a bed for Create and Down.
func ValidName(name string) error {
	ok := name != "" && len(name) <= 6
	for _, r := range name {
		ok = ok && r >= 'a' && r <= 'z'
	}
	if !ok {
		return fmt.Errorf("test bed name %q: use 1-6 lowercase letters (names of links and namespaces are short)", name)
	}
	return nil
}

// onCleanup registers undo, run at the test's cleanup (New) or by Close
// (Create), last registered first. A failure is the test's error.
func (b *Bed) onCleanup(undo func() error) {
	if b.t != nil {
		b.t.Cleanup(func() {
			if err := undo(); err != nil {
				b.t.Errorf("testbed: %v", err)
			}
		})
		return
	}
	b.mu.Lock()
	b.cleanups = append(b.cleanups, undo)
	b.mu.Unlock()
}

// Close removes everything a bed made by Create made, last first, and
// reports what it could not remove. Test beds are removed at cleanup.
func (b *Bed) Close() error {
	b.mu.Lock()
	undo := b.cleanups
	b.cleanups = nil
	b.mu.Unlock()
	var errs []error
	for i := len(undo) - 1; i >= 0; i-- {
		errs = append(errs, undo[i]())
	}
	return errors.Join(errs...)
}

// create makes the bridge and the parent cgroup.
func (b *Bed) create() error {
	b.Bridge = b.Prefix
	root, err := sysfs.CgroupRoot()
	if err != nil {
		return err
	}
	b.Cgroup = filepath.Join(root, b.Prefix)
	if err := os.Mkdir(b.Cgroup, 0o755); err != nil {
		return fmt.Errorf("create cgroup %s: %w", b.Cgroup, err)
	}
	b.onCleanup(func() error {
		if err := sysfs.RemoveCgroup(b.Cgroup); err != nil {
			return fmt.Errorf("remove cgroup %s: %w", b.Cgroup, err)
		}
		return nil
	})

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.Bridge}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", b.Bridge, err)
	}
	b.onCleanup(func() error {
		if l, err := netlink.LinkByName(b.Bridge); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				return fmt.Errorf("delete bridge %s: %w", b.Bridge, err)
			}
		}
		return nil
	})
	// The machine may itself sit on 192.0.2.0/24: keep the root namespace's
	// IP stack off the bridge (no ARP replies for its own addresses, no IPv6),
	// so bed traffic can never reach the machine, and skip its addresses.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+b.Bridge+"/arp_ignore", []byte("8"), 0); err != nil {
		return fmt.Errorf("silence ARP on bridge %s: %w", b.Bridge, err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+b.Bridge+"/disable_ipv6", []byte("1"), 0); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("disable IPv6 on bridge %s: %w", b.Bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring bridge %s up: %w", b.Bridge, err)
	}
	if b.taken, err = rootAddrs(); err != nil {
		return err
	}
	b.next = firstOctet - 1
	return nil
}

// firstOctet is where host addresses start: clear of the low addresses a
// machine on the same documentation range usually has (gateway, own address).
const firstOctet = 100

// rootAddrs lists the root namespace's own addresses and gateways in Net,
// which hosts must not be given even on their separate segment.
func rootAddrs() (map[netip.Addr]bool, error) {
	taken := map[netip.Addr]bool{}
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("testbed: list the machine's addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			taken[ip] = true
		}
	}
	routes, err := nldump.Retry(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("testbed: list the machine's routes: %w", err)
	}
	for _, r := range routes {
		if ip, ok := netip.AddrFromSlice(r.Gw.To4()); ok {
			taken[ip] = true
		}
	}
	return taken, nil
}

// AddHost creates a host with the next free address of Net. Names are short
// (1-20 letters, digits or '-'); they become part of the namespace name.
// A failure fails the test; beds made by Create use Add.
func (b *Bed) AddHost(name string) *Host {
	b.t.Helper()
	h, err := b.Add(name)
	if err != nil {
		b.t.Fatalf("testbed: add host %q: %v", name, err)
	}
	return h
}

// Add is AddHost returning its error.
func (b *Bed) Add(name string) (*Host, error) {
	if name == "" || len(name) > 20 || strings.ContainsAny(name, "/. ") {
		return nil, fmt.Errorf("host name %q: use 1-20 letters, digits or '-'", name)
	}
	b.mu.Lock()
	if _, dup := b.hosts[name]; dup {
		b.mu.Unlock()
		return nil, errors.New("already exists")
	}
	b.next++
	for b.next <= 254 && b.taken[netip.AddrFrom4([4]byte{192, 0, 2, byte(b.next)})] {
		b.next++
	}
	n := b.next
	b.mu.Unlock()
	if n > 254 {
		return nil, fmt.Errorf("no address left in %s from .%d up", Net, firstOctet)
	}
	h := &Host{
		Name:  name,
		Addr:  netip.AddrFrom4([4]byte{192, 0, 2, byte(n)}),
		Netns: b.Prefix + "-" + name,
		Link:  fmt.Sprintf("%sh%d", b.Prefix, n),
		bed:   b,
	}
	h.NetnsPath = filepath.Join("/run/netns", h.Netns)
	h.Cgroup = filepath.Join(b.Cgroup, name)

	if err := os.Mkdir(h.Cgroup, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	b.onCleanup(func() error {
		if err := sysfs.RemoveCgroup(h.Cgroup); err != nil {
			return fmt.Errorf("remove cgroup of %s: %w", name, err)
		}
		return nil
	})

	ns, err := newNamedNetns(h.Netns)
	if err != nil {
		return nil, fmt.Errorf("create network namespace %s: %w", h.Netns, err)
	}
	defer ns.Close()
	b.onCleanup(func() error {
		if _, err := os.Stat(h.NetnsPath); err == nil {
			if err := netns.DeleteNamed(h.Netns); err != nil {
				return fmt.Errorf("delete network namespace %s: %w", h.Netns, err)
			}
		}
		return nil
	})

	br, err := netlink.LinkByName(b.Bridge)
	if err != nil {
		return nil, fmt.Errorf("find bridge %s: %w", b.Bridge, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: h.Link, MasterIndex: br.Attrs().Index},
		PeerName:      h.Link + "p",
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", h.Link, err)
	}
	b.onCleanup(func() error {
		// Usually gone with the namespace already; a destroyed host's
		// namespace may linger while a process still holds it.
		if l, err := netlink.LinkByName(h.Link); err == nil {
			_ = netlink.LinkDel(l)
		}
		return nil
	})
	if err := netlink.LinkSetUp(veth); err != nil {
		return nil, fmt.Errorf("bring %s up: %w", h.Link, err)
	}

	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", h.Netns, err)
	}
	defer nh.Close()
	peer, err := nh.LinkByName(h.Link + "p")
	if err != nil {
		return nil, fmt.Errorf("find veth peer in %s: %w", h.Netns, err)
	}
	if err := nh.LinkSetName(peer, HostIf); err != nil {
		return nil, fmt.Errorf("rename veth peer: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: h.Addr.AsSlice(), Mask: net.CIDRMask(Net.Bits(), 32)}}
	if err := nh.AddrAdd(peer, addr); err != nil {
		return nil, fmt.Errorf("add %s: %w", h.Addr, err)
	}
	if err := nh.LinkSetUp(peer); err != nil {
		return nil, fmt.Errorf("bring %s up: %w", HostIf, err)
	}
	lo, err := nh.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("find lo: %w", err)
	}
	if err := nh.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("bring lo up: %w", err)
	}

	b.mu.Lock()
	b.hosts[name] = h
	b.mu.Unlock()
	return h, nil
}

// Host returns the host called name, or nil.
func (b *Bed) Host(name string) *Host {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hosts[name]
}

// Hosts lists every host, in no particular order.
func (b *Bed) Hosts() []*Host {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*Host, 0, len(b.hosts))
	for _, h := range b.hosts {
		out = append(out, h)
	}
	return out
}

// newNamedNetns creates /run/netns/name. netns.NewNamed moves the calling
// thread into the new namespace, so it runs on a locked thread of its own
// goroutine that is switched back (or dies locked if that fails).
func newNamedNetns(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{netns.None(), err}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			done <- result{ns, errors.Join(err, serr)}
			return // stays locked: the runtime drops this thread
		}
		runtime.UnlockOSThread()
		done <- result{ns, err}
	}()
	r := <-done
	return r.ns, r.err
}

// Do runs fn inside the host's network namespace (not its cgroup). Sockets
// created by fn keep working afterwards from any goroutine.
func (h *Host) Do(fn func() error) error { return inns.Do(h.NetnsPath, fn) }

// Start starts cmd inside the host: in its network namespace (the forking
// thread is switched into it) and in its cgroup from the first instruction
// (clone3 with CLONE_INTO_CGROUP). The process is killed at cleanup with
// the rest of the host's cgroup.
func (h *Host) Start(cmd *exec.Cmd) error {
	fd, err := syscall.Open(h.Cgroup, syscall.O_DIRECTORY|syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open cgroup of %s: %w", h.Name, err)
	}
	defer syscall.Close(fd)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = fd
	if err := h.Do(cmd.Start); err != nil {
		return fmt.Errorf("start %s on %s: %w", cmd.Path, h.Name, err)
	}
	h.bed.onCleanup(func() error {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		return nil
	})
	return nil
}

// Run runs a command inside the host and returns its combined output.
func (h *Host) Run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := h.Start(cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return []byte(out.String()), err
}

// Procs lists the PIDs in the host's cgroup.
func (h *Host) Procs() ([]int, error) {
	raw, err := os.ReadFile(filepath.Join(h.Cgroup, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(raw)) {
		var p int
		if _, err := fmt.Sscan(f, &p); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// Destroy is the test bed's destroy: it kills every process in the host's
// cgroup (cgroup.kill) and deletes its network namespace.
func (h *Host) Destroy() error { return DestroyHost(h.Cgroup, h.Netns) }

// DestroyHost kills every process in cgroup dir and deletes the named network
// namespace. Either may already be gone.
func DestroyHost(cgroupDir, netnsName string) error {
	var errs []error
	if err := os.WriteFile(filepath.Join(cgroupDir, "cgroup.kill"), []byte("1"), 0); err != nil && !os.IsNotExist(err) {
		errs = append(errs, fmt.Errorf("kill cgroup %s: %w", cgroupDir, err))
	}
	if _, err := os.Stat(filepath.Join("/run/netns", netnsName)); err == nil {
		if err := netns.DeleteNamed(netnsName); err != nil {
			errs = append(errs, fmt.Errorf("delete network namespace %s: %w", netnsName, err))
		}
	}
	return errors.Join(errs...)
}

// Listen opens a listener inside the host's namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := h.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket opens a packet socket inside the host's namespace.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := h.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// DialContext dials from inside the host's namespace. The socket is created
// there; the connection then works from any goroutine.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
