package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

// TestTestbedDownAfterKill: driftctl testbed up builds hosts with their
// sensors and a responder and prints how to reach them; SIGKILLed, it leaves
// all of that behind, and testbed down removes it by name: no namespace,
// link, cgroup, mount, pin or work directory with the bed's prefix remains.
func TestTestbedDownAfterKill(t *testing.T) {
	testenv.RequireBPF(t)
	// Side by side, as make build leaves them: up finds the daemons next to itself.
	ctl := filepath.Join(testenv.BuildAll(t, "github.com/driftsensor/driftsensor/cmd/driftctl",
		"github.com/driftsensor/driftsensor/cmd/driftsensor", "github.com/driftsensor/driftsensor/cmd/driftresponder"), "driftctl")
	const name = "kill"
	prefix := testbed.CLIPrefix + name
	if left := testbed.Leftovers(prefix); len(left) > 0 {
		t.Fatalf("leftovers of an earlier run: %v", left)
	}
	t.Cleanup(func() { _ = testbed.Down(prefix) }) // only if the test fails before its own down

	out := filepath.Join(t.TempDir(), "up.out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	up := exec.Command(ctl, "testbed", "up", "--hosts", "2", "--name", name, "--seal", "--rule", "kind=file,action=cordon")
	up.Stdout, up.Stderr = f, f
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	testenv.Eventually(t, "testbed up to say ready", func() bool {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(out)
			t.Fatalf("testbed up exited: %v\n%s", err, b)
		default:
		}
		b, _ := os.ReadFile(out)
		return strings.Contains(string(b), "\nready;")
	})
	b, _ := os.ReadFile(out)
	for _, want := range []string{"dtckill-h1", "dtckill-h2", "192.0.2.", "drift.v1.dtckill-h1.ctl", "nats://127.0.0.1:",
		"/run/driftsensor-testbed/dtckill/creds/hosts/dtckill-h2.nk", "cgroup /"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("testbed up output lacks %q:\n%s", want, b)
		}
	}

	if err := up.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	left := testbed.Leftovers(prefix)
	if !hasKind(left, "netns") || !hasKind(left, "link") || !hasKind(left, "cgroup") || !hasKind(left, "mount") {
		t.Fatalf("after SIGKILL, want namespaces, links, the cgroup and mounts left behind, got %v", left)
	}

	cmd := exec.Command(ctl, "testbed", "down", "--name", name)
	if o, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(o), "test bed kill removed") {
		t.Fatalf("testbed down: %v\n%s", err, o)
	}
	if left := testbed.Leftovers(prefix); len(left) > 0 {
		t.Fatalf("after down: %v", left)
	}
	// down on nothing is fine: it is what a cleanup script runs blindly.
	if o, err := exec.Command(ctl, "testbed", "down", "--name", name).CombinedOutput(); err != nil {
		t.Fatalf("second down: %v\n%s", err, o)
	}
}

func hasKind(left []string, kind string) bool {
	for _, l := range left {
		if strings.HasPrefix(l, kind+" ") {
			return true
		}
	}
	return false
}

// TestTestbedUsage: a bad name or host count is refused with status 2
// before anything is made.
func TestTestbedUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"testbed"}, "want up or down"},
		{[]string{"testbed", "sideways"}, "want up or down"},
		{[]string{"testbed", "up", "--name", "Web1"}, `test bed name "Web1": use 1-6 lowercase letters`},
		{[]string{"testbed", "down", "--name", "toolongname"}, `test bed name "toolongname"`},
		{[]string{"testbed", "up", "--hosts", "0"}, "--hosts 0: want 1 to 100"},
	} {
		var out, errs strings.Builder
		code := run(c.args, &out, &errs)
		if code != exitUsage || !strings.Contains(errs.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errs.String(), c.want)
		}
	}
}
