package transport

import (
	"bufio"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

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

// Metrics is what the sensor exposes to Prometheus. The Publisher fills the
// transport's part (Publisher.Metrics); the sensor adds the kernel side.
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
}

// MetricsHandler serves fn's metrics in the Prometheus text format (0.0.4).
func MetricsHandler(fn func() Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := fn()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		writeMetrics(bw, m)
		bw.Flush()
	})
}

func writeMetrics(w *bufio.Writer, m Metrics) {
	head := func(name, typ, help string) {
		w.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
	}
	sample := func(name, labels string, v float64) {
		w.WriteString(name)
		if labels != "" {
			w.WriteString("{" + labels + "}")
		}
		w.WriteString(" " + formatFloat(v) + "\n")
	}
	one := func(name, typ, help string, v float64) {
		head(name, typ, help)
		sample(name, "", v)
	}

	head("driftsensor_findings_total", "counter", "Findings accepted for publishing, by kind.")
	kinds := []event.Kind{event.KindFile, event.KindExec, event.KindNet, event.KindSensor}
	for k := range m.Findings {
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	slices.Sort(kinds[4:])
	for _, k := range kinds {
		sample("driftsensor_findings_total", `kind="`+escapeLabel(string(k))+`"`, float64(m.Findings[k]))
	}
	one("driftsensor_lost_records_total", "counter", "Records the kernel could not queue to the ring buffer.", float64(m.LostRecords))
	one("driftsensor_ring_fill_ratio", "gauge", "Ring buffer fill at the last sample, 0 to 1.", m.RingFill)
	one("driftsensor_spool_depth", "gauge", "Findings waiting in the on-disk spool for the server.", float64(m.SpoolDepth))
	one("driftsensor_spool_lost_total", "counter", "Findings refused because the spool was full.", float64(m.SpoolLost))
	one("driftsensor_published_total", "counter", "Findings the server accepted.", float64(m.Published))
	one("driftsensor_spooled_total", "counter", "Findings written to the spool.", float64(m.Spooled))
	one("driftsensor_publish_errors_total", "counter", "Failed publish attempts (the finding went to the spool).", float64(m.PublishErrors))
	one("driftsensor_ctl_rejected_total", "counter", "Malformed, unknown or refused control messages.", float64(m.Rejected))

	const lat = "driftsensor_publish_latency_seconds"
	head(lat, "histogram", "Time from publish to server acknowledgement.")
	h := m.PublishLatency
	var cum uint64
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		sample(lat+"_bucket", `le="`+formatFloat(b)+`"`, float64(cum))
	}
	total := h.Count()
	sample(lat+"_bucket", `le="+Inf"`, float64(total))
	sample(lat+"_sum", "", h.Sum)
	sample(lat+"_count", "", float64(total))
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
