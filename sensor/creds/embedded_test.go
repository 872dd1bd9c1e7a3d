package creds

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/publish"
	"github.com/driftsensor/driftsensor/sensor/spool"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// putState is what the intruder tried with the host's own seed: unseal it.
func putState(nc *nats.Conn, host string) error {
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, event.StateBucket)
	if err == nil {
		_, err = kv.Put(ctx, host, []byte(event.StateMutable))
	}
	return err
}

// TestEmbeddedServerIsAuthenticated: the default server generates its
// credentials at first start, root's alone on disk, keeps them on the next,
// and refuses a local user who has none: it can neither read a seed nor
// connect, so it can neither publish nor change the host's state.
func TestEmbeddedServerIsAuthenticated(t *testing.T) {
	// Not t.TempDir: its parent is 0700, which would hide the files from the
	// probe whatever their own modes. Only the creds directory may protect them.
	state, err := os.MkdirTemp("", "driftsensor-state")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	os.Chmod(state, 0o755)

	e, err := StartEmbedded(state, "h1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	dir := filepath.Join(state, EmbeddedDir)
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("%s: %v %v, want a directory of root's, mode 0700", dir, st.Mode(), err)
	}
	for _, u := range e.Creds.Users {
		st, err := os.Stat(u.SeedFile)
		if err != nil || st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Fatalf("%s: %v %v, want a file of root's, mode 0600", u.SeedFile, st.Mode(), err)
		}
	}
	if e.HostSeed != filepath.Join(dir, HostSeedDir, "h1.nk") || EmbeddedAdminSeed(state) != filepath.Join(dir, AdminSeed) {
		t.Fatalf("host seed %s, admin seed %s", e.HostSeed, EmbeddedAdminSeed(state))
	}

	// The admin's seed works and made the stream and the bucket; the host's
	// connects but cannot write its own state.
	admin := adminConn(t, e.URL, EmbeddedAdminSeed(state))
	js, _ := jetstream.New(admin)
	if _, err := js.Stream(context.Background(), event.StreamName); err != nil {
		t.Fatalf("stream %s: %v", event.StreamName, err)
	}
	kv, err := js.KeyValue(context.Background(), event.StateBucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", event.StateBucket, err)
	}
	hostNC, err := transport.Connect(transport.Options{URL: e.URL, NKeySeedFile: e.HostSeed, InboxPrefix: transport.InboxPrefix("h1")})
	if err != nil {
		t.Fatalf("the host's own seed: %v", err)
	}
	if err := putState(hostNC, "h1"); err == nil {
		t.Fatal("the host's own seed put its state")
	}

	files := []string{filepath.Join(dir, AdminSeed), filepath.Join(dir, ResponderSeed), filepath.Join(dir, HostSeedDir, "h1.nk"),
		filepath.Join(dir, AuthConfigFile), dir}
	out := testenv.AsUser(t, 65534, "intruder", append([]string{e.URL, "h1"}, files...)...)
	want := []string{
		"read " + files[0] + ": open " + files[0] + ": permission denied",
		"read " + files[1] + ": open " + files[1] + ": permission denied",
		"read " + files[2] + ": open " + files[2] + ": permission denied",
		"read " + files[3] + ": open " + files[3] + ": permission denied",
		"list " + dir + ": open " + dir + ": permission denied",
		"connect: nats: Authorization Violation",
		"connect with its own nkey: nats: Authorization Violation",
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the unprivileged probe:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if _, err := kv.Get(context.Background(), "h1"); err != jetstream.ErrKeyNotFound {
		t.Fatalf("the host's state key after the probe: %v, want none", err)
	}

	// A restart keeps the seeds: driftctl and a responder keep working.
	pub := e.Creds.Users[0].PublicKey
	e.Close()
	e2, err := StartEmbedded(state, "h1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if u, _ := e2.Creds.User("h1"); u.PublicKey != pub || u.Created {
		t.Fatalf("restart re-keyed the host: %+v", u)
	}
	adminConn(t, e2.URL, EmbeddedAdminSeed(state))
}

func adminConn(t *testing.T, url, seed string) *nats.Conn {
	t.Helper()
	nc, err := transport.Connect(transport.Options{URL: url, NKeySeedFile: seed})
	if err != nil {
		t.Fatalf("admin seed %s: %v", seed, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestEmbeddedInProcessConnection: the sensor reaches its embedded server
// through an in-memory pipe (transport.Options.InProcess), logged in with the
// host's seed like any client: its findings reach a subscriber on the
// server's TCP port, and a seed the server does not know is refused there
// too, as ErrUnauthorized.
func TestEmbeddedInProcessConnection(t *testing.T) {
	state := t.TempDir()
	e, err := StartEmbedded(state, "h1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	admin := adminConn(t, e.URL, EmbeddedAdminSeed(state))
	sub, err := admin.SubscribeSync(event.Subject("h1", event.KindFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}

	sp, _, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	p, err := publish.New(context.Background(), transport.Options{URL: e.URL, InProcess: e.Server, NKeySeedFile: e.HostSeed}, "h1", sp, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if addr := p.Conn().ConnectedAddr(); addr != "pipe" {
		t.Fatalf("the publisher's connection is to %q, want the in-process pipe", addr)
	}
	if err := p.Publish(finding(event.KindFile, "h1")); err != nil {
		t.Fatal(err)
	}
	if c := p.Counters(); c.Published != 1 || c.Spooled != 0 || c.Transport != event.TransportJetStream {
		t.Fatalf("publisher counters %+v: want 1 published straight into the stream", c)
	}
	m, err := sub.NextMsg(testenv.WaitBound)
	if err != nil {
		t.Fatalf("the finding never reached the TCP subscriber: %v", err)
	}
	var ev event.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Host != "h1" || ev.Kind != event.KindFile || ev.Action != "unlink" ||
		ev.File == nil || ev.File.Path != "/etc/passwd" || ev.Seq != 1 {
		t.Fatalf("received %s (%v), want h1's unlink of /etc/passwd, seq 1", m.Data, err)
	}

	// The pipe skips the socket, not the login.
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	stranger := filepath.Join(t.TempDir(), "stranger.nk")
	if err := os.WriteFile(stranger, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := transport.Options{URL: e.URL, InProcess: e.Server, NKeySeedFile: stranger}
	if _, err := transport.Connect(bad); !errors.Is(err, transport.ErrUnauthorized) {
		t.Fatalf("driftctl's connect in process with an unknown seed: %v, want ErrUnauthorized", err)
	}
	sp2, _, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp2.Close()
	if p2, err := publish.New(context.Background(), bad, "h1", sp2, zerolog.Nop()); !errors.Is(err, transport.ErrUnauthorized) {
		if p2 != nil {
			p2.Close()
		}
		t.Fatalf("the sensor's publisher in process with an unknown seed: %v, want ErrUnauthorized", err)
	}
}
