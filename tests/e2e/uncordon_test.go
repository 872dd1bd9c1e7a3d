package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

// auditTrail holds the responder's audit records as published.
type auditTrail struct {
	mu   sync.Mutex
	recs []decide.Record
}

// followAudit collects the records published on subject (decide.AuditSubject(host),
// or decide.AuditPrefix+".>" for every host).
func followAudit(t testing.TB, nc *nats.Conn, subject string) *auditTrail {
	t.Helper()
	a := &auditTrail{}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		var r decide.Record
		if json.Unmarshal(m.Data, &r) == nil {
			a.mu.Lock()
			a.recs = append(a.recs, r)
			a.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

// find returns the records matching f.
func (a *auditTrail) find(f func(decide.Record) bool) []decide.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []decide.Record
	for _, r := range a.recs {
		if f(r) {
			out = append(out, r)
		}
	}
	return out
}

// wait returns the first record matching f, failing after a guard timeout.
func (a *auditTrail) wait(t testing.TB, what string, f func(decide.Record) bool) decide.Record {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if rs := a.find(f); len(rs) > 0 {
			return rs[0]
		}
		if time.Now().After(deadline) {
			a.mu.Lock()
			defer a.mu.Unlock()
			for _, r := range a.recs {
				t.Logf("audit: %s %s %s %s %q err=%q", r.Replica, r.Incident, r.Stage, r.Action, r.Reason, r.Error)
			}
			t.Fatalf("no audit record: %s", what)
		}
	}
}

func stageOf(incident, stage string) func(decide.Record) bool {
	return func(r decide.Record) bool {
		return (incident == "" || r.Incident == incident) && r.Stage == stage
	}
}

// TestUncordonReopens: drift -> the responder cordons web through its ctl
// subject and marks it cordoned in the control plane -> driftctl-style
// uncordon (cordoned -> sealed) -> the sensor opens the gate and the
// responder closes the incident -> drift again -> a new incident, cordoned
// again.
func TestUncordonReopens(t *testing.T) {
	w := newWorld(t, false)
	pol, err := decide.ParsePolicy("r.yaml", []byte("default: cordon\n"))
	if err != nil {
		t.Fatal(err)
	}
	rnc, err := nats.Connect(w.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rnc.Close)
	prober := &actuator.TCPProber{
		Addr: func(string) (string, error) { return netip.AddrPortFrom(w.web.Addr, echoPort).String(), nil },
		Dial: w.peer.DialContext,
	}
	r, err := decide.New(rnc, decide.Config{Replica: "r1", Policy: pol, CtlCordon: true, Prober: prober,
		ProbeInterval: 50 * time.Millisecond, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	ctl, err := control.New(w.nc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	audit := followAudit(t, w.nc, decide.AuditSubject("web"))
	sub := w.findingSub(t)

	// First drift: cordoned, verified, and cordoned in the control plane.
	pid := w.drift(t)
	w.waitBlocked(t)
	first := checkCordon(t, audit, w.driftFinding(t, sub, pid))
	audit.wait(t, "the first state record", stageOf(first, decide.StageState))
	if st, _, err := ctl.State(context.Background(), "web"); err != nil || st != event.StateCordoned {
		t.Fatalf("web is %s (%v) in the control plane, want cordoned", st, err)
	}
	if on, _ := w.gate.Cordoned(); !on {
		t.Fatal("gate flag not set")
	}

	// driftctl uncordon web.
	if _, err := ctl.SetState(context.Background(), "web", event.StateSealed, "alice"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for w.probe(ctx) != nil {
		if ctx.Err() != nil {
			t.Fatal("web still unreachable after the uncordon")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if on, _ := w.gate.Cordoned(); on {
		t.Fatal("probe passes but the gate flag is still set")
	}
	cl := audit.wait(t, "the close record", stageOf(first, decide.StageClose))
	t.Logf("closed: %s", cl.Reason)

	// Second drift: a new incident, cordoned again.
	pid = w.drift(t)
	w.waitBlocked(t)
	second := checkCordon(t, audit, w.driftFinding(t, sub, pid))
	if second == first {
		t.Fatalf("the second drift was cordoned in the closed incident %s, want a new one", first)
	}
	audit.wait(t, "the second state record", stageOf(second, decide.StageState))
	if st, _, _ := ctl.State(context.Background(), "web"); st != event.StateCordoned {
		t.Fatalf("web is %s after the second drift, want cordoned", st)
	}
	if n := len(audit.find(func(r decide.Record) bool {
		return r.Stage == decide.StageAction && r.Actuator == "ctl" && r.Error == ""
	})); n != 2 {
		t.Errorf("%d ctl cordons, want 2 (one per incident)", n)
	}
}

// probeOnce probes to from from with a short timeout; nil means it passed.
func probeOnce(from *testbed.Host, to netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	return testbed.Probe(ctx, from, to)
}
