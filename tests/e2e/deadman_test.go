package e2e

import (
	"context"
	"fmt"
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
	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

// TestDeadManKilledSensor runs the real driftsensor binary for a test host,
// with its gate, heartbeating every 100ms to a NATS server of the test's own;
// the responder engine watches the heartbeats. The sensor is SIGKILLed: its
// gate goes with it (the flag stays pinned, but no program reads it and no
// sensor answers the ctl cordon), so the dead man's switch must cut the host
// off from outside, taking its bridge-side link down; a probe from a peer
// host proves it.
func TestDeadManKilledSensor(t *testing.T) {
	testenv.RequireBPF(t)
	bed := testbed.New(t)
	web, peer := bed.AddHost("web"), bed.AddHost("peer")
	if err := web.Echo(echoPort); err != nil {
		t.Fatal(err)
	}
	target := web.AddrPort(echoPort)
	srv, url, err := transport.StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	// The sensor's host name picks its gate's pin directory: make it the bed's own.
	host := "dm" + bed.ID
	pinDir := filepath.Join(gate.DefaultPinDir, host)
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	bin := testenv.Build(t, "github.com/driftsensor/driftsensor/cmd/driftsensor")
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	os.MkdirAll(filepath.Join(img, "etc"), 0o755)
	polFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polFile, []byte("version: 1\nprotect: ["+img+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := sysfs.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready")
	logFile, err := os.Create(filepath.Join(dir, "sensor.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	sensor := exec.Command(bin, "--host", host, "--policy", polFile, "--scope-cgroup", strings.TrimPrefix(web.Cgroup, root), "--seal",
		"--gate", "--gate-netns", web.NetnsPath, "--nats", url, "--state-dir", filepath.Join(dir, "state"),
		"--heartbeat", "100ms", "--stdout=false", "--ready-file", ready,
		"--kernel-check", "0") // a test bed host on a shared kernel: other beds' programs are not its drift
	sensor.Stderr = logFile
	if err := sensor.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sensor.ProcessState == nil {
			_ = sensor.Process.Kill()
			_ = sensor.Wait()
		}
	})
	log := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("driftsensor not ready:\n%s", log())
		}
	}
	if _, err := os.Stat(filepath.Join(pinDir, gate.FlagPin)); err != nil {
		t.Fatalf("gate flag not pinned: %v\n%s", err, log())
	}

	rnc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rnc.Close)
	link := &actuator.LinkCordon{Link: func(h string) (string, error) {
		if h != host {
			return "", fmt.Errorf("unknown host %q", h)
		}
		return web.Link, nil
	}}
	prober := &actuator.TCPProber{
		Addr: func(string) (string, error) { return target.String(), nil },
		Dial: peer.DialContext,
	}
	audit := followAudit(t, nc, decide.AuditSubject(host))
	r, err := decide.New(rnc, decide.Config{Replica: "r1", Policy: decide.DefaultPolicy(), CtlCordon: true,
		Cordoners: []actuator.Cordoner{link}, Prober: prober, ProbeInterval: 50 * time.Millisecond,
		HeartbeatInterval: 100 * time.Millisecond, MissedBeats: 3, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	for deadline := time.Now().Add(10 * time.Second); r.Stats().Heartbeats.Load() < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeats from driftsensor:\n%s", log())
		}
	}
	if err := probeOnce(peer, target); err != nil {
		t.Fatalf("peer cannot reach web with the sensor alive: %v", err)
	}
	if n := len(audit.find(stageOf("", decide.StageDeadMan))); n != 0 {
		t.Fatalf("dead man's switch fired while the sensor beat: %d records", n)
	}

	killed := time.Now()
	if err := sensor.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = sensor.Wait()

	dm := audit.wait(t, "the dead man's record", stageOf("", decide.StageDeadMan))
	if dm.Action != decide.ActCordon || !strings.Contains(dm.Reason, "no heartbeat") {
		t.Errorf("dead man record %+v", dm)
	}
	v := audit.wait(t, "the verified cordon", stageOf("", decide.StageVerify))
	if v.Error != "" || v.Stages.Verified.IsZero() {
		t.Fatalf("verify record %+v", v)
	}
	t.Logf("SIGKILL -> dead man fired %s, -> cordon verified %s", dm.Time.Sub(killed), v.Stages.Verified.Sub(killed))
	var ctlErr, netlinkOK bool
	for _, a := range audit.find(stageOf(v.Incident, decide.StageAction)) {
		ctlErr = ctlErr || a.Actuator == "ctl" && strings.Contains(a.Error, "no sensor is listening")
		netlinkOK = netlinkOK || a.Actuator == "netlink" && a.Error == ""
	}
	if !ctlErr || !netlinkOK {
		t.Errorf("want a failed ctl cordon (no sensor) and a netlink cordon: %+v", audit.find(stageOf(v.Incident, decide.StageAction)))
	}
	if up, master, err := actuator.LinkStatus("", web.Link); err != nil || up || master != 0 {
		t.Errorf("link %s: up=%v master=%d err=%v, want down and off the bridge", web.Link, up, master, err)
	}
	if err := probeOnce(peer, target); err == nil {
		t.Error("peer still reaches web after the dead man's cordon")
	}
	audit.wait(t, "the state record", stageOf(v.Incident, decide.StageState))
	ctl, err := control.New(nc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, err := ctl.State(context.Background(), host); err != nil || st != event.StateCordoned {
		t.Errorf("%s is %s (%v) in the control plane, want cordoned", host, st, err)
	}
}
