package publish

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// LatencyBounds are the upper bounds of the publish latency buckets, in seconds.
var LatencyBounds = []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3}

// Histogram is a snapshot of a latency histogram. Counts[i] counts
// observations in (Bounds[i-1], Bounds[i]]; the last element of Counts counts
// those above every bound.
type Histogram struct {
	Bounds []float64 // seconds
	Counts []uint64  // len(Bounds)+1
	Sum    float64   // seconds
}

// Count is the number of observations.
func (h Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// latency is the live, lock-free histogram behind Histogram.
type latency struct {
	counts [12]atomic.Uint64 // len(LatencyBounds)+1
	sumNS  atomic.Uint64
}

func (l *latency) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(LatencyBounds) && s > LatencyBounds[i] {
		i++
	}
	l.counts[i].Add(1)
	l.sumNS.Add(uint64(d.Nanoseconds()))
}

func (l *latency) snapshot() Histogram {
	h := Histogram{Bounds: LatencyBounds, Counts: make([]uint64, len(LatencyBounds)+1)}
	for i := range h.Counts {
		h.Counts[i] = l.counts[i].Load()
	}
	h.Sum = float64(l.sumNS.Load()) / 1e9
	return h
}

// Metrics is what the sensor exposes to Prometheus, read at each scrape. The
// Publisher fills the transport's part (Publisher.Metrics); the daemon adds
// the kernel side and the host's state.
type Metrics struct {
	Findings       map[event.Kind]uint64 // findings accepted for publishing, by kind
	LostRecords    uint64                // records the kernel could not queue
	RingFill       float64               // ring buffer fill ratio, 0..1
	SpoolDepth     uint64                // findings waiting on disk
	SpoolLost      uint64                // findings refused by a full spool
	Published      uint64
	Spooled        uint64
	PublishErrors  uint64
	Rejected       uint64 // ctl messages rejected
	PublishLatency Histogram
	Transport      string      // event.TransportJetStream, event.TransportCore, event.TransportOffline or event.TransportUnauthorized
	State          event.State // the host state applied to the kernel
	Backend        string      // "tracepoint" or "lsm"
	Gate           string      // GateOpen, GateClosed, GateNone or GateUnknown
}

// Cordon gate states, as the driftsensor_gate metric reports them.
const (
	GateOpen    = "open"    // attached, passing traffic
	GateClosed  = "closed"  // attached, dropping all but the management allowlist
	GateNone    = "none"    // not attached (no --gate)
	GateUnknown = "unknown" // its flag could not be read
)

// The label values of the state metrics: each is 1 for the current value and
// 0 for the others, so a dashboard or alert can select one.
var (
	transportStates = []string{event.TransportJetStream, event.TransportCore, event.TransportOffline, event.TransportUnauthorized}
	hostStates      = []string{string(event.StateMutable), string(event.StateSealed), string(event.StateCordoned), string(event.StateDestroyed)}
	backends        = []string{"tracepoint", "lsm"}
	gateStates      = []string{GateOpen, GateClosed, GateNone, GateUnknown}
	findingKinds    = []event.Kind{event.KindFile, event.KindExec, event.KindNet, event.KindSensor}
)

// sensorMetrics are the sensor's metrics besides build_info, go_* and
// process_*: one line each.
var sensorMetrics = []metricDef{
	perKind("driftsensor_findings_total", "Findings accepted for publishing, by kind."),
	counter("driftsensor_lost_records_total", "Records the kernel could not queue to the ring buffer.", func(m *Metrics) uint64 { return m.LostRecords }),
	gauge("driftsensor_ring_fill_ratio", "Ring buffer fill at the last sample, 0 to 1.", func(m *Metrics) float64 { return m.RingFill }),
	gauge("driftsensor_spool_depth", "Findings waiting in the on-disk spool for the server.", func(m *Metrics) float64 { return float64(m.SpoolDepth) }),
	counter("driftsensor_spool_lost_total", "Findings refused because the spool was full.", func(m *Metrics) uint64 { return m.SpoolLost }),
	counter("driftsensor_published_total", "Findings the server accepted.", func(m *Metrics) uint64 { return m.Published }),
	counter("driftsensor_spooled_total", "Findings written to the spool.", func(m *Metrics) uint64 { return m.Spooled }),
	counter("driftsensor_publish_errors_total", "Failed publish attempts (the finding went to the spool).", func(m *Metrics) uint64 { return m.PublishErrors }),
	counter("driftsensor_ctl_rejected_total", "Malformed, unknown or refused control messages.", func(m *Metrics) uint64 { return m.Rejected }),
	oneOf("driftsensor_transport", "How findings leave the host: 1 for the current state (unauthorized: the server refuses the credentials).", "state", transportStates, func(m *Metrics) string { return m.Transport }),
	oneOf("driftsensor_host_state", "The host state applied to the kernel: 1 for the current one.", "state", hostStates, func(m *Metrics) string { return string(m.State) }),
	oneOf("driftsensor_backend", "The kernel backend that runs: 1 for it.", "backend", backends, func(m *Metrics) string { return m.Backend }),
	oneOf("driftsensor_gate", "The cordon gate: 1 for its current state (none: not attached).", "state", gateStates, func(m *Metrics) string { return m.Gate }),
	publishLatency("driftsensor_publish_latency_seconds", "Time from publish to server acknowledgement."),
}

// metricDef is one metric: its description and how to read it from a snapshot.
type metricDef struct {
	desc    *prometheus.Desc
	collect func(d *prometheus.Desc, m *Metrics, ch chan<- prometheus.Metric)
}

func counter(name, help string, v func(*Metrics) uint64) metricDef {
	return metricDef{prometheus.NewDesc(name, help, nil, nil), func(d *prometheus.Desc, m *Metrics, ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v(m)))
	}}
}

func gauge(name, help string, v func(*Metrics) float64) metricDef {
	return metricDef{prometheus.NewDesc(name, help, nil, nil), func(d *prometheus.Desc, m *Metrics, ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v(m))
	}}
}

// oneOf is a gauge with one series per value: 1 for the current one, 0 for
// the others (a current value outside values gets a series of its own).
func oneOf(name, help, label string, values []string, cur func(*Metrics) string) metricDef {
	return metricDef{prometheus.NewDesc(name, help, []string{label}, nil), func(d *prometheus.Desc, m *Metrics, ch chan<- prometheus.Metric) {
		c := cur(m)
		for _, v := range values {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, b2f(v == c), v)
		}
		if c != "" && !slices.Contains(values, c) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, 1, c)
		}
	}}
}

// perKind counts findings by kind, the usual kinds always present.
func perKind(name, help string) metricDef {
	return metricDef{prometheus.NewDesc(name, help, []string{"kind"}, nil), func(d *prometheus.Desc, m *Metrics, ch chan<- prometheus.Metric) {
		for _, k := range findingKinds {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(m.Findings[k]), string(k))
		}
		for k, n := range m.Findings {
			if !slices.Contains(findingKinds, k) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), string(k))
			}
		}
	}}
}

func publishLatency(name, help string) metricDef {
	return metricDef{prometheus.NewDesc(name, help, nil, nil), func(d *prometheus.Desc, m *Metrics, ch chan<- prometheus.Metric) {
		h := m.PublishLatency
		buckets := make(map[float64]uint64, len(h.Bounds))
		var cum uint64
		for i, b := range h.Bounds {
			if i < len(h.Counts) {
				cum += h.Counts[i]
			}
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(d, h.Count(), h.Sum, buckets)
	}}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// collector reads a snapshot at each scrape and reports sensorMetrics from it.
type collector struct{ snapshot func() Metrics }

// NewCollector exposes the sensor's metrics, read from snapshot at each scrape.
func NewCollector(snapshot func() Metrics) prometheus.Collector { return collector{snapshot} }

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, md := range sensorMetrics {
		ch <- md.desc
	}
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.snapshot()
	if m.PublishLatency.Bounds == nil {
		m.PublishLatency = (&latency{}).snapshot()
	}
	for _, md := range sensorMetrics {
		md.collect(md.desc, &m, ch)
	}
}
