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
	"github.com/driftsensor/driftsensor/sensor/spool"
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
	sp, _, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	var d *agent.Daemon
	pub, err := transport.New(ctx, transport.Options{URL: url, OnCommand: func(c transport.Command) error { return d.Command(c) }}, "web", sp, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ready, done := make(chan struct{}), make(chan struct{})
	d = agent.New(agent.Config{Host: "web", Policy: pol, Backend: be, Publisher: pub, Seal: true, Cordon: w.gate.SetCordon,
		Log: zerolog.Nop(), Ready: func() { close(ready) }})
	go func() { d.Run(ctx); close(done) }()
	<-ready
	t.Cleanup(func() { cancel(); <-done; pub.Close() })
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
	cmd, closeFD, err := testenv.CgroupAt(w.web.Cgroup).Command("sh", "-c", "echo evil >> "+filepath.Join(w.img, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
	return cmd.Process.Pid
}

// TestReflexCordon: the program that detects the mutation closes the gate in
// the kernel; the finding says so.
func TestReflexCordon(t *testing.T) {
	w := newWorld(t, true)
	sub, _ := w.nc.SubscribeSync(event.Subject("web", event.KindFile))
	w.nc.Flush()
	pid := w.drift(t)
	w.waitBlocked(t)
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ev event.Event
	json.Unmarshal(m.Data, &ev)
	if ev.Process.PID != uint32(pid) || len(ev.Reflex) != 1 || ev.Reflex[0] != "cordoned" {
		t.Fatalf("finding %+v: want pid %d and reflex [cordoned]", ev, pid)
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
	audit, _ := w.nc.SubscribeSync(decide.AuditSubject("web"))
	w.nc.Flush()

	w.drift(t)
	w.waitBlocked(t)
	if on, _ := w.gate.Cordoned(); !on {
		t.Fatal("blocked, but not by the gate's flag")
	}
	// The audit trail has the cordon, verified by the responder's own probe.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		m, err := audit.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		var rec decide.Record
		json.Unmarshal(m.Data, &rec)
		if rec.Stage == decide.StageVerify && rec.Error == "" && !rec.Stages.Verified.IsZero() {
			return
		}
	}
	t.Fatal("no verified cordon in the audit trail")
}
