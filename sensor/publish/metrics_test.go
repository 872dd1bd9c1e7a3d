package publish

import (
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftsensor/driftsensor/sensor/event"
)

func TestMetricsExposition(t *testing.T) {
	var l latency
	for _, d := range []time.Duration{30 * time.Microsecond, 50 * time.Microsecond, 70 * time.Microsecond, 3 * time.Millisecond, time.Second} {
		l.observe(d)
	}
	m := Metrics{
		Findings:       map[event.Kind]uint64{event.KindFile: 3, event.KindNet: 1, "we\"ird": 2},
		LostRecords:    7,
		RingFill:       0.5,
		SpoolDepth:     4,
		SpoolLost:      1,
		PublishLatency: l.snapshot(),
		Transport:      event.TransportJetStream,
		State:          event.StateCordoned,
		Backend:        "tracepoint",
		Gate:           GateClosed,
	}
	c := NewCollector(func() Metrics { return m })
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("Content-Type %q", ct)
	}
	body := rec.Body.String()
	sample := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"\})? [^ ]+$`)
	values := map[string]float64{}
	typed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		if strings.HasPrefix(line, "# TYPE ") {
			typed[strings.Fields(line)[2]] = true
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		if !sample.MatchString(line) {
			t.Fatalf("not a valid sample line: %q", line)
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		values[line[:i]] = v
	}
	want := map[string]float64{
		`driftsensor_findings_total{kind="file"}`:                 3,
		`driftsensor_findings_total{kind="exec"}`:                 0,
		`driftsensor_findings_total{kind="we\"ird"}`:              2,
		`driftsensor_lost_records_total`:                          7,
		`driftsensor_ring_fill_ratio`:                             0.5,
		`driftsensor_spool_depth`:                                 4,
		`driftsensor_spool_lost_total`:                            1,
		`driftsensor_publish_latency_seconds_bucket{le="5e-05"}`:  2, // le is inclusive
		`driftsensor_publish_latency_seconds_bucket{le="0.0001"}`: 3,
		`driftsensor_publish_latency_seconds_bucket{le="0.005"}`:  4,
		`driftsensor_publish_latency_seconds_bucket{le="0.1"}`:    4,
		`driftsensor_publish_latency_seconds_bucket{le="+Inf"}`:   5,
		`driftsensor_publish_latency_seconds_count`:               5,
		`driftsensor_transport{state="jetstream"}`:                1,
		`driftsensor_transport{state="offline"}`:                  0,
		`driftsensor_host_state{state="cordoned"}`:                1,
		`driftsensor_host_state{state="sealed"}`:                  0,
		`driftsensor_backend{backend="tracepoint"}`:               1,
		`driftsensor_backend{backend="lsm"}`:                      0,
		`driftsensor_gate{state="closed"}`:                        1,
		`driftsensor_gate{state="open"}`:                          0,
	}
	for k, v := range want {
		if got, ok := values[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if s := values["driftsensor_publish_latency_seconds_sum"]; s < 1.003 || s > 1.0032 {
		t.Errorf("latency sum %v, want about 1.00315", s)
	}
	for _, name := range []string{"driftsensor_findings_total", "driftsensor_publish_latency_seconds", "driftsensor_spool_depth"} {
		if !typed[name] {
			t.Errorf("no # TYPE line for %s", name)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}
