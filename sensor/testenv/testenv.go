// Package testenv holds what privileged tests share: the gate that fails in CI
// instead of skipping, and scopes (cgroups) of the test's own.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/sysfs"
)

// Required reports whether privileged tests must run (CI sets DRIFT_REQUIRE_BPF=1).
func Required() bool { return os.Getenv("DRIFT_REQUIRE_BPF") != "" }

// RequireBPF skips a test that needs root and a BTF kernel, saying why; with
// DRIFT_REQUIRE_BPF set it fails instead, so CI never passes by skipping.
func RequireBPF(t testing.TB) {
	t.Helper()
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "not root")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		why = append(why, "kernel has no BTF (/sys/kernel/btf/vmlinux)")
	}
	if _, err := sysfs.CgroupRoot(); err != nil {
		why = append(why, err.Error())
	}
	if len(why) == 0 {
		return
	}
	msg := "privileged test needs " + strings.Join(why, "; ")
	if Required() {
		t.Fatalf("%s (DRIFT_REQUIRE_BPF is set, so this fails instead of skipping)", msg)
	}
	t.Skipf("%s; set DRIFT_REQUIRE_BPF=1 to make this a failure", msg)
}

// Cgroup is a cgroup v2 directory the test created; it is removed at cleanup
// after every process in it is killed.
type Cgroup struct {
	Path string // absolute directory
	Rel  string // path inside the hierarchy, e.g. "/drifttest-x"
}

// NewCgroup creates a fresh cgroup for one test.
func NewCgroup(t testing.TB) *Cgroup {
	t.Helper()
	root, err := sysfs.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("drifttest-%d-%d", os.Getpid(), time.Now().UnixNano())
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create test cgroup: %v", err)
	}
	cg := &Cgroup{Path: dir, Rel: "/" + name}
	t.Cleanup(func() { cg.Remove() })
	return cg
}

// CgroupAt wraps a cgroup directory made elsewhere (a test bed host), for Command.
func CgroupAt(dir string) *Cgroup { return &Cgroup{Path: dir} }

// Remove kills what is left in the cgroup and deletes it.
func (c *Cgroup) Remove() error { return sysfs.RemoveCgroup(c.Path) }

// Command prepares cmd to start inside the cgroup (clone3 CLONE_INTO_CGROUP),
// so even its first instruction runs in scope.
func (c *Cgroup) Command(name string, args ...string) (*exec.Cmd, func(), error) {
	fd, err := syscall.Open(c.Path, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	return cmd, func() { syscall.Close(fd) }, nil
}

// Run runs a command inside the cgroup to its end, failing the test (with
// its output) if it fails, and returns its pid.
func (c *Cgroup) Run(t testing.TB, name string, args ...string) int {
	t.Helper()
	cmd, closeFD, err := c.Command(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %q in cgroup %s: %v\n%s", name, args, c.Path, err, out)
	}
	return cmd.Process.Pid
}

// Main runs a test binary's tests and then unmounts the kernel file systems
// they mounted, so a test run leaves the machine's mounts as it found them.
// In a copy of the binary that AsUser runs, it runs the probe instead.
func Main(m *testing.M) int {
	runProbe() // a copy of the binary run by AsUser
	before := sysfs.MountPoints()
	code := m.Run()
	if err := sysfs.UnmountNew(before); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: what the tests mounted: %v\n", err)
	}
	return code
}

// WaitBound is how long Eventually waits: long enough for a loaded CI
// machine, short enough that a broken component fails with a message instead
// of costing the whole test timeout.
const WaitBound = 30 * time.Second

// Eventually polls cond until it holds and fails the test, naming what it
// waited for, when WaitBound passes first. The bound guards against a hang;
// it is never the assertion.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyWithin(t, what, WaitBound, cond)
}

// EventuallyWithin is Eventually with a bound of the caller's, for work
// that takes longer than WaitBound even on a quiet machine (a 1,000-host
// fleet); the bound still only guards against a hang.
func EventuallyWithin(t testing.TB, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	if !Within(bound, cond) {
		t.Fatalf("gave up after %v waiting for %s", bound, what)
	}
}

// Within polls cond until it holds, and reports false when bound passes
// first: for a wait whose failure says more than Eventually's message (what
// the component under test holds at that moment), or returns an error.
func Within(bound time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// EnvCount is a benchmark's size from the environment variable name, def
// when it is unset; anything but a positive integer fails the benchmark
// naming the variable, instead of running a size nobody asked for.
func EnvCount(tb testing.TB, name string, def int) int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer (unset: %d)", name, s, def)
	}
	return n
}

// FreePort returns a loopback TCP port nothing listens on now, for a server
// a test starts (and restarts) on a port it must know in advance.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Build builds the main package pkg into a fresh directory anyone may enter
// (a test may run the binary as another user), removed at cleanup, and
// returns the binary's path. With DRIFT_COVERDIR set (make cover) the binary
// is built with coverage of the whole module, and GOCOVERDIR, which the
// processes the test starts inherit, is pointed there: go test -cover gives
// the test binary a GOCOVERDIR of its own, which is not where make cover
// reads the binaries' counters.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	dir := BuildAll(t, pkg)
	return filepath.Join(dir, binName(pkg))
}

// BuildAll is Build for several main packages at once, into one directory
// it returns (a test that puts them on $PATH); each binary is named as go
// build names it (the last path element that is not a major version).
func BuildAll(t testing.TB, pkgs ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "drifttest-bin") // not t.TempDir: its parent is 0700
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	if cover := os.Getenv("DRIFT_COVERDIR"); cover != "" {
		args = append(args, "-cover", "-covermode=atomic", "-coverpkg=github.com/driftsensor/driftsensor/...")
		os.Setenv("GOCOVERDIR", cover)
	}
	out, err := exec.Command("go", append(args, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	return dir
}

// binName is the name go build gives the binary of pkg.
func binName(pkg string) string {
	name := path.Base(pkg)
	if len(name) > 1 && name[0] == 'v' && strings.Trim(name[1:], "0123456789") == "" {
		name = path.Base(path.Dir(pkg))
	}
	return name
}
