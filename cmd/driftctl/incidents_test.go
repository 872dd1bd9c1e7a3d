package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/cmd/driftctl/internal/incidents"
	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// cordoner counts cordons per host; the host is then unreachable to blocked.
type cordoner struct {
	mu    sync.Mutex
	hosts map[string]int
}

func (c *cordoner) Name() string { return "test-cordon" }

func (c *cordoner) Cordon(_ context.Context, t actuator.Target) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hosts[t.Host]++
	return nil
}

func (c *cordoner) count(host string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hosts[host]
}

// blocked is a prober for hosts behind cordoner: reachable until cordoned.
type blocked struct{ c *cordoner }

func (b blocked) Probe(_ context.Context, host string) error {
	if b.c.count(host) > 0 {
		return errors.New("no answer")
	}
	return nil
}

// auditRecords collects the responder's audit records as they are published.
type auditRecords struct {
	mu   sync.Mutex
	recs []decide.Record
}

func watchAudit(t *testing.T, nc *nats.Conn) *auditRecords {
	t.Helper()
	a := &auditRecords{}
	sub, err := nc.Subscribe(decide.AuditPrefix+".>", func(m *nats.Msg) {
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
	nc.Flush()
	return a
}

func (a *auditRecords) find(host, stage string) []decide.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []decide.Record
	for _, r := range a.recs {
		if r.Host == host && r.Stage == stage {
			out = append(out, r)
		}
	}
	return out
}

// waitFor waits for a condition with the suite's one bound (testenv.Eventually).
var waitFor = testenv.Eventually

func parseIncidents(t *testing.T, out string) map[string]incidents.Incident {
	t.Helper()
	got := map[string]incidents.Incident{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var in incidents.Incident
		if err := json.Unmarshal([]byte(line), &in); err != nil {
			t.Fatalf("incidents --json line %q: %v", line, err)
		}
		got[in.Host] = in
	}
	return got
}

func stageNames(in incidents.Incident) []string {
	var out []string
	for _, s := range in.Stages {
		out = append(out, s.Name)
	}
	return out
}

// The real responder engine cordons one host and holds the second at its
// blast-radius limit; driftctl incidents shows both from the audit stream,
// driftctl approve releases the held one, and driftctl uncordon closes an
// incident.
func TestIncidentsAndApprove(t *testing.T) {
	url, nc := embedded(t)
	ctl := adminControl(t, nc)
	audit := watchAudit(t, nc)
	cord := &cordoner{hosts: map[string]int{}}
	pol, err := decide.ParsePolicy("p.yaml", []byte("default: cordon\n"))
	if err != nil {
		t.Fatal(err)
	}
	rnc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rnc.Close)
	r, err := decide.New(rnc, decide.Config{Replica: "r1", Policy: pol, Cordoners: []actuator.Cordoner{cord},
		Prober: blocked{cord}, ProbeInterval: 5 * time.Millisecond, MaxHosts: 1, Window: time.Hour, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)

	// Nothing recorded yet.
	if code, out, _ := driftctl(t, "--nats", url, "incidents", "--json"); code != exitOK || out != "" {
		t.Fatalf("incidents before any: exit %d, %q", code, out)
	}

	before := time.Now()
	publish := func(host string, seq uint64) {
		ev := finding(host, event.KindFile, seq, "/etc/passwd")
		if err := nc.Publish(event.Subject(host, ev.Kind), mustJSON(t, ev)); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
	}
	publish("web-1", 1)
	waitFor(t, "web-1 verified", func() bool { return len(audit.find("web-1", decide.StageVerify)) == 1 })
	waitFor(t, "web-1 state", func() bool { return len(audit.find("web-1", decide.StageState)) == 1 })
	publish("web-2", 1)
	waitFor(t, "web-2 held", func() bool { return len(audit.find("web-2", decide.StageHold)) == 1 })

	code, out, _ := driftctl(t, "--nats", url, "incidents", "--json")
	if code != exitOK {
		t.Fatalf("incidents: exit %d", code)
	}
	got := parseIncidents(t, out)
	a, b := got["web-1"], got["web-2"]
	if len(got) != 2 || a.ID == "" || b.ID == "" {
		t.Fatalf("incidents %+v, want web-1 and web-2", got)
	}
	if a.Status != "cordoned" || a.Action != decide.ActCordon || a.Decided != decide.ActCordon || a.Verified.IsZero() ||
		len(a.Actuators) != 1 || a.Actuators[0] != "test-cordon" ||
		len(a.Errors) != 0 || a.Sensed.IsZero() || a.Verified.Before(a.Sensed) || a.Opened.Before(before.Add(-time.Second)) {
		t.Errorf("web-1: %+v", a)
	}
	if want := []string{"decision", "action", "state", "verify"}; !containsAll(stageNames(a), want) {
		t.Errorf("web-1 stages %v, want %v", stageNames(a), want)
	}
	if b.Status != "held" || b.Action != "" || len(b.Actuators) != 0 {
		t.Errorf("web-2: %+v", b)
	}
	if cord.count("web-2") != 0 {
		t.Fatal("web-2 cordoned past the limit")
	}

	// Text: one line per incident; the held one says how to approve it.
	code, out, _ = driftctl(t, "--nats", url, "incidents")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 2 || !strings.Contains(lines[0], "web-1  "+a.ID+"  cordoned  action=cordon") ||
		!strings.Contains(lines[0], "verified=") || !strings.Contains(lines[0], "stages: decision +") ||
		!strings.Contains(lines[1], "held") || !strings.Contains(lines[1], "driftctl approve "+b.ID) {
		t.Errorf("incidents text: exit %d\n%s", code, out)
	}
	// Filters.
	if code, out, _ := driftctl(t, "--nats", url, "incidents", "--json", "--host", "web-2"); code != exitOK || len(parseIncidents(t, out)) != 1 || parseIncidents(t, out)["web-2"].ID != b.ID {
		t.Errorf("--host web-2: exit %d, %q", code, out)
	}
	if code, out, _ := driftctl(t, "--nats", url, "incidents", "--since", time.Now().Add(time.Hour).Format(time.RFC3339)); code != exitOK || out != "" {
		t.Errorf("--since in the future: exit %d, %q", code, out)
	}

	// Approve: unknown incidents are refused, the held one is released.
	if code, _, stderr := driftctl(t, "--nats", url, "--timeout", "300ms", "approve", "inc-nosuch"); code != exitFailure || !strings.Contains(stderr, "no responder holds it") {
		t.Errorf("approve of an unknown incident: exit %d, %q", code, stderr)
	}
	if code, out, _ := driftctl(t, "--nats", url, "approve", b.ID, "--by", "alice"); code != exitOK || !strings.Contains(out, "approved "+b.ID+" (by alice)") {
		t.Fatalf("approve: exit %d, %q", code, out)
	}
	waitFor(t, "web-2 cordoned", func() bool { return cord.count("web-2") == 1 })
	waitFor(t, "web-2 verified", func() bool { return len(audit.find("web-2", decide.StageVerify)) == 1 })
	if code, _, stderr := driftctl(t, "--nats", url, "--timeout", "300ms", "approve", b.ID); code != exitFailure || !strings.Contains(stderr, "already approved") {
		t.Errorf("second approve: exit %d, %q", code, stderr)
	}
	_, out, _ = driftctl(t, "--nats", url, "incidents", "--json", "--host", "web-2")
	if b = parseIncidents(t, out)["web-2"]; b.Status != "cordoned" || b.Approval != "approved by alice" || !containsAll(stageNames(b), []string{"hold", "approve", "action", "verify"}) {
		t.Errorf("web-2 after approval: %+v", b)
	}

	// Uncordon closes web-1's incident.
	if st, _, _ := ctl.State(context.Background(), "web-1"); st != event.StateCordoned {
		t.Fatalf("web-1 is %s in the control plane, want cordoned", st)
	}
	if code, _, _ := driftctl(t, "--nats", url, "uncordon", "web-1", "--by", "bob"); code != exitOK {
		t.Fatal("uncordon failed")
	}
	waitFor(t, "web-1 closed", func() bool { return len(audit.find("web-1", decide.StageClose)) == 1 })
	_, out, _ = driftctl(t, "--nats", url, "incidents", "--json", "--host", "web-1")
	if a = parseIncidents(t, out)["web-1"]; a.Status != "closed" || a.Closed.IsZero() {
		t.Errorf("web-1 after uncordon: %+v", a)
	}
	_, out, _ = driftctl(t, "--nats", url, "incidents", "--host", "web-1")
	if !strings.Contains(out, "closed") || !strings.Contains(out, "close +") {
		t.Errorf("text after uncordon: %q", out)
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

func TestIncidentsUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"approve"}, "want exactly one incident id"},
		{[]string{"approve", "a", "b"}, "want exactly one incident id"},
		{[]string{"approve", "inc x"}, `incident id "inc x"`},
		{[]string{"incidents", "--since", "yesterday"}, `"yesterday": want an RFC 3339 time`},
		{[]string{"incidents", "--host", "a.b"}, `host name "a.b"`},
		{[]string{"incidents", "extra"}, `unexpected argument "extra"`},
	} {
		code, _, stderr := driftctl(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, %q; want usage error with %q", tc.args, code, stderr, tc.want)
		}
	}
	url, _ := embedded(t)
	if code, _, stderr := driftctl(t, "--nats", url, "--timeout", "300ms", "approve", "inc-1"); code != exitFailure || !strings.Contains(stderr, "no driftresponder listens") {
		t.Errorf("approve with no responder: exit %d, %q", code, stderr)
	}
	if code, _, stderr := driftctl(t, "--nats", url, "incidents"); code != exitFailure || !strings.Contains(stderr, "no driftresponder has run") {
		t.Errorf("incidents without the audit stream: exit %d, %q", code, stderr)
	}
}
