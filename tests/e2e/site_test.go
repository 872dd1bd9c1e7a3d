package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/responder/gate"
	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/agent"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
	"github.com/driftsensor/driftsensor/sensor/transport"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

// site is a test bed with a peer host (the prober's vantage point) and a
// NATS server of its own, to which sensor hosts are added. It works for
// benchmarks too (newWorld is for tests).
type site struct {
	bed  *testbed.Bed
	peer *testbed.Host
	url  string
	nc   *nats.Conn
}

func newSite(tb testing.TB) *site {
	tb.Helper()
	testenv.RequireBPF(tb)
	s := &site{bed: testbed.New(tb)}
	s.peer = s.bed.AddHost("peer")
	srv, url, err := transport.StartEmbedded(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	s.url = url
	if s.nc, err = nats.Connect(url); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.nc.Close)
	return s
}

// sensorHost is a test host watched by a sealed in-process sensor, with its
// gate attached in the host's namespace and an echo server on echoPort.
type sensorHost struct {
	name string // the host name in findings and subjects
	h    *testbed.Host
	img  string // the protected tree; img/etc/passwd exists
	gate *gate.Gate
	// cordonedAt is CLOCK_MONOTONIC (ns) when the sensor first closed the
	// gate since it was last zeroed: a ctl command or a cordoned state.
	cordonedAt atomic.Int64
	stop       func()
}

// addSensorHost adds a host and starts its sensor. The policy protects img,
// lets the host exec the test binary (the actor, see runActor), and sets the
// cordon reflex if asked.
func (s *site) addSensorHost(tb testing.TB, name string, reflex bool) *sensorHost {
	tb.Helper()
	sh := &sensorHost{name: name, h: s.bed.AddHost(name)}
	if err := sh.h.Echo(echoPort); err != nil {
		tb.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	sh.img = filepath.Join(tb.TempDir(), "img")
	os.MkdirAll(filepath.Join(sh.img, "etc"), 0o755)
	if err := os.WriteFile(filepath.Join(sh.img, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	doc := fmt.Sprintf("version: 1\nprotect: [%s]\nexec:\n  image_paths: [/usr, /bin, /sbin, /lib, /lib64]\n  image_files: [%s]\n", sh.img, exe)
	if reflex {
		doc += "reflex:\n  cordon: true\n"
	}
	pol, err := policy.Parse("p.yaml", []byte(doc))
	if err != nil {
		tb.Fatal(err)
	}
	pinDir := filepath.Join(gate.DefaultPinDir, "e2e-"+s.bed.ID+"-"+name)
	if sh.gate, err = gate.Attach(sh.h.NetnsPath, nil, gate.Options{PinDir: pinDir}); err != nil {
		tb.Fatal(err)
	}
	root, _ := sysfs.CgroupRoot()
	be, err := tracepoint.Load(backend.Options{Scope: []string{sh.h.Cgroup}, CgroupRoot: root, CordonFlag: sh.gate.Flag()})
	if err != nil {
		sh.gate.Close()
		tb.Fatal(err)
	}
	if err := be.Apply(sensor.RulesFor(pol)); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cordon := func(on bool) error {
		err := sh.gate.SetCordon(on)
		if on && err == nil {
			sh.cordonedAt.CompareAndSwap(0, monoNow())
		}
		return err
	}
	ready, done := make(chan struct{}), make(chan struct{})
	d, err := agent.New(ctx, agent.Config{Host: name, Policy: pol, Backend: be, Seal: true, Cordon: cordon,
		NATS: transport.Options{URL: s.url}, SpoolDir: tb.TempDir(),
		Heartbeat: time.Hour, Log: zerolog.Nop(), Ready: func() { close(ready) }})
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	go func() { d.Run(ctx); close(done) }()
	<-ready
	var once sync.Once
	sh.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			d.Close()
			be.Close()
			sh.gate.Close() // the namespace may be gone (destroyed): errors do not matter
			os.RemoveAll(pinDir)
		})
	}
	tb.Cleanup(sh.stop)
	return sh
}

// monoNow reads CLOCK_MONOTONIC, the clock the actor stamps its syscall with.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// monoToWall converts a CLOCK_MONOTONIC reading to wall time, for comparing
// with the audit trail's times.
func monoToWall(mono int64) time.Time {
	now, m := time.Now(), monoNow()
	return now.Add(time.Duration(mono - m))
}

// Environment of a child actor: the file it opens for writing and,
// optionally, the pinned cordon flag it reads as soon as its syscall returns.
const (
	actorEnv     = "DRIFT_E2E_ACTOR_FILE"
	actorFlagEnv = "DRIFT_E2E_ACTOR_FLAG"
)

// TestActorProcess is the actor, not a test: startActor runs this test
// binary inside a test host with actorEnv set, and it then takes
// CLOCK_MONOTONIC immediately before the mutating syscall (an open with
// write intent of a protected file) and again when it returns, reads the
// cordon flag if asked, and prints all three. Without actorEnv it does
// nothing.
func TestActorProcess(t *testing.T) {
	path := os.Getenv(actorEnv)
	if path == "" {
		return
	}
	var flag *ebpf.Map
	if pin := os.Getenv(actorFlagEnv); pin != "" {
		m, err := ebpf.LoadPinnedMap(pin, nil)
		if err != nil {
			t.Fatalf("actor: %v", err)
		}
		defer m.Close()
		flag = m
	}
	var t0, t1 unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &t0)
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &t1)
	if err != nil {
		t.Fatalf("actor: open %s: %v", path, err)
	}
	unix.Close(fd)
	v := int64(-1)
	if flag != nil {
		var u uint32
		if err := flag.Lookup(uint32(0), &u); err != nil {
			t.Fatalf("actor: read the cordon flag: %v", err)
		}
		v = int64(u)
	}
	fmt.Printf("actor t0=%d t1=%d flag=%d\n", t0.Nano(), t1.Nano(), v)
}

// actorRun is what the actor saw: CLOCK_MONOTONIC before its syscall (t0)
// and after it returned (t1), and the cordon flag then (-1: not read).
type actorRun struct {
	pid    int
	t0, t1 int64
	flag   int64
}

// startActor starts the actor inside sh's cgroup (its sealed scope); with
// readFlag it reads the gate's flag right after its syscall.
func startActor(tb testing.TB, sh *sensorHost, readFlag bool) (*exec.Cmd, *strings.Builder) {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd, closeFD, err := testenv.CgroupAt(sh.h.Cgroup).Command(exe, "-test.run=^TestActorProcess$", "-test.count=1")
	if err != nil {
		tb.Fatal(err)
	}
	defer closeFD()
	cmd.Env = append(os.Environ(), actorEnv+"="+filepath.Join(sh.img, "etc", "passwd"))
	if readFlag {
		cmd.Env = append(cmd.Env, actorFlagEnv+"="+sh.gate.PinPath())
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	return cmd, &out
}

// runActor runs the actor to its end.
func runActor(tb testing.TB, sh *sensorHost, readFlag bool) actorRun {
	tb.Helper()
	cmd, out := startActor(tb, sh, readFlag)
	if err := cmd.Wait(); err != nil {
		tb.Fatalf("actor: %v\n%s", err, out)
	}
	return parseActor(tb, cmd.Process.Pid, out.String())
}

func parseActor(tb testing.TB, pid int, out string) actorRun {
	tb.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "actor "); ok {
			r := actorRun{pid: pid}
			if _, err := fmt.Sscanf(rest, "t0=%d t1=%d flag=%d", &r.t0, &r.t1, &r.flag); err == nil {
				return r
			}
		}
	}
	tb.Fatalf("actor printed no times:\n%s", out)
	return actorRun{}
}
