package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/spool"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// guard bounds every wait: a failure guard, never a performance assertion.
const guard = 60 * time.Second

func testLog() zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Logger()
	}
	return zerolog.New(io.Discard)
}

type testServer struct {
	srv  *server.Server
	url  string
	dir  string
	port int
	js   bool
}

func startTestServer(t testing.TB, js bool) *testServer {
	t.Helper()
	ts := &testServer{dir: t.TempDir(), js: js}
	var err error
	ts.srv, ts.url, err = transport.StartLoopback(ts.dir, server.RANDOM_PORT, js)
	if err != nil {
		t.Fatal(err)
	}
	ts.port = ts.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) stop() {
	if ts.srv != nil {
		ts.srv.Shutdown()
		ts.srv.WaitForShutdown()
		ts.srv = nil
	}
}

// restart brings the server back on the same port with the same store.
func (ts *testServer) restart(t testing.TB) {
	t.Helper()
	ts.stop()
	var err error
	deadline := time.Now().Add(guard)
	for {
		ts.srv, _, err = transport.StartLoopback(ts.dir, ts.port, ts.js)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("restart on port %d: %v", ts.port, err)
	}
}

func openSpool(t testing.TB, dir string, opts spool.Options) *spool.Spool {
	t.Helper()
	sp, damage, err := spool.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range damage {
		t.Logf("spool damage: %v", d)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

func newPublisher(t testing.TB, url, host, spoolDir string, opts transport.Options) *Publisher {
	t.Helper()
	opts.URL = url
	if opts.AckTimeout == 0 {
		opts.AckTimeout = time.Second
	}
	if opts.ReconnectWait == 0 {
		opts.ReconnectWait = 20 * time.Millisecond
	}
	sp := openSpool(t, spoolDir, spool.Options{})
	p, err := New(context.Background(), opts, host, sp, testLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
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

// eventually waits for a condition with the suite's one bound (testenv.Eventually).
var eventually = testenv.Eventually

func finding(i int) *event.Event {
	k := kinds[i%len(kinds)]
	return &event.Event{Kind: k, Action: fmt.Sprintf("test-%d", i), Backend: "tracepoint",
		File: &event.File{Path: fmt.Sprintf("/etc/drift-%d", i)}}
}

// streamFindings reads every finding host has in the stream, in stream order.
func streamFindings(t testing.TB, nc *nats.Conn, host string) []event.Event {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	s, err := js.Stream(ctx, event.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream message %d: %v", seq, err)
		}
		var ev event.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("stream message %d on %s: %v", seq, m.Subject, err)
		}
		if ev.Host != host || m.Subject != event.Subject(host, ev.Kind) {
			continue
		}
		if m.Header.Get(jetstream.MsgIDHeader) != ev.ID {
			t.Fatalf("stream message %d: Nats-Msg-Id %q, event id %q", seq, m.Header.Get(jetstream.MsgIDHeader), ev.ID)
		}
		out = append(out, ev)
	}
	return out
}

// checkExactlyOnceInOrder checks that every accepted id is in got, that no id
// is there twice and that seq only grows.
func checkExactlyOnceInOrder(t *testing.T, got []event.Event, accepted []string) {
	t.Helper()
	if late := checkExactlyOnce(t, got, accepted, 0); late != 0 {
		t.Fatalf("%d findings out of order", late)
	}
}

// checkExactlyOnce checks that every accepted id is in got and that no id is
// there twice. A finding may come after findings with a higher seq only
// when they were at most overtake later: those sent in the same window of
// unacked findings, stored while it was lost with a broker node and sent
// again. It returns how many came late.
func checkExactlyOnce(t *testing.T, got []event.Event, accepted []string, overtake uint64) (late int) {
	t.Helper()
	seen := map[string]int{}
	var top uint64
	for i, ev := range got {
		if j, dup := seen[ev.ID]; dup {
			t.Fatalf("finding %s (seq %d) in the stream twice, at %d and %d", ev.ID, ev.Seq, j, i)
		}
		seen[ev.ID] = i
		if ev.Seq <= top {
			if ev.Seq+overtake < top {
				t.Fatalf("out of order at %d: seq %d after %d", i, ev.Seq, top)
			}
			late++
		}
		top = max(top, ev.Seq)
	}
	for _, id := range accepted {
		if _, ok := seen[id]; !ok {
			t.Fatalf("finding %s was accepted (Publish returned nil) but is not in the stream", id)
		}
	}
	return late
}

func TestPublishInOrder(t *testing.T) {
	ts := startTestServer(t, true)
	p := newPublisher(t, ts.url, "h1", t.TempDir(), transport.Options{})
	if p.Transport() != event.TransportJetStream {
		t.Fatalf("Transport = %s, want %s", p.Transport(), event.TransportJetStream)
	}
	nc := connect(t, ts.url)
	msgs := make(chan *nats.Msg, 1000)
	sub, err := nc.ChanSubscribe("drift.v1.h1.>", msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()

	const n = 500
	for i := range n {
		ev := finding(i)
		if err := p.Publish(ev); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
		if ev.Seq != uint64(i+1) || ev.ID == "" || ev.Host != "h1" || ev.Schema != event.Schema || ev.Time.IsZero() {
			t.Fatalf("Publish %d set seq %d id %q host %q schema %q time %v", i, ev.Seq, ev.ID, ev.Host, ev.Schema, ev.Time)
		}
	}
	ids := map[string]bool{}
	for i := range n {
		var m *nats.Msg
		select {
		case m = <-msgs:
		case <-time.After(guard):
			t.Fatalf("received %d of %d", i, n)
		}
		var ev event.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Seq != uint64(i+1) || ev.Action != fmt.Sprintf("test-%d", i) || m.Subject != event.Subject("h1", ev.Kind) {
			t.Fatalf("message %d: seq %d action %s on %s", i, ev.Seq, ev.Action, m.Subject)
		}
		if ids[ev.ID] {
			t.Fatalf("id %s used twice", ev.ID)
		}
		ids[ev.ID] = true
	}
	if got := streamFindings(t, nc, "h1"); len(got) != n {
		t.Fatalf("stream holds %d findings, want %d", len(got), n)
	}
	c := p.Counters()
	if c.Published != n || c.Spooled != 0 || c.PublishErrors != 0 || c.SpoolOverflow != 0 {
		t.Fatalf("counters %+v", c)
	}
	if h := p.Metrics().PublishLatency; h.Count() != n {
		t.Fatalf("latency histogram counted %d publishes, want %d", h.Count(), n)
	}
}

func TestSequenceContinuesAfterRestart(t *testing.T) {
	ts := startTestServer(t, true)
	dir := t.TempDir()
	sp := openSpool(t, dir, spool.Options{})
	p, err := New(context.Background(), transport.Options{URL: ts.url}, "h1", sp, testLog())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		p.Publish(finding(i))
	}
	p.Close()
	sp.Close()

	p = newPublisher(t, ts.url, "h1", dir, transport.Options{})
	ev := finding(5)
	if err := p.Publish(ev); err != nil {
		t.Fatal(err)
	}
	if ev.Seq != 6 {
		t.Fatalf("first seq after restart = %d, want 6", ev.Seq)
	}
	// A lost sequence file (a fresh spool directory) is recovered from the stream.
	p.Close()
	p = newPublisher(t, ts.url, "h1", t.TempDir(), transport.Options{})
	ev = finding(6)
	if err := p.Publish(ev); err != nil {
		t.Fatal(err)
	}
	if ev.Seq != 7 {
		t.Fatalf("first seq with a fresh spool dir = %d, want 7 (from the stream)", ev.Seq)
	}
}

func TestServerRestartMidStream(t *testing.T) {
	for _, batch := range []int{1, 64} {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) { testServerRestart(t, batch, false) })
	}
	// The daemon's path: the memory queue and async publish.
	t.Run("enqueue64", func(t *testing.T) { testServerRestart(t, 64, true) })
}

// drained says whether nothing waits in the memory queue or the spool and
// findings go straight out.
func drained(p *Publisher) bool {
	c := p.Counters()
	return c.SpoolDepth == 0 && c.Queued == 0 && p.Transport() == event.TransportJetStream
}

func testServerRestart(t *testing.T, batch int, enqueue bool) {
	ts := startTestServer(t, true)
	p := newPublisher(t, ts.url, "h1", t.TempDir(), transport.Options{})
	nc := connect(t, ts.url) // reconnects on its own after the restart

	var accepted []string
	publish := func(n int) {
		t.Helper()
		for n > 0 {
			k := min(n, batch)
			evs := make([]*event.Event, k)
			for i := range evs {
				evs[i] = finding(len(accepted) + i)
			}
			var err error
			switch {
			case enqueue:
				_, err = p.Enqueue(evs, nil)
			case batch == 1:
				err = p.Publish(evs[0])
			default:
				_, err = p.PublishBatch(evs)
			}
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			for _, ev := range evs {
				accepted = append(accepted, ev.ID)
			}
			n -= k
		}
	}
	publish(200)
	ts.stop()
	publish(300) // the server is down: these go to the spool
	// Enqueue does not wait on the server: until the client sees the
	// connection close, findings wait in the memory queue, and the failure
	// moves them to the spool.
	eventually(t, "findings spooled while the server is down", func() bool {
		c := p.Counters()
		return c.Spooled > 0 && c.SpoolDepth > 0
	})
	ts.restart(t)
	publish(300) // queue behind the spool until it drains, then go directly
	eventually(t, "spool drained", func() bool { return drained(p) })
	publish(100)
	eventually(t, "test client reconnected", nc.IsConnected)
	eventually(t, "queue drained", func() bool { return drained(p) })

	got := streamFindings(t, nc, "h1")
	checkExactlyOnceInOrder(t, got, accepted)
	if len(got) != len(accepted) {
		t.Fatalf("stream holds %d findings, %d were accepted", len(got), len(accepted))
	}
	for i, ev := range got {
		if ev.Seq != uint64(i+1) {
			t.Fatalf("gap: finding %d has seq %d", i, ev.Seq)
		}
	}
	c := p.Counters()
	t.Logf("counters: %+v", c)
	if c.Published != uint64(len(accepted)) || c.SpoolOverflow != 0 {
		t.Fatalf("counters %+v, want published %d, no overflow", c, len(accepted))
	}
}

func TestCoreNATSFallback(t *testing.T) {
	ts := startTestServer(t, false)
	p := newPublisher(t, ts.url, "h2", t.TempDir(), transport.Options{})
	if p.Transport() != event.TransportCore {
		t.Fatalf("Transport = %s, want %s on a server without JetStream", p.Transport(), event.TransportCore)
	}
	nc := connect(t, ts.url)
	msgs := make(chan *nats.Msg, 100)
	nc.ChanSubscribe("drift.v1.h2.>", msgs)
	nc.Flush()
	p.StartHeartbeat(10*time.Millisecond, nil)
	for i := range 20 {
		if err := p.Publish(finding(i)); err != nil {
			t.Fatal(err)
		}
	}
	var findings int
	var hb event.Heartbeat
	for findings < 20 || hb.Transport == "" {
		select {
		case m := <-msgs:
			if m.Subject == event.HeartbeatSubject("h2") {
				json.Unmarshal(m.Data, &hb)
				continue
			}
			var ev event.Event
			json.Unmarshal(m.Data, &ev)
			if ev.Seq != uint64(findings+1) {
				t.Fatalf("finding %d has seq %d", findings, ev.Seq)
			}
			findings++
		case <-time.After(guard):
			t.Fatalf("got %d findings, heartbeat %+v", findings, hb)
		}
	}
	if hb.Transport != event.TransportCore {
		t.Fatalf("heartbeat transport %q, want %q", hb.Transport, event.TransportCore)
	}
	// No control plane to watch: the watch waits for one and says why.
	p.WatchState(context.Background(), func(event.State) {})
	eventually(t, "the state watch says there is no bucket", func() bool {
		w := p.StateWatch()
		return strings.Contains(w, event.StateBucket) && w != WatchOK
	})
}

func TestSpoolOverflowCounted(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close() // nothing listens there now: the server is "down"

	sp := openSpool(t, t.TempDir(), spool.Options{MaxRecords: 3})
	p, err := New(context.Background(), transport.Options{URL: url, ReconnectWait: 10 * time.Millisecond}, "h3", sp, testLog())
	if err != nil {
		t.Fatalf("New with the server down: %v (it must start and spool)", err)
	}
	defer p.Close()
	for i := range 3 {
		if err := p.Publish(finding(i)); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	ev := finding(3)
	if err := p.Publish(ev); err == nil {
		t.Fatal("Publish into a full spool returned nil; the finding is lost and must be reported")
	}
	c := p.Counters()
	if c.Spooled != 3 || c.SpoolOverflow != 1 || c.SpoolDepth != 3 || c.Transport != event.TransportOffline {
		t.Fatalf("counters %+v, want 3 spooled, 1 overflow, offline", c)
	}
	if ev.Seq != 4 {
		t.Fatalf("the lost finding had seq %d; it must use up 4 so the gap shows", ev.Seq)
	}
}

func TestHeartbeatCarriesCounters(t *testing.T) {
	ts := startTestServer(t, true)
	p := newPublisher(t, ts.url, "h4", t.TempDir(), transport.Options{})
	nc := connect(t, ts.url)
	sub, err := nc.SubscribeSync(event.HeartbeatSubject("h4"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	for i := range 3 {
		p.Publish(finding(i))
	}
	p.StartHeartbeat(10*time.Millisecond, func() event.Heartbeat {
		return event.Heartbeat{Backend: "tracepoint", PolicyHash: "sha256:abc", Version: "test", State: event.StateSealed,
			Counters: event.Counters{LostRecords: 7, RingFill: 0.25}}
	})
	m, err := sub.NextMsg(guard)
	if err != nil {
		t.Fatal(err)
	}
	var hb event.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		t.Fatal(err)
	}
	want := event.Counters{Findings: 3, LostRecords: 7, RingFill: 0.25}
	if hb.Schema != event.HeartbeatSchema || hb.Host != "h4" || hb.Seq != 3 || hb.Backend != "tracepoint" ||
		hb.State != event.StateSealed || hb.Counters != want || hb.Transport != event.TransportJetStream || hb.UptimeSec <= 0 {
		t.Fatalf("heartbeat %s", m.Data)
	}
	// Readers that know only event.Heartbeat still decode it.
	var plain event.Heartbeat
	if err := json.Unmarshal(m.Data, &plain); err != nil || plain.Counters != want {
		t.Fatalf("as event.Heartbeat: %+v, %v", plain, err)
	}
}

func TestStateWatchAndAudit(t *testing.T) {
	ts := startTestServer(t, true)
	p := newPublisher(t, ts.url, "h5", t.TempDir(), transport.Options{})
	states := make(chan event.State, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.WatchState(ctx, func(s event.State) { states <- s }); err != nil {
		t.Fatal(err)
	}
	next := func() event.State {
		t.Helper()
		select {
		case s := <-states:
			return s
		case <-time.After(guard):
			t.Fatal("no state callback")
		}
		return "timeout"
	}
	if s := next(); s != event.StateNone {
		t.Fatalf("initial state %q, want none (no key)", s)
	}

	nc := connect(t, ts.url)
	ctl, err := control.New(nc, 0)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := ctl.SetState(ctx, "h5", event.StateSealed, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if ch.From != event.StateMutable || ch.To != event.StateSealed || ch.Revision == 0 {
		t.Fatalf("change %+v", ch)
	}
	if s := next(); s != event.StateSealed {
		t.Fatalf("watch saw %s, want sealed", s)
	}
	if _, err := ctl.SetState(ctx, "h5", event.StateCordoned, "responder"); err != nil {
		t.Fatal(err)
	}
	if s := next(); s != event.StateCordoned {
		t.Fatalf("watch saw %s, want cordoned", s)
	}
	if _, err := ctl.SetState(ctx, "h5", event.StateMutable, "mallory"); err == nil {
		t.Fatal("cordoned -> mutable allowed; a cordoned host must be uncordoned first")
	}

	// A value that is not a state is rejected, counted and not passed on.
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, event.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "h5", []byte("sealed-ish")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bad state rejected", func() bool { return p.Counters().Rejected == 1 })
	if _, err := kv.Put(ctx, "h5", []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	if s := next(); s != event.StateSealed {
		t.Fatalf("watch saw %s after a bad value, want sealed", s)
	}
	if st, _, err := ctl.State(ctx, "h5"); err != nil || st != event.StateSealed {
		t.Fatalf("State = %s, %v", st, err)
	}

	// The audit trail is in the stream.
	s, _ := js.Stream(ctx, event.StreamName)
	m, err := s.GetLastMsgForSubject(ctx, event.StateSubject("h5"))
	if err != nil {
		t.Fatal(err)
	}
	var audit event.StateChange
	json.Unmarshal(m.Data, &audit)
	if audit.Schema != event.StateChangeSchema || audit.From != event.StateSealed || audit.To != event.StateCordoned || audit.By != "responder" || audit.Time.IsZero() {
		t.Fatalf("audit record %s", m.Data)
	}
}

func TestCtlRejectsMalformed(t *testing.T) {
	ts := startTestServer(t, true)
	got := make(chan event.CtlCommand, 10)
	p := newPublisher(t, ts.url, "h6", t.TempDir(), transport.Options{OnCommand: func(c event.CtlCommand) error {
		if c.Cmd == event.CmdUnseal {
			return fmt.Errorf("unseal goes through the KV bucket")
		}
		got <- c
		return nil
	}})
	nc := connect(t, ts.url)
	ctl, _ := control.New(nc, guard)
	ctx := context.Background()

	for _, cmd := range []string{event.CmdPing, event.CmdCordon} {
		r, err := ctl.Command(ctx, "h6", cmd)
		if err != nil || !r.OK || r.ID == "" {
			t.Fatalf("%s: reply %+v, %v", cmd, r, err)
		}
	}
	if c := <-got; c.Cmd != event.CmdCordon {
		t.Fatalf("hook got %+v", c)
	}

	bad := []string{
		``,
		`{`,
		`[]`,
		`"ping"`,
		`{"schema":"driftsensor.ctl/v1","cmd":"reboot","id":"1"}`,
		`{"schema":"driftsensor.ctl/v2","cmd":"ping","id":"1"}`,
		`{"schema":"driftsensor.ctl/v1","cmd":"ping"}`,
		`{"schema":"driftsensor.ctl/v1","cmd":"ping","id":"1","extra":1}`,
		`{"schema":"driftsensor.ctl/v1","cmd":"ping","id":"1","cmd":"seal"}`,
		`{"SCHEMA":"driftsensor.ctl/v1","cmd":"ping","id":"1"}`,
		`{"schema":"driftsensor.ctl/v1","cmd":"ping","id":1}`,
		`{"schema":"driftsensor.ctl/v1","cmd":"ping","id":"1"} {}`,
		`{"schema":"driftsensor.ctl/v1","cmd":"ping","id":"a b"}`,
		`{"schema":"driftsensor.ctl/v1","cmd":"ping","id":"` + string(make([]byte, 2000)) + `"}`,
		`{"schema":"driftsensor.ctl/v1","cmd":"unseal","id":"1"}`, // valid, refused by the hook
	}
	for i, b := range bad {
		m, err := nc.Request(event.CtlSubject("h6"), []byte(b), guard)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		var r event.CtlReply
		if err := json.Unmarshal(m.Data, &r); err != nil || r.OK || r.Error == "" {
			t.Fatalf("case %d %q: reply %s", i, b, m.Data)
		}
	}
	// Fire-and-forget garbage is counted too.
	nc.Publish(event.CtlSubject("h6"), []byte("garbage"))
	nc.Flush()
	eventually(t, "all rejections counted", func() bool { return p.Counters().Rejected == uint64(len(bad)+1) })
	select {
	case c := <-got:
		t.Fatalf("hook called for a rejected message: %+v", c)
	default:
	}
}
