package testenv

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/creds"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// TestMain is Main, as every privileged package's.
func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestRequired: DRIFT_REQUIRE_BPF set (to anything) makes privileged tests required.
func TestRequired(t *testing.T) {
	t.Setenv("DRIFT_REQUIRE_BPF", "")
	if Required() {
		t.Fatal("required with DRIFT_REQUIRE_BPF empty")
	}
	t.Setenv("DRIFT_REQUIRE_BPF", "1")
	if !Required() {
		t.Fatal("not required with DRIFT_REQUIRE_BPF=1")
	}
}

// TestFreePort: nothing listens on the port returned, so a server can.
func TestFreePort(t *testing.T) {
	p := FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("listen on the free port %d: %v", p, err)
	}
	l.Close()
}

// TestEventuallyWithinGivesUp: a condition that never holds fails the test
// naming what it waited for and the bound. The failing test runs in a copy
// of this binary, so its failure is seen from outside.
func TestEventuallyWithinGivesUp(t *testing.T) {
	if os.Getenv("DRIFT_TESTENV_GIVE_UP") != "" {
		EventuallyWithin(t, "a condition that never holds", 1, func() bool { return false })
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEventuallyWithinGivesUp$", "-test.v")
	cmd.Env = append(os.Environ(), "DRIFT_TESTENV_GIVE_UP=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "gave up after 1ns waiting for a condition that never holds") {
		t.Fatalf("want a failure naming the wait and the bound; got %v:\n%s", err, out)
	}
}

// TestBuild: Build and BuildAll produce runnable binaries named as go build
// names them; under make cover (DRIFT_COVERDIR) the binaries write their
// counters there.
func TestBuild(t *testing.T) {
	const hello = "github.com/driftsensor/driftsensor/sensor/testenv/testdata/hello"
	t.Setenv("GOCOVERDIR", os.Getenv("GOCOVERDIR")) // Build changes it; restored at the end
	cover := t.TempDir()
	t.Setenv("DRIFT_COVERDIR", cover)
	bin := Build(t, hello)
	if filepath.Base(bin) != "hello" {
		t.Errorf("binary %s, want it called hello", bin)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || string(out) != "hello from a built binary\n" {
		t.Fatalf("run %s: %v: %q", bin, err, out)
	}
	if m, _ := filepath.Glob(filepath.Join(cover, "covmeta.*")); len(m) == 0 {
		t.Errorf("the binary wrote no coverage into DRIFT_COVERDIR %s", cover)
	}
	st, err := os.Stat(filepath.Dir(bin))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("binary directory %v (%v), want mode 0755 for other users", st.Mode(), err)
	}

	t.Setenv("DRIFT_COVERDIR", "")
	dir := BuildAll(t, hello)
	if _, err := os.Stat(filepath.Join(dir, "hello")); err != nil {
		t.Fatal(err)
	}
}

func TestBinName(t *testing.T) {
	for pkg, want := range map[string]string{
		"github.com/driftsensor/driftsensor/cmd/driftctl": "driftctl",
		"github.com/nats-io/nats-server/v2":               "nats-server",
		"example.com/tools/v2x":                           "v2x",
		"example.com/v":                                   "v",
	} {
		if got := binName(pkg); got != want {
			t.Errorf("binName(%q) = %q, want %q", pkg, got, want)
		}
	}
}

// TestCgroupRemoveKills: Remove kills what still runs in the cgroup, then
// removes it; a process started with Command runs in the cgroup.
func TestCgroupRemoveKills(t *testing.T) {
	RequireBPF(t)
	cg := CgroupAt(NewCgroup(t).Path)
	cmd, closeFD, err := cg.Command("sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	procs, _ := os.ReadFile(filepath.Join(cg.Path, "cgroup.procs"))
	if strings.TrimSpace(string(procs)) != strconv.Itoa(cmd.Process.Pid) {
		t.Fatalf("cgroup.procs %q, want the sleep's pid %d", procs, cmd.Process.Pid)
	}
	if err := cg.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("sleep ended with %v, want killed", err)
	}
	if _, err := os.Stat(cg.Path); !os.IsNotExist(err) {
		t.Errorf("cgroup %s still there: %v", cg.Path, err)
	}
}

// TestIntruderRefused: the intruder probe, as another user, against an
// authenticated embedded server: it cannot read the root-only seeds, and
// the server refuses it without credentials and with a key of its own.
func TestIntruderRefused(t *testing.T) {
	RequireBPF(t)
	state := t.TempDir()
	e := embedded(t, state)
	os.Chmod(state, 0o755) // the test's own directory: the seeds must guard themselves
	admin := creds.EmbeddedAdminSeed(state)
	out := AsUser(t, 65534, "intruder", e.URL, "h1", admin, "/")
	for _, want := range []string{
		"read " + admin + ": open " + admin + ": permission denied",
		"list /: ok",
		"connect: nats: Authorization Violation",
		"connect with its own nkey: nats: Authorization Violation",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("intruder output lacks %q:\n%s", want, out)
		}
	}
}

// TestAttackWhenAllowed: connected with a credential that may, the attack
// really unseals the host and gets a forged finding into the stream, so a
// refusal seen elsewhere is the server's, not the probe's failing.
func TestAttackWhenAllowed(t *testing.T) {
	RequireBPF(t)
	e := embedded(t, t.TempDir())
	admin, _ := e.Creds.User(creds.RoleAdmin)
	opt, err := nats.NkeyOptionFromSeed(admin.SeedFile)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.URL, opt)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	attack(nc, "h1", func(what string, err error) { lines = append(lines, what+": "+errString(err)) })
	if strings.Join(lines, "\n") != "put mutable: ok\npublish a forged finding: ok" {
		t.Fatalf("attack with the admin's credential: %q", lines)
	}
	nc2, err := nats.Connect(e.URL, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js, _ := jetstream.New(nc2)
	kv, err := js.KeyValue(context.Background(), event.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kv.Get(context.Background(), "h1")
	if err != nil || string(got.Value()) != string(event.StateMutable) {
		t.Fatalf("state of h1 after the attack: %v %v, want mutable", got, err)
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// TestIntruderInProcess: the probe's own logic, run here: a file it can
// read, a directory it can list, a path that does not exist.
func TestIntruderInProcess(t *testing.T) {
	RequireBPF(t)
	e := embedded(t, t.TempDir())
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, []byte("x"), 0o600)
	out := captureStdout(t, func() { intruder([]string{e.URL, "h1", file, dir, filepath.Join(dir, "missing")}) })
	for _, want := range []string{"read " + file + ": ok", "list " + dir + ": ok", "read " + filepath.Join(dir, "missing") + ": open",
		"connect: nats: Authorization Violation", "connect with its own nkey: nats: Authorization Violation"} {
		if !strings.Contains(out, want) {
			t.Errorf("intruder output lacks %q:\n%s", want, out)
		}
	}
}

// captureStdout runs fn with os.Stdout going to a pipe and returns what it printed.
func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	fn()
	os.Stdout = saved
	w.Close()
	return <-done
}

// embedded starts the authenticated embedded server of host h1 with its
// state in dir.
func embedded(t *testing.T, dir string) *creds.Embedded {
	t.Helper()
	e, err := creds.StartEmbedded(dir, "h1", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}
