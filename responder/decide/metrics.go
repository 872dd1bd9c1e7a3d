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

// observe counts an audit record.
func (m *metrics) observe(rec Record) {
	m.init()
	m.records.WithLabelValues(rec.Stage).Inc()
	result := "ok"
	if rec.Error != "" {
		result = "error"
	}
	st := rec.Stages
	switch rec.Stage {
	case StageDecision:
		m.decisions.WithLabelValues(string(rec.Action), result).Inc()
		m.span("transit", st.Sensed, st.Received)
		m.span("decide", st.Received, st.Decided)
	case StageAction:
		m.actions.WithLabelValues(string(rec.Action), rec.Actuator, result).Inc()
		if result == "ok" {
			m.span("act", st.Decided, st.Acted)
			m.span("sensed_to_acted", st.Sensed, st.Acted)
		}
	case StageVerify:
		if result == "ok" {
			m.span("verify", st.Acted, st.Verified)
		}
	case StageDeadMan:
		m.deadMan.WithLabelValues(string(rec.Action)).Inc()
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

// Collectors returns the responder's metrics to register: decisions,
// actions and stage latencies from the audit trail, its counters (Stats),
// the hosts it tracks, and whether its NATS connection is up.
func (r *Responder) Collectors() []prometheus.Collector {
	r.met.init()
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
