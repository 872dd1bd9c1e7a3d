package decide

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// BenchmarkCordon measures finding published -> cordon verified (the first
// probe that no longer passes) through NATS, the responder, the host's ctl
// subject and the tc gate. Each iteration is a new incident on the same
// test host, un-cordoned between iterations outside the timer.
func BenchmarkCordon(b *testing.B) {
	testenv.RequireBPF(b)
	f := newFleet(b, true)
	url := natsServer(b)
	nc := connect(b, url)
	newCtlAgent(b, nc, func(host string, c ctlCommand) error { return f.gate.SetCordon(c.Cmd == "cordon") })
	audit := watchAudit(b, nc)
	startResponder(b, url, Config{Policy: &Policy{Default: ActCordon, DeadMan: ActCordon}, CtlCordon: true,
		Prober: f.probe, ProbeInterval: 2 * time.Millisecond})

	var lat, decide []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := f.gate.SetCordon(false); err != nil {
			b.Fatal(err)
		}
		eventually(b, "the target reachable again", func() bool { return f.passes(f.prober, f.target, svcPort) == nil })
		host := fmt.Sprintf("bench-%d", i)
		b.StartTimer()
		sent := time.Now()
		newSensor(b, nc, host).finding(event.KindFile, "/etc/passwd")
		var v Record
		eventually(b, "verify", func() bool {
			rs := audit.find(stage(host, StageVerify))
			if len(rs) > 0 {
				v = rs[0]
			}
			return len(rs) > 0
		})
		b.StopTimer()
		if v.Error != "" {
			b.Fatalf("verify: %s", v.Error)
		}
		lat = append(lat, v.Stages.Verified.Sub(sent))
		decide = append(decide, v.Stages.Decided.Sub(sent))
		b.StartTimer()
	}
	b.StopTimer()
	report := func(name string, d []time.Duration) {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		b.ReportMetric(float64(d[len(d)/2].Microseconds()), name+"-p50-us")
		b.ReportMetric(float64(d[(len(d)*99)/100].Microseconds()), name+"-p99-us")
	}
	report("verified", lat)
	report("decided", decide)
}
