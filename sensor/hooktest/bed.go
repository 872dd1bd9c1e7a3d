package hooktest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// BedConfig says how a harness builds a Bed on its backend.
type BedConfig struct {
	// Load loads and attaches the backend with the bed's scope.
	Load func(opts backend.Options) (backend.Backend, error)
	// Check makes the backend's own assertions on a wanted finding (optional).
	Check func(t testing.TB, w Want, ev *event.Event, res Result)
	// ProgID returns an id of one of the backend's programs, for
	// self-protection cases (optional).
	ProgID func(b backend.Backend) uint32
}

// Bed is a Scope over any backend: a cgroup of the test's own, an image tree
// under a temporary directory, the test policy over it, and a sensor.Sensor
// collecting findings.
type Bed struct {
	cfg    BedConfig
	cg     *testenv.Cgroup
	be     backend.Backend
	root   string
	exe    string
	cur    Config
	set    bool
	marks  int
	mu     sync.Mutex
	cond   *sync.Cond
	evs    []*event.Event
	progID uint32
}

// Timeout bounds the wait for one finding.
const Timeout = 15 * time.Second

const bedPolicy = `version: 1
protect: [%[1]s]
exceptions: [%[1]s/var, %[1]s/usr/app]
exec:
  image_paths: [/usr, /bin, /sbin, /lib, /lib64, %[1]s/usr]
  image_files: [%[2]s]
  interpreters: [sh, bash, dash, python, perl, ruby, node, php, %[5]s]
net:
  allowed_ports: [%[3]d]
  deny_binds: %[4]v
kernel:
  allow_settings: [` + AllowedSetting + `]
`

// NewBed loads the backend on a new scope, not sealed, in detect mode with
// deny_binds on. Everything it makes is removed at the test's end.
func NewBed(t *testing.T, cfg BedConfig) *Bed {
	t.Helper()
	testenv.RequireBPF(t)
	tmp, err := filepath.EvalSymlinks(t.TempDir()) // findings carry canonical paths
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		t.Fatal(err)
	}
	b := &Bed{cfg: cfg, cg: testenv.NewCgroup(t), root: filepath.Join(tmp, "img"), exe: exe}
	b.cond = sync.NewCond(&b.mu)
	for _, d := range []string{"etc", "var", "usr/app", "usr/bin", "opt"} {
		if err := os.MkdirAll(filepath.Join(b.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/bin", filepath.Join(b.root, "bin")); err != nil {
		t.Fatal(err)
	}
	b.be, err = cfg.Load(backend.Options{Scope: []string{b.cg.Path}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.be.Close() })
	if cfg.ProgID != nil {
		b.progID = cfg.ProgID(b.be)
	}
	pol := b.configure(t, Config{Mode: Detect, DenyBinds: true})
	s := sensor.New(sensor.Config{Host: "hooktest", Policy: pol, Backend: b.be, Log: zerolog.Nop(), Emit: func(ev *event.Event) {
		b.mu.Lock()
		b.evs = append(b.evs, ev)
		b.mu.Unlock()
		b.cond.Broadcast()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

// Backend is the loaded backend.
func (b *Bed) Backend() backend.Backend { return b.be }

// Cgroup is the scope's cgroup.
func (b *Bed) Cgroup() *testenv.Cgroup { return b.cg }

// Root is the image root.
func (b *Bed) Root() string { return b.root }

func (b *Bed) configure(t testing.TB, c Config) *policy.Policy {
	t.Helper()
	pol, err := policy.Parse("hooktest.yaml", []byte(fmt.Sprintf(bedPolicy, b.root, b.exe, AllowedPort, c.DenyBinds, filepath.Base(b.exe))))
	if err != nil {
		t.Fatal(err)
	}
	rules := sensor.RulesFor(pol)
	rules.DirLinks = sensor.DirLinks([]string{b.root})
	rules.Enforce = c.Mode == Enforce
	if err := b.be.Apply(rules); err != nil {
		t.Fatalf("apply the test policy (%+v): %v", c, err)
	}
	b.cur, b.set = c, true
	return pol
}

// Configure implements Scope.
func (b *Bed) Configure(t testing.TB, c Config) {
	if !b.set || c != b.cur {
		b.configure(t, c)
	}
}

// Env implements Scope.
func (b *Bed) Env(t testing.TB, tag string) Env {
	t.Helper()
	e := Env{
		Root: b.root,
		Etc:  filepath.Join(b.root, "etc", tag),
		Var:  filepath.Join(b.root, "var", tag),
		App:  filepath.Join(b.root, "usr/app", tag),
		Usr:  filepath.Join(b.root, "usr/bin", tag),
		Bin:  filepath.Join(b.root, "bin", tag),
		Opt:  filepath.Join(b.root, "opt", tag),
		Tag:  tag,

		Scope: b.cg.Path,

		SensorPID:    os.Getpid(),
		SensorProgID: b.progID,
		Vars:         map[string]string{},
	}
	for _, d := range []string{e.Etc, e.Var, e.App, e.Usr, e.Opt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// Seal implements Scope.
func (b *Bed) Seal(t testing.TB, on bool) {
	t.Helper()
	if err := b.be.SetSealed(on); err != nil {
		t.Fatal(err)
	}
}

var (
	tidLine   = regexp.MustCompile(`(?m)^tid=(\d+)$`)
	errnoLine = regexp.MustCompile(`(?m)^errno=(\d+)$`)
)

// Act implements Scope.
func (b *Bed) Act(t testing.TB, a Act) Result {
	t.Helper()
	var cmd *exec.Cmd
	if a.Outside {
		cmd = exec.Command(b.exe, a.Args...)
	} else {
		c, closeFD, err := b.cg.Command(b.exe, a.Args...)
		if err != nil {
			t.Fatal(err)
		}
		defer closeFD()
		cmd = c
	}
	cmd.Env = append(os.Environ(), act.ActorEnv+"=1")
	cmd.ExtraFiles = a.Files
	var out, stderr bytes.Buffer // stderr apart: exec fills it from another goroutine
	if a.SealAtReady {
		cmd.Stderr = &stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(pipe)
		for {
			line, err := rd.ReadString('\n')
			out.WriteString(line)
			if err != nil {
				cmd.Wait()
				t.Fatalf("actor %q never got ready: %v\n%s%s", a.Args, err, out.String(), stderr.String())
			}
			if line == "ready\n" {
				break
			}
		}
		b.Seal(t, true)
		io.WriteString(in, "go\n")
		rest, _ := io.ReadAll(rd)
		out.Write(rest)
	} else {
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	err := cmd.Wait()
	out.Write(stderr.Bytes())
	if err != nil {
		t.Fatalf("actor %q: %v\n%s", a.Args, err, out.String())
	}
	res := Result{PID: cmd.Process.Pid, Out: out.String()}
	if m := tidLine.FindStringSubmatch(res.Out); m != nil {
		res.TID, _ = strconv.Atoi(m[1])
	}
	if m := errnoLine.FindStringSubmatch(res.Out); m != nil {
		n, _ := strconv.Atoi(m[1])
		res.Errno = syscall.Errno(n)
	}
	return res
}

// Expect implements Scope.
func (b *Bed) Expect(t testing.TB, w Want, pid int) *event.Event {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	wake := time.AfterFunc(Timeout, b.cond.Broadcast)
	defer wake.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for _, ev := range b.evs {
			if ev.Process != nil && ev.Process.PID == uint32(pid) && w.Match(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			var got []string
			for _, ev := range b.evs {
				got = append(got, act.Describe(ev))
			}
			t.Fatalf("no finding %+v from pid %d within %v; got:\n%s", w, pid, Timeout, strings.Join(got, "\n"))
		}
		b.cond.Wait()
	}
}

// Findings implements Scope: a marker mutation made after pid exited
// arrives after everything pid caused, since the ring buffer keeps order.
func (b *Bed) Findings(t testing.TB, pid int) []*event.Event {
	t.Helper()
	b.marks++
	m := filepath.Join(b.root, "etc", fmt.Sprintf("marker-%d", b.marks))
	b.Seal(t, true)
	res := b.Act(t, Act{Args: []string{"mkdir", m}})
	b.Expect(t, Want{Kind: event.KindFile, Action: ActMkdir, Path: m, Denied: b.cur.Mode == Enforce}, res.PID)
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*event.Event
	for _, ev := range b.evs {
		if ev.Process != nil && ev.Process.PID == uint32(pid) {
			out = append(out, ev)
		}
	}
	return out
}

// ExpectNone implements Scope.
func (b *Bed) ExpectNone(t testing.TB, pid int) {
	t.Helper()
	for _, ev := range b.Findings(t, pid) {
		t.Errorf("pid %d should cause no finding, got %s", pid, act.Describe(ev))
	}
}

// Check implements Scope.
func (b *Bed) Check(t testing.TB, w Want, ev *event.Event, res Result) {
	t.Helper()
	if b.cfg.Check != nil {
		b.cfg.Check(t, w, ev, res)
	}
}

var _ Scope = (*Bed)(nil)
