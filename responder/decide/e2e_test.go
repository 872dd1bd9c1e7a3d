package decide

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/gate"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

const (
	svcPort  = 7000 // an ordinary service on the target
	mgmtPort = 4222 // the management service on host mgmt
)

// fleet is a test bed with a target running a service in its cgroup, a
// prober (the responder's vantage point) and a management host.
type fleet struct {
	bed                  *testbed.Bed
	target, prober, mgmt *testbed.Host
	svc                  *exec.Cmd
	gate                 *gate.Gate
	probe                *actuator.TCPProber
}

func newFleet(t testing.TB, withGate bool) *fleet {
	t.Helper()
	f := &fleet{bed: testbed.New(t)}
	f.target, f.prober, f.mgmt = f.bed.AddHost("target"), f.bed.AddHost("prober"), f.bed.AddHost("mgmt")
	var err error
	if f.svc, err = f.target.StartEcho(svcPort); err != nil {
		t.Fatal(err)
	}
	if err := f.mgmt.Echo(mgmtPort); err != nil {
		t.Fatal(err)
	}
	f.probe = &actuator.TCPProber{
		Addr: func(host string) (string, error) {
			if h := f.bed.Host(host); h != nil {
				return h.AddrPort(svcPort).String(), nil
			}
			if strings.HasPrefix(host, "bench-") { // benchmark incidents all hit the target
				return f.target.AddrPort(svcPort).String(), nil
			}
			return "", errors.New("unknown host")
		},
		Dial: f.prober.DialContext,
	}
	if withGate {
		var raw [4]byte
		_, _ = rand.Read(raw[:])
		pin := filepath.Join(gate.DefaultPinDir, "testbed-"+hex.EncodeToString(raw[:]))
		t.Cleanup(func() { os.RemoveAll(pin) })
		f.gate, err = gate.Attach(f.target.NetnsPath, []gate.Rule{{Prefix: netipPrefix(f.mgmt), Ports: []uint16{mgmtPort}}}, gate.Options{PinDir: pin})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.gate.Close() })
	}
	return f
}

func (f *fleet) passes(from, to *testbed.Host, port uint16) error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	return testbed.Probe(ctx, from, to.AddrPort(port))
}

func verified(t testing.TB, audit *auditLog, host string) Record {
	t.Helper()
	eventually(t, "a verify record for "+host, func() bool { return len(audit.find(stage(host, StageVerify))) > 0 })
	v := audit.find(stage(host, StageVerify))[0]
	if v.Error != "" || v.Stages.Verified.IsZero() || v.Stages.Verified.Before(v.Stages.Received) {
		t.Fatalf("verify record %+v\n%s", v, audit.dump())
	}
	return v
}

func TestCordonThroughGateEndToEnd(t *testing.T) {
	testenv.RequireBPF(t)
	f := newFleet(t, true)
	url := natsServer(t)
	nc := connect(t, url)
	newCtlAgent(t, nc, func(host string, c ctlCommand) error {
		if host != "target" || c.Cmd != "cordon" {
			return fmt.Errorf("unexpected %s for %s", c.Cmd, host)
		}
		return f.gate.SetCordon(true)
	})
	audit := watchAudit(t, nc)
	startResponder(t, url, Config{Policy: cordonEtc(t), CtlCordon: true, Prober: f.probe, ProbeInterval: 50 * time.Millisecond})

	if err := f.passes(f.prober, f.target, svcPort); err != nil {
		t.Fatalf("before: %v", err)
	}
	newSensor(t, nc, "target").finding(event.KindFile, "/etc/passwd")
	v := verified(t, audit, "target")
	t.Logf("finding received -> probe stopped: %s", v.Stages.Verified.Sub(v.Stages.Received))

	if err := f.passes(f.prober, f.target, svcPort); err == nil {
		t.Error("prober still reaches the target")
	}
	if err := f.passes(f.target, f.prober, svcPort); err == nil {
		t.Error("the target still reaches the prober")
	}
	if err := f.passes(f.target, f.mgmt, mgmtPort); err != nil {
		t.Errorf("management channel cut: %v", err)
	}
}

func TestExternalCordonEndToEnd(t *testing.T) {
	testenv.RequireBPF(t)
	f := newFleet(t, false)
	url := natsServer(t)
	nc := connect(t, url)
	audit := watchAudit(t, nc)
	link := &actuator.LinkCordon{Link: func(host string) (string, error) {
		if h := f.bed.Host(host); h != nil {
			return h.Link, nil
		}
		return "", errors.New("unknown host")
	}}
	startResponder(t, url, Config{Policy: cordonEtc(t), Cordoners: []actuator.Cordoner{link}, Prober: f.probe, ProbeInterval: 50 * time.Millisecond})

	newSensor(t, nc, "target").finding(event.KindFile, "/etc/passwd")
	verified(t, audit, "target")
	up, master, err := actuator.LinkStatus("", f.target.Link)
	if err != nil || up || master != 0 {
		t.Errorf("link %s: up=%v master=%d err=%v, want down and detached", f.target.Link, up, master, err)
	}
	if err := f.passes(f.prober, f.target, svcPort); err == nil {
		t.Error("prober still reaches the target")
	}
}

func TestDestroyEndToEnd(t *testing.T) {
	testenv.RequireBPF(t)
	f := newFleet(t, false)
	url := natsServer(t)
	nc := connect(t, url)
	audit := watchAudit(t, nc)
	link := &actuator.LinkCordon{Link: func(host string) (string, error) { return f.bed.Host(host).Link, nil }}
	kill := &actuator.CgroupDestroy{Resolve: func(host string) (string, string, error) {
		h := f.bed.Host(host)
		return h.Cgroup, h.Netns, nil
	}}
	policy := &Policy{Default: ActAlert, DeadMan: ActCordon, Rules: []Rule{{Kind: event.KindExec, Action: ActDestroy}}}
	startResponder(t, url, Config{Policy: policy, Cordoners: []actuator.Cordoner{link}, Destroyers: []actuator.Destroyer{kill},
		Prober: f.probe, ProbeInterval: 50 * time.Millisecond})

	newSensor(t, nc, "target").finding(event.KindExec, "/tmp/dropper")
	eventually(t, "the destroy record", func() bool {
		return len(audit.find(func(r Record) bool { return r.Host == "target" && r.Stage == StageAction && r.Action == ActDestroy })) > 0
	})
	d := audit.find(func(r Record) bool { return r.Host == "target" && r.Stage == StageAction && r.Action == ActDestroy })[0]
	if d.Error != "" || d.Actuator != "cgroup-kill" {
		t.Fatalf("destroy record %+v", d)
	}
	// Cordon came first and was verified.
	v := verified(t, audit, "target")
	if d.Stages.Acted.Before(v.Stages.Verified) {
		t.Errorf("destroyed at %s before the cordon was verified at %s", d.Stages.Acted, v.Stages.Verified)
	}
	if err := f.svc.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the target's service ended with %v, want killed", err)
	}
	if pids, _ := f.target.Procs(); len(pids) != 0 {
		t.Errorf("processes left: %v", pids)
	}
	if _, err := os.Stat(f.target.NetnsPath); !os.IsNotExist(err) {
		t.Errorf("namespace %s still there", f.target.NetnsPath)
	}
}
