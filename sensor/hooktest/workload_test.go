package hooktest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// TestWorkloads: each benchmark workload does its work, what it leaves
// behind shows it, and a failed syscall or an unknown name stops it with an
// error instead of a time. Unprivileged, in this process.
func TestWorkloads(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		kind  string
		check func() string // what is wrong, "" for nothing
	}{
		{"churn", func() string {
			if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
				return "a left behind"
			}
			return ""
		}},
		{"syscalls", func() string { return "" }},
		{"opens", func() string {
			if _, err := os.Stat(filepath.Join(dir, "o")); err != nil {
				return err.Error()
			}
			return ""
		}},
		{"writes", func() string {
			if b, _ := os.ReadFile(filepath.Join(dir, "w")); string(b) != "some benign bytes\n" {
				return "w holds " + string(b)
			}
			return ""
		}},
		{"renames", func() string { // an even number of renames: back where it began
			if _, err := os.Stat(filepath.Join(dir, "ra")); err != nil {
				return err.Error()
			}
			return ""
		}},
		{"chmod", func() string {
			if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o601 {
				return "mode " + st.Mode().String()
			}
			return ""
		}},
		{"mmap", func() string { return "" }},
	} {
		d, err := Workload(c.kind, 4, dir, file)
		if err != nil || d <= 0 {
			t.Errorf("%s: %v, %v", c.kind, d, err)
			continue
		}
		if bad := c.check(); bad != "" {
			t.Errorf("%s: %s", c.kind, bad)
		}
	}
	for kind, want := range map[string]string{
		"syscalls": "no such file",
		"chmod":    "no such file",
		"mmap":     "no such file",
		"dance":    `unknown workload "dance"`,
	} {
		if _, err := Workload(kind, 1, dir, filepath.Join(dir, "gone")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s of a missing file: %v, want %q", kind, err, want)
		}
	}
}

// An empty file cannot be mapped: the error names it.
func TestWorkloadMapsEmptyFile(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Workload("mmap", 1, "", empty); err == nil || !strings.Contains(err.Error(), "map "+empty+" executable") {
		t.Fatalf("mmap of an empty file: %v", err)
	}
}

// TestRunWorkload: a workload run in a child inside a cgroup reports a time
// per iteration, and its failure comes back with the child's message.
func TestRunWorkload(t *testing.T) {
	testenv.RequireBPF(t) // a cgroup of its own
	cg := testenv.NewCgroup(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if d, err := RunWorkload(cg, "chmod", 10, dir, file); err != nil || d <= 0 {
		t.Fatalf("chmod workload: %v, %v", d, err)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o601 {
		t.Fatalf("after 10 chmods: %v, %v", st, err)
	}
	if _, err := RunWorkload(cg, "dance", 1, dir, file); err == nil || !strings.Contains(err.Error(), `unknown workload "dance"`) {
		t.Fatalf("unknown workload: %v", err)
	}
}
