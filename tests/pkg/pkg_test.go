// Package pkg tests the .deb packages as an operator meets them: installed
// with dpkg on this machine, their files, conffiles and units checked, the
// installed sensor run on a test scope, then purged with nothing left.
package pkg

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// commit is what the test stamps into the binaries it packages, to prove
// that --version reports the build's stamp, not a default.
const commit = "0123456789abcdef0123456789abcdef01234567"

// installed lists every file the two packages put on the machine; purge must
// remove each of them, and the directories the packages made.
var installed = map[string][]string{
	"driftsensor": {
		"/usr/bin/driftsensor",
		"/usr/lib/systemd/system/driftsensor.service",
		"/etc/driftsensor/policy.yaml",
		"/etc/default/driftsensor",
		"/usr/share/doc/driftsensor/README.md",
		"/usr/share/doc/driftsensor/events.md",
	},
	"driftsensor-fleet": {
		"/usr/bin/driftresponder",
		"/usr/bin/driftctl",
		"/usr/lib/systemd/system/driftresponder.service",
		"/etc/driftresponder/policy.yaml",
		"/etc/default/driftresponder",
		"/usr/share/doc/driftsensor-fleet/README.md",
		"/usr/share/doc/driftsensor-fleet/examples/policy.yaml",
	},
}

var conffiles = map[string][]string{
	"driftsensor":       {"/etc/driftsensor/policy.yaml", "/etc/default/driftsensor"},
	"driftsensor-fleet": {"/etc/driftresponder/policy.yaml", "/etc/default/driftresponder"},
}

var madeDirs = []string{"/etc/driftsensor", "/etc/driftresponder", "/usr/share/doc/driftsensor", "/usr/share/doc/driftsensor-fleet", "/var/lib/driftsensor"}

// TestInstallRunPurge installs both packages, checks what they hold, runs the
// installed sensor sealed on a cgroup of its own with one mutation, and
// purges them.
func TestInstallRunPurge(t *testing.T) {
	testenv.RequireBPF(t)
	for _, tool := range []string{"dpkg", "dpkg-query", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the package test needs it (scripts/setup.sh installs it)", tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	version, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	ver := strings.TrimSpace(string(version))
	debs := buildPackages(t, root, ver)

	for pkg := range installed {
		if dpkgQuery(pkg) != "" {
			t.Logf("%s is installed (left by an earlier run?): purging it first", pkg)
			dpkg(t, "--purge", pkg)
		}
	}
	t.Cleanup(func() {
		if dpkgQuery("driftsensor") != "" || dpkgQuery("driftsensor-fleet") != "" {
			dpkg(t, "--purge", "driftsensor-fleet", "driftsensor")
		}
	})
	dpkg(t, append([]string{"--install"}, debs...)...)

	t.Run("files", func(t *testing.T) {
		for pkg, files := range installed {
			if got := dpkgQuery(pkg); got != "install ok installed "+ver {
				t.Errorf("dpkg-query %s: %q, want installed %s", pkg, got, ver)
			}
			listed, _ := exec.Command("dpkg", "-L", pkg).Output()
			for _, f := range files {
				st, err := os.Stat(f)
				if err != nil {
					t.Errorf("%s: %v", f, err)
					continue
				}
				want := os.FileMode(0o644)
				if strings.HasPrefix(f, "/usr/bin/") {
					want = 0o755
				}
				if st.Mode().Perm() != want || !st.Mode().IsRegular() {
					t.Errorf("%s: mode %v, want a regular file %v", f, st.Mode(), want)
				}
				if !bytes.Contains(listed, []byte(f+"\n")) {
					t.Errorf("dpkg -L %s does not list %s", pkg, f)
				}
			}
			out, _ := exec.Command("dpkg-query", "-W", "-f", "${Conffiles}", pkg).Output()
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if f := strings.Fields(l); len(f) > 0 {
					got = append(got, f[0])
				}
			}
			slices.Sort(got)
			if want := slices.Sorted(slices.Values(conffiles[pkg])); !slices.Equal(got, want) {
				t.Errorf("%s conffiles %q, want %q", pkg, got, want)
			}
		}
	})

	t.Run("units", func(t *testing.T) {
		units := []string{"/usr/lib/systemd/system/driftsensor.service", "/usr/lib/systemd/system/driftresponder.service"}
		out, err := exec.Command("systemd-analyze", append([]string{"verify"}, units...)...).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		for _, u := range units {
			text, _ := os.ReadFile(u)
			for _, l := range strings.Split(string(text), "\n") {
				if strings.HasPrefix(l, "ExecStart=") && strings.Contains(l, "seal") {
					t.Errorf("%s: %s: installing must never seal", u, l)
				}
			}
			// Installing enables nothing.
			if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/" + filepath.Base(u)); err == nil {
				t.Errorf("%s was enabled by the installation", u)
			}
		}
	})

	t.Run("version", func(t *testing.T) {
		for _, tool := range []string{"driftsensor", "driftresponder", "driftctl"} {
			out, err := exec.Command("/usr/bin/"+tool, "--version").CombinedOutput()
			want := fmt.Sprintf("%s %s (commit %s, %s, linux/%s)\n", tool, ver, commit, runtime.Version(), runtime.GOARCH)
			if err != nil || string(out) != want {
				t.Errorf("%s --version: %v %q, want %q", tool, err, out, want)
			}
		}
	})

	t.Run("installed sensor", func(t *testing.T) { runInstalledSensor(t) })

	dpkg(t, "--purge", "driftsensor-fleet", "driftsensor")
	for pkg, files := range installed {
		if got := dpkgQuery(pkg); got != "" {
			t.Errorf("after purge, dpkg-query %s: %q", pkg, got)
		}
		for _, f := range files {
			if _, err := os.Lstat(f); err == nil {
				t.Errorf("after purge, %s is still there", f)
			}
		}
	}
	for _, d := range madeDirs {
		if _, err := os.Lstat(d); err == nil {
			t.Errorf("after purge, %s is still there", d)
		}
	}
}

// runInstalledSensor runs /usr/bin/driftsensor sealed on a cgroup the test
// made, with a policy protecting a directory the test made: one file written
// there by a process in the cgroup is the one finding on stdout.
func runInstalledSensor(t *testing.T) {
	cg := testenv.NewCgroup(t)
	img, err := os.MkdirTemp("", "driftsensor-pkgtest-img") // the policy protects only this directory
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(img) })
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte("version: 1\nprotect: ["+img+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	sensor := exec.Command("/usr/bin/driftsensor", "--policy", pol, "--scope-cgroup", cg.Rel, "--seal", "--nats", "off",
		"--host", "pkgtest", "--state-dir", t.TempDir(), "--ready-file", ready)
	stdout, err := sensor.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	sensor.Stderr = io.MultiWriter(os.Stderr, &logs)
	if err := sensor.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			sensor.Process.Kill()
			sensor.Wait()
		}
	})
	testenv.Eventually(t, "the installed sensor's ready file", func() bool {
		_, err := os.Stat(ready)
		return err == nil
	})

	target := filepath.Join(img, "dropped")
	actor, closeFD, err := cg.Command("sh", "-c", "echo x > "+target)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD()
	if out, err := actor.CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}

	// Read, with a bound, up to the mutation's finding; then after SIGTERM the
	// sensor exits 0 and closes stdout, so the lines read are every record it
	// made: the seal it applied at start, then the one finding.
	out := make(chan string, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out <- sc.Text()
		}
	}()
	var got []event.Event
	add := func(l string) event.Event {
		var ev event.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		got = append(got, ev)
		return ev
	}
	for done := false; !done; {
		select {
		case l, ok := <-out:
			if !ok {
				t.Fatalf("the installed sensor's output ended before its finding: %+v", got)
			}
			done = add(l).Kind == event.KindFile
		case <-time.After(testenv.WaitBound):
			t.Fatalf("no finding from the installed sensor within %v: %+v", testenv.WaitBound, got)
		}
	}
	sensor.Process.Signal(syscall.SIGTERM)
	for l := range out {
		add(l)
	}
	err = sensor.Wait()
	exited = true
	if err != nil {
		t.Errorf("installed sensor after SIGTERM: %v", err)
	}
	// Log lines are strict JSON: a repeated key is refused by ingestion
	// pipelines that check for duplicates.
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if err := strictJSON([]byte(l)); err != nil {
			t.Errorf("log line %q: %v", l, err)
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d records, want the seal applied and one finding: %+v", len(got), got)
	}
	if ev := got[0]; ev.Host != "pkgtest" || ev.Kind != event.KindSensor || ev.Action != "state_applied" || ev.Seq != 1 ||
		ev.Health == nil || ev.Health.Applied == nil || ev.Health.Applied.To != event.StateSealed {
		t.Fatalf("first record %+v, want host pkgtest, sensor state_applied to sealed, seq 1", ev)
	}
	ev := got[1]
	if ev.Host != "pkgtest" || ev.Kind != event.KindFile || ev.Action != "open_write" || ev.File == nil || ev.File.Path != target ||
		ev.Process.PID != uint32(actor.Process.Pid) || ev.Seq != 2 {
		t.Fatalf("finding %+v\nwant host pkgtest, file open_write %s by pid %d, seq 2", ev, target, actor.Process.Pid)
	}
}

// buildPackages returns the .deb files to test: those in $DRIFT_DEB_DIR
// (from make dist), else packages the test builds with make into a temporary
// directory, stamped with the test's commit.
func buildPackages(t *testing.T, root, ver string) []string {
	t.Helper()
	dir := os.Getenv("DRIFT_DEB_DIR")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "driftsensor-pkgtest"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		cmd := exec.Command("make", "--no-print-directory", "-C", root, "packages", "DIST="+dir, "COMMIT="+commit, "ARCHES="+runtime.GOARCH)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make packages: %v\n%s", err, out)
		}
	}
	var debs []string
	for _, pkg := range []string{"driftsensor", "driftsensor-fleet"} {
		f := filepath.Join(dir, pkg+"_"+ver+"_"+runtime.GOARCH+".deb")
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("package %s: %v", pkg, err)
		}
		debs = append(debs, f)
	}
	return debs
}

// dpkgQuery returns a package's status and version, "" when it is not
// installed (purged or never seen).
func dpkgQuery(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Status} ${Version}", pkg).Output()
	if err != nil || strings.HasPrefix(string(out), "unknown ok not-installed") {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// dpkg runs dpkg, waiting (bounded) while another dpkg or apt holds its lock.
func dpkg(t *testing.T, args ...string) {
	t.Helper()
	deadline := time.Now().Add(testenv.WaitBound)
	for {
		out, err := exec.Command("dpkg", args...).CombinedOutput()
		if err == nil {
			return
		}
		if !bytes.Contains(out, []byte("lock")) || time.Now().After(deadline) {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		time.Sleep(time.Second)
	}
}

// strictJSON checks that line is one JSON object in which no object repeats a key.
func strictJSON(line []byte) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	type obj struct {
		keys   map[string]bool
		expect bool // the next string token is a key
	}
	var stack []*obj
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) != 0 {
				return fmt.Errorf("unterminated")
			}
			return nil
		}
		if err != nil {
			return err
		}
		var top *obj
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.expect {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 {
					stack[len(stack)-1].expect = stack[len(stack)-1].keys != nil
				}
				continue
			}
			k := tok.(string)
			if top.keys[k] {
				return fmt.Errorf("key %q repeated", k)
			}
			top.keys[k] = true
			top.expect = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &obj{keys: map[string]bool{}, expect: true})
			continue
		case json.Delim('['):
			stack = append(stack, &obj{})
			continue
		case json.Delim(']'), json.Delim('}'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: the enclosing object expects a key next.
		if len(stack) > 0 {
			stack[len(stack)-1].expect = stack[len(stack)-1].keys != nil
		}
	}
}
