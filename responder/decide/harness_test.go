package decide

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/publish"
	"github.com/driftsensor/driftsensor/sensor/spool"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

func TestMain(m *testing.M) {
	testbed.ServeEchoIfChild()
	os.Exit(testenv.Main(m))
}

// natsServer starts an embedded server with JetStream on a random loopback port.
func natsServer(t testing.TB) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startResponder runs a replica until cleanup.
func startResponder(t testing.TB, url string, cfg Config) *Responder {
	t.Helper()
	return startResponderOn(t, connect(t, url), cfg)
}

// sensor publishes as one host would.
type sensor struct {
	t    testing.TB
	nc   *nats.Conn
	host string
	seq  uint64
}

func newSensor(t testing.TB, nc *nats.Conn, host string) *sensor {
	return &sensor{t: t, nc: nc, host: host}
}

func (s *sensor) finding(kind event.Kind, path string) string {
	s.seq++
	ev := event.Event{
		Schema: event.Schema, ID: fmt.Sprintf("%s-%d", s.host, s.seq), Host: s.host, Seq: s.seq,
		Time: time.Now(), Kind: kind, Action: "write", Backend: "tracepoint",
	}
	switch kind {
	case event.KindFile:
		ev.File = &event.File{Path: path}
	case event.KindExec:
		ev.Exec = &event.Exec{Path: path}
	case event.KindSensor:
		ev.Health = &event.Health{LostRecords: 1, Detail: "ring buffer full"}
	}
	s.publish(event.Subject(s.host, kind), ev)
	return ev.ID
}

func (s *sensor) publish(subject string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.nc.Publish(subject, data); err != nil {
		s.t.Fatal(err)
	}
	if err := s.nc.Flush(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *sensor) heartbeat(c event.Counters) {
	s.publish(event.HeartbeatSubject(s.host), event.Heartbeat{
		Schema: event.HeartbeatSchema, Host: s.host, Seq: s.seq, Time: time.Now(), Backend: "tracepoint", Counters: c,
	})
}

// ctlCommand is what the sensor receives (sensor/event).
type ctlCommand = event.CtlCommand

// ctlAgent answers cordon commands on every host's ctl subject, as the
// sensor would, and records them.
type ctlAgent struct {
	mu   sync.Mutex
	cmds map[string][]ctlCommand // host -> commands
	on   func(host string, c ctlCommand) error
}

func newCtlAgent(t testing.TB, nc *nats.Conn, on func(string, ctlCommand) error) *ctlAgent {
	a := &ctlAgent{cmds: map[string][]ctlCommand{}, on: on}
	sub, err := nc.Subscribe(event.SubjectRoot+".*."+event.CtlTok, func(m *nats.Msg) {
		host, _, _ := subjectHost(m.Subject)
		c, err := event.DecodeCtlCommand(m.Data)
		rep := event.CtlReply{Schema: event.CtlSchema, ID: c.ID, OK: true}
		if err != nil {
			rep = event.CtlReply{Schema: event.CtlSchema, Error: fmt.Sprintf("bad command %q: %v", m.Data, err)}
		} else if a.on != nil {
			if err := a.on(host, c); err != nil {
				rep = event.CtlReply{Schema: event.CtlSchema, ID: c.ID, Error: err.Error()}
			}
		}
		a.mu.Lock()
		a.cmds[host] = append(a.cmds[host], c)
		a.mu.Unlock()
		_ = m.Respond(rep.Encode())
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *ctlAgent) count(host string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.cmds[host])
}

func (a *ctlAgent) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.cmds {
		n += len(c)
	}
	return n
}

// recorder is a Cordoner and Destroyer that counts calls per host.
type recorder struct {
	mu    sync.Mutex
	calls map[string][]actuator.Target
}

func newRecorder() *recorder { return &recorder{calls: map[string][]actuator.Target{}} }

func (r *recorder) Name() string { return "recorder" }

func (r *recorder) Cordon(_ context.Context, t actuator.Target) error  { return r.add(t) }
func (r *recorder) Destroy(_ context.Context, t actuator.Target) error { return r.add(t) }

func (r *recorder) add(t actuator.Target) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[t.Host] = append(r.calls[t.Host], t)
	return nil
}

func (r *recorder) hosts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for h, c := range r.calls {
		out[h] = len(c)
	}
	return out
}

// actions lists the actions taken on host, in order.
func (r *recorder) actions(host string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, t := range r.calls[host] {
		out = append(out, t.Action)
	}
	return out
}

func (r *recorder) total() int {
	n := 0
	for _, c := range r.hosts() {
		n += c
	}
	return n
}

// auditLog collects audit records as they are published.
type auditLog struct {
	mu   sync.Mutex
	recs []Record
}

func watchAudit(t testing.TB, nc *nats.Conn) *auditLog {
	l := &auditLog{}
	sub, err := nc.Subscribe(AuditPrefix+".>", func(m *nats.Msg) {
		var rec Record
		if err := json.Unmarshal(m.Data, &rec); err != nil {
			t.Errorf("audit record %s: %v", m.Data, err)
			return
		}
		l.mu.Lock()
		l.recs = append(l.recs, rec)
		l.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *auditLog) find(f func(Record) bool) []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Record
	for _, r := range l.recs {
		if f(r) {
			out = append(out, r)
		}
	}
	return out
}

func (l *auditLog) dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range l.recs {
		fmt.Fprintf(&b, "  %s %s %s %s %s %q err=%q\n", r.Replica, r.Host, r.Incident, r.Stage, r.Action, r.Reason, r.Error)
	}
	return b.String()
}

// eventually waits for a condition with the suite's one bound (testenv.Eventually).
var eventually = testenv.Eventually

func stage(host, st string) func(Record) bool {
	return func(r Record) bool { return r.Host == host && r.Stage == st }
}

func netipPrefix(h *testbed.Host) netip.Prefix { return netip.PrefixFrom(h.Addr, 32) }

// testServer is an embedded server that a test stops and starts again on
// the same port with the same JetStream store, as an operator restarts one.
type testServer struct {
	t    testing.TB
	port int
	dir  string
	s    *server.Server
	url  string
}

func startTestServer(t testing.TB) *testServer {
	t.Helper()
	ts := &testServer{t: t, port: -1, dir: t.TempDir()}
	ts.start()
	ts.port = ts.s.Addr().(*net.TCPAddr).Port
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start() {
	ts.t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: ts.port, JetStream: true, StoreDir: ts.dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		ts.t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		ts.t.Fatal("nats server not ready")
	}
	ts.s, ts.url = s, s.ClientURL()
}

func (ts *testServer) stop() {
	if ts.s != nil {
		ts.s.Shutdown()
		ts.s.WaitForShutdown()
	}
}

// fastConnect reconnects quickly, as sensors do (250ms by default), so a
// restart of the server is over for them within a test's short intervals.
func fastConnect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startResponderOn runs a replica on its own connection nc until cleanup.
func startResponderOn(t testing.TB, nc *nats.Conn, cfg Config) *Responder {
	t.Helper()
	if testing.Verbose() {
		cfg.Log = zerolog.New(zerolog.NewTestWriter(t))
	}
	r, err := New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// realSensor is the sensor's own publisher (transport), spool included.
func realSensor(t testing.TB, url, host string) *publish.Publisher {
	return realSensorWith(t, url, host, transport.Options{})
}

// realSensorWith is realSensor with its ctl handlers (o.Answer) set.
func realSensorWith(t testing.TB, url, host string, o transport.Options) *publish.Publisher {
	t.Helper()
	sp, _, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o.URL, o.ReconnectWait = url, 10*time.Millisecond
	p, err := publish.New(context.Background(), o, host, sp, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(); _ = sp.Close() })
	return p
}

func publishFinding(t testing.TB, p *publish.Publisher, kind event.Kind, path string) *event.Event {
	t.Helper()
	ev := &event.Event{Kind: kind, Action: "write", Backend: "tracepoint"}
	switch kind {
	case event.KindFile:
		ev.File = &event.File{Path: path}
	case event.KindExec:
		ev.Action = "exec_tainted"
		ev.Exec = &event.Exec{Path: path, Reasons: []string{"tainted"}}
	}
	if err := p.Publish(ev); err != nil {
		t.Fatalf("publish: %v", err)
	}
	return ev
}

// beater sends a host's heartbeats every interval on its own connection,
// carrying the interval and a liveness proof, until stopped; errors (the
// server is down) are ignored, as a sensor ignores them.
type beater struct {
	host     string
	nc       *nats.Conn
	iv       time.Duration
	instance string
	counter  atomic.Uint64
	beats    atomic.Uint64
	stopCh   chan struct{}
	done     chan struct{}
}

func startBeater(t testing.TB, url, host string, iv time.Duration) *beater {
	b := &beater{host: host, nc: fastConnect(t, url), iv: iv, instance: host + "-1", stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		tk := time.NewTicker(iv)
		defer tk.Stop()
		for {
			b.beat()
			select {
			case <-b.stopCh:
				return
			case <-tk.C:
			}
		}
	}()
	t.Cleanup(b.stop)
	return b
}

func (b *beater) beat() {
	hb := event.Heartbeat{
		Schema: event.HeartbeatSchema, Host: b.host, Time: time.Now(), Backend: "tracepoint",
		IntervalMs: b.iv.Milliseconds(), Transport: event.TransportJetStream,
		Liveness: event.Liveness{BootID: "boot-1", Instance: b.instance, Started: time.Unix(1700000000, 0), KernelCounter: b.counter.Add(1)},
	}
	data, _ := json.Marshal(hb)
	if b.nc.Publish(event.HeartbeatSubject(b.host), data) == nil {
		b.beats.Add(1)
	}
}

func (b *beater) stop() {
	select {
	case <-b.stopCh:
	default:
		close(b.stopCh)
	}
	<-b.done
}

// streamRecords reads every record the audit stream kept (the stream drops
// a record whose Nats-Msg-Id it already has).
func streamRecords(t testing.TB, nc *nats.Conn) []Record {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, event.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var rec Record
		if err := json.Unmarshal(m.Data, &rec); err != nil {
			t.Fatalf("audit record %d: %v", seq, err)
		}
		out = append(out, rec)
	}
	return out
}
