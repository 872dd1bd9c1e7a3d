package lsm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
	"github.com/driftsensor/driftsensor/sensor/record"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// rec is one ring buffer record, decoded by the sensor's decoder, with its
// strings copied out of the ring buffer.
type rec struct {
	record.Header
	Ret                 int64
	Rule, Reasons       uint32
	Arg                 uint64
	Port                uint16
	Path, Path2, Target string
	Args                []byte
}

func (r *rec) String() string {
	return fmt.Sprintf("kind=%d op=%d flags=%#x tgid=%d pid=%d ret=%d path=%q path2=%q target=%q reasons=%#x arg=%#x port=%d",
		r.Kind, r.Op, r.Flags, r.TGID, r.PID, r.Ret, r.Path, r.Path2, r.Target, r.Reasons, r.Arg, r.Port)
}

func decodeRec(raw []byte) (*rec, error) {
	var d record.Record
	if err := record.Decode(raw, &d); err != nil {
		return nil, err
	}
	r := &rec{Header: d.Header, Ret: d.Ret, Rule: d.Rule, Reasons: d.Reasons, Arg: d.Arg, Port: d.Port,
		Path: string(d.Path), Path2: string(d.Path2), Target: string(d.Target), Args: bytes.Clone(d.Args)}
	r.Comm = bytes.Clone(d.Comm)
	return r, nil
}

// fixture is one loaded backend scoped to a test cgroup, with a policy over a
// temporary tree: everything under base is protected except base/free/;
// base/free/img/ and the test binary are exec images.
type fixture struct {
	b     *Backend
	cg    *testenv.Cgroup
	base  string
	self  string
	rules backend.Rules
}

func newFixture(t testing.TB) *fixture { return newFixtureWith(t, backend.Options{}) }

// newFixtureWith is newFixture with more load options (the scope is its own).
func newFixtureWith(t testing.TB, opts backend.Options) *fixture {
	t.Helper()
	cg := testenv.NewCgroup(t)
	root, _ := sysfs.CgroupRoot()
	opts.Scope, opts.CgroupRoot = []string{cg.Path}, root
	b, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"free/img"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fx := &fixture{b: b, cg: cg, base: base, self: self}
	fx.rules = backend.Rules{
		Paths: []backend.Rule{
			{Prefix: base + "/", Class: backend.ClassProtect, ID: 7},
			{Prefix: base + "/free/", Class: backend.ClassExempt, ID: 8},
		},
		Images: []backend.Rule{
			{Prefix: base + "/free/img/", ID: 9},
			{Prefix: self, ID: 10},
			{Prefix: "/bin/", ID: 11},
			{Prefix: "/usr/", ID: 12},
		},
		PortAllowed: func(p uint16) bool { return p == 8080 },
	}
	if err := b.Apply(fx.rules); err != nil {
		t.Fatal(err)
	}
	if err := b.SetSealed(true); err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx *fixture) setEnforce(t testing.TB, on bool) {
	t.Helper()
	r := fx.rules
	r.Enforce = on
	if err := fx.b.Apply(r); err != nil {
		t.Fatal(err)
	}
}

// drain returns the records already queued. Hooks emit before the syscall
// returns, so once the actor has exited all of its records are there.
func (fx *fixture) drain(t testing.TB) []*rec {
	t.Helper()
	rd := fx.b.Reader()
	rd.SetDeadline(time.Now())
	defer rd.SetDeadline(time.Time{})
	var out []*rec
	for {
		raw, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatalf("read ring buffer: %v", err)
		}
		r, err := decodeRec(raw.RawSample)
		if err != nil {
			t.Fatalf("decode record: %v", err)
		}
		out = append(out, r)
	}
}

// run starts the actor (sensor/hooktest) in the test cgroup and returns its
// pid, its syscall's errno and its records.
func (fx *fixture) run(t *testing.T, args ...string) (pid int, errno syscall.Errno, recs []*rec) {
	t.Helper()
	fx.drain(t)
	cmd, done, err := fx.cg.Command(fx.self, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	cmd.Env = append(os.Environ(), act.ActorEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("actor %v: %v: %s", args, err, out)
	}
	if m := regexp.MustCompile(`(?m)^errno=(\d+)$`).FindSubmatch(out); m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		errno = syscall.Errno(n)
	}
	pid = cmd.Process.Pid
	for _, r := range fx.drain(t) {
		if int(r.TGID) == pid {
			recs = append(recs, r)
		}
	}
	return pid, errno, recs
}

// lsmRunner runs the shared hook table (sensor/hooktest) on this backend
// through sensor.Sensor, in detect and in enforce mode.
type lsmRunner struct{}

func (lsmRunner) Backend() string        { return Name }
func (lsmRunner) Modes() []hooktest.Mode { return []hooktest.Mode{hooktest.Detect, hooktest.Enforce} }

func (lsmRunner) Start(t *testing.T) hooktest.Scope {
	requireLSM(t)
	bed := hooktest.NewBed(t, hooktest.BedConfig{
		Load: func(opts backend.Options) (backend.Backend, error) {
			b, err := Load(opts)
			if err == nil {
				t.Logf("hooks missing on this kernel: %v", b.Missing)
			}
			return b, err
		},
		Check: checkLSM,
		ProgID: func(b backend.Backend) uint32 {
			info, err := b.(*Backend).coll.Programs["drift_file_open"].Info()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := info.ID()
			return uint32(id)
		},
	})
	return bed
}

// checkLSM: hooks run in the thread making the syscall, before it acts, so
// a record's ret is the verdict: 0, or -EPERM when denied.
func checkLSM(t testing.TB, w hooktest.Want, ev *event.Event, res hooktest.Result) {
	t.Helper()
	if ev.Backend != Name {
		t.Errorf("finding from backend %q: %s", ev.Backend, act.Describe(ev))
	}
	if !w.AnyThread && res.TID != 0 && int(ev.Process.TID) != res.TID {
		t.Errorf("finding from thread %d, want %d: %s", ev.Process.TID, res.TID, act.Describe(ev))
	}
	wantRet := map[bool]int64{false: 0, true: -1}[ev.Denied]
	switch {
	case ev.File != nil && ev.File.Ret != wantRet:
		t.Errorf("finding ret %d, want the verdict %d: %s", ev.File.Ret, wantRet, act.Describe(ev))
	case ev.Exec != nil && ev.Action != hooktest.ActUringSetup && ev.Exec.Ret != wantRet:
		t.Errorf("finding ret %d, want the verdict %d: %s", ev.Exec.Ret, wantRet, act.Describe(ev))
	}
}

// TestHooks runs every case of the shared table in detect mode (reported, the
// operation lands) and in enforce mode (reported as denied, the operation
// fails with EPERM).
func TestHooks(t *testing.T) {
	hooktest.Run(t, lsmRunner{})
}

// TestRecords checks what findings do not show: the raw records' attempt
// and denial flags, the verdict in ret, the rule id, one record per
// operation, and exec arguments encoded as the tracepoint backend does
// (NUL-terminated, in the record after the path).
func TestRecords(t *testing.T) {
	requireLSM(t)
	fx := newFixture(t)
	for _, enforce := range []bool{false, true} {
		fx.setEnforce(t, enforce)
		f := filepath.Join(fx.base, fmt.Sprintf("f-%v", enforce))
		mkfile(t, f, "x")
		_, errno, recs := fx.run(t, "unlink", f)
		if want := map[bool]syscall.Errno{false: 0, true: syscall.EPERM}[enforce]; errno != want {
			t.Errorf("enforce=%v: unlink errno %v, want %v", enforce, errno, want)
		}
		if len(recs) != 1 {
			t.Fatalf("enforce=%v: %d records for one unlink, want 1: %v", enforce, len(recs), recs)
		}
		r := recs[0]
		flags := record.FlagAttempt
		if enforce {
			flags |= record.FlagDenied
		}
		if r.Kind != record.KindFile || r.Op != record.OpUnlink || r.Flags != flags || r.Path != f || r.Rule != 7 ||
			r.Ret != map[bool]int64{false: 0, true: -1}[enforce] || r.CgroupID == 0 || r.PTag != 0 {
			t.Errorf("enforce=%v: record %v (rule %d, ptag %d), want unlink of %s, flags %#x, rule 7, ret = verdict, ptag 0", enforce, r, r.Rule, r.PTag, f, flags)
		}
	}
	fx.setEnforce(t, false)
	bin := filepath.Join(fx.base, "free", "tool")
	if err := os.WriteFile(bin, act.TrueELF(), 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, recs := fx.run(t, "exec", bin)
	if len(recs) != 1 || recs[0].Kind != record.KindExec || recs[0].Op != record.OpExec || recs[0].Reasons != record.ReasonOutsideImage {
		t.Fatalf("exec outside the image: records %v, want one exec record, reasons outside_image", recs)
	}
	if want := bin + "\x00--drift-arg\x00"; string(recs[0].Args) != want {
		t.Errorf("exec record argv %q, want %q", recs[0].Args, want)
	}
}

func mkfile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}
