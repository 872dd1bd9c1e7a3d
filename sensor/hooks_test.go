package sensor_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
	"github.com/driftsensor/driftsensor/sensor/policy"
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

	var mu sync.Mutex
	seen := map[string]int{}
	var other []*event.Event
	s := sensor.New(sensor.Config{Host: "t", Policy: pol, Backend: be, Log: zerolog.Nop(), StatsEvery: 20 * time.Millisecond,
		Emit: func(ev *event.Event) {
			mu.Lock()
			defer mu.Unlock()
			if ev.Kind == event.KindFile && ev.Action == "chmod" && ev.File != nil {
				seen[ev.File.Path]++
				return
			}
			other = append(other, ev)
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	ours := map[uint32]bool{} // the writers and the marker runs: this test binary, outside the image paths
	chmodAll := func(dir string) *exec.Cmd {
		t.Helper()
		cmd, closeFD, err := cg.Command(os.Args[0], "chmod-all", dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeFD() })
		cmd.Env = append(os.Environ(), act.ActorEnv+"=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		ours[uint32(cmd.Process.Pid)] = true
		mu.Unlock()
		return cmd
	}
	var cmds []*exec.Cmd
	for _, d := range writing {
		cmds = append(cmds, chmodAll(d))
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer %v: %v", cmd.Args, err)
		}
	}
	testenv.Eventually(t, "the marker chmod's finding", func() bool {
		mu.Lock()
		n := seen[marker]
		mu.Unlock()
		if n > 0 {
			return true
		}
		// its own run may be one both copies skipped: chmod it again
		if err := chmodAll(markerDir).Wait(); err != nil {
			t.Fatalf("marker: %v", err)
		}
		return false
	})
	// A count of syscalls nothing judged is reported once it held for a
	// second (sensor/tracepoint settled): read it after two.
	var st backend.Stats
	for barrier := time.Now(); time.Since(barrier) < 2*time.Second; time.Sleep(50 * time.Millisecond) {
		var err error
		if st, err = be.Stats(); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want, missing, twice := len(writing)*perWriter, 0, 0
	for _, d := range writing {
		for i := 0; i < perWriter; i++ {
			switch n := seen[filepath.Join(d, fmt.Sprintf("f%d", i))]; {
			case n == 0:
				missing++
			case n > 1:
				twice++
			}
		}
	}
	if missing > int(st.Skipped) {
		t.Errorf("%d of %d files have no chmod finding, and only %d unjudged syscalls were counted", missing, want, st.Skipped)
	}
	if got := len(seen) - 1; got != want-missing {
		t.Errorf("chmod findings name %d files besides the marker, want exactly the %d chmodded and found", got, want-missing)
	}
	for _, ev := range other {
		switch {
		case ev.Kind == event.KindSensor: // skipped_runs and the like: the sensor's own reports
		case ev.Kind == event.KindExec && ev.Process != nil && ours[ev.Process.PID]:
		default:
			t.Errorf("unexpected finding: %s", act.Describe(ev))
		}
	}
	t.Logf("%d chmods: %d without a finding, %d judged twice; the second copy judged %d syscalls; %d unmarked, %d counted unjudged", want, missing, twice, st.Recovered, st.Unmarked, st.Skipped)
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
