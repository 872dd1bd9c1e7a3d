package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEventually: it returns once the condition holds, polling it.
func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, "the third poll", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("polled %d times, want 3", n)
	}
}

// TestWithin: true once the condition holds (polled until then), false
// when the bound passes first, with the condition polled at least once.
func TestWithin(t *testing.T) {
	n := 0
	if !Within(WaitBound, func() bool { n++; return n == 3 }) || n != 3 {
		t.Fatalf("Within of the third poll: polled %d times", n)
	}
	n = 0
	if Within(1, func() bool { n++; return false }) || n == 0 {
		t.Fatalf("Within of a condition that never holds returned true or never polled it (%d polls)", n)
	}
}

// TestCgroupRun: a command runs inside the cgroup (its /proc/self/cgroup
// names it) and its pid comes back; the cgroup is gone after cleanup.
func TestCgroupRun(t *testing.T) {
	RequireBPF(t)
	var cg *Cgroup
	t.Run("run", func(t *testing.T) {
		cg = NewCgroup(t)
		out := filepath.Join(t.TempDir(), "cgroup")
		if pid := cg.Run(t, "sh", "-c", "cat /proc/self/cgroup > "+out); pid <= 0 {
			t.Fatalf("pid %d", pid)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), cg.Rel) {
			t.Fatalf("the command ran in %q, want %s", b, cg.Rel)
		}
	})
	if _, err := os.Stat(cg.Path); !os.IsNotExist(err) {
		t.Fatalf("cgroup %s left after cleanup: %v", cg.Path, err)
	}
}

// TestEnvCount: unset gives the default, a positive integer is taken; the
// refusal of anything else is tested through a copy of this binary.
func TestEnvCount(t *testing.T) {
	const name = "DRIFT_TESTENV_COUNT"
	if v := os.Getenv("DRIFT_TESTENV_BAD_COUNT"); v != "" {
		t.Setenv(name, v)
		EnvCount(t, name, 3)
		return
	}
	t.Setenv(name, "")
	if n := EnvCount(t, name, 3); n != 3 {
		t.Errorf("unset: %d, want the default 3", n)
	}
	t.Setenv(name, "12")
	if n := EnvCount(t, name, 3); n != 12 {
		t.Errorf("12: %d", n)
	}
	for _, bad := range []string{"0", "-1", "ten", "1e3"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEnvCount$", "-test.v")
		cmd.Env = append(os.Environ(), "DRIFT_TESTENV_BAD_COUNT="+bad)
		out, err := cmd.CombinedOutput()
		want := name + "=\"" + bad + "\": want a positive integer (unset: 3)"
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("%s=%s: %v, output lacks %q:\n%s", name, bad, err, want, out)
		}
	}
}
