package publish

import (
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

	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// notStartedServer is a server on a chosen port that restart starts.
func notStartedServer(t testing.TB) *testServer {
	ts := &testServer{dir: t.TempDir(), js: true, port: testenv.FreePort(t)}
	ts.url = fmt.Sprintf("nats://127.0.0.1:%d", ts.port)
	t.Cleanup(ts.stop)
	return ts
}

// wipe stops the server and removes its JetStream store: a server that lost its disk.
func (ts *testServer) wipe(t testing.TB) {
	t.Helper()
	ts.stop()
	entries, err := os.ReadDir(ts.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(ts.dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// applied records every state the watch hands the sensor.
type applied struct {
	mu  sync.Mutex
	all []event.State
}

func (a *applied) fn(s event.State) { a.mu.Lock(); a.all = append(a.all, s); a.mu.Unlock() }

func (a *applied) since(n int) []event.State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]event.State(nil), a.all[min(n, len(a.all)):]...)
}

func (a *applied) count() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.all) }

// waitApplied waits until the watch hands over want after mark.
func (a *applied) waitApplied(t *testing.T, mark int, want event.State) {
	t.Helper()
	eventually(t, fmt.Sprintf("state %q applied", want), func() bool {
		for _, s := range a.since(mark) {
			if s == want {
				return true
			}
		}
		return false
	})
}

func adminControl(t *testing.T, url string) *control.Client {
	t.Helper()
	ctl, err := control.New(ctlConn(t, url), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return ctl
}

// ctlConn is an administrator's connection to url, closed at the test's end.
func ctlConn(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func setState(t *testing.T, ctl *control.Client, host string, st event.State) {
	t.Helper()
	var err error
	deadline := time.Now().Add(guard)
	for {
		if _, err = ctl.SetState(context.Background(), host, st, "test"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the server is still electing its JetStream leaders after a start
	}
	if err != nil {
		t.Fatalf("set %s to %s: %v", host, st, err)
	}
}

// The sensor follows the control plane through every fault: a server that
// comes up after the sensor, a server restart, a bucket deleted and made
// again while connected, and a server whose store was wiped. Each time the
// watch is set up again, the state is read anew, the heartbeat says how the
// watch is, and the ctl subscription answers.
func TestStateWatchFollowsControlPlane(t *testing.T) {
	ts := notStartedServer(t)
	p := newPublisher(t, ts.url, "cp1", t.TempDir(), transport.Options{})
	var got applied
	p.WatchState(context.Background(), got.fn)
	var hbMu sync.Mutex
	var hbs []event.Heartbeat
	p.StartHeartbeat(20*time.Millisecond, func() event.Heartbeat { return event.Heartbeat{Backend: "test"} })
	if w := p.StateWatch(); w == WatchOK {
		t.Fatalf("state watch %q with no server", w)
	}
	if tr := p.Transport(); tr != event.TransportOffline {
		t.Fatalf("transport %q with no server, want offline", tr)
	}
	// Findings made while the server is down wait in the spool.
	for i := range 5 {
		if err := p.Publish(finding(i)); err != nil {
			t.Fatal(err)
		}
	}

	// 1. The server comes up after the sensor.
	ts.restart(t)
	nc := connect(t, ts.url)
	sub, err := nc.Subscribe(event.HeartbeatSubject("cp1"), func(m *nats.Msg) {
		var hb event.Heartbeat
		if json.Unmarshal(m.Data, &hb) == nil {
			hbMu.Lock()
			hbs = append(hbs, hb)
			hbMu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctl := adminControl(t, ts.url)
	mark := got.count()
	setState(t, ctl, "cp1", event.StateSealed)
	got.waitApplied(t, mark, event.StateSealed)
	eventually(t, "watch ok", func() bool { return p.StateWatch() == WatchOK })
	eventually(t, "a heartbeat saying the watch is ok", func() bool {
		hbMu.Lock()
		defer hbMu.Unlock()
		return len(hbs) > 0 && hbs[len(hbs)-1].StateWatch == WatchOK
	})
	if r, err := ctl.Command(context.Background(), "cp1", event.CmdPing); err != nil || !r.OK {
		t.Fatalf("ctl ping after the server came up: %+v, %v", r, err)
	}
	eventually(t, "spool drained", func() bool { return p.Counters().SpoolDepth == 0 })

	// 2. A restart: the watch comes back, re-reads sealed, then follows a cordon.
	mark = got.count()
	ts.restart(t)
	got.waitApplied(t, mark, event.StateSealed)
	mark = got.count()
	setState(t, ctl, "cp1", event.StateCordoned)
	got.waitApplied(t, mark, event.StateCordoned)
	if r, err := ctl.Command(context.Background(), "cp1", event.CmdPing); err != nil || !r.OK {
		t.Fatalf("ctl ping after a restart: %+v, %v", r, err)
	}

	// 3. The bucket deleted and made again while everyone stays connected.
	js, _ := jetstream.New(ctlConn(t, ts.url))
	if err := js.DeleteKeyValue(context.Background(), event.StateBucket); err != nil {
		t.Fatal(err)
	}
	// (Without credentials the sensor may make the bucket again itself.)
	mark = got.count()
	if _, err := ctl.Init(context.Background(), transport.Settings{}); err != nil {
		t.Fatal(err)
	}
	setState(t, ctl, "cp1", event.StateSealed)
	got.waitApplied(t, mark, event.StateSealed)
	eventually(t, "watch ok on the new bucket", func() bool { return p.StateWatch() == WatchOK })

	// 4. The store wiped: stream and bucket gone. The sensor notices the
	// stream is not the one that acked its findings and says which may be gone.
	acked := p.Counters().Seq
	ts.wipe(t)
	ts.restart(t)
	mark = got.count()
	setState(t, ctl, "cp1", event.StateCordoned)
	got.waitApplied(t, mark, event.StateCordoned)
	eventually(t, "a stream_lost finding", func() bool {
		for _, ev := range streamFindings(t, nc, "cp1") {
			if ev.Action == "stream_lost" {
				want := fmt.Sprintf("findings seq 1..%d of host cp1 may be gone", acked)
				if !strings.Contains(ev.Health.Detail, want) || ev.Health.LostRecords != acked || ev.Kind != event.KindSensor {
					t.Fatalf("stream_lost finding %+v %+v: want %q", ev, ev.Health, want)
				}
				return true
			}
		}
		return false
	})
	if r, err := ctl.Command(context.Background(), "cp1", event.CmdPing); err != nil || !r.OK {
		t.Fatalf("ctl ping after the wipe: %+v, %v", r, err)
	}
}

// A state change made while the sensor is cut off from the server (its user
// removed by a configuration reload, so the server stays up for driftctl) is
// handed over when the sensor gets back in, every step in order: a host
// cordoned and uncordoned meanwhile sees cordoned, then sealed, so its gate
// opens again, rather than only the sealed it ended in.
func TestStateWatchResumesChangesMadeWhileDown(t *testing.T) {
	sensorSeed, sensorPub := newSeed(t)
	adminSeed, adminPub := newSeed(t)
	opts := &server.Options{Host: "127.0.0.1", Port: testenv.FreePort(t), JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Nkeys: []*server.NkeyUser{{Nkey: sensorPub}, {Nkey: adminPub}}}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(guard) {
		t.Fatal("server not ready")
	}
	url := srv.ClientURL()
	admin, err := transport.Connect(transport.Options{URL: url, NKeySeedFile: adminSeed}, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctl, _ := control.New(admin, 5*time.Second)
	if _, err := ctl.Init(context.Background(), transport.Settings{}); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, url, "rs1", t.TempDir(), transport.Options{NKeySeedFile: sensorSeed})
	var got applied
	p.WatchState(context.Background(), got.fn)
	setState(t, ctl, "rs1", event.StateSealed)
	got.waitApplied(t, 0, event.StateSealed)
	eventually(t, "watch ok", func() bool { return p.StateWatch() == WatchOK })

	reload := func(users ...*server.NkeyUser) {
		t.Helper()
		o := opts.Clone()
		o.Nkeys = users
		if err := srv.ReloadOptions(o); err != nil {
			t.Fatal(err)
		}
	}
	reload(&server.NkeyUser{Nkey: adminPub})
	eventually(t, "the sensor cut off", func() bool { return !p.Conn().IsConnected() && p.StateWatch() != WatchOK })
	mark := got.count()
	setState(t, ctl, "rs1", event.StateCordoned)
	setState(t, ctl, "rs1", event.StateSealed)
	if s := got.since(mark); len(s) != 0 {
		t.Fatalf("the sensor applied %v while cut off", s)
	}
	reload(&server.NkeyUser{Nkey: sensorPub}, &server.NkeyUser{Nkey: adminPub})
	eventually(t, "cordoned then sealed handed over", func() bool { return len(got.since(mark)) >= 2 })
	if s := got.since(mark); s[0] != event.StateCordoned || s[1] != event.StateSealed {
		t.Fatalf("after the sensor got back in it applied %v, want [cordoned sealed ...]", s)
	}
	eventually(t, "watch ok again", func() bool { return p.StateWatch() == WatchOK })
}
