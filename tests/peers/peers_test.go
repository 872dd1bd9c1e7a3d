package peers

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor/hooktest"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// The benchmark's children are this test binary re-executed: hooktest's
// workloads and actor, and this package's storm and latency workloads.
func TestMain(m *testing.M) {
	switch {
	case hooktest.IsWorkload():
		os.Exit(hooktest.WorkloadMain())
	case act.IsActor():
		os.Exit(act.ActorMain())
	case IsChild():
		os.Exit(ChildMain())
	}
	os.Exit(testenv.Main(m))
}

// sizes of the workloads; PEERS_FAST=1 picks small ones for development.
type sizes struct {
	syscalls, churn, tarFiles, storm, latency int
	rounds                                    int
}

func benchSizes() sizes {
	s := sizes{syscalls: 100000, churn: 20000, tarFiles: 6000, storm: 200000, latency: 1000, rounds: 5}
	if os.Getenv("PEERS_FAST") != "" {
		s = sizes{syscalls: 20000, churn: 4000, tarFiles: 6000, storm: 20000, latency: 200, rounds: 2}
	}
	if r, err := strconv.Atoi(os.Getenv("PEERS_ROUNDS")); err == nil && r > 0 {
		s.rounds = r
	}
	return s
}

// bench is one run's shared state: the scope, the directories, the results.
type bench struct {
	b       *testing.B
	n       sizes
	cg      *testenv.Cgroup
	self    string
	prot    string // a directory the built-in policy protects, made and removed by the run
	storm   string // prot/storm
	lat     string // prot/lat
	marker  string // prot/marker: its chmod is every monitor's barrier
	shm     string // a writable exception (tmpfs): churn and the tar extract
	tarball string
	tool    string // an executable dropped in /tmp for the coverage's exec
	res     *Results
}

func (x *bench) fatal(err error) {
	x.b.Helper()
	if err != nil {
		x.b.Fatal(err)
	}
}

// setup makes the directories and files every round uses, before any monitor runs.
func (x *bench) setup() {
	b := x.b
	var err error
	x.self, err = os.Executable()
	x.fatal(err)
	x.cg = testenv.NewCgroup(b)
	// /opt is protected by the built-in policy and is no exception: an
	// /etc-like place that the run can make its own directory in, so the
	// machine's /etc is never touched. A tmpfs of its own on it keeps the
	// disk's journal (and whatever else writes to the disk) out of the
	// storm's timings.
	x.prot, err = os.MkdirTemp("/opt", "driftpeers")
	x.fatal(err)
	if err := unix.Mount("driftpeers", x.prot, "tmpfs", 0, "size=256m,mode=0755"); err != nil {
		os.Remove(x.prot)
		b.Fatalf("mount a tmpfs on %s: %v", x.prot, err)
	}
	b.Cleanup(func() {
		exec.Command("chattr", "-i", filepath.Join(x.prot, "cov-chattr")).Run()
		if err := unix.Unmount(x.prot, unix.MNT_DETACH); err != nil {
			b.Errorf("unmount %s: %v", x.prot, err)
		}
		os.Remove(x.prot)
	})
	x.storm, x.lat, x.marker = filepath.Join(x.prot, "storm"), filepath.Join(x.prot, "lat"), filepath.Join(x.prot, "marker")
	x.fatal(os.Mkdir(x.storm, 0o755))
	x.fatal(os.Mkdir(x.lat, 0o755))
	for i := range x.n.latency {
		x.fatal(os.WriteFile(LatencyFile(x.lat, i), nil, 0o644))
	}
	for _, f := range []string{x.marker, "cov-write", "cov-uring", "cov-chattr"} {
		x.fatal(os.WriteFile(filepath.Join(x.prot, filepath.Base(f)), nil, 0o644))
	}
	x.shm, err = os.MkdirTemp("/dev/shm", "driftpeers")
	x.fatal(err)
	b.Cleanup(func() { os.RemoveAll(x.shm) })
	x.fatal(os.Mkdir(filepath.Join(x.shm, "x"), 0o755))
	x.tarball = filepath.Join(x.shm, "files.tar")
	x.fatal(writeTarball(x.tarball, x.n.tarFiles))
	tmp, err := os.MkdirTemp("", "driftpeers-tool")
	x.fatal(err)
	b.Cleanup(func() { os.RemoveAll(tmp) })
	x.tool = filepath.Join(tmp, "tool")
	x.fatal(os.WriteFile(x.tool, act.TrueELF(), 0o755))
}

// writeTarball writes a tar of n small files in directories of 100, under "t/".
func writeTarball(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := tar.NewWriter(f)
	body := []byte(strings.Repeat("benign file content\n", 50))
	for i := range n {
		if i%100 == 0 {
			if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("t/d%d/", i/100), Mode: 0o755}); err != nil {
				return err
			}
		}
		if err := w.WriteHeader(&tar.Header{Name: fmt.Sprintf("t/d%d/f%d", i/100, i), Mode: 0o644, Size: int64(len(body))}); err != nil {
			return err
		}
		if _, err := w.Write(body); err != nil {
			return err
		}
	}
	return w.Close()
}

// child runs this binary in the scope with env set and returns it finished.
func (x *bench) child(env []string, args ...string) (*exec.Cmd, string) {
	x.b.Helper()
	cmd, closeFD, err := x.cg.Command(x.self, args...)
	x.fatal(err)
	defer closeFD()
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		x.b.Fatalf("%s %v in the scope: %v: %s", env, args, err, out)
	}
	return cmd, string(out)
}

// inScope runs a command in the scope and returns its pid.
func (x *bench) inScope(name string, args ...string) int {
	x.b.Helper()
	return x.cg.Run(x.b, name, args...)
}

// barrier chmods the marker from the scope and waits until m reported it:
// everything m saw before is in col then (each monitor reports in order).
func (x *bench) barrier(m Monitor, col *Collector) {
	x.b.Helper()
	if !m.Reports() {
		return
	}
	x.child([]string{act.ActorEnv + "=1"}, "chmod", x.marker)
	if !testenv.Within(bound, func() bool { return col.Seen(x.marker) }) {
		why := ""
		if d, ok := m.(interface{ Diagnose(string) string }); ok {
			why = ": " + d.Diagnose(x.marker)
		}
		x.b.Fatalf("%s: no report of the marker chmod of %s within %v%s", m.Name(), x.marker, bound, why)
	}
}

// runWorkload runs one workload under m and records its sample.
func (x *bench) runWorkload(round int, m Monitor, col *Collector, wl string) {
	b := x.b
	cpu0, err := m.CPU()
	x.fatal(err)
	lost0, err := m.Lost()
	x.fatal(err)
	col.Take()
	s := Sample{Round: round}
	var times []int64
	var end int64
	switch wl {
	case WSyscalls, WChurn:
		kind, n := "syscalls", x.n.syscalls
		if wl == WChurn {
			kind, n = "churn", x.n.churn
		}
		d, err := hooktest.RunWorkload(x.cg, kind, n, x.shm, "/etc/hostname")
		x.fatal(err)
		s.Time = d
	case WTar:
		start := time.Now()
		x.inScope("tar", "-xf", x.tarball, "-C", filepath.Join(x.shm, "x"))
		x.inScope("rm", "-r", filepath.Join(x.shm, "x", "t"))
		s.Time = time.Since(start)
	case WStorm:
		start := Now()
		cmd, _ := x.child([]string{ChildEnv + "=storm"}, x.storm, strconv.Itoa(x.n.storm))
		end = Now()
		s.Time, s.WriterSys = time.Duration(end-start), cmd.ProcessState.SystemTime()
		s.Expected = x.n.storm
	case WLatency:
		_, out := x.child([]string{ChildEnv + "=latency"}, x.lat, strconv.Itoa(x.n.latency), strconv.Itoa(int(5*time.Millisecond)))
		times, err = ParseTimes(out)
		x.fatal(err)
		s.Expected = len(times)
	}
	x.barrier(m, col)
	_, sensor := m.(*Sensor)
	accounted := func(b Batch) bool { n, _ := b.Under(x.storm); return n+int(b.Lost()) >= x.n.storm }
	if sensor && wl == WStorm {
		// A sensor reports what it lost in a finding of its own, which may
		// follow the marker: wait for it (the check below fails when it
		// never comes; the bound only guards against a hang).
		testenv.Within(bound, func() bool { return accounted(col.Peek()) })
	}
	batch := col.Take()
	cpu1, err := m.CPU()
	x.fatal(err)
	lost1, err := m.Lost()
	x.fatal(err)
	s.MonitorCPU = cpu1 - cpu0
	s.Lost = int(batch.Lost() + lost1 - lost0)
	switch wl {
	case WStorm:
		var last int64
		s.Delivered, last = batch.Under(x.storm)
		if s.Delivered > 0 {
			// Reports read before the writer was reaped count as 0.
			s.LastAfter = time.Duration(max(last-end, 0))
			s.Rate = float64(s.Delivered) / (float64(last-(end-int64(s.Time))) / 1e9)
		}
		// driftsensor's contract: every finding delivered or reported lost.
		// The other monitors' silent losses are what the table shows.
		if sensor && !accounted(batch) {
			b.Errorf("%s: storm of %d mutations: %d findings delivered, %d reported lost: the rest vanished silently",
				m.Name(), x.n.storm, s.Delivered, s.Lost)
		}
	case WLatency:
		first := batch.First()
		for i, t := range times {
			if at, ok := first[LatencyFile(x.lat, i)]; ok {
				s.Delivered++
				s.Latency = append(s.Latency, time.Duration(at-t))
			}
		}
	}
	x.res.Add(m.Name(), wl, s)
	b.Logf("round %d %-30s %-12s %v", round, m.Name(), wl, s)
}

// coverage runs the attacker's actions under m and records which it reported.
func (x *bench) coverage(m Monitor, col *Collector) {
	port := testenv.FreePort(x.b)
	actor := []string{act.ActorEnv + "=1"}
	col.Take()
	type done struct {
		action string
		pid    int
		path   string // matched by path when the monitor names no pid, or for an exec
	}
	var acts []done
	run := func(action, path string, args ...string) {
		cmd, _ := x.child(actor, args...)
		acts = append(acts, done{action, cmd.Process.Pid, path})
	}
	run(CovWrite, filepath.Join(x.prot, "cov-write"), "write-elf", filepath.Join(x.prot, "cov-write"))
	run(CovUring, filepath.Join(x.prot, "cov-uring"), "uring-open", filepath.Join(x.prot, "cov-uring"))
	chattr := filepath.Join(x.prot, "cov-chattr")
	acts = append(acts, done{CovChattr, x.inScope("chattr", "+i", chattr), chattr})
	run(CovExec, x.tool, "exec", x.tool)
	run(CovListen, "", "listen", strconv.Itoa(port))
	x.barrier(m, col)
	batch := col.Take()
	exec.Command("chattr", "-i", chattr).Run()
	for _, a := range acts {
		seen := false
		switch {
		case a.action == CovExec:
			seen = batch.HasPath(a.path)
		case m.Name() == "inotifywait":
			seen = a.path != "" && batch.HasPath(a.path)
		default:
			seen = batch.HasPID(a.pid)
		}
		x.res.Cover(a.action, m.Name(), seen)
	}
}

// BenchmarkPeers runs driftsensor (both modes), auditd and inotifywait on the
// same workloads in one run, rounds interleaved with the monitors' order
// rotated each round, and prints the tables of BENCHMARKS.md ("Peers") and
// writes the plot to $PEERS_PLOT. make bench-peers runs it.
func BenchmarkPeers(b *testing.B) {
	testenv.RequireBPF(b)
	for _, tool := range []string{"auditd", "auditctl", "inotifywait", "tar", "chattr"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s is not installed: run scripts/setup.sh", tool)
		}
	}
	x := &bench{b: b, n: benchSizes(), res: NewResults()}
	x.setup()
	bin := os.Getenv("PEERS_SENSOR")
	if bin == "" {
		bin = testenv.Build(b, "github.com/driftsensor/driftsensor/cmd/driftsensor")
	}
	// The order of the plot and the tables; the floor runs the syscall loop
	// and the churn only (it reports nothing).
	monitors := []Monitor{None{}, &Floor{}, &Sensor{Bin: bin, Cgroup: x.cg.Rel}, &Sensor{Bin: bin, Cgroup: x.cg.Rel, NATS: true, Port: testenv.FreePort(b)},
		&Auditd{}, &Inotify{Dirs: []string{x.prot, "/etc"}}}
	if only := os.Getenv("PEERS_MONITORS"); only != "" { // development: a subset, none always kept
		var keep []Monitor
		for _, m := range monitors {
			if m.Name() == "none" || strings.Contains(only, m.Name()) {
				keep = append(keep, m)
			}
		}
		monitors = keep
	}
	for _, m := range monitors {
		x.res.Monitors = append(x.res.Monitors, m.Name())
	}
	var running Monitor // stopped at cleanup when the benchmark fails in a round
	b.Cleanup(func() {
		if running != nil {
			if err := running.Stop(); err != nil {
				b.Error(err)
			}
		}
		if err := AuditRestore(); err != nil {
			b.Error(err)
		}
	})
	for round := range x.n.rounds {
		for i := range monitors {
			m := monitors[(i+round)%len(monitors)]
			col := &Collector{}
			running = m
			x.fatal(m.Start(col))
			wls := Workloads
			if _, floor := m.(*Floor); floor {
				wls = []string{WSyscalls, WChurn}
			}
			for _, wl := range wls {
				x.runWorkload(round, m, col, wl)
			}
			if round == 0 && m.Reports() {
				x.coverage(m, col)
			}
			running = nil
			x.fatal(m.Stop())
			// The storm's files go while nothing watches.
			ents, err := os.ReadDir(x.storm)
			x.fatal(err)
			for _, e := range ents {
				x.fatal(os.Remove(filepath.Join(x.storm, e.Name())))
			}
		}
	}
	x.res.Sizes = fmt.Sprintf("syscall loop %d iterations, churn %d iterations, tar %d files, storm %d mutations, latency %d mutations 5 ms apart; %d rounds",
		x.n.syscalls, x.n.churn, x.n.tarFiles, x.n.storm, x.n.latency, x.n.rounds)
	fmt.Print(x.res.Markdown())
	if plot := os.Getenv("PEERS_PLOT"); plot != "" {
		x.fatal(x.res.Plot(plot))
		fmt.Println("plot:", plot)
	}
}
