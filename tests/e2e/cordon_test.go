// Package e2e proves the whole chain on the test bed: a real sensor watching
// a test host, its cordon gate in the host's network namespace, a mutation
// made inside the host, and a probe from another test host that must stop
// passing. Nothing here touches the machine's own interfaces.
package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/responder/gate"
	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/agent"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
	"github.com/driftsensor/driftsensor/sensor/transport"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

const echoPort = 7070

type world struct {
	bed       *testbed.Bed
	web, peer *testbed.Host
	url       string
	nc        *nats.Conn
	img       string
	gate      *gate.Gate
}

// newWorld builds two test hosts, an embedded NATS server, and a sealed
// sensor for "web" with its gate attached inside web's namespace.
func newWorld(t *testing.T, reflex bool) *world {
	testenv.RequireBPF(t)
	w := &world{bed: testbed.New(t)}
	w.web, w.peer = w.bed.AddHost("web"), w.bed.AddHost("peer")
	if err := w.web.Echo(echoPort); err != nil {
		t.Fatal(err)
	}
	srv, url, err := transport.StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	w.url = url
	if w.nc, err = nats.Connect(url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.nc.Close)

	w.img = filepath.Join(t.TempDir(), "img")
	os.MkdirAll(filepath.Join(w.img, "etc"), 0o755)
	os.MkdirAll(filepath.Join(w.img, "drill"), 0o755) // the sensor's --drill-dir, made before sealing
	doc := "version: 1\nprotect: [" + w.img + "]\n"
	if reflex {
		doc += "reflex:\n  cordon: true\n"
	}
	pol, err := policy.Parse("p.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	pinDir := filepath.Join(gate.DefaultPinDir, "e2e-"+w.bed.ID)
	if w.gate, err = gate.Attach(w.web.NetnsPath, nil, gate.Options{PinDir: pinDir}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.gate.Close(); os.Remove(pinDir) })
	root, _ := sysfs.CgroupRoot()
	be, err := tracepoint.Load(backend.Options{Scope: []string{w.web.Cgroup}, CgroupRoot: root, CordonFlag: w.gate.Flag()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	if err := be.Apply(sensor.RulesFor(pol)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan struct{})
	d, err := agent.New(ctx, agent.Config{Host: "web", Policy: pol, Backend: be, Seal: true, Cordon: w.gate.SetCordon,
		NATS: transport.Options{URL: url}, SpoolDir: t.TempDir(), DrillDir: filepath.Join(w.img, "drill"), DrillCgroup: w.web.Cgroup,
		Log: zerolog.Nop(), Ready: func() { close(ready) }})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { d.Run(ctx); close(done) }()
	<-ready
	t.Cleanup(func() { cancel(); <-done; d.Close() })
	w.mustPass(t)
	return w
}

func (w *world) probe(ctx context.Context) error {
	return testbed.Probe(ctx, w.peer, netip.AddrPortFrom(w.web.Addr, echoPort))
}

func (w *world) mustPass(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.probe(ctx); err != nil {
		t.Fatalf("peer cannot reach web before any drift: %v", err)
	}
}

func (w *world) waitBlocked(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := testbed.WaitBlocked(ctx, w.probe, 20*time.Millisecond); err != nil {
		t.Fatalf("web still reachable after drift: %v", err)
	}
}

// drift edits a protected file from inside web and returns the pid.
func (w *world) drift(t *testing.T) int {
	t.Helper()
	return testenv.CgroupAt(w.web.Cgroup).Run(t, "sh", "-c", "echo evil >> "+filepath.Join(w.img, "etc", "passwd"))
}

// findingSub subscribes to web's file findings, live at the server on return.
func (w *world) findingSub(t *testing.T) *nats.Subscription {
	t.Helper()
	sub, err := w.nc.SubscribeSync(event.Subject("web", event.KindFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// driftFinding reads the next finding on sub and fails unless it is the one
// drift makes: open_write of the image's etc/passwd on web, by pid.
func (w *world) driftFinding(t *testing.T, sub *nats.Subscription, pid int) event.Event {
	t.Helper()
	m, err := sub.NextMsg(testenv.WaitBound)
	if err != nil {
		t.Fatalf("no finding for the drift: %v", err)
	}
	var ev event.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatalf("finding is not JSON: %v: %s", err, m.Data)
	}
	want := filepath.Join(w.img, "etc", "passwd")
	if ev.Host != "web" || ev.Kind != event.KindFile || ev.Action != "open_write" || ev.ID == "" ||
		ev.File == nil || ev.File.Path != want || ev.Process == nil || ev.Process.PID != uint32(pid) {
		t.Fatalf("finding %s, want file/open_write %s on web by pid %d", m.Data, want, pid)
	}
	return ev
}

// checkCordon fails unless the audit trail has exactly this cordon: the
// decision to cordon web for the finding, one ctl cordon of that incident,
// and its verification by the responder's probe; it returns the incident.
func checkCordon(t *testing.T, audit *auditTrail, ev event.Event) string {
	t.Helper()
	has := func(ids []string) bool { return slices.Contains(ids, ev.ID) }
	d := audit.wait(t, "the decision to cordon for finding "+ev.ID, func(r decide.Record) bool {
		return r.Stage == decide.StageDecision && has(r.Events)
	})
	if d.Host != "web" || d.Action != "cordon" || d.Incident == "" || d.Error != "" {
		t.Fatalf("decision %+v, want cordon of web in an incident, for finding %s", d, ev.ID)
	}
	v := audit.wait(t, "the verified cordon of incident "+d.Incident, stageOf(d.Incident, decide.StageVerify))
	if v.Host != "web" || v.Action != "cordon" || v.Error != "" || v.Stages.Verified.IsZero() {
		t.Fatalf("verify record %+v, want the cordon of web verified", v)
	}
	acts := audit.find(stageOf(d.Incident, decide.StageAction))
	if len(acts) != 1 || acts[0].Host != "web" || acts[0].Action != "cordon" || acts[0].Actuator != "ctl" ||
		acts[0].Error != "" || !has(acts[0].Events) {
		t.Fatalf("action records of incident %s: %+v, want one ctl cordon of web for finding %s", d.Incident, acts, ev.ID)
	}
	return d.Incident
}

// TestReflexCordon: the program that detects the mutation closes the gate in
// the kernel; the finding says so.
func TestReflexCordon(t *testing.T) {
	w := newWorld(t, true)
	sub := w.findingSub(t)
	pid := w.drift(t)
	w.waitBlocked(t)
	ev := w.driftFinding(t, sub, pid)
	if len(ev.Reflex) != 1 || ev.Reflex[0] != "cordoned" {
		t.Fatalf("finding %+v: want reflex [cordoned]", ev)
	}
	if on, _ := w.gate.Cordoned(); !on {
		t.Fatal("gate flag not set")
	}
}

// TestResponderCordon: the finding travels over NATS to driftresponder's
// engine, which cordons the host through its ctl subject and verifies it
// with a probe; the audit trail records it.
func TestResponderCordon(t *testing.T) {
	w := newWorld(t, false)
	pol, err := decide.ParsePolicy("r.yaml", []byte("default: cordon\n"))
	if err != nil {
		t.Fatal(err)
	}
	rnc, err := nats.Connect(w.url)
	if err != nil {
		t.Fatal(err)
	}
	defer rnc.Close()
	prober := &actuator.TCPProber{
		Addr: func(host string) (string, error) { return netip.AddrPortFrom(w.web.Addr, echoPort).String(), nil },
		Dial: w.peer.DialContext,
	}
	r, err := decide.New(rnc, decide.Config{Replica: "r1", Policy: pol, CtlCordon: true, Prober: prober, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	audit := followAudit(t, w.nc, decide.AuditSubject("web"))
	sub := w.findingSub(t)

	pid := w.drift(t)
	w.waitBlocked(t)
	if on, _ := w.gate.Cordoned(); !on {
		t.Fatal("blocked, but not by the gate's flag")
	}
	// The audit trail has this cordon, for this finding, verified by the
	// responder's own probe.
	checkCordon(t, audit, w.driftFinding(t, sub, pid))
}
