package sensor_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/record"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
)

// tracepointRunner runs the shared hook table (sensor/hooktest) on the
// tracepoint backend through sensor.Sensor. It has one mode: detect.
type tracepointRunner struct{}

func (tracepointRunner) Backend() string        { return tracepoint.Name }
func (tracepointRunner) Modes() []hooktest.Mode { return []hooktest.Mode{hooktest.Detect} }

func (tracepointRunner) Start(t *testing.T) hooktest.Scope {
	return hooktest.NewBed(t, hooktest.BedConfig{
		Load: func(opts backend.Options) (backend.Backend, error) {
			root, err := sysfs.CgroupRoot()
			if err != nil {
				return nil, err
			}
			opts.CgroupRoot = root
			return tracepoint.Load(opts)
		},
		Check: checkTracepoint,
		ProgID: func(b backend.Backend) uint32 {
			info, err := b.(*tracepoint.Backend).SysExitProgram().Info()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := info.ID()
			return uint32(id)
		},
	})
}

// checkTracepoint: records come from the thread that made the syscall, but
// an exec record is written after the exec, when the process is one thread
// whose id is the pid.
func checkTracepoint(t testing.TB, w hooktest.Want, ev *event.Event, res hooktest.Result) {
	t.Helper()
	if ev.Backend != tracepoint.Name {
		t.Errorf("finding from backend %q: %s", ev.Backend, act.Describe(ev))
	}
	if ev.Denied != w.Denied || (ev.Kind == event.KindFile && ev.Denied) {
		t.Errorf("finding denied=%v: %s", ev.Denied, act.Describe(ev))
	}
	wantTID := res.TID
	if ev.Action == hooktest.ActExec {
		wantTID = res.PID
	}
	if !w.AnyThread && wantTID != 0 && int(ev.Process.TID) != wantTID {
		t.Errorf("finding from thread %d, want %d: %s", ev.Process.TID, wantTID, act.Describe(ev))
	}
}

// TestHooks runs every case of the shared table: each mutation, exec,
// privileged operation and bind on a sealed scope is one finding with the
// exact canonical path and the actor's pid; benign actions are none.
func TestHooks(t *testing.T) {
	hooktest.Run(t, tracepointRunner{})
}

func touch(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("seed"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// sealedImage loads the tracepoint backend (opts, scoped to a cgroup of the
// test's own) with a policy protecting img, a directory of the test's, and
// seals it.
func sealedImage(t *testing.T, opts backend.Options) (cg *testenv.Cgroup, img string, pol *policy.Policy, be *tracepoint.Backend) {
	t.Helper()
	testenv.RequireBPF(t)
	root, err := sysfs.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	cg = testenv.NewCgroup(t)
	img = filepath.Join(t.TempDir(), "img")
	if err := os.MkdirAll(img, 0o755); err != nil {
		t.Fatal(err)
	}
	if pol, err = policy.Parse("p.yaml", []byte("version: 1\nprotect: ["+img+"]\n")); err != nil {
		t.Fatal(err)
	}
	opts.Scope, opts.CgroupRoot = []string{cg.Path}, root
	if be, err = tracepoint.Load(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	if err := be.Apply(sensor.RulesFor(pol)); err != nil {
		t.Fatal(err)
	}
	if err := be.SetSealed(true); err != nil {
		t.Fatal(err)
	}
	return cg, img, pol, be
}

// TestLostRecordsAreFindings: a burst of findings into a one-page ring buffer
// that nobody reads yet overflows it deterministically; once the reader
// starts, every chmod is either delivered (with its exact path and actor) or
// counted, exactly, in one lost_records finding.
func TestLostRecordsAreFindings(t *testing.T) {
	cg, img, pol, be := sealedImage(t, backend.Options{RingBytes: 4096})
	target := filepath.Join(img, "f")
	touch(t, target)

	// The burst runs to completion before any reader exists: the ring holds a
	// handful of records and the kernel must count the rest as lost.
	const n = 2000
	cmd, closeFD, err := cg.Command("sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do chmod 600 %s || exit 1; i=$((i+1)); done", n, target))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}

	var mu sync.Mutex
	var delivered, lost uint64
	var lostFindings int
	var wrong []string
	s := sensor.New(sensor.Config{Host: "t", Policy: pol, Backend: be, Log: zerolog.Nop(), StatsEvery: 20 * time.Millisecond,
		Emit: func(ev *event.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case ev.Kind == event.KindSensor && ev.Action == "lost_records":
				lost += ev.Health.LostRecords
				lostFindings++
			case ev.Kind == event.KindFile && ev.Action == "chmod" && ev.File != nil && ev.File.Path == target && ev.Process.PPID == uint32(cmd.Process.Pid):
				delivered++
			default:
				wrong = append(wrong, act.Describe(ev))
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	testenv.Eventually(t, fmt.Sprintf("every one of %d chmods delivered or counted lost", n), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return delivered+lost >= n
	})
	mu.Lock()
	defer mu.Unlock()
	if delivered+lost != n {
		t.Fatalf("%d chmods: %d delivered + %d counted lost != %d", n, delivered, lost, n)
	}
	if delivered == 0 || lost == 0 || lostFindings != 1 {
		t.Fatalf("a one-page ring nobody read: %d delivered, %d lost in %d lost_records findings; want some of each, in exactly one finding", delivered, lost, lostFindings)
	}
	if len(wrong) > 0 {
		t.Fatalf("unexpected findings: %v", wrong)
	}
}

// tally runs a sensor on a sealed backend for the contention tests: it
// counts findings by the key key gives them, keeps the others, and starts
// the actor processes whose own exec findings are expected.
type tally struct {
	mu    sync.Mutex
	seen  map[string]int
	other []*event.Event
	ours  map[uint32]bool // the actors' pids
}

func newTally(t *testing.T, pol *policy.Policy, be backend.Backend, cfg sensor.Config, key func(*event.Event) (string, bool)) *tally {
	ta := &tally{seen: map[string]int{}, ours: map[uint32]bool{}}
	cfg.Host, cfg.Policy, cfg.Backend, cfg.Log = "t", pol, be, zerolog.Nop()
	cfg.Emit = func(ev *event.Event) {
		ta.mu.Lock()
		defer ta.mu.Unlock()
		if k, ok := key(ev); ok {
			ta.seen[k]++
			return
		}
		ta.other = append(ta.other, ev)
	}
	s := sensor.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ta
}

// count is the number of findings keyed k so far.
func (ta *tally) count(k string) int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.seen[k]
}

// actor starts the hook tests' actor in cg with args and returns the wait
// for its end, which fails the test with its output if it failed.
func (ta *tally) actor(t *testing.T, cg *testenv.Cgroup, args ...string) (wait func()) {
	t.Helper()
	cmd, closeFD, err := cg.Command(os.Args[0], args...)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD()
	var out bytes.Buffer
	cmd.Env = append(os.Environ(), act.ActorEnv+"=1")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ta.mu.Lock()
	ta.ours[uint32(cmd.Process.Pid)] = true
	ta.mu.Unlock()
	return func() {
		t.Helper()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("actor %q: %v\n%s", args, err, out.Bytes())
		}
	}
}

// countedUnjudged waits, with a bound, for the kernel's count of syscalls
// nothing judged to cover missing findings (it is reported only once it held
// for a second: sensor/tracepoint settled), and returns the counters read
// then. Callers do not hold the tally's lock: the sensor's own findings go
// on arriving.
func countedUnjudged(t *testing.T, be backend.Backend, missing int) backend.Stats {
	t.Helper()
	var st backend.Stats
	testenv.Eventually(t, fmt.Sprintf("the %d findings missing counted as unjudged syscalls", missing), func() bool {
		var err error
		if st, err = be.Stats(); err != nil {
			t.Fatal(err)
		}
		return int(st.Skipped) >= missing
	})
	return st
}

// ownExec says whether ev is the exec finding of an actor the tally started
// (the test binary, outside the image paths).
func (ta *tally) ownExec(ev *event.Event) bool {
	return ev.Kind == event.KindExec && ev.Process != nil && ta.ours[ev.Process.PID] && ev.Exec != nil && ev.Exec.Arg == 0
}

// TestChmodsJudgedUnderContention: two processes in a sealed scope chmod a
// protected file each, in turn, as fast as they can; every file must get its
// chmod finding, or be covered by a skipped run the sensor counts. On kernels
// that run syscall tracepoint programs preemptibly (Debian's 7.2 in make
// vmtest, with one vCPU), the kernel skips the sys_exit program's run on a
// CPU where it is preempted mid-run: the second copy (bpf/tracepoint.c,
// exit_role) judges those syscalls. Both copies can still be preempted at
// once (a writer in one, any other task, the test's own threads among them,
// in the other) under a third chmod: then nothing judges it, and it is
// counted (Stats.Skipped, reported as skipped_runs, a bound from above), so
// the files without a finding may not outnumber that count. A file judged
// twice (another task's first run between the two copies) is allowed, and
// logged. A last chmod by a process
// of its own, repeated until its finding arrives, is the barrier: every
// writer's record was queued before it.
func TestChmodsJudgedUnderContention(t *testing.T) {
	// the copy whatever the kernel: where none is skipped it must judge nothing twice
	cg, img, pol, be := sealedImage(t, backend.Options{SecondSysExit: true})
	const perWriter = 1500
	dirs := []string{filepath.Join(img, "a"), filepath.Join(img, "b"), filepath.Join(img, "marker")}
	for i, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < perWriter && (i < 2 || j == 0); j++ {
			touch(t, filepath.Join(d, fmt.Sprintf("f%d", j)))
		}
	}
	writing, markerDir := dirs[:2], dirs[2]
	marker := filepath.Join(markerDir, "f0")

	ta := newTally(t, pol, be, sensor.Config{StatsEvery: 20 * time.Millisecond}, func(ev *event.Event) (string, bool) {
		if ev.Kind == event.KindFile && ev.Action == "chmod" && ev.File != nil {
			return ev.File.Path, true
		}
		return "", false
	})
	var waits []func()
	for _, d := range writing {
		waits = append(waits, ta.actor(t, cg, "chmod-all", d))
	}
	for _, wait := range waits {
		wait()
	}
	testenv.Eventually(t, "the marker chmod's finding", func() bool {
		if ta.count(marker) > 0 {
			return true
		}
		// its own run may be one both copies skipped: chmod it again
		ta.actor(t, cg, "chmod-all", markerDir)()
		return false
	})
	want, missing, twice := len(writing)*perWriter, 0, 0
	ta.mu.Lock()
	for _, d := range writing {
		for i := 0; i < perWriter; i++ {
			switch n := ta.seen[filepath.Join(d, fmt.Sprintf("f%d", i))]; {
			case n == 0:
				missing++
			case n > 1:
				twice++
			}
		}
	}
	ta.mu.Unlock()
	st := countedUnjudged(t, be, missing) // files without a finding may not outnumber it
	ta.mu.Lock()
	defer ta.mu.Unlock()
	seen := ta.seen
	if got := len(seen) - 1; got != want-missing {
		t.Errorf("chmod findings name %d files besides the marker, want exactly the %d chmodded and found", got, want-missing)
	}
	for _, ev := range ta.other {
		switch {
		case ev.Kind == event.KindSensor: // skipped_runs and the like: the sensor's own reports
		case ta.ownExec(ev):
		default:
			t.Errorf("unexpected finding: %s", act.Describe(ev))
		}
	}
	t.Logf("%d chmods: %d without a finding, %d judged twice; the second copy judged %d syscalls; %d unmarked, %d counted unjudged", want, missing, twice, st.Recovered, st.Unmarked, st.Skipped)
}

// TestMprotectsJudgedWhileMappingsChange: a process makes a mapping of each
// of many files outside the image paths executable (mprotect), while another
// of its threads maps and unmaps memory in a loop, so the mmap lock is often
// held for writing when the kernel program looks the mapping up: each
// mprotect has its exec finding all the same, naming the file (before the
// lockless lookup, bpf/vma.h vma_walk, most had none), unless the kernel
// skipped the program's run for it, which the sensor counts (7.2: see
// TestChmodsJudgedUnderContention); findings missing may not outnumber
// that count, and no finding may name another file. Rounds
// repeat, each a new process, until some lookup found the lock taken (the
// walk ran), with a bound; none may fail to find its mapping.
func TestMprotectsJudgedWhileMappingsChange(t *testing.T) {
	cg, img, pol, be := sealedImage(t, backend.Options{})
	const files, maxRounds = 500, 20
	dir := filepath.Join(img, "lib")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := func(i int) string { return filepath.Join(dir, fmt.Sprintf("f%04d.so", i)) } // in ReadDir's order
	for i := 0; i < files; i++ {
		touch(t, name(i))
	}
	markers := filepath.Join(img, "markers") // one mprotected alone after each round: a barrier
	if err := os.MkdirAll(markers, 0o755); err != nil {
		t.Fatal(err)
	}
	marker := func(r int) string { return filepath.Join(markers, fmt.Sprintf("m%d.so", r)) }
	for r := 1; r <= maxRounds; r++ {
		touch(t, marker(r))
	}
	ta := newTally(t, pol, be, sensor.Config{}, func(ev *event.Event) (string, bool) {
		if ev.Kind != event.KindExec || ev.Exec == nil {
			return "", false
		}
		d := filepath.Dir(ev.Exec.Path)
		return ev.Exec.Path, (d == dir || d == markers) && ev.Exec.Arg == unix.PROT_READ|unix.PROT_EXEC &&
			slices.Equal(ev.Exec.Reasons, []string{"outside_image"})
	})
	var st backend.Stats
	rounds := 0
	for st.MapWalked == 0 && rounds < maxRounds {
		rounds++
		ta.actor(t, cg, "mprotect-all", dir)()
		testenv.Eventually(t, "the marker's finding", func() bool {
			if ta.count(marker(rounds)) > 0 {
				return true
			}
			// its own run may be one the kernel skipped (7.2): again
			ta.actor(t, cg, "mprotect-x", marker(rounds))()
			return false
		})
		var err error
		if st, err = be.Stats(); err != nil {
			t.Fatal(err)
		}
	}
	missing, never := 0, 0 // findings missing; files without any
	ta.mu.Lock()
	for i := 0; i < files; i++ {
		n := ta.seen[name(i)]
		if n < rounds {
			missing += rounds - n
		}
		if n == 0 {
			never++
		}
	}
	ta.mu.Unlock()
	// where the kernel skips runs of the program (7.2), those count
	st = countedUnjudged(t, be, missing)
	ta.mu.Lock()
	defer ta.mu.Unlock()
	seen := ta.seen
	t.Logf("%d rounds of %d mprotects: %d looked up without the lock, %d not found", rounds, files, st.MapWalked, st.MapUnfound)
	if st.MapWalked == 0 {
		t.Fatalf("in %d rounds, no lookup found the mmap lock taken: the lockless walk was not tested", rounds)
	}
	if st.MapUnfound != 0 {
		t.Errorf("%d lookups without the lock found no mapping", st.MapUnfound)
	}
	for i := 0; i < files; i++ {
		if n := seen[name(i)]; n > rounds {
			t.Errorf("%s: %d findings in %d rounds", name(i), n, rounds)
		}
	}
	for r := 1; r <= rounds; r++ {
		delete(seen, marker(r))
	}
	// Only the mprotected files, each of them unless all its runs were
	// among the skipped ones counted above.
	if len(seen) != files-never {
		t.Errorf("findings name %d files besides the markers, want the %d of the %d mprotected that had one: the others are no file mprotected", len(seen), files-never, files)
	}
	for _, ev := range ta.other {
		switch {
		case ev.Kind == event.KindSensor && ev.Action == "skipped_runs":
		case ta.ownExec(ev):
		default:
			t.Errorf("unexpected finding: %s", act.Describe(ev))
		}
	}
}

// TestKernelStateChanges: the sensor records the kernel state at the seal
// and reports each later change once, exactly: here BPF programs the test
// loads and unloads, named by id. A program loaded as soon as SetSealed
// returns is reported (the baseline is the seal's, not the first check's).
// Each report is a marker barrier for the comparisons before it: the
// findings up to the last one are exactly the changes made, none repeated,
// nothing reported without a change. Reading the state takes no descriptor
// of any BPF object, so it raises no tamper finding.
func TestKernelStateChanges(t *testing.T) {
	testenv.RequireBPF(t)
	root, err := sysfs.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	cg := testenv.NewCgroup(t)
	pol := policy.Default()
	be, err := tracepoint.Load(backend.Options{Scope: []string{cg.Path}, CgroupRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if err := be.Apply(sensor.RulesFor(pol)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string // every finding, described; kernel_state ones by their detail
	s := sensor.New(sensor.Config{Host: "t", Policy: pol, Backend: be, Log: zerolog.Nop(), KernelEvery: 20 * time.Millisecond,
		Emit: func(ev *event.Event) {
			mu.Lock()
			defer mu.Unlock()
			if ev.Kind == event.KindSensor && ev.Action == sensor.ActionKernelState {
				got = append(got, ev.Health.Detail)
			} else {
				got = append(got, act.Describe(ev))
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	if err := s.SetSealed(true); err != nil {
		t.Fatal(err)
	}
	load := func() (*ebpf.Program, uint32) {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		return p, uint32(id)
	}
	var want []string
	expect := func(detail string) {
		t.Helper()
		want = append(want, "kernel state changed since the seal: "+detail)
		testenv.Eventually(t, detail+" reported", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.Contains(got, want[len(want)-1])
		})
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(got, want) {
			t.Fatalf("findings up to %q:\n got %q\nwant %q", detail, got, want)
		}
	}
	p1, id1 := load()
	expect(fmt.Sprintf("BPF program loaded: id %d", id1))
	p2, id2 := load()
	expect(fmt.Sprintf("BPF program loaded: id %d", id2))
	p1.Close()
	expect(fmt.Sprintf("BPF program unloaded: id %d", id1))
	p2.Close()
	expect(fmt.Sprintf("BPF program unloaded: id %d", id2))

	// Unsealed, nothing is compared; a new seal takes a new baseline, so
	// the programs loaded while unsealed are no change.
	if err := s.SetSealed(false); err != nil {
		t.Fatal(err)
	}
	load()
	if err := s.SetSealed(true); err != nil {
		t.Fatal(err)
	}
	_, id4 := load()
	expect(fmt.Sprintf("BPF program loaded: id %d", id4))
}

// TestRecordNamesProcess: a finding's record names its process and the
// parent by pid and start, as /proc/PID/stat counts them, so the process
// table can tell the process from one that took its pid later, and serve a
// parent it has confirmed without reading procfs. The actor is a shell that
// writes the file itself and stays; its parent is this test process, which
// forks from any of its threads: a start is the leader's.
func TestRecordNamesProcess(t *testing.T) {
	cg, img, _, be := sealedImage(t, backend.Options{})
	target := filepath.Join(img, "f")
	touch(t, target)
	cmd, closeFD, err := cg.Command("sh", "-c", "echo drift > "+target+"; read wait")
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()

	rd := be.Reader()
	rd.SetDeadline(time.Now().Add(testenv.WaitBound))
	for {
		raw, err := rd.Read()
		if err != nil {
			t.Fatalf("no record of the write to %s by pid %d: %v", target, cmd.Process.Pid, err)
		}
		var r record.Record
		if err := record.Decode(raw.RawSample, &r); err != nil {
			t.Fatal(err)
		}
		if r.Kind != record.KindFile || r.TGID != uint32(cmd.Process.Pid) || string(r.Path) != target {
			continue
		}
		self, parent := startTicks(t, cmd.Process.Pid), startTicks(t, os.Getpid())
		if r.Start/1e7 != self || r.PPID != uint32(os.Getpid()) || r.PStart/1e7 != parent {
			t.Fatalf("record of pid %d started at %d ns (%d ticks), parent %d at %d ns (%d ticks); want %d ticks, parent %d at %d ticks (procfs)",
				r.TGID, r.Start, r.Start/1e7, r.PPID, r.PStart, r.PStart/1e7, self, os.Getpid(), parent)
		}
		return
	}
}

// startTicks is the start of pid in clock ticks, field 22 of /proc/PID/stat.
func startTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// starttime is the 20th field after comm's closing parenthesis.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	ticks, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		t.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	return ticks
}
