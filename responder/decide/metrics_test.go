package decide

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// TestMetricsCountTheAuditTrail: one drift cordoned by two actuators is one
// decision, one ok action per actuator and their stage latencies in the
// metrics, exactly as the audit trail records them.
func TestMetricsCountTheAuditTrail(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	agent := newCtlAgent(t, nc, nil)
	audit := watchAudit(t, nc)
	rec := newRecorder()
	r := startResponder(t, url, Config{Policy: cordonEtc(t), CtlCordon: true, Cordoners: []actuator.Cordoner{rec}})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Collectors()...)

	s := newSensor(t, nc, "db-1")
	s.finding(event.KindFile, "/etc/shadow")
	eventually(t, "a cordon on db-1's ctl subject", func() bool { return agent.count("db-1") == 1 })
	eventually(t, "two action records", func() bool { return len(audit.find(stage("db-1", StageAction))) == 2 })

	if got := testutil.ToFloat64(r.met.decisions.WithLabelValues("cordon", "ok")); got != 1 {
		t.Errorf("decisions{cordon,ok} = %v, want 1", got)
	}
	acts := audit.find(stage("db-1", StageAction))
	for _, a := range acts {
		if got := testutil.ToFloat64(r.met.actions.WithLabelValues("cordon", a.Actuator, "ok")); got != 1 {
			t.Errorf("actions{cordon,%s,ok} = %v, want 1", a.Actuator, got)
		}
	}
	if n := testutil.CollectAndCount(r.met.actions); n != 2*len(acts) {
		t.Errorf("%d action series, want %d (ok and error per actuator)", n, 2*len(acts))
	}
	now := scrape(t, reg)
	for st, want := range map[string]float64{"transit": 1, "decide": 1, "act": float64(len(acts)), "sensed_to_acted": float64(len(acts))} {
		if got := now[`driftresponder_stage_latency_seconds{stage="`+st+`"}`]; got != want {
			t.Errorf("stage %s latency: %v observations, want %v", st, got, want)
		}
	}
	if got := testutil.ToFloat64(r.met.records.WithLabelValues(StageDecision)); got != 1 {
		t.Errorf("audit_records{decision} = %v, want 1", got)
	}
	for name, want := range map[string]float64{"driftresponder_findings_total": 1, "driftresponder_nats_connected": 1, "driftresponder_hosts": 1, "driftresponder_held_total": 0} {
		if got, ok := now[name]; !ok || got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

// TestMetricsStartAtZero: right after start, before any finding, the
// responder's scrape has every series of its decisions (each action and
// result), actions (each configured actuator of each action, and result),
// dead man's switch firings and stage latencies, at 0, so the first event of
// each is an increase that rate() and increase() see. The first cordon then
// raises series that were there, and adds none.
func TestMetricsStartAtZero(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	agent := newCtlAgent(t, nc, nil)
	rec := newRecorder()
	r := startResponder(t, url, Config{Policy: cordonEtc(t), CtlCordon: true, Cordoners: []actuator.Cordoner{rec}, Destroyers: []actuator.Destroyer{rec}})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Collectors()...)

	start := scrape(t, reg)
	var want []string
	for _, a := range []string{"alert", "cordon", "destroy"} {
		want = append(want, fmt.Sprintf(`driftresponder_dead_man_total{action=%q}`, a))
		for _, res := range []string{"ok", "error"} {
			want = append(want, fmt.Sprintf(`driftresponder_decisions_total{action=%q,result=%q}`, a, res))
		}
	}
	for _, act := range []string{`action="cordon",actuator="ctl"`, `action="cordon",actuator="recorder"`, `action="destroy",actuator="recorder"`} {
		for _, res := range []string{"ok", "error"} {
			want = append(want, fmt.Sprintf(`driftresponder_actions_total{%s,result=%q}`, act, res))
		}
	}
	for _, st := range []string{"transit", "decide", "act", "sensed_to_acted", "verify"} {
		want = append(want, fmt.Sprintf(`driftresponder_stage_latency_seconds{stage=%q}`, st))
	}
	for _, st := range []string{StageDecision, StageAction, StageDeadMan, StageVerify} {
		want = append(want, fmt.Sprintf(`driftresponder_audit_records_total{stage=%q}`, st))
	}
	for _, k := range want {
		if v, ok := start[k]; !ok {
			t.Errorf("no series %s at start", k)
		} else if v != 0 {
			t.Errorf("%s = %v at start, want 0", k, v)
		}
	}

	s := newSensor(t, nc, "db-1")
	s.finding(event.KindFile, "/etc/shadow")
	eventually(t, "a cordon on db-1's ctl subject", func() bool { return agent.count("db-1") == 1 })
	eventually(t, "the ctl and recorder actions counted", func() bool {
		now := scrape(t, reg)
		return now[`driftresponder_actions_total{action="cordon",actuator="ctl",result="ok"}`] == 1 &&
			now[`driftresponder_actions_total{action="cordon",actuator="recorder",result="ok"}`] == 1
	})
	for k := range scrape(t, reg) {
		if _, ok := start[k]; !ok && !strings.HasPrefix(k, "driftresponder_audit_records_total") {
			t.Errorf("series %s appeared at its first event, not at start", k)
		}
	}
}

// scrape is every series of reg's responder metrics, name{labels} with
// labels in name order: a counter's or gauge's value, a histogram's count.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "driftresponder_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			k := mf.GetName()
			if len(ls) > 0 {
				k += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				series[k] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				series[k] = float64(m.GetHistogram().GetSampleCount())
			default:
				series[k] = m.GetGauge().GetValue()
			}
		}
	}
	return series
}
