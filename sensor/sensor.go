// Package sensor turns kernel records into findings: it reads the backend's
// ring buffer, decodes each record, adds process context and hands the
// finding on. It also turns the kernel's own counters into findings: a record
// the kernel could not queue is a blind spot, and a blind spot is an incident.
package sensor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/kstate"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/proc"
	"github.com/driftsensor/driftsensor/sensor/record"
)

// Config wires a sensor.
type Config struct {
	Host    string
	Policy  *policy.Policy
	Backend backend.Backend
	Procs   *proc.Table // nil: a new one on /proc
	// Emit receives every finding, in order, on the reader goroutine.
	Emit func(*event.Event)
	Log  zerolog.Logger
	// OnRecord, when set, is called with each record's kernel time as soon as
	// it is decoded, before enrichment: benchmarks measure ring latency with it.
	OnRecord func(ktime uint64)
	// StatsEvery is how often the kernel counters are read while records
	// arrive (default 250ms); IdleStatsEvery is how often once none have
	// for statsQuietTicks reads and the ring is empty (default 1s). The
	// ring loses records only when full, which it cannot be at idle; the
	// first record after a quiet spell brings the short period back at once.
	StatsEvery     time.Duration
	IdleStatsEvery time.Duration
	// OnStatsPace, when set, is told each change of the counters' period
	// (idle: IdleStatsEvery); tests follow the pace with it.
	OnStatsPace func(idle bool)
	// KernelEvery is how often the security-relevant kernel state
	// (sensor/kstate) is compared with the one SetSealed recorded at the
	// seal; 0: never. Every sensor sharing a kernel sees the others' BPF
	// programs as changes: test beds with several sensors on one kernel
	// leave it 0.
	KernelEvery time.Duration
}

// Sensor reads one backend.
type Sensor struct {
	cfg      Config
	rules    map[uint32]string // rule id -> name, for findings
	boot     time.Time         // wall time at ktime 0
	findings atomic.Uint64
	lost     atomic.Uint64
	byKind   [4]atomic.Uint64
	emitMu   sync.Mutex
	// statsIdle is set while watchStats reads at IdleStatsEvery; emit then
	// wakes it through statsWake.
	statsIdle atomic.Bool
	statsWake chan struct{}
	baseMu    sync.Mutex    // guards sealed and base
	sealed    bool          // by SetSealed
	base      *kstate.State // the kernel state at the seal, or at the last comparison
}

// New returns a sensor; Run starts it.
func New(cfg Config) *Sensor {
	if cfg.Procs == nil {
		cfg.Procs = proc.New("/proc", 4096)
	}
	if cfg.StatsEvery == 0 {
		cfg.StatsEvery = 250 * time.Millisecond
	}
	if cfg.IdleStatsEvery == 0 {
		cfg.IdleStatsEvery = time.Second
	}
	s := &Sensor{cfg: cfg, rules: map[uint32]string{}, boot: bootTime(), statsWake: make(chan struct{}, 1)}
	for _, r := range append(append(cfg.Policy.Rules(), cfg.Policy.ImageRules()...), cfg.Policy.KernelRules()...) {
		s.rules[r.ID] = r.Name
	}
	for id, name := range SealRules {
		s.rules[id] = name
	}
	return s
}

// RulesFor translates a policy into the kernel's tables, including the
// symlinked directories found on this host under the policy's prefixes.
func RulesFor(p *policy.Policy) backend.Rules {
	conv := func(in []policy.Rule) []backend.Rule {
		out := make([]backend.Rule, 0, len(in))
		for _, r := range in {
			out = append(out, backend.Rule{Prefix: r.Prefix, Class: uint32(r.Class), ID: r.ID})
		}
		return out
	}
	roots := append([]string{"/"}, p.Protect...)
	roots = append(roots, p.ExecImagePaths...)
	images := conv(p.ImageRules())
	paths := taintFlags(conv(p.Rules()), images)
	for _, r := range p.KernelRules() {
		// the kernel sees a /sys attribute by its canonical path
		if real, err := filepath.EvalSymlinks(r.Prefix); err == nil && len(real) <= 255 {
			r.Prefix = real
		}
		paths = append(paths, backend.Rule{Prefix: r.Prefix, Class: uint32(r.Class) | backend.ClassKernelAllow, ID: r.ID})
	}
	return backend.Rules{
		Paths:        leafFlags(paths),
		Images:       images,
		DirLinks:     DirLinks(roots),
		PortAllowed:  p.PortAllowed,
		DenyBinds:    p.DenyBinds,
		ReflexKill:   p.ReflexKill,
		ReflexCordon: p.ReflexCordon,
		Interpreters: p.Interpreters,
		RawDevices: func() ([]uint64, error) {
			return kstate.RawDevices("/proc/self/mountinfo", p.CoversMount, p.AllowDevices)
		},
	}
}

// SealRules name the seal's own classes, which findings carry as their rule
// (enum seal_rule): kernel settings and raw devices are drift whatever the
// path rules say, and so is a mutation through a name the kernel program
// could not follow (event.File.Unresolved).
var SealRules = map[uint32]string{
	record.RuleKernelSetting: "seal.kernel_settings",
	record.RuleRawDevice:     "seal.raw_devices",
	record.RuleUnresolved:    "seal.unresolved_names",
}

// taintFlags marks the exceptions that lie inside an exec image path
// (backend.ClassTaint): a file written there is still part of what may run,
// so the kernel taints it; a file written in any other exception is outside
// the image already.
func taintFlags(paths, images []backend.Rule) []backend.Rule {
	for i, p := range paths {
		if p.Class != backend.ClassExempt {
			continue
		}
		for _, img := range images {
			if strings.HasSuffix(img.Prefix, "/") && strings.HasPrefix(p.Prefix, img.Prefix) {
				paths[i].Class |= backend.ClassTaint
				break
			}
		}
	}
	return paths
}

// leafFlags marks the rules no other rule lies under (backend.ClassLeaf): the
// kernel caches such a rule per directory and judges names there without
// reading them.
func leafFlags(paths []backend.Rule) []backend.Rule {
	for i, p := range paths {
		leaf := true
		for _, q := range paths {
			if len(q.Prefix) > len(p.Prefix) && strings.HasPrefix(q.Prefix, p.Prefix) {
				leaf = false
				break
			}
		}
		if leaf {
			paths[i].Class |= backend.ClassLeaf
		}
	}
	return paths
}

// DirLinks finds symlinks to directories directly under each root, such as
// /bin -> /usr/bin on merged-/usr systems, so names given through them are
// canonicalised in the kernel.
func DirLinks(roots []string) map[string]string {
	out := map[string]string{}
	for _, root := range roots {
		ents, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.Type()&os.ModeSymlink == 0 {
				continue
			}
			from := filepath.Join(root, e.Name())
			to, err := filepath.EvalSymlinks(from)
			if err != nil {
				continue
			}
			if st, err := os.Stat(to); err != nil || !st.IsDir() || to == from {
				continue
			}
			if len(from)+1 > 255 || len(to)+1 > 255 {
				continue
			}
			out[strings.TrimSuffix(from, "/")+"/"] = strings.TrimSuffix(to, "/") + "/"
		}
	}
	return out
}

// Run reads records until ctx ends or the ring buffer is closed.
func (s *Sensor) Run(ctx context.Context) error {
	rd := s.cfg.Backend.Reader()
	go func() {
		<-ctx.Done()
		s.cfg.Backend.CloseRing() // not rd.Close: RingFill reads the ring meanwhile
	}()
	go s.watchStats(ctx)
	go s.watchKernel(ctx)

	var raw ringbuf.Record
	var rec record.Record
	var caughtUp time.Time // when the reader last read all the kernel had queued
	batch := 0             // records read since then
	for {
		if err := rd.ReadInto(&raw); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		batch++
		s.handle(raw.RawSample, &rec)
		if raw.Remaining == 0 {
			now := time.Now()
			if batch > 1 || now.Sub(caughtUp) < stormPause {
				time.Sleep(stormPause)
				now = time.Now()
			}
			caughtUp, batch = now, 0
		}
	}
}

// stormPause is the reader's pause once it has caught up with findings that
// come faster than one per pause. The kernel wakes the reader for a record
// only when the reader had read all before it; a reader faster than the
// writer has, at every record, so a storm paid a wakeup per finding (an
// interrupt on the writer's CPU and a wake of the reader's: in
// BenchmarkBPFCost a chmod finding took 4.1 us of BPF time with the reader
// running, 1.1 us with it stopped). Pausing lets the next records queue
// without a wakeup each. A finding more than a pause after the last is read
// at once; in a storm a finding waits at most about one pause longer. No
// wakeup can be missed: the kernel's rule is unchanged, and a record
// committed during the pause is read after it.
const stormPause = time.Millisecond

// handle decodes one record and emits its finding.
func (s *Sensor) handle(sample []byte, rec *record.Record) {
	if err := record.Decode(sample, rec); err != nil {
		s.emit(s.health("decode_error", 0, err.Error()))
		return
	}
	if s.cfg.OnRecord != nil {
		s.cfg.OnRecord(rec.KTime)
	}
	s.emit(s.toEvent(rec))
}

// statsQuietTicks is how many reads at StatsEvery find no new finding and
// an empty ring before watchStats slows to IdleStatsEvery.
const statsQuietTicks = 4

// watchStats turns growth of the kernel's loss counters into findings. It
// reads them every StatsEvery while findings come, and every IdleStatsEvery
// at idle, where each read is a wakeup of the whole process for nothing.
func (s *Sensor) watchStats(ctx context.Context) {
	t := time.NewTicker(s.cfg.StatsEvery)
	defer t.Stop()
	var last backend.Stats
	seen, quiet := s.findings.Load(), 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.statsWake: // a finding while idle: read now, then at the short period
		}
		s.readStats(&last)
		switch n := s.findings.Load(); {
		case n != seen || s.cfg.Backend.RingFill() > 0:
			seen, quiet = n, 0
			if s.statsIdle.Load() {
				s.setStatsPace(t, false)
			}
		case !s.statsIdle.Load():
			if quiet++; quiet < statsQuietTicks {
				break
			}
			// Idle first, then look again: a finding emitted in between
			// either sees the flag and wakes this loop, or is counted here.
			s.setStatsPace(t, true)
			if s.findings.Load() != seen {
				s.setStatsPace(t, false)
			}
		}
	}
}

// setStatsPace switches watchStats between its two periods.
func (s *Sensor) setStatsPace(t *time.Ticker, idle bool) {
	s.statsIdle.Store(idle)
	d := s.cfg.StatsEvery
	if idle {
		d = s.cfg.IdleStatsEvery
	}
	t.Reset(d)
	if s.cfg.OnStatsPace != nil {
		s.cfg.OnStatsPace(idle)
	}
}

// readStats reads the kernel counters and reports their growth since last.
func (s *Sensor) readStats(last *backend.Stats) {
	st, err := s.cfg.Backend.Stats()
	if err != nil {
		s.cfg.Log.Error().Err(err).Msg("read kernel counters")
		return
	}
	if d := st.Lost - last.Lost; d > 0 {
		s.lost.Add(d)
		s.emit(s.health("lost_records", d, fmt.Sprintf("the kernel could not queue %d records (ring buffer full): those mutations went unreported", d)))
	}
	if d := st.Skipped - last.Skipped; d > 0 {
		s.emit(s.health("skipped_runs", d, fmt.Sprintf("the kernel skipped every run of the sensor's programs for up to %d syscalls or events (a run found the program preempted on its CPU): those went unjudged", d)))
	}
	if d := st.TaintFull - last.TaintFull; d > 0 {
		s.emit(s.health("taint_full", d, fmt.Sprintf("%d written files could not be tainted (taint set full): executing them would not be flagged", d)))
	}
	if d := st.MapUnfound - last.MapUnfound; d > 0 {
		s.emit(s.health("mapping_unfound", d, fmt.Sprintf("%d mprotects adding execute permission found no mapping at their address (changed meanwhile by another thread): a file mapped there went unjudged", d)))
	}
	*last = st
}

// ActionKernelState is the action of a finding about a change of the
// security-relevant kernel state since the seal (sensor/kstate): the LSM
// list, lockdown, module, kexec, io_uring and BPF restrictions, loaded
// modules, BPF programs and links. Kind sensor: the change is seen by
// comparison, with no process to name.
const ActionKernelState = "kernel_state"

// SetSealed seals or unseals the backend. Sealing a host that was not
// sealed records the kernel state the periodic comparison holds later
// states against (with KernelEvery set): read before the kernel's flag
// flips, so a change made just after the seal is reported, never taken into
// the baseline. A state that cannot be read is a finding; the host is sealed
// all the same, and the comparison starts from its first good read.
func (s *Sensor) SetSealed(on bool) error {
	s.baseMu.Lock()
	defer s.baseMu.Unlock()
	if !on {
		s.base = nil
	} else if s.cfg.KernelEvery > 0 && !s.sealed {
		st, err := kstate.Read()
		if err != nil {
			s.emit(s.health(ActionKernelState, 0, "the kernel state could not be read at the seal ("+err.Error()+"): changes before the next good read are not compared"))
		} else {
			s.base = &st
		}
	}
	if err := s.cfg.Backend.SetSealed(on); err != nil {
		return err
	}
	s.sealed = on
	return nil
}

// watchKernel compares the kernel state with the one recorded at the seal
// (SetSealed) every KernelEvery while sealed, and reports each change once.
// Changes the hooks see (module loads, BPF program loads, kernel settings)
// are findings of their own too; this catches the rest.
func (s *Sensor) watchKernel(ctx context.Context) {
	if s.cfg.KernelEvery <= 0 {
		return
	}
	t := time.NewTicker(s.cfg.KernelEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.compareKernel()
	}
}

// compareKernel reports how the kernel state differs from the baseline and
// makes the state read the new baseline, so each change is reported once.
// Holding baseMu across the read keeps a new seal from interleaving.
func (s *Sensor) compareKernel() {
	s.baseMu.Lock()
	defer s.baseMu.Unlock()
	if !s.sealed {
		return
	}
	st, err := kstate.Read()
	if err != nil {
		s.cfg.Log.Error().Err(err).Msg("read the kernel state")
		return
	}
	if s.base != nil {
		for _, d := range kstate.Diff(*s.base, st) {
			s.emit(s.health(ActionKernelState, 0, "kernel state changed since the seal: "+d))
		}
	}
	s.base = &st
}

func (s *Sensor) emit(ev *event.Event) {
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	s.findings.Add(1)
	if s.statsIdle.Load() {
		select {
		case s.statsWake <- struct{}{}:
		default: // a wake is pending already
		}
	}
	switch ev.Kind {
	case event.KindFile:
		s.byKind[0].Add(1)
	case event.KindExec:
		s.byKind[1].Add(1)
	case event.KindNet:
		s.byKind[2].Add(1)
	default:
		s.byKind[3].Add(1)
	}
	s.cfg.Emit(ev)
}

// Counters are the sensor's totals since start.
func (s *Sensor) Counters() (findings, lost uint64) { return s.findings.Load(), s.lost.Load() }

// ByKind returns findings counted per kind.
func (s *Sensor) ByKind() map[event.Kind]uint64 {
	return map[event.Kind]uint64{
		event.KindFile: s.byKind[0].Load(), event.KindExec: s.byKind[1].Load(),
		event.KindNet: s.byKind[2].Load(), event.KindSensor: s.byKind[3].Load(),
	}
}

// Report emits a finding about the sensor itself (a blind spot found
// outside the kernel, such as findings a full spool refused), in order with
// the kernel's findings.
func (s *Sensor) Report(action string, lost uint64, detail string) {
	s.emit(s.health(action, lost, detail))
}

func (s *Sensor) health(action string, lost uint64, detail string) *event.Event {
	return &event.Event{
		Schema:  event.Schema,
		Host:    s.cfg.Host,
		Time:    time.Now(),
		Kind:    event.KindSensor,
		Action:  action,
		Backend: s.cfg.Backend.Name(),
		Health:  &event.Health{LostRecords: lost, Detail: detail},
	}
}

// ActionTamper is the action of every finding about an act on the sensor
// itself: a bpf() command on its maps, programs or links, an open of its
// files (reported by the kernel at the syscall), or a difference the
// heartbeat's check found in its configuration or links. Such findings are
// of kind sensor, whatever their scope: tampering with the sensor matters
// wherever it comes from.
const ActionTamper = record.ActionTamper

// ActionName names a record's operation as findings do (record.Ops).
func ActionName(kind, op uint16) string {
	if o, ok := record.OpOf(kind, op); ok {
		return o.Action
	}
	return fmt.Sprintf("op%d", op)
}

// reflexes names what the kernel did at detection.
func reflexes(flags uint16) []string {
	var out []string
	if flags&record.FlagCordoned != 0 {
		out = append(out, "cordoned")
	}
	if flags&record.FlagKilled != 0 {
		out = append(out, "killed")
	}
	return out
}

// Reasons names the exec reasons bits.
func Reasons(bits uint32) []string {
	var out []string
	for _, r := range []struct {
		bit  uint32
		name string
	}{{record.ReasonTainted, "tainted"}, {record.ReasonOutsideImage, "outside_image"}, {record.ReasonMemfd, "memfd"}, {record.ReasonDeleted, "deleted"}} {
		if bits&r.bit != 0 {
			out = append(out, r.name)
		}
	}
	return out
}

func (s *Sensor) toEvent(r *record.Record) *event.Event {
	ev := &event.Event{
		Schema:  event.Schema,
		Host:    s.cfg.Host,
		KTimeNS: r.KTime,
		Time:    s.boot.Add(time.Duration(r.KTime)),
		Action:  ActionName(r.Kind, r.Op),
		Backend: s.cfg.Backend.Name(),
		Rule:    s.rules[r.Rule],
		Denied:  r.Header.Flags&record.FlagDenied != 0,
		Reflex:  reflexes(r.Header.Flags),
	}
	p := &event.Process{
		PID: r.TGID, TID: r.PID, PPID: r.PPID, UID: r.UID, GID: r.GID,
		Comm: string(r.Comm), CgroupID: r.CgroupID,
	}
	switch r.Kind {
	case record.KindFile:
		ev.Kind = event.KindFile
		ev.File = &event.File{
			Path: string(r.Path), NewPath: string(r.Path2), Target: string(r.Target),
			Dev: r.Dev, Ino: r.Ino, MountID: r.MountID, Flags: r.Flags, Mode: r.Mode, Ret: r.Ret,
			Unresolved: r.Header.Flags&record.FlagUnresolved != 0,
		}
	case record.KindExec:
		ev.Kind = event.KindExec
		ev.Exec = &event.Exec{
			Path: string(r.Path), Reasons: Reasons(r.Reasons), Dev: r.Dev, Ino: r.Ino,
			MountID: r.MountID, Arg: r.Arg, Ret: r.Ret,
		}
		if len(r.Args) > 0 {
			p.Argv = splitArgs(r.Args)
		}
		if r.Op == record.OpSelfBPF || r.Op == record.OpSelfOpen {
			ev.Kind, ev.Exec, ev.Health = event.KindSensor, nil, s.tamper(r)
		}
	case record.KindNet:
		ev.Kind = event.KindNet
		n := &event.Net{Port: r.Port, Family: "inet", Protocol: protoName(r.Protocol)}
		if r.Family == 10 {
			n.Family = "inet6"
		}
		if a, ok := netip.AddrFromSlice(r.Addr); ok {
			n.Addr = a.String()
		}
		ev.Net = n
	}
	argv := p.Argv
	s.cfg.Procs.FillKernel(p, proc.Kernel{Tag: r.PTag, Start: r.Start, ParentStart: r.PStart})
	if len(argv) > 0 { // the kernel's copy, taken at exec, beats a later /proc read
		p.Argv = argv
	}
	ev.Process = p
	return ev
}

// tamper says what another process did to the sensor, e.g. "bpf(BPF_MAP_UPDATE_ELEM)
// on driftsensor map config_map (id 42) by pid 7 (bpftool)".
func (s *Sensor) tamper(r *record.Record) *event.Health {
	by := fmt.Sprintf("by pid %d (%s)", r.TGID, r.Comm)
	if r.Op == record.OpSelfOpen {
		return &event.Health{Path: string(r.Path), Detail: fmt.Sprintf("open of driftsensor file %s %s", r.Path, by)}
	}
	cmd, o, _ := s.cfg.Backend.SelfObject(r.Arg)
	h := &event.Health{BPFCmd: backend.BPFCmdName(cmd), Object: o.String()}
	res := ""
	if r.Ret < 0 {
		res = fmt.Sprintf(", refused: %v", unix.Errno(-r.Ret))
	}
	h.Detail = fmt.Sprintf("bpf(%s) on %s %s%s", h.BPFCmd, h.Object, by, res)
	return h
}

func splitArgs(b []byte) []string {
	var out []string
	for _, a := range strings.Split(strings.TrimRight(string(b), "\x00"), "\x00") {
		out = append(out, a)
	}
	return out
}

func protoName(p uint16) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	case 0:
		return ""
	}
	return fmt.Sprint(p)
}

// bootTime is the wall time of ktime 0: bpf_ktime_get_ns counts CLOCK_MONOTONIC.
func bootTime() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now()
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}
