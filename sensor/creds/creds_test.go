package creds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/publish"
	"github.com/driftsensor/driftsensor/sensor/spool"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// guard bounds every wait: a failure guard, never a performance assertion.
const guard = 30 * time.Second

// violationLog records the server's permission violations, by user.
type violationLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *violationLog) record(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	if strings.Contains(s, "Violation") {
		l.mu.Lock()
		l.lines = append(l.lines, s)
		l.mu.Unlock()
	}
}

func (l *violationLog) Noticef(format string, v ...any) { l.record(format, v...) }
func (l *violationLog) Warnf(format string, v ...any)   { l.record(format, v...) }
func (l *violationLog) Fatalf(format string, v ...any)  { l.record(format, v...) }
func (l *violationLog) Errorf(format string, v ...any)  { l.record(format, v...) }
func (l *violationLog) Debugf(format string, v ...any)  {}
func (l *violationLog) Tracef(format string, v ...any)  {}

// matching returns the violations whose text contains every one of parts.
func (l *violationLog) matching(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, s := range l.lines {
		for _, p := range parts {
			if !strings.Contains(s, p) {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

type fleet struct {
	srv        *server.Server
	res        *Result
	url        string
	violations *violationLog
}

// startFleet generates credentials for hosts and starts a real nats-server
// from the generated configuration, on a free loopback port.
func startFleet(t *testing.T, hosts ...string) *fleet {
	t.Helper()
	dir := t.TempDir()
	res, err := Generate(hosts, filepath.Join(dir, "creds"), Options{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(res.ServerConfig)
	if err != nil {
		t.Fatalf("the generated configuration does not load: %v", err)
	}
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	vl := &violationLog{}
	s.SetLoggerV2(vl, false, false, false)
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server from the generated configuration not ready")
	}
	return &fleet{srv: s, res: res, url: s.ClientURL(), violations: vl}
}

func (f *fleet) seed(t *testing.T, user string) string {
	t.Helper()
	u, ok := f.res.User(user)
	if !ok {
		t.Fatalf("no user %q generated", user)
	}
	return u.SeedFile
}

// conn connects as user and collects the asynchronous errors the server sends it.
func (f *fleet) conn(t *testing.T, user string) (*nats.Conn, <-chan error) {
	t.Helper()
	nk, err := nats.NkeyOptionFromSeed(f.seed(t, user))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 64)
	opts := []nats.Option{nk, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	})}
	if user != "admin" && user != "responder" { // a host: replies under its own inbox prefix, as its publisher does
		opts = append(opts, nats.CustomInboxPrefix(transport.InboxPrefix(user)))
	}
	nc, err := nats.Connect(f.url, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

func (f *fleet) control(t *testing.T) *control.Client {
	t.Helper()
	nc, _ := f.conn(t, "admin")
	c, err := control.New(nc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// expectViolation waits for the server to refuse subject to the connection.
func expectViolation(t *testing.T, errs <-chan error, subject string) {
	t.Helper()
	deadline := time.After(guard)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return
			}
			t.Logf("other async error: %v", err)
		case <-deadline:
			t.Fatalf("no permission violation for %s", subject)
		}
	}
}

// ownFinding fails unless m is the file finding finding(KindFile, host)
// made, on host's own subject.
func ownFinding(t *testing.T, m *nats.Msg, host string) {
	t.Helper()
	var ev event.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil || m.Subject != event.Subject(host, event.KindFile) ||
		ev.Host != host || ev.ID != "forged-"+host || ev.Kind != event.KindFile {
		t.Fatalf("on %s: %s (%v), want the file finding of %s on its own subject", m.Subject, m.Data, err, host)
	}
}

func finding(kind event.Kind, host string) *event.Event {
	ev := &event.Event{Schema: event.Schema, ID: "forged-" + host, Host: host, Seq: 1, Time: time.Now().UTC(), Kind: kind, Action: "unlink", Backend: "tracepoint"}
	switch kind {
	case event.KindFile:
		ev.File = &event.File{Path: "/etc/passwd"}
	case event.KindExec:
		ev.Action = "exec"
		ev.Exec = &event.Exec{Path: "/tmp/x", Reasons: []string{"tainted"}}
	case event.KindNet:
		ev.Action = "listen"
		ev.Net = &event.Net{Family: "inet", Protocol: "tcp", Addr: "0.0.0.0", Port: 4444}
	case event.KindSensor:
		ev.Action = "lost_records"
		ev.Health = &event.Health{LostRecords: 3}
	}
	return ev
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	res, err := Generate([]string{"web-1", "db_2"}, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Users) != 4 {
		t.Fatalf("users: %+v", res.Users)
	}
	for _, u := range res.Users {
		st, err := os.Stat(u.SeedFile)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", u.SeedFile, st.Mode().Perm())
		}
		if !u.Created || !strings.HasPrefix(u.PublicKey, "U") {
			t.Errorf("%s: %+v", u.Name, u)
		}
	}
	auth, err := os.ReadFile(res.AuthConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range res.Users {
		if !strings.Contains(string(auth), u.PublicKey) {
			t.Errorf("auth.conf lacks %s's key", u.Name)
		}
		seed, _ := os.ReadFile(u.SeedFile)
		if strings.Contains(string(auth), strings.TrimSpace(string(seed))) {
			t.Errorf("auth.conf holds %s's seed", u.Name)
		}
	}
	opts, err := server.ProcessConfigFile(res.ServerConfig)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Host != "127.0.0.1" || opts.Port != 4222 || !opts.JetStream || opts.StoreDir != filepath.Join(res.Dir, "jetstream") || len(opts.Nkeys) != 4 {
		t.Errorf("server options: host %s port %d js %v store %s nkeys %d", opts.Host, opts.Port, opts.JetStream, opts.StoreDir, len(opts.Nkeys))
	}

	// A second run keeps the seeds (adding a host does not re-key the fleet);
	// Rotate replaces them.
	again, err := Generate([]string{"web-1", "db_2", "new"}, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web-1", "db_2", "responder", "admin"} {
		a, _ := res.User(name)
		b, _ := again.User(name)
		if a.PublicKey != b.PublicKey || b.Created {
			t.Errorf("%s re-keyed by a second run", name)
		}
	}
	if u, _ := again.User("new"); !u.Created {
		t.Error("new host not created")
	}
	rot, err := Generate([]string{"web-1"}, dir, Options{Rotate: true})
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := res.User("web-1"); func() bool { b, _ := rot.User("web-1"); return a.PublicKey == b.PublicKey }() {
		t.Error("Rotate kept the seed")
	}
}

func TestGenerateRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string
		want  string
	}{
		{"empty list", nil, "no hosts"},
		{"subject wildcard", []string{"a", "b.*"}, `"b.*"`},
		{"dot", []string{"a.b"}, `"a.b"`},
		{"reserved", []string{"ctl"}, "reserved"},
		{"twice", []string{"a", "a"}, "twice"},
		{"too long", []string{strings.Repeat("x", 64)}, "1-63"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			_, err := Generate(tc.hosts, dir, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %s", err, tc.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("wrote %s despite the error", dir)
			}
		})
	}
	if _, err := Generate([]string{"a"}, t.TempDir(), Options{StoreDir: "/tmp/x\"y"}); err == nil {
		t.Error("a quote in the store path went into the configuration")
	}
}

// A sensor authenticated as its host works end to end with only the host's
// permissions: findings land in the stream, heartbeats go out, the state
// watch sees a seal, a ctl ping is answered, and the server logs no
// permission violation for it at any point, close included.
func TestHostPublisherEndToEnd(t *testing.T) {
	f := startFleet(t, "a", "b")
	ctl := f.control(t)

	log := zerolog.New(io.Discard)
	if testing.Verbose() {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr})
	}
	sp, _, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	p, err := publish.New(context.Background(), transport.Options{URL: f.url, NKeySeedFile: f.seed(t, "a"), AckTimeout: 2 * time.Second, ReconnectWait: 20 * time.Millisecond}, "a", sp, log)
	if err != nil {
		t.Fatal(err)
	}
	states := make(chan event.State, 8)
	if err := p.WatchState(context.Background(), func(s event.State) { states <- s }); err != nil {
		t.Fatal(err)
	}
	waitState(t, states, event.StateNone) // the control plane has not decided yet

	admin, _ := f.conn(t, "admin")
	hbs, err := admin.SubscribeSync(event.HeartbeatSubject("a"))
	if err != nil {
		t.Fatal(err)
	}
	p.StartHeartbeat(50*time.Millisecond, nil)

	for _, k := range []event.Kind{event.KindFile, event.KindExec, event.KindNet, event.KindSensor} {
		if err := p.Publish(finding(k, "a")); err != nil {
			t.Fatalf("publish %s: %v", k, err)
		}
	}
	if c := p.Counters(); c.Published != 4 || c.Spooled != 0 || c.Transport != event.TransportJetStream {
		t.Fatalf("publisher counters %+v: want 4 published straight into the stream", c)
	}
	msg, err := hbs.NextMsg(guard)
	if err != nil {
		t.Fatalf("no heartbeat: %v", err)
	}
	var hb event.Heartbeat
	if err := json.Unmarshal(msg.Data, &hb); err != nil || hb.Host != "a" || hb.Transport != event.TransportJetStream {
		t.Fatalf("heartbeat %s: %v", msg.Data, err)
	}

	if _, err := ctl.SetState(context.Background(), "a", event.StateSealed, "test"); err != nil {
		t.Fatal(err)
	}
	waitState(t, states, event.StateSealed)
	if r, err := ctl.Command(context.Background(), "a", event.CmdPing); err != nil || !r.OK {
		t.Fatalf("ping a: %+v %v", r, err)
	}

	js, _ := jetstream.New(admin)
	s, err := js.Stream(context.Background(), event.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []event.Kind{event.KindFile, event.KindExec, event.KindNet, event.KindSensor} {
		m, err := s.GetLastMsgForSubject(context.Background(), event.Subject("a", k))
		if err != nil {
			t.Fatalf("%s finding not in the stream: %v", k, err)
		}
		var ev event.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Host != "a" || ev.Kind != k || ev.Seq == 0 {
			t.Fatalf("stored %s finding %s: %v", k, m.Data, err)
		}
	}
	connected := func() bool {
		cz, err := f.srv.Connz(&server.ConnzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cz.Conns {
			if c.Name == "driftsensor/a" {
				return true
			}
		}
		return false
	}
	if !connected() {
		t.Fatal("the server shows no connection named driftsensor/a: the barrier below would prove nothing")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Barrier: the server logs a violation while it reads the connection,
	// before it drops it; once the publisher's connection is gone from the
	// server, everything it caused, its close included, is logged.
	testenv.Eventually(t, "the server to drop the publisher's connection", func() bool { return !connected() })
	// The one refusal expected: the read of the last sequence number from the
	// stream, a direct get (see HostPermissions).
	for _, v := range f.violations.matching() {
		if !strings.Contains(v, "$JS.API.DIRECT.GET."+event.StreamName+"."+event.SubjectRoot+".a.") {
			t.Errorf("the host's own work hit a permission violation (its grants are too narrow): %s", v)
		}
	}
}

// Host a cannot publish as host b: the server refuses it and a subscriber
// on b's subjects never sees it, while a's own findings flow.
func TestHostCannotPublishAsAnother(t *testing.T) {
	f := startFleet(t, "a", "b")
	admin, _ := f.conn(t, "admin")
	onB, err := admin.SubscribeSync(event.SubjectRoot + ".b.>")
	if err != nil {
		t.Fatal(err)
	}
	onA, err := admin.SubscribeSync(event.SubjectRoot + ".a.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	a, errs := f.conn(t, "a")
	for _, k := range []event.Kind{event.KindFile, event.KindExec, event.KindNet, event.KindSensor} {
		if err := a.Publish(event.Subject("b", k), mustJSON(t, finding(k, "b"))); err != nil {
			t.Fatal(err)
		}
		expectViolation(t, errs, event.Subject("b", k))
	}
	if err := a.Publish(event.HeartbeatSubject("b"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	expectViolation(t, errs, event.HeartbeatSubject("b"))
	// a's own finding, sent after the forgeries on the same connection,
	// arrives; messages from one connection keep their order, so once it is
	// here nothing forged is still on its way.
	if err := a.Publish(event.Subject("a", event.KindFile), mustJSON(t, finding(event.KindFile, "a"))); err != nil {
		t.Fatal(err)
	}
	if m, err := onA.NextMsg(guard); err != nil {
		t.Fatalf("a's own finding did not arrive: %v", err)
	} else {
		ownFinding(t, m, "a")
	}
	if n, _, err := onB.Pending(); err != nil || n != 0 {
		m, _ := onB.NextMsg(0)
		t.Fatalf("a subscriber on b's subjects got %d messages (%v), the first: %+v", n, err, m)
	}
	// Nor can a listen to b's commands or read other hosts' findings.
	if _, err := a.Subscribe(event.CtlSubject("b"), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	expectViolation(t, errs, event.CtlSubject("b"))
	if _, err := a.Subscribe(event.SubjectRoot+".>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	expectViolation(t, errs, event.SubjectRoot+".>")
	// Nor read replies meant for other clients (driftctl, the responder, b).
	for _, inbox := range []string{"_INBOX.>", transport.InboxPrefix("b") + ".>"} {
		if _, err := a.Subscribe(inbox, func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		expectViolation(t, errs, inbox)
	}
}

// Host a cannot unseal itself, nor forge the audit record of a state change,
// nor read another host's state; the admin's seal and unseal work and leave
// their audit records.
func TestHostCannotUnsealItself(t *testing.T) {
	f := startFleet(t, "a", "b")
	ctl := f.control(t)
	if _, err := ctl.SetState(context.Background(), "a", event.StateSealed, "alice"); err != nil {
		t.Fatal(err)
	}

	a, errs := f.conn(t, "a")
	js, err := jetstream.New(a)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	kv, err := js.KeyValue(ctx, event.StateBucket)
	if err != nil {
		t.Fatalf("host a cannot open the state bucket: %v", err)
	}
	if e, err := kv.Get(ctx, "a"); err != nil || string(e.Value()) != string(event.StateSealed) {
		t.Fatalf("host a reading its own state: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	if _, err := kv.Put(short, "a", []byte(event.StateMutable)); err == nil {
		t.Fatal("host a changed its own state")
	}
	cancelShort()
	expectViolation(t, errs, "$KV."+event.StateBucket+".a")
	short, cancelShort = context.WithTimeout(ctx, 500*time.Millisecond)
	if err := kv.Delete(short, "a"); err == nil {
		t.Fatal("host a deleted its own state")
	}
	cancelShort()
	expectViolation(t, errs, "$KV."+event.StateBucket+".a")
	short, cancelShort = context.WithTimeout(ctx, 500*time.Millisecond)
	if _, err := kv.Get(short, "b"); err == nil {
		t.Fatal("host a read host b's state")
	}
	cancelShort()
	expectViolation(t, errs, "$KV."+event.StateBucket+".b")
	if err := a.Publish(event.StateSubject("a"), []byte(`{"schema":"driftsensor.state/v1","host":"a","from":"sealed","to":"mutable","by":"root"}`)); err != nil {
		t.Fatal(err)
	}
	expectViolation(t, errs, event.StateSubject("a"))
	// A watch on another host's key is refused too.
	short, cancelShort = context.WithTimeout(ctx, 500*time.Millisecond)
	if _, err := kv.Watch(short, "b"); err == nil {
		t.Fatal("host a watches host b's state")
	}
	cancelShort()
	expectViolation(t, errs, "$KV."+event.StateBucket+".b")

	if st, _, err := ctl.State(ctx, "a"); err != nil || st != event.StateSealed {
		t.Fatalf("state of a after the attempts: %s %v, want sealed", st, err)
	}
	ch, err := ctl.SetState(ctx, "a", event.StateMutable, "alice")
	if err != nil {
		t.Fatalf("admin unseal: %v", err)
	}
	if ch.From != event.StateSealed || ch.To != event.StateMutable {
		t.Fatalf("unseal change %+v", ch)
	}
	admin, _ := f.conn(t, "admin")
	ajs, _ := jetstream.New(admin)
	s, err := ajs.Stream(ctx, event.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("stream holds %d messages, want the 2 audit records of the admin's changes", n)
	}
	m, err := s.GetLastMsgForSubject(ctx, event.StateSubject("a"))
	if err != nil {
		t.Fatal(err)
	}
	var rec event.StateChange
	if err := json.Unmarshal(m.Data, &rec); err != nil || rec.By != "alice" || rec.To != event.StateMutable {
		t.Fatalf("audit record %s: %v", m.Data, err)
	}
}

// A client picks the reply subject of its requests and the deliver subject
// of its consumers, and the server publishes there. These tests pin down
// that a host cannot turn that into a finding under another host's name:
// the only server replies it can trigger carry no content it chose, and
// direct gets of findings (which echo a stored message verbatim) are denied.
func TestHostCannotForgeThroughTheServer(t *testing.T) {
	f := startFleet(t, "a", "b")
	ctl := f.control(t)
	if _, err := ctl.SetState(context.Background(), "a", event.StateSealed, "alice"); err != nil {
		t.Fatal(err)
	}
	admin, _ := f.conn(t, "admin")
	onB, err := admin.SubscribeSync(event.SubjectRoot + ".b.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}

	a, errs := f.conn(t, "a")
	// 1. A finding that names b, published on a's own subject (the server
	// allows it; consumers check the name against the subject), then asked
	// back from the stream with b's subject as the reply subject.
	bad := mustJSON(t, finding(event.KindFile, "b"))
	if err := a.PublishMsg(&nats.Msg{Subject: event.Subject("a", event.KindFile), Reply: event.Subject("b", event.KindFile), Data: bad}); err != nil {
		t.Fatal(err)
	}
	direct := "$JS.API.DIRECT.GET." + event.StreamName + "." + event.Subject("a", event.KindFile)
	if err := a.PublishRequest(direct, event.Subject("b", event.KindFile), nil); err != nil {
		t.Fatal(err)
	}
	expectViolation(t, errs, direct)
	// 2. Its own state key delivered by a consumer onto b's subject.
	cfg := fmt.Sprintf(`{"stream_name":"KV_%s","config":{"name":"x1","deliver_subject":%q,"filter_subject":"$KV.%s.a","ack_policy":"none","deliver_policy":"last_per_subject"}}`,
		event.StateBucket, event.Subject("b", event.KindExec), event.StateBucket)
	if m, err := a.Request(fmt.Sprintf("$JS.API.CONSUMER.CREATE.KV_%s.x1.$KV.%s.a", event.StateBucket, event.StateBucket), []byte(cfg), guard); err != nil {
		t.Fatal(err)
	} else if strings.Contains(string(m.Data), `"error"`) {
		t.Fatalf("consumer create refused, so the case is not exercised: %s", m.Data)
	}
	// 3. Account info with b's subject as the reply subject.
	if err := a.PublishRequest("$JS.API.INFO", event.Subject("b", event.KindNet), nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}

	// Whatever the server sent to b's subjects must not read as b's finding.
	// The barrier is every output the three requests make: the stream's ack
	// (1) and the account info (3), and as many messages as the consumer
	// (2) says it delivered (none here: it has no push interest of its own),
	// not a span of time a slow server may overrun.
	info, err := admin.Request("$JS.API.CONSUMER.INFO.KV_"+event.StateBucket+".x1", nil, guard)
	if err != nil {
		t.Fatal(err)
	}
	var ci struct {
		Delivered struct {
			Consumer int `json:"consumer_seq"`
		} `json:"delivered"`
	}
	if err := json.Unmarshal(info.Data, &ci); err != nil {
		t.Fatalf("consumer info %s: %v", info.Data, err)
	}
	want := map[string]int{event.Subject("b", event.KindFile): 1, event.Subject("b", event.KindNet): 1}
	if ci.Delivered.Consumer > 0 {
		want[event.Subject("b", event.KindExec)] = ci.Delivered.Consumer
	}
	for len(want) > 0 {
		m, err := onB.NextMsg(guard)
		if err != nil {
			t.Fatalf("server output on b's subjects still awaited %v: %v", want, err)
		}
		var ev event.Event
		if json.Unmarshal(m.Data, &ev) == nil && ev.Schema == event.Schema && ev.Host == "b" {
			t.Fatalf("host a made the server publish a finding of host b on %s: %s", m.Subject, m.Data)
		}
		t.Logf("server output on %s (not a finding): %.80q", m.Subject, m.Data)
		if want[m.Subject]--; want[m.Subject] <= 0 {
			delete(want, m.Subject)
		}
	}
}

// The responder reads every finding, changes states with an audit record and
// sends commands, but cannot publish findings nor erase the trail.
func TestResponderPermissions(t *testing.T) {
	f := startFleet(t, "a")
	f.control(t)
	r, errs := f.conn(t, "responder")
	sub, err := r.SubscribeSync(event.SubjectRoot + ".*." + string(event.KindFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	a, _ := f.conn(t, "a")
	if err := a.Publish(event.Subject("a", event.KindFile), mustJSON(t, finding(event.KindFile, "a"))); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(guard); err != nil {
		t.Fatalf("the responder did not get a's finding: %v", err)
	} else {
		ownFinding(t, m, "a")
	}
	ctl, err := control.New(r, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.SetState(context.Background(), "a", event.StateCordoned, "driftresponder"); err != nil {
		t.Fatalf("the responder cannot cordon: %v", err)
	}
	if err := r.Publish(event.Subject("a", event.KindExec), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	expectViolation(t, errs, event.Subject("a", event.KindExec))
	js, _ := jetstream.New(r)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := js.DeleteStream(ctx, event.StreamName); err == nil {
		t.Fatal("the responder deleted the findings stream")
	}
	expectViolation(t, errs, "$JS.API.STREAM.DELETE."+event.StreamName)
}

func waitState(t *testing.T, states <-chan event.State, want event.State) {
	t.Helper()
	deadline := time.After(guard)
	for {
		select {
		case s := <-states:
			if s == want {
				return
			}
		case <-deadline:
			t.Fatalf("state %s not seen", want)
		}
	}
}

// The responder keeps evidence in its bucket and reads it back; a host can
// neither write there nor read it.
func TestResponderKeepsEvidence(t *testing.T) {
	f := startFleet(t, "a")
	r, _ := f.conn(t, "responder")
	js, _ := jetstream.New(r)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	store, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: event.EvidenceBucket})
	if err != nil {
		t.Fatalf("the responder cannot make the evidence bucket: %v", err)
	}
	if _, err := store.PutBytes(ctx, "inc-1", []byte(`{"schema":"x"}`)); err != nil {
		t.Fatalf("the responder cannot keep evidence: %v", err)
	}
	if got, err := store.GetBytes(ctx, "inc-1"); err != nil || string(got) != `{"schema":"x"}` {
		t.Fatalf("the responder reads back %q, %v", got, err)
	}
	a, errs := f.conn(t, "a")
	if err := a.Publish("$O."+event.EvidenceBucket+".M.x", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	expectViolation(t, errs, "$O."+event.EvidenceBucket+".M.x")
	ajs, _ := jetstream.New(a)
	short, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	if _, err := ajs.ObjectStore(short, event.EvidenceBucket); err == nil {
		t.Fatal("a host opened the evidence bucket")
	}
}
