package publish

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/spool"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// BenchmarkPublish measures Publish on loopback against an embedded server:
// with JetStream each call waits for the stream's ack, with core NATS for a
// flush. Reported: events/s and the p50/p99 latency of one Publish (of one
// PublishBatch call for the batch variants). The enqueue variant is the
// daemon's path (Enqueue: memory queue, async publish, spill to the spool
// when the queue is full): events/s runs until the last finding is acked,
// spooled says how many spilled, and lag_ms is from the return of the last
// Enqueue (the storm's end) to the last ack.
//
//	go test -run '^$' -bench BenchmarkPublish -benchtime 200000x ./sensor/publish
func BenchmarkPublish(b *testing.B) {
	for _, c := range []struct {
		name    string
		js      bool
		batch   int
		enqueue bool
	}{{"jetstream", true, 1, false}, {"core", false, 1, false}, {"jetstream/batch256", true, 256, false}, {"core/batch256", false, 256, false},
		{"jetstream/enqueue256", true, 256, true}} {
		b.Run(c.name, func(b *testing.B) {
			ts := startTestServer(b, c.js)
			sp, _, err := spool.Open(b.TempDir(), spool.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer sp.Close()
			p, err := New(context.Background(), transport.Options{URL: ts.url}, "bench", sp, testLog())
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ev := &event.Event{Kind: event.KindFile, Action: "open_write", Backend: "tracepoint",
				File:    &event.File{Path: "/etc/passwd", Dev: 2049, Ino: 131, MountID: 25, Flags: 0o1101},
				Process: &event.Process{PID: 4242, TID: 4242, PPID: 1, Comm: "bash", Exe: "/usr/bin/bash", CgroupID: 7}}
			evs := make([]*event.Event, c.batch)
			for i := range evs {
				e := *ev
				evs[i] = &e
			}
			var lat []time.Duration // of one Publish, or of one PublishBatch or Enqueue
			var lines [][]byte
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i += c.batch {
				t0 := time.Now()
				if c.batch == 1 {
					ev.Time = time.Time{}
					if err := p.Publish(ev); err != nil {
						b.Fatal(err)
					}
				} else {
					n := min(c.batch, b.N-i)
					for _, e := range evs[:n] {
						e.Time = time.Time{}
					}
					if c.enqueue {
						if lines, err = p.Enqueue(evs[:n], lines); err != nil {
							b.Fatal(err)
						}
					} else if _, err := p.PublishBatch(evs[:n]); err != nil {
						b.Fatal(err)
					}
				}
				lat = append(lat, time.Since(t0))
			}
			stormEnd := time.Now()
			if c.enqueue {
				testenv.EventuallyWithin(b, "every enqueued finding acked", time.Minute, func() bool { return p.Counters().Published >= uint64(b.N) })
			}
			elapsed := time.Since(start)
			lag := time.Since(stormEnd)
			b.StopTimer()
			cn := p.Counters()
			if cn.Published != uint64(b.N) || cn.SpoolOverflow != 0 || (!c.enqueue && cn.Spooled != 0) {
				b.Fatalf("counters %+v after %d publishes: something went to the spool or was lost", cn, b.N)
			}
			b.ReportMetric(float64(cn.Spooled), "spooled")
			if c.enqueue {
				b.ReportMetric(float64(lag.Milliseconds()), "lag_ms")
			}
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(lat[len(lat)*50/100].Nanoseconds())/1e3, "p50_us")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99_us")
		})
	}
}
