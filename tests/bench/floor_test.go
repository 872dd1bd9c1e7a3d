package bench

import (
	"context"
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// BenchmarkNATSFloor is the floor under BenchmarkPipeline's lone finding:
// the same hops with no kernel, no sensor and no encoding. A message of a
// finding's size is published on an in-process connection to the embedded
// server (as the daemon's publisher does) and read by a subscriber over
// loopback TCP (as BenchmarkPipeline's, and a SOC's, is); latency is from
// just before the publish to the subscriber's callback, one message at a
// time with a pause between, so every thread is parked again when the next
// one goes, as for a lone finding. *core*: a subject no stream keeps;
// *stream*: a subject of the findings stream, published with a reply subject
// as the publisher does (the server stores it and acks it).
//
//	go test -run '^$' -bench NATSFloor -benchtime 1x ./tests/bench/
func BenchmarkNATSFloor(b *testing.B) {
	url, pub := embeddedInProcess(b)
	findingsStream(b, pub)
	sub, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	acks, err := pub.SubscribeSync(pub.NewInbox() + ".>")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, subj string
		reply      bool
	}{{"core", "floor.core", false}, {"stream", event.Subject("floor", event.KindFile), true}} {
		b.Run(c.name, func(b *testing.B) {
			got := make(chan int64, 1)
			s, err := sub.Subscribe(c.subj, func(m *nats.Msg) {
				got <- int64(event.KTimeNow()) - int64(binary.LittleEndian.Uint64(m.Data))
			})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Unsubscribe()
			if err := sub.Flush(); err != nil {
				b.Fatal(err)
			}
			const n = 300
			data := make([]byte, 700) // about a finding's JSON
			m := &nats.Msg{Subject: c.subj, Data: data, Header: nats.Header{}}
			var lat []float64
			for i := range n {
				m.Header.Set(jetstream.MsgIDHeader, "floor-"+strconv.Itoa(i))
				if c.reply {
					m.Reply = acks.Subject[:len(acks.Subject)-1] + strconv.Itoa(i)
				}
				binary.LittleEndian.PutUint64(data, event.KTimeNow())
				if err := pub.PublishMsg(m); err != nil {
					b.Fatal(err)
				}
				select {
				case d := <-got:
					lat = append(lat, float64(d)/1000)
				case <-time.After(testenv.WaitBound):
					b.Fatalf("message %d of %d never reached the subscriber", i+1, n)
				}
				if c.reply {
					if _, err := acks.NextMsg(testenv.WaitBound); err != nil {
						b.Fatalf("message %d of %d: no ack from the stream: %v", i+1, n, err)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			b.ReportMetric(percentile(lat, 0.5), "p50-us")
			b.ReportMetric(percentile(lat, 0.99), "p99-us")
		})
	}
}

// BenchmarkIdleFloor is the floor under the idle target (BENCHMARKS.md): the
// CPU an idle process spends on the embedded server alone, with no sensor.
// *server*: the server with JetStream enabled and nothing stored; *stream*:
// the same with the findings stream made over an in-process connection, as
// the daemon's first connection does (a JetStream store starts nats-server's
// access-time ticker, ten wakeups a second, in any process that embeds it).
// Each condition idles DRIFT_BENCH_IDLE_S seconds (default 30) after a 5 s
// settle; reported are the process's user + system time as a share of one
// core and its context switches per second.
//
//	go test -run '^$' -bench IdleFloor -benchtime 1x ./tests/bench/
func BenchmarkIdleFloor(b *testing.B) {
	window := time.Duration(testenv.EnvCount(b, "DRIFT_BENCH_IDLE_S", 30)) * time.Second
	for _, stream := range []bool{false, true} {
		name := map[bool]string{false: "server", true: "stream"}[stream]
		b.Run(name, func(b *testing.B) {
			_, nc := embeddedInProcess(b)
			if stream {
				js := findingsStream(b, nc)
				if ai, err := js.AccountInfo(context.Background()); err != nil || ai.Streams != 1 {
					b.Fatalf("the server's JetStream account: %+v, %v; want the findings stream alone", ai, err)
				}
			}
			time.Sleep(5 * time.Second) // the start's work done
			var r0, r1 unix.Rusage
			unix.Getrusage(unix.RUSAGE_SELF, &r0)
			time.Sleep(window)
			unix.Getrusage(unix.RUSAGE_SELF, &r1)
			cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
			cs := r1.Nvcsw + r1.Nivcsw - r0.Nvcsw - r0.Nivcsw
			b.ReportMetric(cpu.Seconds()/window.Seconds()*100, "%-of-a-core")
			b.ReportMetric(float64(cs)/window.Seconds(), "ctxsw/s")
		})
	}
}

// embeddedInProcess starts an embedded server for b and connects to it in
// process, as the daemon does; both end with b.
func embeddedInProcess(b *testing.B) (string, *nats.Conn) {
	srv, url, err := transport.StartEmbedded(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(url, nats.InProcessServer(srv))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return url, nc
}

// findingsStream makes the findings stream over nc, as the daemon's first
// connection does.
func findingsStream(b *testing.B, nc *nats.Conn) jetstream.JetStream {
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := transport.EnsureStream(context.Background(), js, zerolog.Nop(), true); err != nil {
		b.Fatal(err)
	}
	return js
}
