package creds

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// probeEnv makes the test binary an unprivileged local user's probe of the
// embedded server: "URL|state dir|host".
const probeEnv = "DRIFT_CREDS_PROBE"

func TestMain(m *testing.M) {
	if arg := os.Getenv(probeEnv); arg != "" {
		probe(strings.Split(arg, "|"))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// probe tries what an unprivileged user would, printing one line per try:
// "<try>: ok" or "<try>: <error>".
func probe(arg []string) {
	url, dir, host := arg[0], arg[1], arg[2]
	say := func(what string, err error) {
		if err == nil {
			fmt.Printf("%s: ok\n", what)
			return
		}
		fmt.Printf("%s: %v\n", what, err)
	}
	for _, f := range []string{AdminSeed, ResponderSeed, filepath.Join(HostSeedDir, host+".nk"), AuthConfigFile} {
		_, err := os.ReadFile(filepath.Join(dir, EmbeddedDir, f))
		say("read "+f, err)
	}
	_, err := os.ReadDir(filepath.Join(dir, EmbeddedDir))
	say("list", err)
	// Without credentials, and with an nkey of its own making.
	nc, err := nats.Connect(url, nats.MaxReconnects(0))
	if err == nil {
		err = useConn(nc, host)
	}
	say("connect", err)
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	f := filepath.Join(os.TempDir(), fmt.Sprintf("probe-%d.nk", os.Getpid()))
	os.WriteFile(f, seed, 0o600)
	defer os.Remove(f)
	opt, _ := nats.NkeyOptionFromSeed(f)
	nc, err = nats.Connect(url, opt, nats.MaxReconnects(0))
	if err == nil {
		err = useConn(nc, host)
	}
	say("connect with its own nkey", err)
}

// useConn is what the attacker did once connected: unseal the host
// and forge a finding.
func useConn(nc *nats.Conn, host string) error {
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
	if os.Geteuid() != 0 {
		t.Skip("needs root: the probe runs as uid 65534")
	}
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
	if err := useConn(hostNC, "h1"); err == nil {
		t.Fatal("the host's own seed put its state")
	}

	out := runProbe(t, e.URL, state, "h1")
	want := []string{
		"read admin.nk: open " + filepath.Join(dir, AdminSeed) + ": permission denied",
		"read responder.nk: open " + filepath.Join(dir, ResponderSeed) + ": permission denied",
		"read hosts/h1.nk: open " + filepath.Join(dir, HostSeedDir, "h1.nk") + ": permission denied",
		"read auth.conf: open " + filepath.Join(dir, AuthConfigFile) + ": permission denied",
		"list: open " + dir + ": permission denied",
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

// runProbe runs this test binary as uid 65534 in probe mode.
func runProbe(t *testing.T, url, state, host string) string {
	t.Helper()
	bin, err := os.MkdirTemp("", "driftsensor-probe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	os.Chmod(bin, 0o755)
	exe := filepath.Join(bin, "probe")
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(exe, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(dst, src)
	dst.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), probeEnv+"="+url+"|"+state+"|"+host, "TMPDIR=/tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe as uid 65534: %v\n%s", err, out)
	}
	return string(out)
}
