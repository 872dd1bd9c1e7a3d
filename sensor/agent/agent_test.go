package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/publish"
	"github.com/driftsensor/driftsensor/sensor/spool"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

type pipeline struct {
	srv    interface{ Shutdown() }
	pub    *publish.Publisher
	store  string // the embedded server's JetStream store and port, for a restart
	port   int
	cg     *testenv.Cgroup
	img    string
	ctl    *control.Client
	nc     *nats.Conn
	states chan event.State
	host   string
}

// spoolOptions are the spool's for start; a test may shrink it.
var spoolOptions = spool.Options{}

// start runs a daemon for host on a real embedded server, scoped to a cgroup
// of the test's own, protecting a directory tree of the test's own.
func start(t testing.TB, host string, seal bool, tweak ...func(*Config)) *pipeline {
	testenv.RequireBPF(t)
	store := t.TempDir()
	srv, url, err := transport.StartEmbedded(store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	p := &pipeline{srv: srv, store: store, port: srv.Addr().(*net.TCPAddr).Port, cg: testenv.NewCgroup(t), img: filepath.Join(t.TempDir(), "img"), states: make(chan event.State, 16), host: host}
	os.MkdirAll(filepath.Join(p.img, "etc"), 0o755)
	pol, err := policy.Parse("p.yaml", []byte("version: 1\nprotect: ["+p.img+"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	root, _ := sysfs.CgroupRoot()
	be, err := tracepoint.Load(backend.Options{Scope: []string{p.cg.Path}, CgroupRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	if err := be.Apply(sensor.RulesFor(pol)); err != nil {
		t.Fatal(err)
	}
	if p.nc, err = nats.Connect(url); err != nil {
		t.Fatal(err)
	}
	if p.ctl, err = control.New(p.nc, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	done := make(chan struct{})
	cfg := Config{Host: host, Policy: pol, Backend: be, Seal: seal, Heartbeat: 100 * time.Millisecond,
		NATS: transport.Options{URL: url, ReconnectWait: 20 * time.Millisecond}, SpoolDir: t.TempDir(), Spool: spoolOptions,
		Log: zerolog.Nop(), OnState: func(s event.State) { p.states <- s }, Ready: func() { close(ready) }}
	for _, f := range tweak {
		f(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.pub = d.Publisher()
	go func() {
		d.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done; d.Close(); p.nc.Close() })
	<-ready
	return p
}

// restart brings the embedded server back on its port and store.
func (p *pipeline) restart(t testing.TB) {
	t.Helper()
	var srv interface{ Shutdown() }
	testenv.Eventually(t, "the embedded server to restart on its port", func() bool {
		s, _, err := transport.StartEmbeddedOn(p.store, p.port)
		if err == nil {
			srv = s
			t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		}
		return err == nil
	})
	p.srv = srv
}

// mutate writes a protected file from inside the scope and returns the pid.
func (p *pipeline) mutate(t testing.TB, name string) int {
	t.Helper()
	return p.cg.Run(t, "sh", "-c", "echo x > "+filepath.Join(p.img, "etc", name))
}

func (p *pipeline) waitState(t testing.TB, want event.State) {
	t.Helper()
	for {
		select {
		case s := <-p.states:
			if s == want {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("state %s never applied", want)
		}
	}
}

// next decodes the next finding on sub, failing the test on none or bad JSON.
func next(t testing.TB, sub *nats.Subscription) event.Event {
	t.Helper()
	m, err := sub.NextMsg(testenv.WaitBound)
	if err != nil {
		t.Fatalf("no finding on %s: %v", sub.Subject, err)
	}
	var ev event.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatalf("finding on %s is not JSON: %v: %s", m.Subject, err, m.Data)
	}
	return ev
}

// checkWrite fails unless ev is the open_write finding of p's host for the
// file name under the image's etc, by pid.
func (p *pipeline) checkWrite(t testing.TB, ev event.Event, name string, pid int) {
	t.Helper()
	want := filepath.Join(p.img, "etc", name)
	if ev.Schema != event.Schema || ev.Host != p.host || ev.Seq == 0 || ev.ID == "" || ev.Kind != event.KindFile ||
		ev.Action != "open_write" || ev.File == nil || ev.File.Path != want || ev.Process == nil || ev.Process.PID != uint32(pid) {
		t.Fatalf("finding %+v (file %+v), want file/open_write %s by pid %d on host %s", ev, ev.File, want, pid, p.host)
	}
}

// TestSealThroughControlPlane: driftctl-style state changes in the KV bucket
// reach the kernel; findings then arrive on drift.v1.<host>.file.
func TestSealThroughControlPlane(t *testing.T) {
	p := start(t, "cp1", false)
	sub, err := p.nc.SubscribeSync(event.Subject(p.host, event.KindFile))
	if err != nil {
		t.Fatal(err)
	}
	p.nc.Flush()
	ctx := context.Background()

	p.mutate(t, "before-seal") // mutable: not drift

	if _, err := p.ctl.SetState(ctx, p.host, event.StateSealed, "test"); err != nil {
		t.Fatal(err)
	}
	p.waitState(t, event.StateSealed)
	sealedPid := p.mutate(t, "after-seal")
	// The first finding on the subject is the one after sealing: one for
	// the mutation before sealing would have come first.
	p.checkWrite(t, next(t, sub), "after-seal", sealedPid)

	if _, err := p.ctl.SetState(ctx, p.host, event.StateMutable, "test"); err != nil {
		t.Fatal(err)
	}
	p.waitState(t, event.StateMutable)
	p.mutate(t, "after-unseal")
	// Marker barrier: seal again and mutate; the ring buffer, the publisher
	// and the subscription keep order, so a finding for the mutation made
	// while unsealed would arrive before the marker's.
	if _, err := p.ctl.SetState(ctx, p.host, event.StateSealed, "test"); err != nil {
		t.Fatal(err)
	}
	p.waitState(t, event.StateSealed)
	markerPid := p.mutate(t, "marker")
	p.checkWrite(t, next(t, sub), "marker", markerPid)
}

// TestSealOnStart: an image that boots sealed stays sealed while the control
// plane has no state for it.
func TestSealOnStart(t *testing.T) {
	p := start(t, "cp2", true)
	sub, err := p.nc.SubscribeSync(event.Subject(p.host, event.KindFile))
	if err != nil {
		t.Fatal(err)
	}
	p.nc.Flush() // the subscription is live at the server before the mutation
	pid := p.mutate(t, "x")
	p.checkWrite(t, next(t, sub), "x", pid)
}

// TestCtlRefusesStateChanges: the ctl channel refuses seal, unseal and
// uncordon, which only the audited control plane may make, and a cordon on a
// host without a gate, each with a reply saying why; the host stays sealed.
func TestCtlRefusesStateChanges(t *testing.T) {
	p := start(t, "cpr", true)
	ctx := context.Background()
	for cmd, want := range map[string]string{
		event.CmdSeal:     "seal: only through the control plane (driftctl seal), which audits it",
		event.CmdUnseal:   "unseal: only through the control plane (driftctl unseal), which audits it",
		event.CmdUncordon: "uncordon: only through the control plane (driftctl uncordon), which audits it",
		event.CmdCordon:   "no cordon gate on this host (start driftsensor with --gate)",
	} {
		r, err := p.ctl.Command(ctx, p.host, cmd)
		if err != nil {
			t.Fatalf("ctl %s: %v", cmd, err)
		}
		if r.OK || !strings.Contains(r.Error, want) {
			t.Errorf("ctl %s: reply %+v, want a refusal saying %q", cmd, r, want)
		}
	}
	if r, err := p.ctl.Command(ctx, p.host, event.CmdPing); err != nil || !r.OK {
		t.Fatalf("ctl ping after the refusals: %+v %v", r, err)
	}
	// Still sealed: a mutation is drift.
	sub, err := p.nc.SubscribeSync(event.Subject(p.host, event.KindFile))
	if err != nil {
		t.Fatal(err)
	}
	p.nc.Flush()
	pid := p.mutate(t, "after-refusals")
	p.checkWrite(t, next(t, sub), "after-refusals", pid)
}

// TestHeartbeat: heartbeats carry backend, policy hash, state and counters.
func TestHeartbeat(t *testing.T) {
	boot, err := os.ReadFile(BootIDFile)
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, "cp3", true)
	sub, _ := p.nc.SubscribeSync(event.HeartbeatSubject(p.host))
	p.nc.Flush()
	p.mutate(t, "y")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m, err := sub.NextMsg(2 * time.Second)
		if err != nil {
			t.Fatal("no heartbeat:", err)
		}
		var hb event.Heartbeat
		if err := json.Unmarshal(m.Data, &hb); err != nil {
			t.Fatal(err)
		}
		if hb.Backend != "tracepoint" || hb.PolicyHash == "" || hb.State != event.StateSealed || hb.Transport == "" {
			t.Fatalf("heartbeat %+v", hb)
		}
		// Liveness names this run: this boot, a random instance, its start.
		if l := hb.Liveness; hb.IntervalMs != 100 || l.BootID != strings.TrimSpace(string(boot)) || len(l.Instance) != 24 ||
			l.Started.IsZero() || l.Started.After(hb.Time) {
			t.Fatalf("heartbeat interval %d ms, liveness %+v; want 100 ms, boot %s", hb.IntervalMs, l, boot)
		}
		if hb.Counters.Findings >= 1 {
			return
		}
	}
	t.Fatal("heartbeats never counted the finding")
}

// TestSpoolOverflowIsAFinding: with the server gone and the spool full,
// findings are lost; as soon as there is room again the daemon says so with
// a finding of its own carrying the exact count, on stdout and in the stream.
func TestSpoolOverflowIsAFinding(t *testing.T) {
	spoolOptions = spool.Options{MaxRecords: 2}
	defer func() { spoolOptions = spool.Options{} }()
	var mu sync.Mutex
	var out strings.Builder
	p := start(t, "cpo", true, func(c *Config) { c.Out = lockedWriter{&mu, &out} })
	p.srv.Shutdown()
	// Mutate only once the publisher knows the server is gone: nothing is
	// then in flight (a finding sent but not acked is spooled past the
	// bounds), so every finding after this goes to the two-record spool.
	testenv.Eventually(t, "the publisher offline", func() bool { return p.pub.Transport() == event.TransportOffline })
	for i := 0; i < 5; i++ {
		p.mutate(t, fmt.Sprint("o", i))
	}
	// Every finding numbered (the boot state record and the five mutations)
	// and settled: published, spooled (two fit) or refused.
	testenv.Eventually(t, "6 findings numbered and settled", func() bool {
		c := p.pub.Counters()
		return c.Seq >= 6 && c.Published+c.Spooled+c.SpoolOverflow >= c.Seq
	})
	c := p.pub.Counters()
	lost := c.SpoolOverflow
	if want := c.Seq - c.Published - 2; lost != want || lost < 3 {
		t.Fatalf("%d findings lost (seq %d, %d published), want exactly %d: at least 3 of 5 into a 2-record spool", lost, c.Seq, c.Published, want)
	}
	p.restart(t)
	var report event.Event
	testenv.Eventually(t, "a spool_overflow finding on stdout", func() bool {
		mu.Lock()
		got := out.String()
		mu.Unlock()
		for _, line := range strings.Split(got, "\n") {
			var ev event.Event
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Kind == event.KindSensor && ev.Action == publish.ActionSpoolOverflow {
				report = ev
				return true
			}
		}
		return false
	})
	if report.Health == nil || report.Health.LostRecords != lost || report.Health.LostTotal != lost || report.Backend != "tracepoint" {
		t.Fatalf("spool_overflow finding %+v, want exactly %d lost", report, lost)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// writes records each Write it is given.
type writes [][]byte

func (w *writes) Write(p []byte) (int, error) {
	*w = append(*w, append([]byte(nil), p...))
	return len(p), nil
}

// TestPrintOneWritePerBatch: a batch's findings reach stdout in one write,
// each on its line; one that could not be encoded is left out, not printed
// empty.
func TestPrintOneWritePerBatch(t *testing.T) {
	var w writes
	d := &Daemon{cfg: Config{Out: &w, Log: zerolog.Nop()}}
	evs := []*event.Event{{Seq: 1}, {Seq: 2}, {Seq: 3}}
	d.print(evs, [][]byte{[]byte(`{"seq":1}`), nil, []byte(`{"seq":3}`)})
	d.print(evs[:1], [][]byte{[]byte(`{"seq":4}`)})
	want := []string{"{\"seq\":1}\n{\"seq\":3}\n", "{\"seq\":4}\n"}
	if len(w) != len(want) || string(w[0]) != want[0] || string(w[1]) != want[1] {
		t.Fatalf("writes %q, want %q", w, want)
	}
}

// TestMetrics: the Prometheus endpoint counts the kernel's findings and the
// transport's publishing.
func TestMetrics(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := start(t, "cpm", true, func(c *Config) { c.Metrics = addr })
	sub, _ := p.nc.SubscribeSync(event.Subject(p.host, event.KindFile))
	p.nc.Flush()
	p.mutate(t, "m")
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatal("no finding:", err)
	}
	// The subscriber can see the finding before the publisher has counted
	// the server's ack: read until the counters agree, or give up.
	// Published: the finding and the record of the state the sensor booted with.
	want := []string{`driftsensor_findings_total{kind="file"} 1`, "driftsensor_lost_records_total 0", "driftsensor_published_total 2",
		`driftsensor_host_state{state="sealed"} 1`, `driftsensor_backend{backend="tracepoint"} 1`, `driftsensor_gate{state="none"} 1`,
		`driftsensor_transport{state="jetstream"} 1`, `driftsensor_build_info{commit="`, "go_goroutines ", "process_resident_memory_bytes "}
	var body []byte
	if !testenv.Within(testenv.WaitBound, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("metrics lack one of %q:\n%s", want, body)
	}
}

// BenchmarkSealApply: control-plane state change -> kernel map updated.
func BenchmarkSealApply(b *testing.B) {
	p := start(b, "cpb", false)
	ctx := context.Background()
	var lat []time.Duration
	for i := 0; i < 50; i++ {
		st := event.StateSealed
		if i%2 == 1 {
			st = event.StateMutable
		}
		t0 := time.Now()
		if _, err := p.ctl.SetState(ctx, p.host, st, "bench"); err != nil {
			b.Fatal(err)
		}
		p.waitState(b, st)
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}
