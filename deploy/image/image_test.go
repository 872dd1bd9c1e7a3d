package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stubDist builds a small static program for each architecture and puts it
// where make dist-bin puts driftresponder and driftctl.
func stubDist(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module stub\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { println(\"stub\") }\n"), 0o644)
	dist := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		dir := filepath.Join(dist, "linux_"+arch)
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "driftresponder"), ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build stub for %s: %v\n%s", arch, err, out)
		}
		data, _ := os.ReadFile(filepath.Join(dir, "driftresponder"))
		os.WriteFile(filepath.Join(dir, "driftctl"), data, 0o755)
	}
	return dist
}

// The image of deploy/docker/Dockerfile, built twice from the same binaries
// in other directories at other times, is the same bytes, and reads back as
// the Dockerfile says: both architectures, user 65534, entrypoint
// /driftresponder, exactly the two static binaries, root-owned, mode 755.
func TestImageReproducibleAndAsDefined(t *testing.T) {
	def, err := ParseDockerfile("../docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if def.User != "65534:65534" || strings.Join(def.Entrypoint, " ") != "/driftresponder" {
		t.Fatalf("the Dockerfile now says user %q entrypoint %q: update this test and the README", def.User, def.Entrypoint)
	}
	dist := stubDist(t)
	epoch := time.Unix(1700000000, 0).UTC()
	var archives [][]byte
	for i := 0; i < 2; i++ {
		out := filepath.Join(t.TempDir(), "image.tar")
		if i == 1 {
			// Other file times on the inputs: the image must not see them.
			now := time.Now()
			filepath.Walk(dist, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, now, now) })
		}
		if _, err := Build(def, BuildOptions{Dist: dist, Arches: []string{"amd64", "arm64"}, Tag: "driftsensor-fleet:0.3.0", Out: out, Created: epoch}); err != nil {
			t.Fatal(err)
		}
		if err := Verify(out, def, "driftsensor-fleet:0.3.0", []string{"amd64", "arm64"}); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		archives = append(archives, data)
	}
	if !bytes.Equal(archives[0], archives[1]) {
		t.Error("two builds of the same binaries differ")
	}
	// A check that passes everything proves nothing: another tag and a
	// missing architecture are caught.
	out := filepath.Join(t.TempDir(), "image.tar")
	os.WriteFile(out, archives[0], 0o644)
	if err := Verify(out, def, "other:1", []string{"amd64", "arm64"}); err == nil || !strings.Contains(err.Error(), "named other:1") {
		t.Errorf("wrong tag: %v", err)
	}
	if err := Verify(out, def, "driftsensor-fleet:0.3.0", []string{"amd64"}); err == nil || !strings.Contains(err.Error(), "architectures") {
		t.Errorf("extra architecture: %v", err)
	}
}

// An image that would run as root, or whose binary is for another machine,
// fails the check; a Dockerfile instruction the builder does not know is
// refused with file:line.
func TestImageRefusals(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		return p
	}
	dist := stubDist(t)
	root, err := ParseDockerfile(write("root", "FROM scratch\nARG TARGETARCH=amd64\nARG DIST=dist\nCOPY ${DIST}/linux_${TARGETARCH}/driftresponder /\nUSER 0\nENTRYPOINT [\"/driftresponder\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "root.tar")
	if _, err := Build(root, BuildOptions{Dist: dist, Arches: []string{"amd64"}, Tag: "x:1", Out: out}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(out, root, "x:1", []string{"amd64"}); err == nil || !strings.Contains(err.Error(), "runs as root") {
		t.Errorf("image as root: %v", err)
	}
	// The arm64 binary in the amd64 image.
	wrong := filepath.Join(t.TempDir(), "linux_amd64")
	os.MkdirAll(wrong, 0o755)
	data, _ := os.ReadFile(filepath.Join(dist, "linux_arm64", "driftresponder"))
	os.WriteFile(filepath.Join(wrong, "driftresponder"), data, 0o755)
	nobody, _ := ParseDockerfile(write("nobody", "FROM scratch\nARG TARGETARCH=amd64\nARG DIST=dist\nCOPY ${DIST}/linux_${TARGETARCH}/driftresponder /\nUSER 65534\nENTRYPOINT [\"/driftresponder\"]\n"))
	if _, err := Build(nobody, BuildOptions{Dist: filepath.Dir(wrong), Arches: []string{"amd64"}, Tag: "x:1", Out: out}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(out, nobody, "x:1", []string{"amd64"}); err == nil || !strings.Contains(err.Error(), "built for EM_AARCH64") {
		t.Errorf("arm64 binary in the amd64 image: %v", err)
	}
	for text, want := range map[string]string{
		"FROM debian:12\n":                        "only FROM scratch",
		"FROM scratch\nRUN apt-get install x\n":   ":2: RUN: this builder knows",
		"FROM scratch\nCOPY --chown=1 a /\n":      "no flags",
		"FROM scratch\nCOPY a /x\nENTRYPOINT x\n": "absolute directory ending in /",
		"FROM scratch\nCOPY a /\nENTRYPOINT x\n":  "exec form",
	} {
		if _, err := ParseDockerfile(write("bad", text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
}

// The command line: --tag and --out are required, a malformed
// SOURCE_DATE_EPOCH is refused by name, and a build then --verify of its
// archive succeed, dated to SOURCE_DATE_EPOCH (two builds at that date are
// the same bytes).
func TestRunCommandLine(t *testing.T) {
	dist := stubDist(t)
	dockerfile := "--dockerfile=../docker/Dockerfile"
	out := filepath.Join(t.TempDir(), "image.tar")
	if err := run([]string{dockerfile, "--dist", dist, "--arch", "amd64"}); err == nil || !strings.Contains(err.Error(), "--tag and --out are required") {
		t.Errorf("no --tag or --out: %v", err)
	}
	if err := run([]string{"--no-such-flag"}); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("unknown flag: %v", err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if err := run([]string{dockerfile, "--dist", dist, "--arch", "amd64", "--tag", "x:1", "--out", out}); err == nil || !strings.Contains(err.Error(), `SOURCE_DATE_EPOCH "yesterday"`) {
		t.Errorf("malformed SOURCE_DATE_EPOCH: %v", err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	var builds [][]byte
	for i := 0; i < 2; i++ {
		if err := run([]string{dockerfile, "--dist", dist, "--arch", "amd64", "--tag", "x:1", "--out", out}); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		builds = append(builds, data)
	}
	if !bytes.Equal(builds[0], builds[1]) {
		t.Error("two builds at the same SOURCE_DATE_EPOCH differ")
	}
	if err := run([]string{dockerfile, "--arch", "amd64", "--tag", "x:1", "--verify", out}); err != nil {
		t.Errorf("verify the archive run built: %v", err)
	}
	if err := run([]string{dockerfile, "--arch", "amd64,arm64", "--tag", "x:1", "--verify", out}); err == nil {
		t.Error("verify with an architecture the archive lacks passed")
	}
	if got, err := sourceDate(); err != nil || !got.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("sourceDate() = %v, %v", got, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	if got, err := sourceDate(); err != nil || got.Unix() != 0 {
		t.Errorf("sourceDate() unset = %v, %v, want the Unix epoch", got, err)
	}
}
