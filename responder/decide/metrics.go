package decide

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the responder's Prometheus metrics. Decisions, actions and
// stage latencies are read from the audit records as they are appended, so
// what the metrics count is what the audit trail says.
type metrics struct {
	once      sync.Once
	records   *prometheus.CounterVec   // every audit record, by stage
	decisions *prometheus.CounterVec   // by action and result
	actions   *prometheus.CounterVec   // by action, actuator and result
	deadMan   *prometheus.CounterVec   // by action
	stages    *prometheus.HistogramVec // by stage
}

// StageBuckets are the upper bounds of the stage latency histogram, in
// seconds: from the reflex-free path's tens of microseconds to a slow destroy hook.
var StageBuckets = []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10, 30}

func (m *metrics) init() {
	m.once.Do(func() {
		m.records = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftresponder_audit_records_total",
			Help: "Audit records appended, by stage (decision, action, verify, dead_man, hold, skip, reject...)."}, []string{"stage"})
		m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftresponder_decisions_total",
			Help: "Decisions on incidents, by action (alert, cordon, destroy) and result (ok, error)."}, []string{"action", "result"})
		m.actions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftresponder_actions_total",
			Help: "Actuator runs, by action, actuator and result (ok, error)."}, []string{"action", "actuator", "result"})
		m.deadMan = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftresponder_dead_man_total",
			Help: "Dead man's switch firings (a silent, gapped or blinded sensor), by the action chosen."}, []string{"action"})
		m.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "driftresponder_stage_latency_seconds",
			Help: "Time between an incident's stages: transit (sensed to received), decide (received to decided), act (decided to acted), " +
				"sensed_to_acted, verify (acted to the cordon verified).", Buckets: StageBuckets}, []string{"stage"})
	})
}

// Results of decisions and actions, the metrics' result label.
var results = []string{resultOK, resultError}

const (
	resultOK    = "ok"
	resultError = "error"
)

// ctlActuator names the cordon the host's sensor carries out (Config.CtlCordon).
const ctlActuator = "ctl"

// latency is one series of the stage latency histogram: the time from one
// of an incident's stages to the next, read from the record that ends it.
type latency struct {
	name   string // the stage label
	record string // the audit stage of the record that ends it
	okOnly bool   // a failed action or verify has no latency
	from   func(Stages) time.Time
	to     func(Stages) time.Time
}

var (
	atSensed   = func(s Stages) time.Time { return s.Sensed }
	atReceived = func(s Stages) time.Time { return s.Received }
	atDecided  = func(s Stages) time.Time { return s.Decided }
	atActed    = func(s Stages) time.Time { return s.Acted }
	atVerified = func(s Stages) time.Time { return s.Verified }
)

// latencies are the stage latency histogram's series.
var latencies = []latency{
	{"transit", StageDecision, false, atSensed, atReceived},
	{"decide", StageDecision, false, atReceived, atDecided},
	{"act", StageAction, true, atDecided, atActed},
	{"sensed_to_acted", StageAction, true, atSensed, atActed},
	{"verify", StageVerify, true, atActed, atVerified},
}

// zero creates, at 0, every series the metrics can have for actuators (the
// configured actuator names by action), so that the first event of each is
// an increase rate() and increase() see, not the series' first sample.
func (m *metrics) zero(actuators map[Action][]string) {
	m.init()
	for _, st := range auditStages {
		m.records.WithLabelValues(st)
	}
	for _, a := range actions {
		m.deadMan.WithLabelValues(string(a))
		for _, res := range results {
			m.decisions.WithLabelValues(string(a), res)
			for _, name := range actuators[a] {
				m.actions.WithLabelValues(string(a), name, res)
			}
		}
	}
	for _, l := range latencies {
		m.stages.WithLabelValues(l.name)
	}
}

// observe counts an audit record.
func (m *metrics) observe(rec Record) {
	m.init()
	m.records.WithLabelValues(rec.Stage).Inc()
	result := resultOK
	if rec.Error != "" {
		result = resultError
	}
	switch rec.Stage {
	case StageDecision:
		m.decisions.WithLabelValues(string(rec.Action), result).Inc()
	case StageAction:
		m.actions.WithLabelValues(string(rec.Action), rec.Actuator, result).Inc()
	case StageDeadMan:
		m.deadMan.WithLabelValues(string(rec.Action)).Inc()
	}
	for _, l := range latencies {
		if l.record == rec.Stage && (result == resultOK || !l.okOnly) {
			m.span(l.name, l.from(rec.Stages), l.to(rec.Stages))
		}
	}
}

// span observes the time from a to b when both are known; a negative span
// (the sensor's clock ahead of the responder's) is not a latency.
func (m *metrics) span(stage string, a, b time.Time) {
	if a.IsZero() || b.IsZero() || b.Before(a) {
		return
	}
	m.stages.WithLabelValues(stage).Observe(b.Sub(a).Seconds())
}

// actuators are the names of the configured actuators, by the action they carry out.
func (r *Responder) actuators() map[Action][]string {
	names := map[Action][]string{}
	if r.cfg.CtlCordon {
		names[ActCordon] = append(names[ActCordon], ctlActuator)
	}
	for _, c := range r.cfg.Cordoners {
		names[ActCordon] = append(names[ActCordon], c.Name())
	}
	for _, d := range r.cfg.Destroyers {
		names[ActDestroy] = append(names[ActDestroy], d.Name())
	}
	return names
}

// Collectors returns the responder's metrics to register: decisions,
// actions and stage latencies from the audit trail (every series of each
// known action, result, configured actuator and stage present from the
// start, at 0), its counters (Stats), the hosts it tracks, and whether its
// NATS connection is up.
func (r *Responder) Collectors() []prometheus.Collector {
	r.met.zero(r.actuators())
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	s := &r.stats
	return []prometheus.Collector{
		r.met.records, r.met.decisions, r.met.actions, r.met.deadMan, r.met.stages,
		counter("driftresponder_findings_total", "Findings read.", s.Findings.Load),
		counter("driftresponder_heartbeats_total", "Heartbeats read.", s.Heartbeats.Load),
		counter("driftresponder_rejected_total", "Messages that failed the authenticity or schema check.", s.Rejected.Load),
		counter("driftresponder_duplicates_total", "Findings seen before (redelivered or published twice).", s.Duplicates.Load),
		counter("driftresponder_held_total", "Actions the blast-radius limiter held for approval.", s.Held.Load),
		counter("driftresponder_skipped_total", "Actions another replica had already taken.", s.Skipped.Load),
		counter("driftresponder_action_errors_total", "Actuator runs that failed.", s.ActionErrors.Load),
		counter("driftresponder_audit_errors_total", "Audit records the stream did not take.", s.AuditErrors.Load),
		counter("driftresponder_gaps_total", "Holes in a host's finding sequence that the stream lacks.", s.Gaps.Load),
		counter("driftresponder_sensor_restarts_total", "Sensors that came back as a new run.", s.Restarts.Load),
		counter("driftresponder_infra_incidents_total", "Many hosts silent at once: one infrastructure incident, never a cordon.", s.Infra.Load),
		counter("driftresponder_takeovers_total", "Claims taken over from a dead replica.", s.Takeovers.Load),
		counter("driftresponder_acked_total", "Findings acknowledged to the stream once decided.", s.Acked.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "driftresponder_nats_connected",
			Help: "1 while the responder's NATS connection is up: it judges silence and acts only then."}, func() float64 {
			if r.nc.IsConnected() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "driftresponder_hosts", Help: "Hosts the responder tracks."}, func() float64 {
			r.mu.Lock()
			defer r.mu.Unlock()
			return float64(len(r.hosts))
		}),
	}
}
