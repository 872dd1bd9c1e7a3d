package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// TestImageRunsInPodman loads the archive of freshly built driftresponder and
// driftctl binaries into a real container engine and runs each --version
// there, without a network. It needs Debian's podman and runc (podman's
// default runtime, crun, refuses this machine's hybrid cgroup layout), which
// scripts/setup.sh installs; with DRIFT_REQUIRE_BPF set (CI) their absence
// fails the test, otherwise it skips, saying so. Podman keeps its images in a temporary root
// of its own and its cgroups under a parent the test removes.
func TestImageRunsInPodman(t *testing.T) {
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := fmt.Sprintf("%s not found: this test needs podman and runc (scripts/setup.sh installs them)", tool)
			if testenv.Required() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	if os.Geteuid() != 0 {
		if testenv.Required() {
			t.Fatal("podman with runc and a cgroup parent of the test's own needs root")
		}
		t.Skip("podman with runc and a cgroup parent of the test's own needs root")
	}
	def, err := ParseDockerfile("../docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	arch := goarch(t)
	for _, cmd := range []string{"driftresponder", "driftctl"} {
		b := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dist, "linux_"+arch, cmd), "../../cmd/"+cmd)
		b.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := b.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	archive := filepath.Join(t.TempDir(), "image.tar")
	tag := "driftsensor-fleet:podman-test"
	if _, err := Build(def, BuildOptions{Dist: dist, Arches: []string{arch}, Tag: tag, Out: archive, Created: time.Unix(1700000000, 0).UTC()}); err != nil {
		t.Fatal(err)
	}

	store := t.TempDir()
	parent := fmt.Sprintf("driftsensor-podman-test-%d", os.Getpid())
	t.Cleanup(func() {
		// Every hierarchy podman made the parent in (cgroup v1 and v2 alike).
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
		if d := "/sys/fs/cgroup/" + parent; exists(d) {
			dirs = append(dirs, d)
		}
		for _, d := range dirs {
			// The containers' own cgroups below it first (podman leaves them).
			var sub []string
			filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					sub = append(sub, p)
				}
				return nil
			})
			// A container's conmon may still be on its way out after
			// `podman run --rm` returned: its cgroup is busy until it is gone.
			for i := len(sub) - 1; i >= 0; i-- {
				var err error
				if !testenv.Within(testenv.WaitBound, func() bool {
					err = os.Remove(sub[i])
					return err == nil || errors.Is(err, fs.ErrNotExist)
				}) {
					procs, _ := os.ReadFile(filepath.Join(sub[i], "cgroup.procs"))
					t.Errorf("removing podman's cgroup: %v (processes in it: %q)", err, procs)
				}
			}
		}
	})
	podman := func(args ...string) (string, error) {
		base := []string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"),
			"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc"}
		out, err := exec.Command("podman", append(base, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := podman("load", "-i", archive); err != nil || !strings.Contains(out, "Loaded image: docker.io/library/"+tag) {
		t.Fatalf("podman load -i %s: %v\n%s", archive, err, out)
	}
	// A sandbox's hard limits can be lower than podman's defaults: name them.
	run := []string{"run", "--rm", "--network", "none", "--cgroup-parent", "/" + parent,
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	for _, c := range []struct{ entry, want string }{
		{"", "driftresponder dev (commit unknown, "}, // the Dockerfile's entrypoint
		{"/driftctl", "driftctl dev (commit unknown, "},
	} {
		args := append([]string{}, run...)
		if c.entry != "" {
			args = append(args, "--entrypoint", c.entry)
		}
		out, err := podman(append(args, tag, "--version")...)
		if err != nil || !strings.HasPrefix(out, c.want) || !strings.HasSuffix(out, "linux/"+arch+")\n") {
			t.Errorf("podman run %s --version: %v\n%q, want %q...linux/%s)", tag, err, out, c.want, arch)
		}
	}
	if out, err := podman("ps", "-a", "-q"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("containers left: %v %q", err, out)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// goarch is the architecture go builds for here.
func goarch(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
