package bpftest

import (
	"os"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/record"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// The policy the judgement tests run under: everything protected (rule 1)
// but /tmp/ (2), which holds a protected /tmp/keep/ (3); /opt/app/ is a
// writable exception inside the exec image paths (4), /usr/tmp/ one outside
// them (5).
var (
	testPaths = []backend.Rule{
		{Prefix: "/", Class: backend.ClassProtect, ID: 1},
		{Prefix: "/tmp/", Class: backend.ClassExempt, ID: 2},
		{Prefix: "/tmp/keep/", Class: backend.ClassProtect, ID: 3},
		{Prefix: "/opt/app/", Class: backend.ClassExempt | backend.ClassTaint, ID: 4},
		{Prefix: "/usr/tmp/", Class: backend.ClassExempt, ID: 5},
	}
	testImages = []backend.Rule{{Prefix: "/usr/", ID: 10}, {Prefix: "/opt/app/", ID: 11}}
)

func loadJudge(t *testing.T, reflex uint32) *Programs {
	t.Helper()
	testenv.RequireBPF(t)
	p, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.SetPolicy(testPaths, testImages, reflex); err != nil {
		t.Fatal(err)
	}
	return p
}

// finding is what a test expects of judge_path's record; nil for none.
type finding struct {
	rule                uint32
	path, path2, target string
	flags               uint16
	ret                 int64
}

// TestJudgePath: the judgement both backends call (bpf/judge.h judge_path),
// on requests shaped as each backend's adapter makes them: the tracepoint
// backend's after the syscall (ret is its result, RF_LEXICAL), the lsm
// backend's before the operation (ret is the verdict, RF_ATTEMPT).
func TestJudgePath(t *testing.T) {
	p := loadJudge(t, 0)
	lex, pre := record.FlagLexical, record.FlagAttempt
	cases := []struct {
		name string
		req  Request
		want *finding
	}{
		{"protected path", Request{Op: record.OpUnlink, Path: "/etc/passwd", HFlags: lex},
			&finding{rule: 1, path: "/etc/passwd", flags: lex}},
		{"exempt path", Request{Op: record.OpUnlink, Path: "/tmp/x", HFlags: lex}, nil},
		{"protected inside exempt", Request{Op: record.OpMkdir, Path: "/tmp/keep/d", HFlags: lex, Mode: 0o755},
			&finding{rule: 3, path: "/tmp/keep/d", flags: lex}},
		{"syscall result kept", Request{Op: record.OpChmod, Path: "/etc/x", Ret: -13, HFlags: lex},
			&finding{rule: 1, path: "/etc/x", flags: lex, ret: -13}},
		{"rename into protected space", Request{Op: record.OpRename, Path: "/tmp/a", Path2: "/etc/b", HFlags: lex},
			&finding{rule: 1, path: "/tmp/a", path2: "/etc/b", flags: lex}},
		{"rename out of protected space", Request{Op: record.OpRename, Path: "/tmp/keep/a", Path2: "/tmp/b", HFlags: lex},
			&finding{rule: 3, path: "/tmp/keep/a", path2: "/tmp/b", flags: lex}},
		{"rename within exempt space", Request{Op: record.OpRename, Path: "/tmp/a", Path2: "/tmp/b", HFlags: lex}, nil},
		{"link into protected space", Request{Op: record.OpLink, Path: "/tmp/a", Path2: "/tmp/keep/b", HFlags: pre, Pre: true},
			&finding{rule: 3, path: "/tmp/a", path2: "/tmp/keep/b", flags: pre}},
		{"symlink in exempt space to a protected path", Request{Op: record.OpSymlink, Path: "/tmp/l", Path2: "/etc/shadow", Target: "/etc/shadow", HFlags: lex},
			&finding{rule: 1, path: "/tmp/l", target: "/etc/shadow", flags: lex}},
		{"symlink in exempt space to an exempt path", Request{Op: record.OpSymlink, Path: "/tmp/l", Path2: "/tmp/x", Target: "/tmp/x", HFlags: lex}, nil},
		{"symlink in exempt space, relative target", Request{Op: record.OpSymlink, Path: "/tmp/l", Target: "../etc/shadow", HFlags: lex}, nil},
		{"symlink in protected space", Request{Op: record.OpSymlink, Path: "/etc/l", Target: "x", HFlags: pre, Pre: true},
			&finding{rule: 1, path: "/etc/l", target: "x", flags: pre}},
		{"mount is always drift", Request{Op: record.OpMount, Path: "/tmp/m", Always: true, HFlags: lex},
			&finding{rule: 2, path: "/tmp/m", flags: lex}},
		{"mount without a path", Request{Op: record.OpMount, Always: true, HFlags: lex},
			&finding{flags: lex}},
		{"truncated path flagged", Request{Op: record.OpUnlink, Path: "/etc/x", Trunc: true, HFlags: lex},
			&finding{rule: 1, path: "/etc/x", flags: lex | record.FlagTrunc}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.req.Dev, c.req.Ino, c.req.MntID, c.req.Flags = 7, 42, 3, 0o1101
			got, err := p.Judge(c.req)
			if err != nil {
				t.Fatal(err)
			}
			if got.Verdict != 0 {
				t.Errorf("verdict %d in detect mode, want 0", got.Verdict)
			}
			checkFinding(t, got, c.req, c.want)
		})
	}
}

func checkFinding(t *testing.T, got Judged, req Request, want *finding) {
	t.Helper()
	r := got.Record
	if want == nil {
		if r != nil {
			t.Fatalf("benign request sent a record: op %d rule %d path %q", r.Op, r.Rule, r.Path)
		}
		return
	}
	if r == nil {
		t.Fatalf("no record, want rule %d for %q", want.rule, want.path)
	}
	if r.Kind != record.KindFile || r.Op != req.Op || r.Rule != want.rule || string(r.Path) != want.path ||
		string(r.Path2) != want.path2 || string(r.Target) != want.target || r.Header.Flags != want.flags || r.Ret != want.ret {
		t.Errorf("record kind %d op %d rule %d path %q path2 %q target %q flags %#x ret %d; want kind %d op %d rule %d path %q path2 %q target %q flags %#x ret %d",
			r.Kind, r.Op, r.Rule, r.Path, r.Path2, r.Target, r.Header.Flags, r.Ret,
			record.KindFile, req.Op, want.rule, want.path, want.path2, want.target, want.flags, want.ret)
	}
	if r.Dev != req.Dev || r.Ino != req.Ino || r.MountID != req.MntID || r.Mode != req.Mode || r.Flags != req.Flags {
		t.Errorf("record dev %d ino %d mnt %d mode %o flags %#x, want %d %d %d %o %#x", r.Dev, r.Ino, r.MountID, r.Mode, r.Flags, req.Dev, req.Ino, req.MntID, req.Mode, req.Flags)
	}
	if int(r.TGID) != os.Getpid() || int(r.Size) != len(got.Raw) {
		t.Errorf("header tgid %d size %d, want the test's pid %d and the record's %d bytes", r.TGID, r.Size, os.Getpid(), len(got.Raw))
	}
}

// TestJudgeVerdict: in enforce mode a finding is refused before it lands
// (-EPERM, RF_DENIED, ret = the verdict); a benign request is not; the
// cordon reflex sets the gate's flag and says so in the record.
func TestJudgeVerdict(t *testing.T) {
	t.Run("enforce", func(t *testing.T) {
		p := loadJudge(t, backend.ReflexDeny)
		got, err := p.Judge(Request{Op: record.OpUnlink, Path: "/etc/passwd", HFlags: record.FlagAttempt, Pre: true})
		if err != nil {
			t.Fatal(err)
		}
		if got.Verdict != -1 {
			t.Errorf("verdict %d, want -EPERM", got.Verdict)
		}
		checkFinding(t, got, Request{Op: record.OpUnlink}, &finding{rule: 1, path: "/etc/passwd", flags: record.FlagAttempt | record.FlagDenied, ret: -1})
		got, err = p.Judge(Request{Op: record.OpUnlink, Path: "/tmp/x", HFlags: record.FlagAttempt, Pre: true})
		if err != nil {
			t.Fatal(err)
		}
		if got.Verdict != 0 || got.Record != nil {
			t.Errorf("benign unlink in enforce mode: verdict %d, record %v", got.Verdict, got.Record != nil)
		}
	})
	t.Run("cordon", func(t *testing.T) {
		p := loadJudge(t, backend.ReflexCordon)
		got, err := p.Judge(Request{Op: record.OpUnlink, Path: "/etc/passwd", HFlags: record.FlagLexical})
		if err != nil {
			t.Fatal(err)
		}
		checkFinding(t, got, Request{Op: record.OpUnlink}, &finding{rule: 1, path: "/etc/passwd", flags: record.FlagLexical | record.FlagCordoned})
		var flag uint32
		if err := p.objs.GateCordon.Lookup(uint32(0), &flag); err != nil || flag != 1 {
			t.Errorf("gate flag %d (%v), want 1", flag, err)
		}
	})
}

// TestJudgeTaint: a write taints what could later run as part of the image
// (protected or image paths, an exception inside the image paths), not a
// file in an exception outside them.
func TestJudgeTaint(t *testing.T) {
	p := loadJudge(t, 0)
	for _, c := range []struct {
		path   string
		taint  bool
		report bool
	}{
		{"/usr/bin/tool", true, true},
		{"/etc/cron.d/job", true, true},
		{"/opt/app/plugin.so", true, false},
		{"/tmp/x", false, false},
		{"/usr/tmp/x", false, false},
	} {
		got, err := p.Judge(Request{Op: record.OpOpen, Path: c.path, Taint: true, HFlags: record.FlagLexical})
		if err != nil {
			t.Fatal(err)
		}
		if got.Taint != c.taint || (got.Record != nil) != c.report {
			t.Errorf("write to %s: taint %v, reported %v; want taint %v, reported %v", c.path, got.Taint, got.Record != nil, c.taint, c.report)
		}
	}
	got, err := p.Judge(Request{Op: record.OpUnlink, Path: "/usr/bin/tool", HFlags: record.FlagLexical})
	if err != nil {
		t.Fatal(err)
	}
	if got.Taint {
		t.Error("an unlink (no write) asks for a taint")
	}
}

// TestExecReasons: why running a file is drift: tainted, outside the image
// paths, a memfd, deleted; an executable mapping or a script is judged by
// taint and place only.
func TestExecReasons(t *testing.T) {
	p := loadJudge(t, 0)
	if err := p.Taint(7, 99); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		ino      uint64
		path     string
		unlinked int
		want     uint32
	}{
		{"image binary", 1, "/usr/bin/ls", 0, 0},
		{"tainted image binary", 99, "/usr/bin/ls", 0, record.ReasonTainted},
		{"outside the image", 1, "/home/u/tool", 0, record.ReasonOutsideImage},
		{"exempt inside the image", 1, "/opt/app/run", 0, 0},
		{"memfd", 1, "/memfd:payload", 0, record.ReasonMemfd | record.ReasonOutsideImage},
		{"deleted", 1, "/usr/bin/gone", 1, record.ReasonDeleted},
		{"tainted, deleted, outside", 99, "/var/tmp/x", 1, record.ReasonTainted | record.ReasonDeleted | record.ReasonOutsideImage},
		{"mapping: taint and place only", 99, "/memfd:lib", -1, record.ReasonTainted | record.ReasonOutsideImage},
		{"mapping of an image library", 1, "/usr/lib/libc.so.6", -1, 0},
	} {
		got, err := p.ExecReasons(7, c.ino, c.path, c.unlinked)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s (%s): reasons %#x, want %#x", c.name, c.path, got, c.want)
		}
	}
}
