package testenv

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
)

// asUserEnv makes a re-executed test binary run a probe instead of its tests.
const asUserEnv = "DRIFT_TESTENV_PROBE"

// probes are what AsUser can run; Main dispatches to them.
var probes = map[string]func(args []string){"intruder": intruder}

// runProbe runs the probe the environment names, if any, and exits.
func runProbe() {
	v := os.Getenv(asUserEnv)
	if v == "" {
		return
	}
	parts := strings.Split(v, "\x1f")
	f, ok := probes[parts[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "testenv: no probe %q\n", parts[0])
		os.Exit(2)
	}
	f(parts[1:])
	os.Exit(0)
}

// AsUser runs probe (e.g. "intruder") with args in a copy of this test
// binary, as uid and gid, and returns what it printed. The test package's
// TestMain must call Main. The copy lives in a world-readable directory: the
// go build cache is root's alone, and the test must prove that the files
// under test protect themselves, not that their parents happen to.
func AsUser(t testing.TB, uid int, probe string, args ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "needs root to run a probe as another user"
		if Required() {
			t.Fatalf("%s (DRIFT_REQUIRE_BPF is set, so this fails instead of skipping)", msg)
		}
		t.Skip(msg + "; set DRIFT_REQUIRE_BPF=1 to make this a failure")
	}
	dir, err := os.MkdirTemp("", "driftsensor-probe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	exe := filepath.Join(dir, "probe")
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(exe, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), asUserEnv+"="+strings.Join(append([]string{probe}, args...), "\x1f"), "TMPDIR=/tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe %s as uid %d: %v\n%s", probe, uid, err, out)
	}
	return string(out)
}

// intruder is what a local user who is not root tries against a sensor:
// args are the server URL, the host name, then files and directories to
// read. It prints one line per try, "<try>: ok" or "<try>: <error>".
func intruder(args []string) {
	url, host := args[0], args[1]
	say := func(what string, err error) {
		if err == nil {
			fmt.Printf("%s: ok\n", what)
			return
		}
		fmt.Printf("%s: %v\n", what, err)
	}
	for _, f := range args[2:] {
		if st, err := os.Stat(f); err == nil && st.IsDir() {
			_, err = os.ReadDir(f)
			say("list "+f, err)
			continue
		}
		_, err := os.ReadFile(f)
		say("read "+f, err)
	}
	// Without credentials, then with an nkey of its own making.
	nc, err := nats.Connect(url, nats.MaxReconnects(0))
	say("connect", err)
	if err == nil {
		attack(nc, host, say)
	}
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	f := filepath.Join(os.TempDir(), fmt.Sprintf("intruder-%d.nk", os.Getpid()))
	os.WriteFile(f, seed, 0o600)
	defer os.Remove(f)
	opt, _ := nats.NkeyOptionFromSeed(f)
	nc, err = nats.Connect(url, opt, nats.MaxReconnects(0))
	say("connect with its own nkey", err)
	if err == nil {
		attack(nc, host, say)
	}
}

// attack is what the intruder did once connected: unseal the host
// through its state key and have a forged finding kept in the stream.
func attack(nc *nats.Conn, host string, say func(string, error)) {
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, event.StateBucket)
	if err == nil {
		_, err = kv.Put(ctx, host, []byte(event.StateMutable))
	}
	say("put mutable", err)
	_, err = js.Publish(ctx, event.Subject(host, event.KindFile),
		[]byte(`{"schema":"`+event.Schema+`","id":"forged","host":"`+host+`","seq":1,"kind":"file","action":"unlink"}`))
	say("publish a forged finding", err)
}
