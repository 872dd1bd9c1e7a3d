// Package tracepoint is the kernel backend that runs where BPF-LSM is off:
// tp_btf syscall-exit, exec, socket-state and io_uring hooks, plus cgroup bind
// hooks that can deny. It loads the programs, fills their maps from the
// compiled policy and hands raw records to the sensor.
package tracepoint

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"golang.org/x/sys/unix"
)

// Name is how status and heartbeats name this backend.
const Name = "tracepoint"

// Backend is a loaded and attached tracepoint backend.
type Backend struct {
	objs  tpObjects
	links []backend.Link
	backend.Live
	hasGate  bool
	second   *ebpf.Program // the second copy of drift_sys_exit (exit_role)
	unjudged settled       // syscalls neither copy judged, as reported
}

// Load loads the programs, attaches them and returns a backend that is not
// yet sealed. Every error names what failed and what to do.
func Load(opts backend.Options) (*Backend, error) {
	spec, err := loadTp()
	if err != nil {
		return nil, fmt.Errorf("read embedded BPF object: %w", err)
	}
	if opts.RingBytes != 0 {
		spec.Maps["events"].MaxEntries = opts.RingBytes
	}
	if err := pickUringTracepoint(spec); err != nil {
		return nil, err
	}
	if err := backend.SetSelf(spec, opts); err != nil {
		return nil, err
	}
	second := opts.SecondSysExit || NeedsSecondSysExit(kernelRelease())
	if second {
		if err := spec.Variables["exit_role"].Set(tpSysExitRoleEXIT_FIRST); err != nil {
			return nil, fmt.Errorf("set exit_role: %w (rebuild the BPF objects with make generate)", err)
		}
	}
	b := &Backend{hasGate: opts.CordonFlag != nil}
	var co *ebpf.CollectionOptions
	if opts.CordonFlag != nil {
		co = &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"gate_cordon": opts.CordonFlag}}
	}
	if err := spec.LoadAndAssign(&b.objs, co); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("kernel verifier rejected the tracepoint programs: %+v", ve)
		}
		return nil, fmt.Errorf("load tracepoint programs: %w (needs root or CAP_BPF+CAP_PERFMON, and a kernel with BTF at /sys/kernel/btf/vmlinux)", err)
	}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	if second {
		if b.second, err = loadSecond(spec, &b.objs); err != nil {
			return nil, err
		}
	}

	if err := b.Scope(b.objs.ConfigMap, b.objs.ScopeMap, opts.Scope); err != nil {
		return nil, err
	}

	hooks := []struct {
		prog *ebpf.Program
		name string
	}{
		{b.objs.DriftSysExit, "sys_exit"},
		{b.objs.DriftExec, "sched_process_exec"},
		{b.objs.DriftExit, "sched_process_exit"},
		{b.objs.DriftListen, "inet_sock_set_state"},
		{b.objs.DriftUring, "io_uring_submit_req"},
	}
	progs := map[string]*ebpf.Program{
		"drift_sys_exit": b.objs.DriftSysExit, "drift_exec": b.objs.DriftExec, "drift_exit": b.objs.DriftExit, "drift_listen": b.objs.DriftListen,
		"drift_uring": b.objs.DriftUring, "drift_bind4": b.objs.DriftBind4, "drift_bind6": b.objs.DriftBind6,
	}
	if b.second != nil {
		// after the first: a tracepoint runs its programs in attach order
		hooks = slices.Insert(hooks, 1, hooks[0])
		hooks[1].prog = b.second
		progs["drift_sys_exit (second copy)"] = b.second
	}
	for _, t := range hooks {
		l, err := link.AttachTracing(link.TracingOptions{Program: t.prog})
		if err != nil {
			return nil, fmt.Errorf("attach tp_btf/%s: %w", t.name, err)
		}
		b.links = append(b.links, backend.Link{Link: l, What: "tp_btf/" + t.name})
	}

	// Bind hooks: on each scope cgroup, or on the root for the whole host.
	bindAt := opts.Scope
	if len(bindAt) == 0 {
		if opts.CgroupRoot == "" {
			return nil, errors.New("whole-host scope needs the cgroup v2 mount for the bind hooks: none found")
		}
		bindAt = []string{opts.CgroupRoot}
	}
	for _, dir := range bindAt {
		for _, p := range []struct {
			prog *ebpf.Program
			at   ebpf.AttachType
			name string
		}{{b.objs.DriftBind4, ebpf.AttachCGroupInet4Bind, "bind4"}, {b.objs.DriftBind6, ebpf.AttachCGroupInet6Bind, "bind6"}} {
			l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: p.at, Program: p.prog})
			if err != nil {
				return nil, fmt.Errorf("attach bind hook to cgroup %s: %w", dir, err)
			}
			b.links = append(b.links, backend.Link{Link: l, What: "cgroup/" + p.name + " on " + dir})
		}
	}

	if err := b.Guard(backend.Own{
		Programs: progs,
		Links:    b.links,
		SelfIDs:  b.objs.SelfIds, Guarded: b.objs.Guarded, Liveness: b.objs.Liveness,
		Files: opts.Protect, Shared: []*ebpf.Map{opts.CordonFlag},
	}); err != nil {
		return nil, err
	}

	if err := b.OpenRing(b.objs.Events); err != nil {
		return nil, err
	}
	ok = true
	return b, nil
}

// Apply writes the policy into the kernel maps. It fills new entries before
// removing stale ones, so the kernel never sees an empty policy.
func (b *Backend) Apply(r backend.Rules) error {
	var reflex uint32
	if r.ReflexCordon {
		if !b.hasGate {
			return errors.New("reflex.cordon: no cordon gate is attached to flip (attach one: driftsensor --gate)")
		}
		reflex |= backend.ReflexCordon
	}
	return b.ApplyPolicy(r, reflex, b.objs.Rules, b.objs.Images, b.objs.Ports, b.objs.Dirlinks, b.objs.Rawdevs, b.objs.Interps)
}

// Name says which backend this is.
func (b *Backend) Name() string { return Name }

// Stats reads the kernel counters. With the second sys_exit copy, the
// syscalls nothing judged are counted from the first's skipped runs
// (bpf/tracepoint.c, exit_role), reported once they hold (settled).
func (b *Backend) Stats() (backend.Stats, error) {
	if b.second == nil {
		return backend.ReadStats(b.objs.Stats, b.objs.Liveness, b.objs.DriftSysExit, b.objs.DriftExec, b.objs.DriftListen, b.objs.DriftUring)
	}
	// the first's skipped runs before the second's counted ones (settled)
	first, err := b.objs.DriftSysExit.Stats()
	if err != nil {
		return backend.Stats{}, fmt.Errorf("read program stats: %w", err)
	}
	st, err := backend.ReadStats(b.objs.Stats, b.objs.Liveness, b.objs.DriftExec, b.objs.DriftListen, b.objs.DriftUring)
	if err != nil {
		return st, err
	}
	st.Skipped += b.unjudged.next(unjudged(first.RecursionMisses, st.Unmarked, st.Recovered), time.Now())
	return st, nil
}

// NeedsSecondSysExit says whether a kernel (its uname release) may run
// syscall tracepoint programs preemptibly, and so skip runs the second
// sys_exit copy must judge: every kernel newer than 6.18. Debian's 6.1 and
// 6.12 and the development machine's 6.18 never skipped a run; Debian's 7.2
// does. The copy costs every syscall a second program run elsewhere (about 100
// ns on this machine's syscall loop, BENCHMARKS.md), so older kernels go
// without. An unreadable release gets the copy.
func NeedsSecondSysExit(release string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return true
	}
	return major > 6 || (major == 6 && minor > 18)
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// scratchMaps are the per-CPU work areas a program run fills and reads back
// (bpf/path.h, bpf/maps.h): the second sys_exit copy gets its own, since it
// runs while the first may be preempted mid-run on the same CPU.
var scratchMaps = map[string]bool{"work_map": true, "frec_map": true, "xrec_map": true, "scan_map": true}

// loadSecond loads the second copy of the sys_exit program (bpf/tracepoint.c,
// exit_role): every map shared with the first load but the scratch maps and
// its own .rodata, which says its role.
func loadSecond(spec *ebpf.CollectionSpec, objs *tpObjects) (*ebpf.Program, error) {
	cs := spec.Copy()
	for name := range cs.Programs {
		if name != "drift_sys_exit" {
			delete(cs.Programs, name)
		}
	}
	if err := cs.Variables["exit_role"].Set(tpSysExitRoleEXIT_SECOND); err != nil {
		return nil, fmt.Errorf("set exit_role: %w (rebuild the BPF objects with make generate)", err)
	}
	// the first load's maps by their names in the object (bpf2go's tags);
	// its .rodata and .bss are not among them
	repl := map[string]*ebpf.Map{}
	v := reflect.ValueOf(&objs.tpMaps).Elem()
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil && !scratchMaps[name] {
			repl[name] = m
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return nil, fmt.Errorf("load the second sys_exit program: %w", err)
	}
	p := coll.DetachProgram("drift_sys_exit")
	coll.Close() // its own maps stay alive while p holds them
	return p, nil
}

// Close detaches every program and frees every map.
func (b *Backend) Close() error {
	b.CloseRing()
	for i := len(b.links) - 1; i >= 0; i-- {
		b.links[i].Link.Close()
	}
	b.links = nil
	if b.second != nil {
		b.second.Close()
	}
	return b.objs.Close()
}

// pickUringTracepoint attaches the io_uring hook to the submission tracepoint
// this kernel has: io_uring_submit_req since 6.5, io_uring_submit_sqe (same
// argument, a struct io_kiocb) before.
func pickUringTracepoint(spec *ebpf.CollectionSpec) error {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("read kernel BTF: %w (driftsensor needs a kernel built with CONFIG_DEBUG_INFO_BTF=y)", err)
	}
	for _, tp := range []string{"io_uring_submit_req", "io_uring_submit_sqe"} {
		var td *btf.Typedef
		if kernel.TypeByName("btf_trace_"+tp, &td) == nil {
			spec.Programs["drift_uring"].AttachTo = tp
			return nil
		}
	}
	return errors.New("this kernel has no io_uring submission tracepoint (io_uring_submit_req or io_uring_submit_sqe): io_uring operations would go unseen; it needs Linux 5.19 or later")
}

// Spec returns the embedded object's collection spec: its BTF describes the
// record layout the decoder must agree with.
func Spec() (*ebpf.CollectionSpec, error) { return loadTp() }

// SysExitProgram is the program every syscall exit runs: benchmarks read its
// kernel run-time statistics (ebpf.EnableStats) to cost each operation.
func (b *Backend) SysExitProgram() *ebpf.Program { return b.objs.DriftSysExit }

// SysExitSecond is the second copy of it (exit_role), which runs at every
// syscall exit too: its run time is part of what a syscall costs. Nil where
// it is not attached.
func (b *Backend) SysExitSecond() *ebpf.Program { return b.second }
