package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/agent"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// BenchmarkPipeline measures the whole chain on loopback in the default
// mode (default ring buffer, JetStream on an embedded server, the daemon as
// agent.New assembles it): a mutation in the kernel -> ring buffer -> sensor
// -> spool and NATS -> a subscriber's callback. Latency is the subscriber's
// CLOCK_MONOTONIC minus the record's kernel time. Lone findings give the
// latency a single drift sees; a storm gives the sustained rate and how long
// after the storm's end its last finding arrives, with every finding either
// received or counted (kernel losses, spool overflow). The process's CPU
// time and peak RSS cover the sensor, the embedded server and the
// subscriber together: an upper bound for the sensor's own.
func BenchmarkPipeline(b *testing.B) {
	testenv.RequireBPF(b)
	cg := testenv.NewCgroup(b)
	srv, url, err := transport.StartEmbedded(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	img, err := os.MkdirTemp("/opt", "driftbench")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(img)
	if err := os.WriteFile(filepath.Join(img, "target"), nil, 0o600); err != nil {
		b.Fatal(err)
	}
	pol, err := policy.Parse("p.yaml", []byte("version: 1\nprotect: ["+img+"]\n"))
	if err != nil {
		b.Fatal(err)
	}
	root, _ := sysfs.CgroupRoot()
	be, err := tracepoint.Load(backend.Options{Scope: []string{cg.Path}, CgroupRoot: root})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	if err := be.Apply(sensor.RulesFor(pol)); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	// As the daemon connects to its embedded server: in process, or, with
	// DRIFT_BENCH_TCP=1, over loopback TCP like a fleet's server.
	conn := transport.Options{URL: url, InProcess: srv}
	if os.Getenv("DRIFT_BENCH_TCP") != "" {
		conn.InProcess = nil
	}
	d, err := agent.New(ctx, agent.Config{Host: "bench", Policy: pol, Backend: be, Seal: true,
		NATS: conn, SpoolDir: b.TempDir(), Log: zerolog.Nop(), Ready: func() { close(ready) }})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	pub := d.Publisher()

	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	var lat []float64
	var got, lost atomic.Uint64
	var lastAt atomic.Int64 // CLOCK_MONOTONIC of the last finding received
	sub, err := nc.Subscribe("drift.v1.bench.>", func(m *nats.Msg) {
		now := int64(event.KTimeNow())
		if bytes.Contains(m.Data, []byte(`"kind":"sensor"`)) {
			// Kernel losses only: the spool's are counted from the publisher.
			var ev event.Event
			if json.Unmarshal(m.Data, &ev) == nil && ev.Health != nil && ev.Action == "lost_records" {
				lost.Add(ev.Health.LostRecords)
			}
			return
		}
		// The subscriber reads only the two fields it needs: decoding whole
		// findings with encoding/json cost more CPU than the sensor on these
		// two shared cores, and a real subscriber runs elsewhere.
		ktime, ok := ktimeOf(m.Data)
		if !ok || !bytes.Contains(m.Data, []byte(`"action":"chmod"`)) {
			return
		}
		got.Add(1)
		lastAt.Store(now)
		mu.Lock()
		lat = append(lat, float64(now-int64(ktime))/1000)
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)

	done := make(chan struct{})
	go func() {
		d.Run(ctx)
		close(done)
	}()
	<-ready

	// Lone findings: one chmod, wait for it, again.
	const lone = 300
	for i := 0; i < lone; i++ {
		want := got.Load() + 1
		runWorker(b, cg, "chmod", 1, img)
		for deadline := time.Now().Add(testenv.WaitBound); got.Load() < want; time.Sleep(50 * time.Microsecond) {
			if time.Now().After(deadline) {
				b.Fatalf("lone finding %d of %d never arrived (%d received, %d counted lost)", i+1, lone, got.Load(), lost.Load())
			}
		}
	}
	if g, l := got.Load(), lost.Load(); g != lone || l != 0 {
		b.Fatalf("lone phase: %d findings received, %d lost; want exactly %d and none lost", g, l, lone)
	}
	mu.Lock()
	if len(lat) > 0 {
		b.ReportMetric(percentile(lat, 0.5), "lone-p50-us")
		b.ReportMetric(percentile(lat, 0.99), "lone-p99-us")
	}
	lat = lat[:0]
	mu.Unlock()

	// Burst: n chmods as fast as one process can make them.
	n := 200000
	if s := os.Getenv("DRIFT_BENCH_FINDINGS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	base := got.Load()
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	start := time.Now()
	runWorker(b, cg, "chmod", n, img)
	stormEnd := int64(event.KTimeNow())
	deadline := time.Now().Add(60 * time.Second)
	for got.Load()-base+lost.Load()+pub.Counters().SpoolOverflow < uint64(n) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Duration(lastAt.Load() - (int64(event.KTimeNow()) - int64(time.Since(start))))
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	recv := got.Load() - base
	c := pub.Counters()
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(recv)/elapsed.Seconds(), "findings/s")
	b.ReportMetric(float64(lastAt.Load()-stormEnd)/1e6, "tail-ms")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "process-cores")
	b.ReportMetric(float64(ru1.Maxrss)/1024, "process-maxrss-MB")
	b.ReportMetric(float64(recv), "received")
	b.ReportMetric(float64(lost.Load()), "kernel-lost")
	b.ReportMetric(float64(c.SpoolOverflow), "spool-lost")
	mu.Lock()
	b.ReportMetric(percentile(lat, 0.5), "burst-p50-us")
	b.ReportMetric(percentile(lat, 0.99), "burst-p99-us")
	mu.Unlock()
	if missing := int64(n) - int64(recv+lost.Load()+c.SpoolOverflow); missing != 0 {
		b.Errorf("%d findings neither received nor counted lost", missing)
	}
	cancel()
	<-done
}

// ktimeOf reads a finding's ktime_ns without decoding the rest of it.
func ktimeOf(data []byte) (uint64, bool) {
	const key = `"ktime_ns":`
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, false
	}
	v, n := uint64(0), 0
	for _, c := range data[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		v, n = v*10+uint64(c-'0'), n+1
	}
	return v, n > 0
}
