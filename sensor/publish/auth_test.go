package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/spool"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// syncBuf is a log sink tests can read while the publisher writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// newSeed writes a user nkey seed file and returns its path and public key.
func newSeed(t *testing.T) (string, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	path := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pub
}

// startAuthServer starts a JetStream server on port that knows only users.
func startAuthServer(t *testing.T, port int, users ...*server.NkeyUser) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, Nkeys: users})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// A credential the server refuses is loud: at start it is an error that
// wraps transport.ErrUnauthorized (the commands exit 2) and quotes the server; when the
// server comes up refusing it later, the sensor spools, logs the server's
// reason once, and its transport says unauthorized in the metrics; when the
// login passes but the JetStream calls it needs are denied, the heartbeat
// says unauthorized too.
func TestRefusedCredentialsAreLoud(t *testing.T) {
	good, goodPub := newSeed(t)
	wrong, wrongPub := newSeed(t)
	port := testenv.FreePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)

	// A server that is there and refuses: the start fails.
	srv := startAuthServer(t, port, &server.NkeyUser{Nkey: goodPub})
	sp := openSpool(t, t.TempDir(), spool.Options{})
	_, err := New(context.Background(), transport.Options{URL: url, NKeySeedFile: wrong, AckTimeout: time.Second}, "au1", sp, testLog())
	if !errors.Is(err, transport.ErrUnauthorized) || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") || !strings.Contains(err.Error(), wrong) {
		t.Fatalf("start with a refused seed: %v; want transport.ErrUnauthorized naming the seed and the server's reason", err)
	}
	if _, err := transport.Connect(transport.Options{URL: url, NKeySeedFile: wrong}); !errors.Is(err, transport.ErrUnauthorized) {
		t.Fatalf("driftctl's connect with a refused seed: %v", err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()

	// The server is down at start: that is an outage, the sensor runs and
	// spools. It comes up refusing the seed: loud, and still spooling.
	var logs syncBuf
	sp2 := openSpool(t, t.TempDir(), spool.Options{})
	p, err := New(context.Background(), transport.Options{URL: url, NKeySeedFile: wrong, AckTimeout: time.Second, ReconnectWait: 20 * time.Millisecond},
		"au1", sp2, zerolog.New(&logs))
	if err != nil {
		t.Fatalf("start with the server down: %v (an unreachable server means spool and retry)", err)
	}
	t.Cleanup(func() { p.Close() })
	refusing := startAuthServer(t, port, &server.NkeyUser{Nkey: goodPub})
	eventually(t, "transport unauthorized", func() bool { return p.Transport() == event.TransportUnauthorized })
	if err := p.Publish(finding(0)); err != nil || p.Counters().SpoolDepth != 1 {
		t.Fatalf("a finding while refused: %v, spool depth %d; want it spooled", err, p.Counters().SpoolDepth)
	}
	eventually(t, "the server's reason in the log", func() bool { return strings.Contains(strings.ToLower(logs.String()), "authorization violation") })
	if n := strings.Count(logs.String(), "refused this sensor's credentials"); n != 1 {
		t.Fatalf("the refusal was logged %d times, want once per reason:\n%s", n, logs.String())
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(p.Metrics))
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `driftsensor_transport{state="unauthorized"} 1`) {
		t.Fatalf("metrics do not say unauthorized:\n%s", rec.Body.String())
	}
	// The server's configuration is fixed: the sensor gets in without a
	// restart, and what it spooled goes out.
	refusing.Shutdown()
	refusing.WaitForShutdown()
	startAuthServer(t, port, &server.NkeyUser{Nkey: goodPub}, &server.NkeyUser{Nkey: wrongPub})
	admin, err := transport.Connect(transport.Options{URL: url, NKeySeedFile: good})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctl, _ := control.New(admin, guard)
	if _, err := ctl.Init(context.Background(), transport.Settings{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("counters %+v, connected %v, last error %v\n%s", p.Counters(), p.nc.IsConnected(), p.nc.LastError(), logs.String())
		}
	}()
	eventually(t, "in, and the spool drained", func() bool {
		c := p.Counters()
		return c.Transport == event.TransportJetStream && c.SpoolDepth == 0 && c.Published == 1
	})

	// A login that passes, without the JetStream permissions it needs:
	// heartbeats go out and say unauthorized.
	deniedJS := &server.NkeyUser{Nkey: goodPub, Permissions: &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"drift.v1.au2.>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_au2.>", "drift.v1.au2.ctl"}},
	}}
	watcherSeed, watcherPub := newSeed(t)
	port2 := testenv.FreePort(t)
	startAuthServer(t, port2, deniedJS, &server.NkeyUser{Nkey: watcherPub})
	var logs2 syncBuf
	p2, err := New(context.Background(), transport.Options{URL: "nats://127.0.0.1:" + strconv.Itoa(port2), NKeySeedFile: good, AckTimeout: 300 * time.Millisecond, ReconnectWait: 20 * time.Millisecond},
		"au2", openSpool(t, t.TempDir(), spool.Options{}), zerolog.New(&logs2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Close() })
	hbs := make(chan event.Heartbeat, 100)
	watcher, err := transport.Connect(transport.Options{URL: "nats://127.0.0.1:" + strconv.Itoa(port2), NKeySeedFile: watcherSeed})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	watcher.Subscribe(event.HeartbeatSubject("au2"), func(m *nats.Msg) {
		var hb event.Heartbeat
		if json.Unmarshal(m.Data, &hb) == nil {
			select {
			case hbs <- hb:
			default:
			}
		}
	})
	watcher.Flush()
	p2.StartHeartbeat(20*time.Millisecond, nil)
	deadline := time.After(guard)
	for {
		select {
		case hb := <-hbs:
			if hb.Transport == event.TransportUnauthorized {
				if !strings.Contains(logs2.String(), "Permissions Violation") && !strings.Contains(strings.ToLower(logs2.String()), "permissions violation") {
					t.Fatalf("the permission refusal is not in the log:\n%s", logs2.String())
				}
				return
			}
		case <-deadline:
			t.Fatalf("no heartbeat said unauthorized; log:\n%s", logs2.String())
		}
	}
}
