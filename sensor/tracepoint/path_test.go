package tracepoint

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/bpftest"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// resolver runs the kernel's path logic through BPF_PROG_TEST_RUN, in the
// calling thread's context (its cwd and fd table), on inputs the test picks.
type resolver struct {
	t testing.TB
	b *Backend
	p *bpftest.Programs
}

// loadTests loads the test programs on b's maps.
func loadTests(tb testing.TB, b *Backend) *bpftest.Programs {
	tb.Helper()
	p, err := bpftest.Load(bpftest.MapsOf(&b.objs))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

func newResolver(t *testing.T) *resolver {
	testenv.RequireBPF(t)
	cg := testenv.NewCgroup(t)
	root, _ := sysfs.CgroupRoot()
	b, err := Load(backend.Options{Scope: []string{cg.Path}, CgroupRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	err = b.Apply(backend.Rules{
		Paths: []backend.Rule{
			{Prefix: "/", Class: backend.ClassProtect, ID: 1},
			{Prefix: "/tmp/", Class: backend.ClassExempt, ID: 2},
			{Prefix: "/tmp/keep/", Class: backend.ClassProtect, ID: 3},
		},
		DirLinks: map[string]string{"/drift-bin/": "/usr/bin/", "/x/lnk/": "/x/real/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &resolver{t: t, b: b, p: loadTests(t, b)}
}

type resolved struct {
	path  string
	trunc bool
	class uint32
	rule  uint32
}

func (r *resolver) resolve(dfd int, name string) resolved {
	r.t.Helper()
	got, err := r.p.Resolve(dfd, name)
	if err != nil {
		r.t.Fatal(err)
	}
	return resolved{path: got.Path, trunc: got.Trunc, class: got.Class, rule: got.Rule}
}

// poisonDcache rewrites the path of the directory cache's entry for dir.
func (r *resolver) poisonDcache(dir, with string) {
	r.t.Helper()
	var (
		k     tpDkey
		v     tpDpath
		found bool
	)
	it := r.b.objs.Dcache.Iterate()
	for it.Next(&k, &v) {
		b := make([]byte, 0, v.Len)
		for _, c := range v.Path[:min(int(v.Len), len(v.Path))] {
			b = append(b, byte(c))
		}
		if string(b) == dir {
			found = true
			break
		}
	}
	if err := it.Err(); err != nil {
		r.t.Fatal(err)
	}
	if !found {
		r.t.Fatalf("no directory cache entry for %s", dir)
	}
	v.Path = [len(v.Path)]int8{}
	for i := 0; i < len(with); i++ {
		v.Path[i] = int8(with[i])
	}
	v.Len = uint32(len(with))
	if err := r.b.objs.Dcache.Put(&k, &v); err != nil {
		r.t.Fatal(err)
	}
}

func TestPathResolution(t *testing.T) {
	r := newResolver(t)
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cwd, _ = filepath.EvalSymlinks(cwd)
	dir := t.TempDir()
	dfd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)

	procfd, err := unix.Open("/proc", unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(procfd)

	long255 := strings.Repeat("n", 255)
	cases := []struct {
		name string
		dfd  int
		in   string
		want string
	}{
		{"absolute", -100, "/etc/passwd", "/etc/passwd"},
		{"root", -100, "/", "/"},
		{"repeated and trailing slashes", -100, "//etc///x/", "/etc/x"},
		{"dot and dotdot", -100, "/etc/../usr/./bin", "/usr/bin"},
		{"dotdot above root", -100, "/../../etc", "/etc"},
		{"only dotdot", -100, "/..", "/"},
		{"dotted names are names", -100, "/a/..b/.c/...", "/a/..b/.c/..."},
		{"relative to cwd", -100, "a/b", cwd + "/a/b"},
		{"dotdot relative to cwd", -100, "../x", filepath.Dir(cwd) + "/x"},
		{"relative to dirfd", dfd, "f", dir + "/f"},
		{"dotdot out of dirfd", dfd, "../g", filepath.Dir(dir) + "/g"},
		{"absolute ignores dirfd", dfd, "/etc/h", "/etc/h"},
		{"symlinked directory", -100, "/drift-bin/ls", "/usr/bin/ls"},
		{"the symlink itself", -100, "/drift-bin", "/usr/bin"},
		{"symlinked directory after dotdot", -100, "/etc/../drift-bin/sh", "/usr/bin/sh"},
		{"prefix of a symlink name is not it", -100, "/drift-binary", "/drift-binary"},
		{"nested symlinked directory", -100, "/x/lnk/y", "/x/real/y"},
		{"255-byte component", -100, "/d/" + long255, "/d/" + long255},
		{"hidden file takes the slow path", -100, "/etc/.pwd.lock", "/etc/.pwd.lock"},
		{"dot in a name is not a component", -100, "/etc/a.b/c.d", "/etc/a.b/c.d"},
		{"slash dot across an 8-byte boundary", -100, "/1234567/./x", "/1234567/x"},
		{"double slash across an 8-byte boundary", -100, "/1234567//x", "/1234567/x"},
		{"trailing slash", -100, "/etc/x/", "/etc/x"},
		{"relative dot slash", dfd, "./f2", dir + "/f2"},
		{"relative name from the cached cwd", -100, "c", cwd + "/c"},
		{"empty name (AT_EMPTY_PATH) is the dirfd itself", dfd, "", dir},
		{"through /proc/self/root", -100, "/proc/self/root/etc/x", "/etc/x"},
		{"through /proc/self/root, then a symlinked directory", -100, "/proc/self/root/drift-bin/sh", "/usr/bin/sh"},
		{"through /proc/thread-self/cwd", -100, "/proc/thread-self/cwd/y", cwd + "/y"},
		{"through /proc/<own pid>/fd/N", -100, fmt.Sprintf("/proc/%d/fd/%d/z", os.Getpid(), dfd), dir + "/z"},
		{"through /proc/self/fd/N relative to /proc", procfd, fmt.Sprintf("self/fd/%d", dfd), dir},
		{"an ordinary /proc name stays", -100, "/proc/self/status", "/proc/self/status"},
		{"/proc/self/fd without a number stays", -100, "/proc/self/fd", "/proc/self/fd"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := r.resolve(c.dfd, c.in)
			if got.path != c.want || got.trunc {
				t.Errorf("resolve(%q) = %q (trunc %v), want %q", c.in, got.path, got.trunc, c.want)
			}
		})
	}

	t.Run("path at the record limit", func(t *testing.T) {
		in := strings.Repeat("/"+long255, 15) + "/" + strings.Repeat("z", 250) // 4091 bytes
		got := r.resolve(-100, in)
		if got.path != in || got.trunc {
			t.Errorf("len %d: got len %d trunc %v", len(in), len(got.path), got.trunc)
		}
	})
	t.Run("long name without dots takes the fast path whole", func(t *testing.T) {
		in := strings.Repeat("/a", 100)
		if got := r.resolve(-100, in); got.path != in || got.trunc {
			t.Errorf("got len %d trunc %v", len(got.path), got.trunc)
		}
	})
	t.Run("dotdot past the component stack is flagged", func(t *testing.T) {
		in := strings.Repeat("/a", 100) + "/../b"
		if got := r.resolve(-100, in); !got.trunc {
			t.Errorf("got %q without the truncation flag", got.path)
		}
	})
	t.Run("path over the limit is truncated and flagged", func(t *testing.T) {
		in := "/" + strings.Repeat("b", 200) + strings.Repeat("/cc", 2000)
		got := r.resolve(-100, in[:4095])
		if !got.trunc || len(got.path) >= 4096 || !strings.HasPrefix(got.path, "/"+strings.Repeat("b", 200)) {
			t.Errorf("got len %d trunc %v", len(got.path), got.trunc)
		}
	})
	t.Run("deep relative path under a deep cwd", func(t *testing.T) {
		deep := dir + strings.Repeat("/d", 70)
		if err := os.MkdirAll(deep, 0o755); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(deep, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		got := r.resolve(fd, "leaf")
		// More components than the walk follows: flagged, never a wrong path.
		if !got.trunc {
			t.Errorf("70 components below %s: not flagged as truncated (%q)", dir, got.path)
		}
	})
}

func TestPathClassification(t *testing.T) {
	r := newResolver(t)
	cases := []struct {
		in    string
		class uint32
		rule  uint32
	}{
		{"/etc/passwd", backend.ClassProtect, 1},
		{"/tmp/x", backend.ClassExempt, 2},
		{"/tmp", backend.ClassProtect, 1},    // the directory itself is not under "/tmp/"
		{"/tmpfoo", backend.ClassProtect, 1}, // a prefix matches whole components only
		{"/tmp/keep/x", backend.ClassProtect, 3},
		{"/tmp/../etc/x", backend.ClassProtect, 1},
		{"/tmp/keep/../y", backend.ClassExempt, 2},
	}
	for _, c := range cases {
		got := r.resolve(-100, c.in)
		if got.class != c.class || got.rule != c.rule {
			t.Errorf("%s: class %d rule %d, want class %d rule %d", c.in, got.class, got.rule, c.class, c.rule)
		}
	}
}

// BenchmarkResolve times the in-kernel path logic alone (BPF_PROG_TEST_RUN
// with repeats), per kind of name: the cost every judged syscall pays.
func BenchmarkResolve(b *testing.B) {
	testenv.RequireBPF(b)
	cg := testenv.NewCgroup(b)
	root, _ := sysfs.CgroupRoot()
	be, err := Load(backend.Options{Scope: []string{cg.Path}, CgroupRoot: root})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	if err := be.Apply(backend.Rules{Paths: []backend.Rule{{Prefix: "/", Class: 1, ID: 1}, {Prefix: "/tmp/", Class: 2, ID: 2}}}); err != nil {
		b.Fatal(err)
	}
	r := &resolver{b: be, p: loadTests(b, be)}
	cwd, err := os.Getwd()
	if err != nil {
		b.Fatal(err)
	}
	cwd, _ = filepath.EvalSymlinks(cwd)
	// runs resolves name n times and returns the time per run; every run
	// must succeed.
	runs := func(tb testing.TB, name string, n int) time.Duration {
		if err := r.p.SetName(-100, name); err != nil {
			tb.Fatal(err)
		}
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := r.p.RunResolve(); err != nil {
				tb.Fatalf("%q: %v", name, err)
			}
		}
		return time.Since(start) / time.Duration(n)
	}
	floor := runs(b, "", 20000) // an empty name returns at once: the cost of the test-run syscall
	for _, c := range []struct{ name, in, want string }{
		{"absolute-short", "/tmp/a", "/tmp/a"},
		{"absolute-40", "/var/lib/service/cache/objects/ab/cdef01", "/var/lib/service/cache/objects/ab/cdef01"},
		{"relative", "a", cwd + "/a"},
		{"dotdot", "/usr/lib/../share/zoneinfo/../locale/x", "/usr/share/locale/x"},
	} {
		b.Run(c.name, func(b *testing.B) {
			r.t = b
			if got := r.resolve(-100, c.in); got.path != c.want || got.trunc {
				b.Fatalf("%q resolved to %q (truncated %v), want %q", c.in, got.path, got.trunc, c.want)
			}
			b.ResetTimer()
			per := runs(b, c.in, b.N)
			b.ReportMetric(float64((per - floor).Nanoseconds()), "kernel-ns/resolve")
		})
	}
}

// TestCachedDirectoryRenamed: a directory path cached in the kernel is not
// trusted after a rename anywhere (the generation moves), nor when its dentry
// now names another directory.
func TestCachedDirectoryRenamed(t *testing.T) {
	r := newResolver(t)
	top := t.TempDir()
	inner := filepath.Join(top, "a", "b")
	if err := os.MkdirAll(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(inner, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if got := r.resolve(fd, "f"); got.path != inner+"/f" {
		t.Fatalf("before rename: %q", got.path)
	}
	// The walk cached inner's path. Rewrite the cached copy: the next
	// resolve must return it, which proves it is served from the cache.
	const poison = "/poisoned/by/the/test"
	r.poisonDcache(inner, poison)
	if got := r.resolve(fd, "f"); got.path != poison+"/f" {
		t.Fatalf("second resolve %q, want the cached (poisoned) %q: the directory cache is not used", got.path, poison+"/f")
	}
	if err := os.Rename(filepath.Join(top, "a"), filepath.Join(top, "renamed")); err != nil {
		t.Fatal(err)
	}
	// The rename bumped the generation: the cached entry is no longer trusted.
	want := filepath.Join(top, "renamed", "b", "f")
	if got := r.resolve(fd, "f"); got.path != want {
		t.Fatalf("after renaming an ancestor: %q, want %q", got.path, want)
	}
	// The directory itself removed and another made in its place: a new dentry.
	fd2Path := filepath.Join(top, "renamed", "b")
	unix.Close(fd)
	if err := os.RemoveAll(fd2Path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(top, "renamed", "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err = unix.Open(filepath.Join(top, "renamed", "c"), unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.resolve(fd, "f"); got.path != filepath.Join(top, "renamed", "c", "f") {
		t.Fatalf("new directory: %q", got.path)
	}
}
