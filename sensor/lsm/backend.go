// Package lsm is the kernel backend for hosts with BPF-LSM active: LSM hooks
// judge every mutation, exec, privileged operation and bind before it happens,
// so in enforce mode they refuse drift (-EPERM) as well as report it. It fills
// the same maps and emits the same records as the tracepoint backend.
package lsm

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"golang.org/x/sys/unix"
)

// Name is how status and heartbeats name this backend.
const Name = "lsm"

// Backend is a loaded and attached lsm backend.
type Backend struct {
	coll  *ebpf.Collection
	maps  lsmMaps
	links []backend.Link
	backend.Live
	// Missing lists hooks this kernel does not have (their programs are not
	// loaded), e.g. file_truncate before 6.2, where path_truncate covers it,
	// or uring_allowed before 6.16, where the io_uring_create tracepoint does.
	Missing []string
	hasGate bool // the cordon gate's flag map replaced gate_cordon
}

// Available reports whether BPF-LSM can be used here, and if not, why: the
// kernel must list "bpf" among its active LSMs and accept an LSM program.
func Available() (ok bool, why string) {
	if _, err := sysfs.Ensure("securityfs", "/sys/kernel/security"); err != nil {
		return false, fmt.Sprintf("cannot read the active LSM list: %v", err)
	}
	raw, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		return false, fmt.Sprintf("cannot read the active LSM list: %v", err)
	}
	list := strings.TrimSpace(string(raw))
	active := false
	for _, l := range strings.Split(list, ",") {
		if l == "bpf" {
			active = true
		}
	}
	if !active {
		return false, fmt.Sprintf("BPF-LSM is not active (/sys/kernel/security/lsm is %q): boot with lsm=%s,bpf on the kernel command line (needs CONFIG_BPF_LSM)", list, list)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "drift_probe",
		Type:         ebpf.LSM,
		AttachType:   ebpf.AttachLSMMac,
		AttachTo:     "file_open",
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if errors.Is(err, unix.EPERM) && os.Geteuid() == 0 {
		// Root was refused: not a missing privilege (cilium/ebpf's hint about
		// MEMLOCK does not apply), the kernel forbids these programs.
		return false, fmt.Sprintf("BPF-LSM is active (%s) but this kernel refuses LSM programs even to root (operation not permitted): BPF trampolines are not allowed here (a hypervisor or kernel restriction)", list)
	}
	if err != nil {
		return false, fmt.Sprintf("BPF-LSM is active but loading an LSM program failed: %v (needs root or CAP_BPF+CAP_MAC_ADMIN, and kernel BTF)", err)
	}
	defer prog.Close()
	l, err := link.AttachLSM(link.LSMOptions{Program: prog})
	if err != nil {
		return false, fmt.Sprintf("BPF-LSM is active but attaching an LSM program failed: %v (BPF trampolines are not allowed on this kernel)", err)
	}
	l.Close()
	return true, ""
}

// Load loads the programs, attaches them and returns a backend that is not
// yet sealed. Hooks this kernel lacks are listed in Missing.
func Load(opts backend.Options) (*Backend, error) {
	spec, err := loadLsm()
	if err != nil {
		return nil, fmt.Errorf("read embedded BPF object: %w", err)
	}
	if opts.RingBytes != 0 {
		spec.Maps["events"].MaxEntries = opts.RingBytes
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("read kernel BTF: %w (the lsm backend needs /sys/kernel/btf/vmlinux)", err)
	}
	b := &Backend{}
	for name, p := range spec.Programs {
		keep, missing := fits(kernel, name, p)
		if missing != "" {
			b.Missing = append(b.Missing, missing)
		}
		if !keep {
			delete(spec.Programs, name)
		}
	}
	sort.Strings(b.Missing)
	if err := backend.SetSelf(spec, opts); err != nil {
		return nil, err
	}

	b.hasGate = opts.CordonFlag != nil
	var co ebpf.CollectionOptions
	if opts.CordonFlag != nil {
		co.MapReplacements = map[string]*ebpf.Map{"gate_cordon": opts.CordonFlag}
	}
	b.coll, err = ebpf.NewCollectionWithOptions(spec, co)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("kernel verifier rejected the lsm programs: %+v", ve)
		}
		return nil, fmt.Errorf("load lsm programs: %w (needs root or CAP_BPF+CAP_MAC_ADMIN, and kernel BTF)", err)
	}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	if err := b.coll.Assign(&b.maps); err != nil {
		return nil, fmt.Errorf("lsm maps: %w", err)
	}

	if err := b.Scope(b.maps.ConfigMap, b.maps.ScopeMap, opts.Scope); err != nil {
		return nil, err
	}

	names := make([]string, 0, len(b.coll.Programs))
	for name := range b.coll.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		l, err := attach(b.coll.Programs[name])
		if err != nil {
			return nil, fmt.Errorf("attach %s: %w", spec.Programs[name].SectionName, err)
		}
		b.links = append(b.links, backend.Link{Link: l, What: spec.Programs[name].SectionName})
	}
	// The sensor's own program, map and link ids: no one else may turn
	// them into descriptors or write them (refused in enforce mode).
	if err := b.Guard(backend.Own{
		Programs: b.coll.Programs, Maps: b.coll.Maps, Links: b.links,
		SelfIDs: b.maps.SelfIds, Guarded: b.maps.Guarded, Liveness: b.maps.Liveness,
		Files: opts.Protect, Shared: []*ebpf.Map{opts.CordonFlag},
	}); err != nil {
		return nil, err
	}

	if err := b.OpenRing(b.maps.Events); err != nil {
		return nil, err
	}
	ok = true
	return b, nil
}

// Programs written twice in bpf/lsm.c for kernels that differ, by name: the
// number of arguments the hook must have, or the hook whose presence makes the
// program redundant.
var (
	hookArgs = map[string]int{
		"drift_inode_setattr":     3, // (idmap, dentry, attr): 6.8 and later
		"drift_inode_setattr_old": 2, // (dentry, attr)
	}
	unlessHook = map[string]string{
		"drift_uring_create": "uring_allowed", // the LSM hook (6.16) sees every attempt
	}
)

// fits says whether a program is to be loaded on this kernel, and names the
// hook it needs when the kernel lacks it.
func fits(kernel *btf.Spec, name string, p *ebpf.ProgramSpec) (keep bool, missing string) {
	hook := func(h string) *btf.FuncProto {
		var fn *btf.Func
		if err := kernel.TypeByName("bpf_lsm_"+h, &fn); err != nil {
			return nil
		}
		proto, _ := fn.Type.(*btf.FuncProto)
		return proto
	}
	if h, ok := unlessHook[name]; ok && hook(h) != nil {
		return false, ""
	}
	if p.Type != ebpf.LSM { // tp_btf: the tracepoint must exist
		var td *btf.Typedef
		if err := kernel.TypeByName("btf_trace_"+p.AttachTo, &td); err != nil {
			return false, "tracepoint " + p.AttachTo
		}
		return true, ""
	}
	proto := hook(p.AttachTo)
	if proto == nil {
		return false, p.AttachTo
	}
	if n, ok := hookArgs[name]; ok && len(proto.Params) != n {
		return false, ""
	}
	return true, ""
}

// attach links a program to its hook.
func attach(p *ebpf.Program) (link.Link, error) {
	if p.Type() == ebpf.LSM {
		return link.AttachLSM(link.LSMOptions{Program: p})
	}
	return link.AttachTracing(link.TracingOptions{Program: p})
}

// Apply writes the policy into the kernel maps, new entries before stale ones
// go, so the kernel never sees an empty policy. DirLinks are not needed: the
// hooks see paths the kernel has already resolved.
func (b *Backend) Apply(r backend.Rules) error {
	var reflex uint32
	if r.ReflexCordon {
		if !b.hasGate {
			return errors.New("reflex.cordon: no cordon gate is attached to flip (attach one: driftsensor --gate)")
		}
		reflex |= backend.ReflexCordon
	}
	if r.Enforce {
		reflex |= backend.ReflexDeny
	}
	return b.ApplyPolicy(r, reflex, b.maps.Rules, b.maps.Images, b.maps.Ports, nil, b.maps.Rawdevs, b.maps.Interps)
}

// Name says which backend this is.
func (b *Backend) Name() string { return Name }

// Stats reads the kernel counters.
func (b *Backend) Stats() (backend.Stats, error) {
	progs := make([]*ebpf.Program, 0, len(b.coll.Programs))
	for _, p := range b.coll.Programs {
		progs = append(progs, p)
	}
	return backend.ReadStats(b.maps.Stats, b.maps.Liveness, progs...)
}

// Close detaches every program and frees every map.
func (b *Backend) Close() error {
	b.CloseRing()
	for i := len(b.links) - 1; i >= 0; i-- {
		b.links[i].Link.Close()
	}
	b.links = nil
	if b.coll != nil {
		b.coll.Close()
	}
	return nil
}

var _ backend.Backend = (*Backend)(nil)

// Spec returns the embedded object's collection spec: its BTF describes the
// record layout the decoder must agree with.
func Spec() (*ebpf.CollectionSpec, error) { return loadLsm() }
