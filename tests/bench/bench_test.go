package bench

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

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

// The workloads are sensor/hooktest's: this binary, re-executed inside the
// benchmark's cgroup, runs them.
func TestMain(m *testing.M) {
	if hooktest.IsWorkload() {
		os.Exit(hooktest.WorkloadMain())
	}
	os.Exit(testenv.Main(m))
}

// readable is the file the syscall loop reads: protected, read-only.
const readable = "/etc/hostname"

// runWorker runs one workload in the cgroup and returns ns per iteration;
// chmod changes dir/target, mmap maps the C library.
func runWorker(tb testing.TB, cg *testenv.Cgroup, kind string, n int, dir string) float64 {
	file := readable
	switch kind {
	case "chmod":
		file = filepath.Join(dir, "target")
	case "mmap":
		file = library(tb)
	}
	d, err := hooktest.RunWorkload(cg, kind, n, dir, file)
	if err != nil {
		tb.Fatal(err)
	}
	return float64(d.Nanoseconds())
}

// library is the C library, under the default policy's image paths: the
// file the mmap workload maps executable as the dynamic loader does.
func library(tb testing.TB) string {
	libs, _ := filepath.Glob("/usr/lib/*/libc.so.6")
	if len(libs) == 0 {
		tb.Fatal("no /usr/lib/*/libc.so.6 for the mmap workload to map")
	}
	return libs[0]
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func percentile(v []float64, p float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[int(float64(len(s)-1)*p)]
}

// protectedDir makes a directory the default policy protects (not under an
// exception such as /tmp or /var/tmp), removed at the end, with a file
// "target" in it.
func protectedDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("/opt", "driftbench")
	if err != nil {
		if dir, err = os.MkdirTemp("/root", "driftbench"); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "target"), nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// loadSensor attaches a sealed sensor scoped to cg with the default policy
// (so the churn directory under /tmp is a writable exception), guarding the
// sensor files in protect.
func loadSensor(tb testing.TB, cg *testenv.Cgroup, emit func(*event.Event), onRecord func(uint64), protect ...string) (*tracepoint.Backend, func()) {
	root, _ := sysfs.CgroupRoot()
	be, err := tracepoint.Load(backend.Options{Scope: []string{cg.Path}, CgroupRoot: root, RingBytes: 64 << 20, Protect: protect})
	if err != nil {
		tb.Fatal(err)
	}
	pol := policy.Default()
	// The workload runs as this test binary, which is no drift.
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	pol.ExecImageFiles = append(pol.ExecImageFiles, self)
	if err := be.Apply(sensor.RulesFor(pol)); err != nil {
		tb.Fatal(err)
	}
	if err := be.SetSealed(true); err != nil {
		tb.Fatal(err)
	}
	if emit == nil {
		emit = func(*event.Event) {}
	}
	s := sensor.New(sensor.Config{Host: "bench", Policy: pol, Backend: be, Log: zerolog.Nop(), Emit: emit, OnRecord: onRecord})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	return be, func() { cancel(); <-done; be.Close() }
}

// BenchmarkOverhead compares, in one run and interleaved round by round, the
// benign workloads with nothing attached, with an empty tp_btf/sys_enter
// program (the floor), and with the sealed sensor. Metrics are medians.
func BenchmarkOverhead(b *testing.B) {
	testenv.RequireBPF(b)
	cg := testenv.NewCgroup(b)
	// tmpfs under /dev (a default writable exception): the measure is CPU
	// overhead, not the disk journal's variance.
	dir, err := os.MkdirTemp("/dev/shm", "driftbench")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// The sensor must see nothing of the benign work: after each sensor
	// round a marker chmod of a protected file is the only finding allowed,
	// and its arrival proves the round's records were all read.
	marker := filepath.Join(protectedDir(b), "target")
	var fmu sync.Mutex
	var markers int
	var stray []string
	emit := func(ev *event.Event) {
		fmu.Lock()
		defer fmu.Unlock()
		if ev.Kind == event.KindFile && ev.Action == "chmod" && ev.File != nil && ev.File.Path == marker {
			markers++
			return
		}
		stray = append(stray, act.Describe(ev))
	}
	rounds := testenv.EnvCount(b, "DRIFT_BENCH_ROUNDS", 9)
	for _, wl := range []struct {
		name string
		n    int
	}{{"churn", 20000}, {"syscalls", 100000}, {"mmap", 50000}} {
		b.Run(wl.name, func(b *testing.B) {
			var base, floor, sens []float64
			runBase := func() { base = append(base, runWorker(b, cg, wl.name, wl.n, dir)) }
			runFloor := func() {
				var objs floorObjects
				if err := loadFloorObjects(&objs, nil); err != nil {
					b.Fatal(err)
				}
				l, err := link.AttachTracing(link.TracingOptions{Program: objs.FloorSysEnter})
				if err != nil {
					b.Fatal(err)
				}
				floor = append(floor, runWorker(b, cg, wl.name, wl.n, dir))
				l.Close()
				objs.Close()
			}
			runSensor := func() {
				_, stop := loadSensor(b, cg, emit, nil)
				defer stop()
				sens = append(sens, runWorker(b, cg, wl.name, wl.n, dir))
				fmu.Lock()
				want := markers + 1
				fmu.Unlock()
				if _, err := hooktest.RunWorkload(cg, "chmod", 1, dir, marker); err != nil {
					b.Fatal(err)
				}
				testenv.Eventually(b, "the marker finding after a sensor round", func() bool {
					fmu.Lock()
					defer fmu.Unlock()
					return markers == want
				})
				fmu.Lock()
				defer fmu.Unlock()
				if len(stray) > 0 {
					b.Fatalf("benign %s work produced findings: %v", wl.name, stray)
				}
			}
			runWorker(b, cg, wl.name, wl.n/10, dir) // warm caches
			for r := 0; r < rounds; r++ {
				// Alternate the order so drift over the run hits every condition alike.
				if r%2 == 0 {
					runBase()
					runFloor()
					runSensor()
				} else {
					runSensor()
					runFloor()
					runBase()
				}
			}
			mb, mf, ms := median(base), median(floor), median(sens)
			b.ReportMetric(mb, "base-ns/op")
			b.ReportMetric(mf, "floor-ns/op")
			b.ReportMetric(ms, "sensor-ns/op")
			b.ReportMetric(100*(mf/mb-1), "floor-%")
			b.ReportMetric(100*(ms/mb-1), "sensor-%")
			b.ReportMetric(100*(ms-mf)/mb, "sensor-over-floor-pts")
		})
	}
}

// BenchmarkFindings drives a finding per syscall (chmod of a protected file)
// and reports the latency from the kernel hook to the Go callback (p50, p99),
// and the sustained rate; every record is either delivered or counted lost.
func BenchmarkFindings(b *testing.B) {
	testenv.RequireBPF(b)
	cg := testenv.NewCgroup(b)
	dir := protectedDir(b)
	var mu sync.Mutex
	var lat, ring []float64
	var got atomic.Uint64
	var lost atomic.Uint64
	_, stop := loadSensor(b, cg, func(ev *event.Event) {
		if ev.Kind == event.KindSensor {
			lost.Add(ev.Health.LostRecords)
			return
		}
		if ev.Action != "chmod" {
			return
		}
		t := int64(event.KTimeNow())
		got.Add(1)
		mu.Lock()
		lat = append(lat, float64(t-int64(ev.KTimeNS))/1000)
		mu.Unlock()
	}, func(ktime uint64) {
		t := int64(event.KTimeNow())
		mu.Lock()
		ring = append(ring, float64(t-int64(ktime))/1000)
		mu.Unlock()
	})
	defer stop()
	n := testenv.EnvCount(b, "DRIFT_BENCH_FINDINGS", 200000)
	start := time.Now()
	nsPer := runWorker(b, cg, "chmod", n, dir)
	// Wait until every record is delivered or counted lost.
	deadline := time.Now().Add(30 * time.Second)
	for got.Load()+lost.Load() < uint64(n) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(got.Load())/elapsed.Seconds(), "findings/s")
	b.ReportMetric(1e9/nsPer, "syscalls/s")
	b.ReportMetric(float64(got.Load()), "delivered")
	b.ReportMetric(float64(lost.Load()), "lost")
	if missing := int64(n) - int64(got.Load()+lost.Load()); missing != 0 {
		b.Errorf("%d records neither delivered nor counted lost", missing)
	}
	mu.Lock()
	if len(lat) > 0 {
		b.ReportMetric(percentile(ring, 0.5), "burst-ring-p50-us")
		b.ReportMetric(percentile(ring, 0.99), "burst-ring-p99-us")
	}
	// Light load: one finding at a time, the latency a lone drift sees.
	lat, ring = lat[:0], ring[:0]
	mu.Unlock()
	got.Store(0)
	lostBefore := lost.Load()
	const lone = 200
	for i := 0; i < lone; i++ {
		runWorker(b, cg, "chmod", 1, dir)
	}
	for wait := time.Now().Add(testenv.WaitBound); got.Load() < lone && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	if g, l := got.Load(), lost.Load()-lostBefore; g != lone || l != 0 {
		b.Fatalf("lone phase: %d findings delivered, %d lost; want exactly %d and none lost", g, l, lone)
	}
	mu.Lock()
	if len(lat) > 0 {
		b.ReportMetric(percentile(ring, 0.5), "ring-p50-us")
		b.ReportMetric(percentile(ring, 0.99), "ring-p99-us")
		b.ReportMetric(percentile(lat, 0.5), "finding-p50-us")
		b.ReportMetric(percentile(lat, 0.99), "finding-p99-us")
	}
	mu.Unlock()
}

// BenchmarkBPFCost reports the kernel's own accounting of the sys_exit
// program's run time (bpf_stats) per workload iteration, on a sealed scope.
// Unlike wall-clock overhead it does not move with the machine's load.
func BenchmarkBPFCost(b *testing.B) {
	testenv.RequireBPF(b)
	cg := testenv.NewCgroup(b)
	dir, err := os.MkdirTemp("/dev/shm", "driftbench")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal("enable BPF run-time statistics:", err)
	}
	defer stats.Close()
	var protect []string
	if os.Getenv("DRIFT_BENCH_GUARD") != "" { // guard sensor files: every open is checked against them
		protect = []string{b.TempDir()}
	}
	findingDir := protectedDir(b)
	target, exemptTarget := filepath.Join(findingDir, "target"), filepath.Join(dir, "target")
	if err := os.WriteFile(exemptTarget, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	var findings, exempt, lost atomic.Uint64
	var held atomic.Pointer[chan struct{}] // while set, the reader waits on it at a finding
	be, stop := loadSensor(b, cg, func(ev *event.Event) {
		switch {
		case ev.Kind == event.KindSensor && ev.Health != nil:
			lost.Add(ev.Health.LostRecords)
		case ev.Action == "chmod" && ev.File != nil && ev.File.Path == target:
			findings.Add(1)
			if h := held.Load(); h != nil {
				<-*h
			}
		case ev.Action == "chmod" && ev.File != nil && ev.File.Path == exemptTarget:
			exempt.Add(1)
		}
	}, nil, protect...)
	defer stop()
	prog, second := be.SysExitProgram(), be.SysExitSecond()
	// both copies' run time (the second's runs are every syscall exit too)
	statsOf := func() (ebpf.ProgramStats, error) {
		a, err := prog.Stats()
		if err != nil {
			return ebpf.ProgramStats{}, err
		}
		if second == nil { // not attached on this kernel
			return *a, nil
		}
		c, err := second.Stats()
		if err != nil {
			return ebpf.ProgramStats{}, err
		}
		a.Runtime += c.Runtime
		return *a, nil
	}
	const n = 20000
	// The syscalls each iteration makes at least: the program runs at every
	// syscall exit, so fewer runs means it did not run.
	minRuns := map[string]uint64{"opens": 2, "writes": 1, "renames": 1, "churn": 5, "syscalls": 4, "chmod": 1, "mmap": 5}
	// chmod: a finding per syscall (a protected file), the cost a drift
	// storm puts on the writer in the kernel. chmod-exempt: the same syscall
	// on a file in a writable exception, its name read, resolved and judged
	// alike, with no finding: the difference is the record (header, copies,
	// the ring buffer). chmod-held: chmod with the reader stopped at the
	// first finding until the workload ends, so the ring buffer wakes it once
	// instead of at each record it had caught up with: the difference is the
	// wakeups.
	for _, wl := range []string{"opens", "writes", "renames", "churn", "syscalls", "mmap", "chmod", "chmod-exempt", "chmod-held"} {
		b.Run(wl, func(b *testing.B) {
			kind, wdir := wl, dir
			var release chan struct{}
			switch wl {
			case "chmod-held":
				release = make(chan struct{})
				held.Store(&release)
				kind, wdir = "chmod", findingDir
			case "chmod":
				wdir = findingDir
			case "chmod-exempt":
				kind = "chmod"
			}
			before, err := statsOf()
			if err != nil {
				b.Fatal(err)
			}
			// The worker's system time: the syscalls, the hook, and the
			// kernel work a record sets off (the ring buffer's wakeups).
			var ru0, ru1 unix.Rusage
			unix.Getrusage(unix.RUSAGE_CHILDREN, &ru0)
			runWorker(b, cg, kind, n, wdir)
			unix.Getrusage(unix.RUSAGE_CHILDREN, &ru1)
			if release != nil {
				held.Store(nil)
				close(release)
			}
			after, err := statsOf()
			if err != nil {
				b.Fatal(err)
			}
			if runs := after.RunCount - before.RunCount; runs < minRuns[kind]*n || after.Runtime <= before.Runtime {
				b.Fatalf("%s: the program ran %d times in %v for %d iterations, want at least %d runs", wl, runs, after.Runtime-before.Runtime, n, minRuns[kind]*n)
			}
			switch {
			case wdir == findingDir:
				testenv.Eventually(b, "every chmod delivered or counted lost", func() bool { return findings.Load()+lost.Load() >= n })
				if findings.Load() != n {
					b.Fatalf("%s: %d findings delivered and %d lost, want %d delivered", wl, findings.Load(), lost.Load(), n)
				}
				findings.Store(0)
			case wl == "chmod-exempt":
				// A finding after the workload's: once it is here, any
				// finding on the exempt file would be too.
				runWorker(b, cg, "chmod", 1, findingDir)
				testenv.Eventually(b, "the marker chmod's finding", func() bool { return findings.Load()+lost.Load() >= 1 })
				if findings.Load() != 1 || exempt.Load() != 0 {
					b.Fatalf("chmod-exempt: %d findings on %s (want none), marker findings %d (want 1), %d lost", exempt.Load(), exemptTarget, findings.Load(), lost.Load())
				}
				findings.Store(0)
			}
			b.ReportMetric(float64((after.Runtime-before.Runtime).Nanoseconds())/n, "bpf-ns/iteration")
			b.ReportMetric(float64(ru1.Stime.Nano()-ru0.Stime.Nano())/n, "worker-sys-ns/iteration")
			b.ReportMetric(float64(after.RunCount-before.RunCount)/n, "runs/iteration")
		})
	}
}
