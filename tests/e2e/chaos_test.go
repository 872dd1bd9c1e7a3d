package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/responder/gate"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

// TestChaosServerOutages: three sealed sensors with their gates on test-bed
// hosts and a responder that cordons for real (ctl gate and netlink). The
// NATS server is stopped for 3 s, 10 s and 60 s and started again on its
// port and store: no host is cordoned, and each outage is one
// infrastructure incident. Then one sensor is SIGKILLed: its host, and only
// it, is cordoned, by the deadline its interval gives.
func TestChaosServerOutages(t *testing.T) {
	testenv.RequireBPF(t)
	outages := []time.Duration{3 * time.Second, 10 * time.Second, 60 * time.Second}
	if testing.Short() {
		outages = outages[:1]
	}
	const beat = 500 * time.Millisecond
	bed := testbed.New(t)
	storeDir := t.TempDir()
	srv, url, err := transport.StartEmbedded(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	portN := srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })

	bin := testenv.Build(t, "github.com/driftsensor/driftsensor/cmd/driftsensor")
	root, err := sysfs.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	type sensorProc struct {
		host string
		th   *testbed.Host
		cmd  *exec.Cmd
		log  string
	}
	var sensors []*sensorProc
	for i := 0; i < 3; i++ {
		th := bed.AddHost(fmt.Sprintf("c%d", i))
		host := fmt.Sprintf("ch%d%s", i, bed.ID)
		pinDir := filepath.Join(gate.DefaultPinDir, host)
		t.Cleanup(func() { os.RemoveAll(pinDir) })
		dir := t.TempDir()
		img := filepath.Join(dir, "img")
		os.MkdirAll(filepath.Join(img, "etc"), 0o755)
		polFile := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(polFile, []byte("version: 1\nprotect: ["+img+"]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ready := filepath.Join(dir, "ready")
		logName := filepath.Join(dir, "sensor.log")
		logFile, err := os.Create(logName)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logFile.Close() })
		cmd := exec.Command(bin, "--host", host, "--policy", polFile, "--scope-cgroup", strings.TrimPrefix(th.Cgroup, root), "--seal",
			"--gate", "--gate-netns", th.NetnsPath, "--nats", url, "--state-dir", filepath.Join(dir, "state"),
			"--heartbeat", beat.String(), "--stdout=false", "--ready-file", ready,
			"--kernel-check", "0") // the hosts share one kernel: each would see the others' programs as drift
		cmd.Stderr = logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		testenv.Eventually(t, host+" ready", func() bool { _, err := os.Stat(ready); return err == nil })
		sensors = append(sensors, &sensorProc{host: host, th: th, cmd: cmd, log: logName})
	}

	rnc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rnc.Close)
	links := map[string]string{}
	for _, s := range sensors {
		links[s.host] = s.th.Link
	}
	link := &actuator.LinkCordon{Link: func(h string) (string, error) {
		if l, ok := links[h]; ok {
			return l, nil
		}
		return "", fmt.Errorf("unknown host %q", h)
	}}
	r, err := decide.New(rnc, decide.Config{Replica: "chaos", Policy: decide.DefaultPolicy(), CtlCordon: true,
		Cordoners: []actuator.Cordoner{link}, HeartbeatInterval: beat, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	// The test's own view of the trail: its connection reconnects too.
	anc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(anc.Close)
	audit := followAudit(t, anc, decide.AuditPrefix+".>")
	// beats waits until the responder heard n more heartbeats from each of
	// the three hosts (counted together): the sensors' ticks are the clock.
	beats := func(n uint64) {
		t.Helper()
		from := r.Stats().Heartbeats.Load()
		testenv.Eventually(t, fmt.Sprintf("%d more heartbeats per host", n), func() bool { return r.Stats().Heartbeats.Load() >= from+3*n })
	}
	beats(4)

	acted := func() []decide.Record {
		return audit.find(func(x decide.Record) bool {
			return x.Stage == decide.StageAction || x.Stage == decide.StageDeadMan || x.Stage == decide.StageHold
		})
	}
	for i, d := range outages {
		srv.Shutdown()
		srv.WaitForShutdown()
		time.Sleep(d) // the fault under test: the server stays down this long
		if srv, _, err = transport.StartEmbeddedOn(storeDir, portN); err != nil {
			t.Fatalf("restart after %s: %v", d, err)
		}
		testenv.Eventually(t, fmt.Sprintf("infrastructure incident %d", i+1), func() bool { return r.Stats().Infra.Load() == uint64(i+1) })
		beats(10) // well past every deadline (4 beats) after the reconnect
		if a := acted(); len(a) != 0 {
			t.Fatalf("after a %s outage: %d dead man records or actions, want none: %+v", d, len(a), a)
		}
		t.Logf("%s outage: one infrastructure incident, no cordon", d)
	}

	victim := sensors[1]
	killed := time.Now()
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = victim.cmd.Wait()
	dm := audit.wait(t, "the dead man's record", func(x decide.Record) bool {
		return x.Stage == decide.StageDeadMan && x.Host == victim.host
	})
	if !strings.Contains(dm.Reason, "deadline 2s") {
		t.Errorf("dead man reason %q, want the deadline of 4 intervals of %s", dm.Reason, beat)
	}
	cut := audit.wait(t, "the netlink cordon", func(x decide.Record) bool {
		return x.Stage == decide.StageAction && x.Host == victim.host && x.Actuator == "netlink" && x.Error == ""
	})
	t.Logf("SIGKILL -> dead man %s, -> link cut %s (deadline 2s)", dm.Time.Sub(killed), cut.Stages.Acted.Sub(killed))
	if up, _, err := actuator.LinkStatus("", victim.th.Link); err != nil || up {
		t.Errorf("link %s: up=%v err=%v, want down", victim.th.Link, up, err)
	}
	beats(4)
	for _, x := range acted() {
		if x.Host != victim.host {
			t.Errorf("healthy host acted on: %+v", x)
		}
	}
	if n := r.Stats().Infra.Load(); n != uint64(len(outages)) {
		t.Errorf("%d infrastructure incidents, want %d", n, len(outages))
	}
}
