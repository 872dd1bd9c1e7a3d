package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"golang.org/x/sys/unix"
)

// Record kinds, ops, flags and reasons of bpf/common.h the tests assert.
const (
	kindFile = 1
	kindExec = 2
	kindNet  = 3

	opOpen, opTruncate, opRename, opUnlink, opRmdir, opLink, opSymlink, opMkdir, opMknod = 1, 2, 3, 4, 5, 6, 7, 8, 9
	opChmod, opChown, opSetxattr, opRemovexattr, opMount, opSetflags, opWrite            = 10, 11, 12, 13, 15, 16, 17
	opExec, opModule, opBPF, opPtrace                                                    = 32, 33, 35, 36
	opBind, opListen                                                                     = 64, 65

	flagDenied  = 1 << 0
	flagAttempt = 1 << 3

	exTainted      = 1 << 0
	exOutsideImage = 1 << 1
)

// rec is one ring buffer record decoded with encoding/binary into the
// generated mirrors of the C structs.
type rec struct {
	Hdr                 lsmRecHdr
	File                lsmFileRec
	Exec                lsmExecRec
	Net                 lsmNetRec
	Path, Path2, Target string
	Ret                 int64
	Arg                 uint64
	Reasons             uint32
}

func (r *rec) String() string {
	return fmt.Sprintf("kind=%d op=%d flags=%#x tgid=%d pid=%d ret=%d path=%q path2=%q target=%q reasons=%#x arg=%#x port=%d",
		r.Hdr.Kind, r.Hdr.Op, r.Hdr.Flags, r.Hdr.Tgid, r.Hdr.Pid, r.Ret, r.Path, r.Path2, r.Target, r.Reasons, r.Arg, r.Net.Port)
}

// readFixed decodes the fixed part of a C struct from a record that may be
// shorter than the struct (records end where their data ends).
func readFixed(raw []byte, dst any) error {
	buf := make([]byte, binary.Size(dst))
	copy(buf, raw)
	return binary.Read(bytes.NewReader(buf), binary.LittleEndian, dst)
}

func field(data []byte, off, n int) string {
	if off < 0 || off+n > len(data) {
		return "<out of record>"
	}
	return string(data[off : off+n])
}

func decodeRec(raw []byte) (*rec, error) {
	r := &rec{}
	if err := readFixed(raw, &r.Hdr); err != nil {
		return nil, err
	}
	if int(r.Hdr.Size) != len(raw) && int(r.Hdr.Size) > len(raw) {
		return nil, fmt.Errorf("record says %d bytes, ring buffer gave %d", r.Hdr.Size, len(raw))
	}
	raw = raw[:r.Hdr.Size]
	switch r.Hdr.Kind {
	case kindFile:
		if err := readFixed(raw, &r.File); err != nil {
			return nil, err
		}
		data := raw[unsafe.Offsetof(r.File.Data):]
		f := &r.File
		r.Path = field(data, 0, int(f.PathLen))
		r.Path2 = field(data, int(f.PathLen)+1, int(f.Path2Len))
		r.Target = field(data, int(f.PathLen)+1+int(f.Path2Len)+1, int(f.TargetLen))
		r.Ret = f.Ret
	case kindExec:
		if err := readFixed(raw, &r.Exec); err != nil {
			return nil, err
		}
		data := raw[unsafe.Offsetof(r.Exec.Data):]
		r.Path = field(data, 0, int(r.Exec.PathLen))
		r.Ret, r.Arg, r.Reasons = r.Exec.Ret, r.Exec.Arg, r.Exec.Reasons
	case kindNet:
		if err := readFixed(raw, &r.Net); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown record kind %d", r.Hdr.Kind)
	}
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

func newFixture(t testing.TB) *fixture {
	t.Helper()
	cg := testenv.NewCgroup(t)
	root, _ := sysfs.CgroupRoot()
	b, err := Load(backend.Options{Scope: []string{cg.Path}, CgroupRoot: root})
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

var actorOut = regexp.MustCompile(`errno=(\d+)(?: tid=(\d+))?`)

type actResult struct {
	pid, tid int
	errno    syscall.Errno
	recs     []*rec // the actor's records
}

// run starts the actor in the test cgroup (inScope) or outside it, and
// returns its verdict and records.
func (fx *fixture) run(t *testing.T, inScope bool, files []*os.File, args ...string) actResult {
	t.Helper()
	fx.drain(t)
	var cmd *exec.Cmd
	if inScope {
		c, done, err := fx.cg.Command(fx.self, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		cmd = c
	} else {
		cmd = exec.Command(fx.self, args...)
	}
	cmd.Env = append(os.Environ(), actorEnv+"=1")
	cmd.ExtraFiles = files
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("actor %v: %v: %s", args, err, out.String())
	}
	m := actorOut.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("actor %v printed no verdict: %q", args, out.String())
	}
	res := actResult{pid: cmd.Process.Pid}
	n, _ := strconv.Atoi(m[1])
	res.errno = syscall.Errno(n)
	if m[2] != "" {
		res.tid, _ = strconv.Atoi(m[2])
	}
	for _, r := range fx.drain(t) {
		if int(r.Hdr.Tgid) == res.pid {
			res.recs = append(res.recs, r)
		}
	}
	return res
}

// caseDirs are one case's own paths in one mode.
type caseDirs struct {
	prot, free, img string
}

// want describes the one record a case must produce.
type want struct {
	kind, op            uint16
	path, path2, target string
	reasons             uint32
	arg                 *uint64
	argLow              *uint32
	port                uint16
	noPid               bool // io_uring: the operation may run on an io worker thread
}

const anyErrno = syscall.Errno(^uintptr(0))

type hookCase struct {
	name      string
	setup     func(t *testing.T, d caseDirs) // done by the sensor process: never judged
	pre       func(fx *fixture, d caseDirs) []string
	act       func(fx *fixture, d caseDirs) []string
	files     func(t *testing.T, d caseDirs) []*os.File
	want      func(fx *fixture, d caseDirs) *want // nil: no record at all
	detectErr syscall.Errno                       // errno in detect mode (anyErrno: not checked)
	outside   bool                                // the actor runs outside the scope
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

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func u64(v uint64) *uint64 { return &v }
func u32(v uint32) *uint32 { return &v }

const script = "#!/bin/sh\necho errno=0\n"

var hookCases = []hookCase{
	// file_open with write intent
	{name: "open for writing a protected file",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"open-w", d.prot + "/f"} },
		want:  func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opOpen, path: d.prot + "/f"} }},
	{name: "create in a protected directory",
		setup: func(t *testing.T, d caseDirs) { mkdir(t, d.prot) },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"create", d.prot + "/new"} },
		want:  func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opOpen, path: d.prot + "/new"} }},
	{name: "open read-only is no finding",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"open-r", d.prot + "/f"} }},
	{name: "open for writing an exempt file is no finding",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.free+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"open-w", d.free + "/f"} }},
	{name: "out of scope is no finding",
		setup:   func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		act:     func(fx *fixture, d caseDirs) []string { return []string{"unlink", d.prot + "/f"} },
		outside: true},
	// writes through a descriptor opened before (here: by the sensor, passed in)
	{name: "write through an inherited descriptor",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		files: func(t *testing.T, d caseDirs) []*os.File {
			f, err := os.OpenFile(d.prot+"/f", os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return []*os.File{f}
		},
		act:  func(fx *fixture, d caseDirs) []string { return []string{"write-fd3"} },
		want: func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opWrite, path: d.prot + "/f"} }},
	// io_uring goes through the same hook
	{name: "io_uring openat for writing",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"uring-open", d.prot + "/f"} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindFile, op: opOpen, path: d.prot + "/f", noPid: true}
		}},
	{name: "truncate",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"truncate", d.prot + "/f"} },
		want:  func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opTruncate, path: d.prot + "/f"} }},
	{name: "unlink",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"unlink", d.prot + "/f"} },
		want:  func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opUnlink, path: d.prot + "/f"} }},
	{name: "unlink an exempt file is no finding",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.free+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"unlink", d.free + "/f"} }},
	{name: "rename out of protected space",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/a", "x"); mkdir(t, d.free) },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"rename", d.prot + "/a", d.free + "/b"} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindFile, op: opRename, path: d.prot + "/a", path2: d.free + "/b"}
		}},
	{name: "rename into protected space",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.free+"/a", "x"); mkdir(t, d.prot) },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"rename", d.free + "/a", d.prot + "/b"} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindFile, op: opRename, path: d.free + "/a", path2: d.prot + "/b"}
		}},
	{name: "rename within exempt space is no finding",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.free+"/a", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"rename", d.free + "/a", d.free + "/b"} }},
	{name: "link",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"link", d.prot + "/f", d.prot + "/l"} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindFile, op: opLink, path: d.prot + "/f", path2: d.prot + "/l"}
		}},
	{name: "symlink",
		setup: func(t *testing.T, d caseDirs) { mkdir(t, d.prot) },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"symlink", "target", d.prot + "/s"} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindFile, op: opSymlink, path: d.prot + "/s", target: "target"}
		}},
	{name: "symlink from exempt space into protected space",
		setup: func(t *testing.T, d caseDirs) { mkdir(t, d.free); mkfile(t, d.prot+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"symlink", d.prot + "/f", d.free + "/s"} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindFile, op: opSymlink, path: d.free + "/s", target: d.prot + "/f"}
		}},
	{name: "mkdir",
		setup: func(t *testing.T, d caseDirs) { mkdir(t, d.prot) },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"mkdir", d.prot + "/d"} },
		want:  func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opMkdir, path: d.prot + "/d"} }},
	{name: "rmdir",
		setup: func(t *testing.T, d caseDirs) { mkdir(t, d.prot+"/d") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"rmdir", d.prot + "/d"} },
		want:  func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opRmdir, path: d.prot + "/d"} }},
	{name: "mknod fifo",
		setup: func(t *testing.T, d caseDirs) { mkdir(t, d.prot) },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"mkfifo", d.prot + "/p"} },
		want:  func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opMknod, path: d.prot + "/p"} }},
	{name: "chmod",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"chmod", d.prot + "/f"} },
		want:  func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opChmod, path: d.prot + "/f"} }},
	{name: "chown",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"chown", d.prot + "/f"} },
		want:  func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opChown, path: d.prot + "/f"} }},
	{name: "setxattr",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"setxattr", d.prot + "/f"} },
		want:  func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opSetxattr, path: d.prot + "/f"} }},
	{name: "removexattr",
		setup: func(t *testing.T, d caseDirs) {
			mkfile(t, d.prot+"/f", "x")
			if err := unix.Setxattr(d.prot+"/f", "trusted.drift", []byte("1"), 0); err != nil {
				t.Fatal(err)
			}
		},
		act: func(fx *fixture, d caseDirs) []string { return []string{"removexattr", d.prot + "/f"} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindFile, op: opRemovexattr, path: d.prot + "/f"}
		}},
	{name: "chattr (FS_IOC_SETFLAGS)",
		setup:     func(t *testing.T, d caseDirs) { mkfile(t, d.prot+"/f", "x") },
		act:       func(fx *fixture, d caseDirs) []string { return []string{"setflags", d.prot + "/f"} },
		want:      func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opSetflags, path: d.prot + "/f"} },
		detectErr: anyErrno}, // the file system may not support inode flags; the hook runs first
	{name: "mount",
		setup: func(t *testing.T, d caseDirs) {
			mkdir(t, d.free+"/mnt")
			t.Cleanup(func() { unix.Unmount(d.free+"/mnt", unix.MNT_DETACH) })
		},
		act:  func(fx *fixture, d caseDirs) []string { return []string{"mount", d.free + "/mnt"} },
		want: func(fx *fixture, d caseDirs) *want { return &want{kind: kindFile, op: opMount, path: d.free + "/mnt"} }},
	// exec drift
	{name: "exec of a file written after sealing",
		setup: func(t *testing.T, d caseDirs) { mkdir(t, d.img) },
		pre:   func(fx *fixture, d caseDirs) []string { return []string{"write", d.img + "/s.sh", script} },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"exec", d.img + "/s.sh"} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindExec, op: opExec, path: d.img + "/s.sh", reasons: exTainted}
		}},
	{name: "exec outside the image",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.free+"/s.sh", script) },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"exec", d.free + "/s.sh"} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindExec, op: opExec, path: d.free + "/s.sh", reasons: exOutsideImage}
		}},
	{name: "exec of an untouched image file is no finding",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.img+"/s.sh", script) },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"exec", d.img + "/s.sh"} }},
	{name: "executable mapping of a file written after sealing",
		setup: func(t *testing.T, d caseDirs) { mkdir(t, d.free) },
		pre: func(fx *fixture, d caseDirs) []string {
			return []string{"write", d.free + "/lib.so", "not really a library"}
		},
		act: func(fx *fixture, d caseDirs) []string { return []string{"mmap-x", d.free + "/lib.so"} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindExec, op: opExec, path: d.free + "/lib.so", reasons: exTainted,
				arg: u64(unix.PROT_READ | unix.PROT_EXEC)}
		}},
	{name: "executable mapping of an untouched file is no finding",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.free+"/lib.so", "x") },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"mmap-x", d.free + "/lib.so"} }},
	// privileged kernel operations
	{name: "init_module",
		act:       func(fx *fixture, d caseDirs) []string { return []string{"init-module"} },
		want:      func(fx *fixture, d caseDirs) *want { return &want{kind: kindExec, op: opModule} },
		detectErr: anyErrno}, // not a module: the kernel refuses it after the hook
	{name: "finit_module",
		setup: func(t *testing.T, d caseDirs) { mkfile(t, d.free+"/m.ko", strings.Repeat("not a module ", 16)) },
		act:   func(fx *fixture, d caseDirs) []string { return []string{"finit-module", d.free + "/m.ko"} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindExec, op: opModule, path: d.free + "/m.ko", arg: u64(2 /* READING_MODULE */)}
		},
		detectErr: anyErrno},
	{name: "bpf program load",
		act:  func(fx *fixture, d caseDirs) []string { return []string{"bpf-load"} },
		want: func(fx *fixture, d caseDirs) *want { return &want{kind: kindExec, op: opBPF, arg: u64(5)} }},
	// network
	{name: "bind to a port the policy does not allow",
		act:  func(fx *fixture, d caseDirs) []string { return []string{"bind", "4242"} },
		want: func(fx *fixture, d caseDirs) *want { return &want{kind: kindNet, op: opBind, port: 4242} }},
	{name: "bind to an allowed port is no finding",
		act: func(fx *fixture, d caseDirs) []string { return []string{"bind", "8080"} }},
	{name: "listen on a port the kernel picked",
		act:  func(fx *fixture, d caseDirs) []string { return []string{"listen", "0"} },
		want: func(fx *fixture, d caseDirs) *want { return &want{kind: kindNet, op: opListen} }},
	// self-protection
	{name: "signal to the sensor",
		act: func(fx *fixture, d caseDirs) []string { return []string{"kill", strconv.Itoa(os.Getpid())} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindExec, op: OpSignal, arg: u64(uint64(unix.SIGURG)<<32 | uint64(os.Getpid()))}
		}},
	{name: "ptrace of the sensor",
		act: func(fx *fixture, d caseDirs) []string { return []string{"ptrace", strconv.Itoa(os.Getpid())} },
		want: func(fx *fixture, d caseDirs) *want {
			return &want{kind: kindExec, op: opPtrace, argLow: u32(uint32(os.Getpid()))}
		}},
	{name: "descriptor for a sensor program",
		act: func(fx *fixture, d caseDirs) []string {
			info, _ := fx.b.coll.Programs["drift_file_open"].Info()
			id, _ := info.ID()
			return []string{"bpf-prog-fd", strconv.Itoa(int(id))}
		},
		want: func(fx *fixture, d caseDirs) *want {
			info, _ := fx.b.coll.Programs["drift_file_open"].Info()
			id, _ := info.ID()
			return &want{kind: kindExec, op: opBPF, arg: u64(cmdProgGetFDByID<<32 | uint64(id))}
		}},
}

// TestHooks runs every case in detect mode (reported, the operation lands)
// and in enforce mode (reported with RF_DENIED, the operation fails with
// EPERM), checking the exact record the kernel wrote.
func TestHooks(t *testing.T) {
	requireLSM(t)
	fx := newFixture(t)
	for _, mode := range []string{"detect", "enforce"} {
		enforce := mode == "enforce"
		t.Run(mode, func(t *testing.T) {
			fx.setEnforce(t, enforce)
			for i, c := range hookCases {
				t.Run(c.name, func(t *testing.T) {
					tag := fmt.Sprintf("%s-%02d", mode, i)
					d := caseDirs{
						prot: filepath.Join(fx.base, tag),
						free: filepath.Join(fx.base, "free", tag),
						img:  filepath.Join(fx.base, "free", "img", tag),
					}
					fx.check(t, c, d, enforce)
				})
			}
		})
	}
}

func (fx *fixture) check(t *testing.T, c hookCase, d caseDirs, enforce bool) {
	if c.setup != nil {
		c.setup(t, d)
	}
	if c.pre != nil {
		if res := fx.run(t, true, nil, c.pre(fx, d)...); res.errno != 0 {
			t.Fatalf("preparing action %v: %v", c.pre(fx, d), res.errno)
		}
	}
	var files []*os.File
	if c.files != nil {
		files = c.files(t, d)
	}
	args := c.act(fx, d)
	res := fx.run(t, !c.outside, files, args...)
	var w *want
	if c.want != nil {
		w = c.want(fx, d)
	}

	wantErr := c.detectErr
	if w != nil && enforce {
		wantErr = syscall.EPERM
	}
	if wantErr != anyErrno && res.errno != wantErr {
		t.Errorf("%v: errno %d (%v), want %d (%v)", args, int(res.errno), res.errno, int(wantErr), wantErr)
	}
	if w == nil {
		for _, r := range res.recs {
			t.Errorf("%v: unexpected record %v", args, r)
		}
		return
	}
	if len(res.recs) != 1 {
		for _, r := range res.recs {
			t.Logf("record: %v", r)
		}
		t.Fatalf("%v: %d records from pid %d, want exactly 1", args, len(res.recs), res.pid)
	}
	r := res.recs[0]
	t.Logf("%v", r)
	if r.Hdr.Kind != w.kind || r.Hdr.Op != w.op {
		t.Errorf("record kind %d op %d, want kind %d op %d", r.Hdr.Kind, r.Hdr.Op, w.kind, w.op)
	}
	if !w.noPid && res.tid != 0 && int(r.Hdr.Pid) != res.tid {
		t.Errorf("record pid (thread) %d, want %d", r.Hdr.Pid, res.tid)
	}
	if r.Hdr.CgroupId == 0 {
		t.Errorf("record has no cgroup id")
	}
	denied := r.Hdr.Flags&flagDenied != 0
	if denied != enforce {
		t.Errorf("record flags %#x: RF_DENIED is %v, want %v", r.Hdr.Flags, denied, enforce)
	}
	if w.kind == kindNet {
		if w.port != 0 && r.Net.Port != w.port {
			t.Errorf("record port %d, want %d", r.Net.Port, w.port)
		}
		if r.Net.Family != unix.AF_INET {
			t.Errorf("record family %d, want AF_INET", r.Net.Family)
		}
		return
	}
	if r.Hdr.Flags&flagAttempt == 0 {
		t.Errorf("record flags %#x lack RF_ATTEMPT", r.Hdr.Flags)
	}
	if wantRet := map[bool]int64{false: 0, true: -1}[enforce]; r.Ret != wantRet {
		t.Errorf("record ret %d, want %d", r.Ret, wantRet)
	}
	if w.path != "" && r.Path != w.path {
		t.Errorf("record path %q, want %q", r.Path, w.path)
	}
	if r.Path2 != w.path2 {
		t.Errorf("record path2 %q, want %q", r.Path2, w.path2)
	}
	if r.Target != w.target {
		t.Errorf("record target %q, want %q", r.Target, w.target)
	}
	if w.kind == kindFile && w.op != opMount && r.File.Rule != 7 && w.path2 == "" && w.target == "" {
		t.Errorf("record rule %d, want 7 (the protecting prefix)", r.File.Rule)
	}
	if w.kind == kindExec {
		if r.Reasons != w.reasons {
			t.Errorf("record reasons %#x, want %#x", r.Reasons, w.reasons)
		}
		if w.arg != nil && r.Arg != *w.arg {
			t.Errorf("record arg %#x, want %#x", r.Arg, *w.arg)
		}
		if w.argLow != nil && uint32(r.Arg) != *w.argLow {
			t.Errorf("record arg %#x, want low 32 bits %#x", r.Arg, *w.argLow)
		}
	}
}
