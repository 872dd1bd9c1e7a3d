package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/cmd/driftctl/internal/fleet"
	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/creds"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// guard bounds every wait: a failure guard, never a performance assertion.
const guard = 30 * time.Second

// syncBuf is a bytes.Buffer safe to read while run writes to it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func driftctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errs syncBuf
	code := run(args, &out, &errs)
	t.Logf("driftctl %s -> %d\nstdout: %.2000s\nstderr: %.2000s", strings.Join(args, " "), code, out.String(), errs.String())
	return code, out.String(), errs.String()
}

// embedded starts a real nats-server with JetStream and no authentication.
func embedded(t *testing.T) (string, *nats.Conn) {
	t.Helper()
	s, url, err := transport.StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return url, nc
}

func adminControl(t *testing.T, nc *nats.Conn) *control.Client {
	t.Helper()
	c, err := control.New(nc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

func finding(host string, kind event.Kind, seq uint64, path string) *event.Event {
	ev := &event.Event{Schema: event.Schema, ID: host + "-" + string(kind) + "-" + time.Now().Format("150405.000000000"), Host: host, Seq: seq,
		Time: time.Now().UTC(), Kind: kind, Action: "unlink", Backend: "tracepoint",
		Process: &event.Process{PID: 42, Comm: "rm", UID: 0}}
	switch kind {
	case event.KindFile:
		ev.File = &event.File{Path: path}
	case event.KindExec:
		ev.Action, ev.Exec = "exec", &event.Exec{Path: path, Reasons: []string{"tainted"}}
	case event.KindNet:
		ev.Action, ev.Net = "listen", &event.Net{Family: "inet", Protocol: "tcp", Addr: "0.0.0.0", Port: 4444}
	case event.KindSensor:
		ev.Action, ev.Health = "lost_records", &event.Health{LostRecords: 3}
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

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: driftctl"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"seal"}, "want exactly one host"},
		{[]string{"seal", "a", "b"}, "want exactly one host"},
		{[]string{"unseal", "web.1"}, `host name "web.1"`},
		{[]string{"uncordon", "*"}, `host name "*"`},
		{[]string{"creds", "--out", "x"}, "--hosts and --out are required"},
		{[]string{"creds", "--hosts", "a,b>", "--out", "x"}, `host name "b>"`},
		{[]string{"status", "extra"}, `unexpected argument "extra"`},
		{[]string{"watch", "--kind", "disk"}, `kind "disk"`},
		{[]string{"watch", "--host", "a b"}, `host name "a b"`},
		{[]string{"watch", "--format", "xml"}, `format "xml"`},
		{[]string{"watch", "--json", "--format", "text"}, "disagree"},
		{[]string{"replay"}, "--since is required"},
		{[]string{"replay", "--since", "yesterday"}, `"yesterday": want an RFC 3339 time`},
		{[]string{"replay", "--since", "1h", "--until", "2h"}, "is before --since"},
		{[]string{"seal", "ctl"}, `host name "ctl" is reserved`},
		{[]string{"status", "--wait", "0s"}, "--wait 0s: want from 100ms to 1h0m0s"},
		{[]string{"status", "--wait", "-2s"}, "--wait -2s: want from 100ms to 1h0m0s"},
		{[]string{"seal", "h1", "--timeout", "1ns"}, "--timeout 1ns: want from 100ms to 10m0s"},
		{[]string{"--timeout", "-1s", "status"}, "--timeout -1s: want from 100ms to 10m0s"},
		{[]string{"--nats", "http://127.0.0.1:4222", "status"}, `--nats "http://127.0.0.1:4222": "http://127.0.0.1:4222": scheme "http"`},
		{[]string{"watch", "--nats", "nats://a:4222,nats://b:99999"}, `"nats://b:99999": port "99999": want 1-65535`},
		{[]string{"watch", "--count", "-1"}, "--count -1: must not be negative"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := driftctl(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not say %q", stderr, tc.want)
			}
		})
	}
	if code, _, _ := driftctl(t, "seal", "-h"); code != exitOK {
		t.Errorf("seal -h: exit %d", code)
	}
}

func TestRuntimeErrors(t *testing.T) {
	code, _, stderr := driftctl(t, "--nats", "nats://127.0.0.1:1", "--timeout", "200ms", "status")
	if code != exitFailure || !strings.Contains(stderr, "nats://127.0.0.1:1") {
		t.Errorf("unreachable server: exit %d, %q", code, stderr)
	}
	url, nc := embedded(t)
	adminControl(t, nc)
	code, _, stderr = driftctl(t, "--nats", url, "uncordon", "web-1")
	if code != exitFailure || !strings.Contains(stderr, "not cordoned") {
		t.Errorf("uncordon of a host that is not cordoned: exit %d, %q", code, stderr)
	}
	code, _, stderr = driftctl(t, "replay", "--nats", url, "--since", "1h", "--nats-nkey", "/nonexistent/admin.nk")
	if code != exitFailure || !strings.Contains(stderr, "/nonexistent/admin.nk") {
		t.Errorf("missing seed file: exit %d, %q", code, stderr)
	}
}

// creds writes a configuration a real server runs with; with the admin seed
// driftctl sets the stream up, seals and unseals (each change audited), and
// a cordoned host is released only by uncordon.
func TestCredsSealUnseal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fleet")
	code, out, _ := driftctl(t, "creds", "--hosts", "web-1, db-2", "--out", dir, "--nats-listen", "127.0.0.1:-1", "--jetstream-dir", filepath.Join(t.TempDir(), "js"))
	if code != exitOK || !strings.Contains(out, "web-1") || !strings.Contains(out, "admin.nk") {
		t.Fatalf("creds: exit %d", code)
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := s.ClientURL()
	admin := filepath.Join(dir, "admin.nk")

	if code, _, stderr := driftctl(t, "--nats", url, "status"); code != exitUsage || !strings.Contains(stderr, "uthorization") {
		t.Errorf("status without credentials: exit %d, %q", code, stderr)
	}
	if code, _, _ := driftctl(t, "--nats", url, "--nats-nkey", admin, "init"); code != exitOK {
		t.Fatalf("init: exit %d", code)
	}
	code, out, _ = driftctl(t, "--nats", url, "--nats-nkey", admin, "seal", "web-1", "--by", "alice")
	if code != exitOK || !strings.Contains(out, "mutable -> sealed") {
		t.Fatalf("seal: exit %d %q", code, out)
	}
	code, out, _ = driftctl(t, "seal", "--nats", url, "--nats-nkey", admin, "web-1")
	if code != exitOK || !strings.Contains(out, "already sealed") {
		t.Errorf("seal again: exit %d %q", code, out)
	}

	nk, err := nats.NkeyOptionFromSeed(admin)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nk)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctl, err := control.New(nc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, err := ctl.State(context.Background(), "web-1"); err != nil || st != event.StateSealed {
		t.Fatalf("state after seal: %s %v", st, err)
	}

	// Cordoned: seal refuses, uncordon releases.
	if code, _, _ := driftctl(t, "--nats", url, "--nats-nkey", admin, "cordon", "web-1", "--by", "bob"); code != exitOK {
		t.Fatalf("cordon: exit %d", code)
	}
	if code, _, stderr := driftctl(t, "--nats", url, "--nats-nkey", admin, "seal", "web-1"); code != exitFailure || !strings.Contains(stderr, "uncordon") {
		t.Errorf("seal of a cordoned host: exit %d %q", code, stderr)
	}
	if code, out, _ := driftctl(t, "--nats", url, "--nats-nkey", admin, "uncordon", "web-1", "--by", "bob"); code != exitOK || !strings.Contains(out, "cordoned -> sealed") {
		t.Fatalf("uncordon: exit %d %q", code, out)
	}
	code, out, _ = driftctl(t, "--nats", url, "--nats-nkey", admin, "unseal", "--by", "alice", "web-1")
	if code != exitOK || !strings.Contains(out, "sealed -> mutable") {
		t.Fatalf("unseal: exit %d %q", code, out)
	}
	if st, _, err := ctl.State(context.Background(), "web-1"); err != nil || st != event.StateMutable {
		t.Fatalf("state after unseal: %s %v", st, err)
	}

	// The audit trail: one record per change, in order, naming who asked.
	js, _ := jetstream.New(nc)
	cons, err := js.OrderedConsumer(context.Background(), event.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{event.StateSubject("web-1")}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for m := range batch.Messages() {
		var ch event.StateChange
		if err := json.Unmarshal(m.Data(), &ch); err != nil {
			t.Fatal(err)
		}
		trail = append(trail, string(ch.From)+">"+string(ch.To)+" by "+ch.By)
	}
	want := []string{"mutable>sealed by alice", "sealed>cordoned by bob", "cordoned>sealed by bob", "sealed>mutable by alice"}
	if strings.Join(trail, "; ") != strings.Join(want, "; ") {
		t.Errorf("audit trail %q, want %q", trail, want)
	}
}

func TestDefaultBy(t *testing.T) {
	t.Setenv("USER", "carol")
	hn, _ := os.Hostname()
	if got := defaultBy(); got != "carol@"+hn {
		t.Errorf("defaultBy() = %q", got)
	}
}

func TestStatus(t *testing.T) {
	url, nc := embedded(t)
	ctl := adminControl(t, nc)
	for _, h := range []string{"a", "b", "e"} {
		if _, err := ctl.SetState(context.Background(), h, event.StateSealed, "test"); err != nil {
			t.Fatal(err)
		}
	}
	// a and c beat (c has no state in the control plane); b is silent; e
	// beats but applies another state than the control plane's, its watch down.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			for _, h := range []string{"a", "c", "e"} {
				hb := event.Heartbeat{Schema: event.HeartbeatSchema, Host: h, Seq: 9, Time: time.Now().UTC(), Backend: "tracepoint",
					State: event.StateSealed, Transport: "jetstream", Counters: event.Counters{Findings: 9, LostRecords: 2, SpoolLost: 1}, StateWatch: "ok"}
				switch h {
				case "c":
					hb.Backend, hb.State = "lsm", event.StateMutable
				case "e":
					hb.State, hb.StateWatch = event.StateMutable, "not connected to NATS: the state applied may be stale"
					hb.Transport = "unauthorized"
					fallthrough
				default:
					hb.Version, hb.Commit = "0.3.0", "8122df503de9e98663389a2a5611b085cb7fca10-dirty"
				}
				_ = nc.Publish(event.HeartbeatSubject(h), mustJSON(t, hb))
			}
			_ = nc.Publish(event.HeartbeatSubject("d"), []byte(`{"schema":"driftsensor.heartbeat/v1","host":"a"}`)) // wrong subject
			time.Sleep(50 * time.Millisecond)
		}
	}()

	code, out, _ := driftctl(t, "--nats", url, "status", "--json", "--wait", "400ms")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var st fleet.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	byHost := map[string]fleet.Host{}
	for _, h := range st.Hosts {
		byHost[h.Host] = h
	}
	if len(st.Hosts) != 4 {
		t.Fatalf("hosts %+v, want a, b, c, e", st.Hosts)
	}
	a, b, c, e := byHost["a"], byHost["b"], byHost["c"], byHost["e"]
	if a.Mismatch != "" || b.Mismatch != "" || c.Mismatch != "" {
		t.Errorf("a mismatch where the sensor applies the control plane's state: %q %q %q", a.Mismatch, b.Mismatch, c.Mismatch)
	}
	if want := "the control plane says sealed, the sensor applies mutable; state watch: not connected to NATS"; !strings.HasPrefix(e.Mismatch, want) || !strings.Contains(e.Mismatch, "refuses the sensor's credentials") {
		t.Errorf("e mismatch %q, want %q...", e.Mismatch, want)
	}
	if a.State != event.StateSealed || a.Heartbeat == nil || a.Heartbeat.Backend != "tracepoint" || a.Heartbeat.Counters.Findings != 9 ||
		a.Heartbeat.Counters.LostRecords != 2 || a.HeartbeatAgeSec == nil || *a.HeartbeatAgeSec > st.WaitSec {
		t.Errorf("a: %+v", a)
	}
	if b.State != event.StateSealed || b.Heartbeat != nil || b.StateRevision == 0 {
		t.Errorf("b (sealed, silent): %+v", b)
	}
	if c.State != event.StateNone || c.Heartbeat == nil || c.Heartbeat.Backend != "lsm" {
		t.Errorf("c (no state, beating): %+v", c)
	}
	if st.Rejected == 0 {
		t.Error("the heartbeat on the wrong subject was not counted as rejected")
	}

	code, out, _ = driftctl(t, "--nats", url, "status", "--wait", "300ms")
	if code != exitOK {
		t.Fatalf("table: exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[0], "HOST") {
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{"a ", "sealed", "tracepoint", "ago", " 9 ", " 3 ", "none in 0.3s", "- (sensor: mutable)", "VERSION", "0.3.0 (8122df503de9-dirty)",
		"sealed (sensor: mutable) !", "# ! e: the control plane says sealed", "unauthorized"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// watch prints live findings filtered by host and kind, as JSON when piped.
func TestWatch(t *testing.T) {
	url, nc := embedded(t)
	var out, errs syncBuf
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"--nats", url, "watch", "--host", "a", "--kind", "file", "--count", "2"}, &out, &errs)
	}()

	// Publish until watch has printed what it waits for: findings it must
	// skip (b's, a's exec, a forged one naming b on a's subject, a resend)
	// go before each matching one on the same connection, so any leak
	// would be printed first.
	seq := uint64(0)
	deadline := time.After(guard)
	var code int
loop:
	for {
		seq++
		_ = nc.Publish(event.Subject("b", event.KindFile), mustJSON(t, finding("b", event.KindFile, seq, "/etc/b")))
		_ = nc.Publish(event.Subject("a", event.KindExec), mustJSON(t, finding("a", event.KindExec, seq, "/tmp/x")))
		_ = nc.Publish(event.Subject("a", event.KindFile), mustJSON(t, finding("b", event.KindFile, seq, "/etc/forged")))
		_ = nc.Publish(event.Subject("a", event.KindFile), []byte("not json"))
		ev := finding("a", event.KindFile, seq, "/etc/a")
		_ = nc.Publish(event.Subject("a", event.KindFile), mustJSON(t, ev))
		_ = nc.Publish(event.Subject("a", event.KindFile), mustJSON(t, ev)) // a resend: same id
		select {
		case code = <-done:
			break loop
		case <-deadline:
			t.Fatal("watch printed nothing")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got:\n%s", out.String())
	}
	var ids []string
	for _, l := range lines {
		var ev event.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if ev.Host != "a" || ev.Kind != event.KindFile || ev.File.Path != "/etc/a" {
			t.Errorf("printed %s", l)
		}
		ids = append(ids, ev.ID)
	}
	if ids[0] == ids[1] {
		t.Error("the resend was printed twice")
	}
	if !strings.Contains(errs.String(), "skipping") || !strings.Contains(errs.String(), "does not belong") {
		t.Errorf("stderr does not report the skipped messages: %s", errs.String())
	}
}

// The text format escapes what a host controls, so a file name cannot drive
// the terminal; OCSF output carries the class.
func TestWatchFormats(t *testing.T) {
	url, nc := embedded(t)
	for _, tc := range []struct {
		format string
		want   []string
		not    []string
	}{
		{"text", []string{" a ", "#7", "file", "unlink", `/etc/\x1b[2Jevil`, "rm[42] uid=0"}, []string{"\x1b"}},
		{"ocsf", []string{`"class_uid":1001`, `"type_uid":100104`}, nil},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var out, errs syncBuf
			done := make(chan int, 1)
			go func() {
				done <- run([]string{"--nats", url, "watch", "--format", tc.format, "--count", "1"}, &out, &errs)
			}()
			ev := finding("a", event.KindFile, 7, "/etc/\x1b[2Jevil")
			var code int
			for code = -1; code < 0; {
				_ = nc.Publish(event.Subject("a", event.KindFile), mustJSON(t, ev))
				select {
				case code = <-done:
				case <-time.After(20 * time.Millisecond):
				}
			}
			if code != exitOK {
				t.Fatalf("exit %d", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output %q lacks %q", out.String(), w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out.String(), n) {
					t.Errorf("output %q contains %q", out.String(), n)
				}
			}
		})
	}
}

// replay returns the findings stored in a time range, in order, filtered.
func TestReplay(t *testing.T) {
	url, nc := embedded(t)
	adminControl(t, nc)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	seq := map[string]uint64{}
	publish := func(host string, kind event.Kind, path string) {
		seq[host]++
		ev := finding(host, kind, seq[host], path)
		if _, err := js.Publish(context.Background(), event.Subject(host, kind), mustJSON(t, ev)); err != nil {
			t.Fatal(err)
		}
	}
	publish("a", event.KindFile, "/before")
	time.Sleep(20 * time.Millisecond)
	since := time.Now()
	for i := 0; i < 300; i++ { // more than one fetch batch
		publish("a", event.KindFile, "/in")
		publish("b", event.KindFile, "/b")
		publish("a", event.KindNet, "")
	}
	until := time.Now()
	time.Sleep(20 * time.Millisecond)
	publish("a", event.KindFile, "/after")

	code, out, _ := driftctl(t, "--nats", url, "replay", "--since", since.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano), "--host", "a", "--kind", "file")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	var n int
	last := uint64(0)
	for sc.Scan() {
		var ev event.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Host != "a" || ev.Kind != event.KindFile || ev.File.Path != "/in" {
			t.Fatalf("out of range or filter: %s", sc.Bytes())
		}
		if ev.Seq <= last {
			t.Fatalf("out of order: seq %d after %d", ev.Seq, last)
		}
		last = ev.Seq
		n++
	}
	if n != 300 {
		t.Errorf("%d findings, want 300", n)
	}

	// Every kind of a, to the end of the stream.
	code, out, _ = driftctl(t, "--nats", url, "replay", "--since", since.Format(time.RFC3339Nano), "--host", "a")
	if code != exitOK || strings.Count(out, "\n") != 601 || !strings.Contains(out, "/after") || strings.Contains(out, "/before") {
		t.Errorf("replay to now: exit %d, %d lines", code, strings.Count(out, "\n"))
		seen := map[string]bool{}
		for _, l := range strings.Split(out, "\n") {
			var ev event.Event
			if json.Unmarshal([]byte(l), &ev) == nil {
				seen[fmt.Sprint(ev.Seq)] = true
			}
		}
		for i := 2; i <= 602; i++ {
			if !seen[fmt.Sprint(i)] {
				t.Errorf("missing seq %d", i)
			}
		}
	}
	// Nothing in range: no output, success.
	code, out, _ = driftctl(t, "--nats", url, "replay", "--since", "2000-01-01", "--until", "2000-01-02")
	if code != exitOK || out != "" {
		t.Errorf("empty range: exit %d %q", code, out)
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"now":                  now,
		"90m":                  now.Add(-90 * time.Minute),
		"-2h":                  now.Add(-2 * time.Hour),
		"2026-02-28T10:00:00Z": time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC),
		"2026-02-28":           time.Date(2026, 2, 28, 0, 0, 0, 0, time.Local),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseTime("tomorrow", now); err == nil {
		t.Error("tomorrow parsed")
	}
}

// TestLocalEmbeddedServerCreds: on the sensor's own host driftctl finds the
// operator's seed of the sensor's authenticated embedded server by itself;
// without it the server refuses driftctl.
func TestLocalEmbeddedServerCreds(t *testing.T) {
	state := t.TempDir()
	e, err := creds.StartEmbedded(state, "h1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	t.Setenv(creds.StateDirEnv, t.TempDir()) // a state directory without credentials
	if code, _, errs := driftctl(t, "--nats", e.URL, "seal", "h1", "--by", "op"); code == 0 || !strings.Contains(errs, "Authorization Violation") {
		t.Fatalf("driftctl without credentials: exit %d, %q; want refused by the server", code, errs)
	}
	t.Setenv(creds.StateDirEnv, state)
	if code, out, _ := driftctl(t, "--nats", e.URL, "seal", "h1", "--by", "op"); code != 0 || !strings.Contains(out, "h1: mutable -> sealed") {
		t.Fatalf("driftctl with the local admin seed: exit %d, %q", code, out)
	}
}
