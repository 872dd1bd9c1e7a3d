package hooktest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// Backend names, as the backends' Name constants spell them (this package
// imports neither backend).
const (
	Tracepoint = "tracepoint"
	LSM        = "lsm"
)

const (
	file = event.KindFile
	xec  = event.KindExec
	net  = event.KindNet
)

func touch(t testing.TB, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("seed"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeELF(t testing.TB, p string) {
	t.Helper()
	if err := os.WriteFile(p, act.TrueELF(), 0o755); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t testing.TB, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

// mountAt mounts a tmpfs on dir, as the test process, until the test ends.
func mountAt(t testing.TB, dir string) {
	t.Helper()
	mkdir(t, dir)
	if err := unix.Mount("none", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
}

// outsideCgroup makes a cgroup outside the scope, $out, removed at the end.
func outsideCgroup(t testing.TB, e *Env) { e.Vars["out"] = testenv.NewCgroup(t).Path }

// insideCgroup makes a cgroup below the scope, $in, removed at the end.
func insideCgroup(t testing.TB, e *Env) {
	in := filepath.Join(e.Scope, "in-"+e.Tag)
	mkdir(t, in)
	t.Cleanup(func() { os.Remove(in) })
	e.Vars["in"] = in
}

// memDeviceCases: /dev/mem, /dev/kmem and /dev/port are judged by device
// number, so each case opens a node the test makes in its own directory
// (an attacker's mknod works the same). A kernel without the driver (no
// CONFIG_DEVMEM or CONFIG_DEVPORT here; /dev/kmem left Linux in 5.13) fails
// the open with ENXIO in the driver: the lsm backend has judged it at
// file_open already, the tracepoint backend judges only the file an open
// made, and there is none (README, Known limits).
func memDeviceCases() []Case {
	var out []Case
	for _, d := range []struct {
		name  string
		minor uint32
	}{{"mem", 1}, {"kmem", 2}, {"port", 4}} {
		c := Case{Group: "kernel", Name: fmt.Sprintf("/dev/%s (char 1:%d) opened for writing", d.name, d.minor),
			Setup: func(t testing.TB, e *Env) { charDevice(t, e.Var+"/"+d.name, 1, d.minor) },
			Act:   []string{"open-w", "$var/" + d.name},
			Want:  []Want{{Kind: file, Action: ActRawDevice, Path: "$var/" + d.name}}}
		if _, err := os.Stat(fmt.Sprintf("/sys/dev/char/1:%d", d.minor)); err != nil {
			c.Errno = unix.ENXIO
			c.Differs = []Differ{{Backend: Tracepoint,
				Why:  fmt.Sprintf("this kernel has no driver for char 1:%d: the open fails in the driver, and the tracepoint backend judges only the file an open made", d.minor),
				Then: func(o *Outcome) { o.Want, o.Errno = nil, unix.ENXIO }}}
		}
		out = append(out, c)
	}
	return out
}

// loopAttach attaches file to a free loop device and returns the device's
// path; it is detached at the end. A device another process takes between
// the kernel's answer and the attach (EBUSY) is tried again.
func loopAttach(t testing.TB, file string) string {
	t.Helper()
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/loop-control: %v", err)
	}
	defer unix.Close(ctl)
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for try := 0; try < 10; try++ {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			t.Fatalf("LOOP_CTL_GET_FREE: %v", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		lfd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open %s: %v", dev, err)
		}
		if err := unix.IoctlSetInt(lfd, unix.LOOP_SET_FD, int(f.Fd())); err == unix.EBUSY {
			unix.Close(lfd)
			continue
		} else if err != nil {
			unix.Close(lfd)
			t.Fatalf("LOOP_SET_FD %s on %s: %v", file, dev, err)
		}
		t.Cleanup(func() { unix.IoctlSetInt(lfd, unix.LOOP_CLR_FD, 0); unix.Close(lfd) })
		return dev
	}
	t.Fatalf("no free loop device for %s after 10 tries (each taken by another process)", file)
	return ""
}

// charDevice makes a character device node major:minor at p.
func charDevice(t testing.TB, p string, major, minor uint32) {
	t.Helper()
	if err := unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor))); err != nil {
		t.Fatalf("mknod %s: %v", p, err)
	}
}

// loopMount mounts an ext2 file system on a loop device at $etc/mnt (under
// the protected image root) and names the device $loop; both go at the end.
// The loop device is set up with the kernel's ioctls, not losetup, and the
// file system made with plain "mke2fs -F": the same on this machine and in
// make vmtest's busybox VMs.
func loopMount(t testing.TB, e *Env) {
	t.Helper()
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		msg := "no loop device support in this kernel (/dev/loop-control is missing): no block device to mount"
		if testenv.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	img := filepath.Join(e.Var, "fs.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mke2fs", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs -F %s: %v\n%s", img, err, out)
	}
	dev := loopAttach(t, img)
	mnt := e.Etc + "/mnt"
	mkdir(t, mnt)
	if err := unix.Mount(dev, mnt, "ext2", 0, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", dev, mnt, err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	e.Vars["loop"] = dev
}

// tmpfileIn opens an O_TMPFILE file in dir (a template) as the test
// process: e.Files["tmp"], its inode $ino; closed at the end.
func tmpfileIn(dir string) func(t testing.TB, e *Env) {
	return func(t testing.TB, e *Env) {
		t.Helper()
		fd, err := unix.Open(e.Expand(dir), unix.O_TMPFILE|unix.O_RDWR, 0o644)
		if err != nil {
			t.Fatalf("O_TMPFILE in %s: %v", e.Expand(dir), err)
		}
		f := os.NewFile(uintptr(fd), "tmpfile")
		t.Cleanup(func() { f.Close() })
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		e.Vars["ino"] = strconv.FormatUint(st.Ino, 10)
		e.Files = map[string]*os.File{"tmp": f}
	}
}

// openRead opens p for reading as the test process, closed at the end.
func openRead(t testing.TB, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func u64(v uint64) *uint64 { return &v }
func u32(v uint32) *uint32 { return &v }

// onlyFirst keeps the first wanted finding: in enforce mode the first step is
// refused, so what follows it never happens.
func onlyFirst(o *Outcome) { o.Want = o.Want[:1] }

// lsmSameHook: the lsm backend sees io_uring operations at the hooks the
// syscalls meet, so they are reported (and denied) as the operation itself.
func lsmSameHook(action string) Differ {
	return Differ{Backend: LSM, Why: "io_uring operations meet the same LSM hook as the syscall: reported as " + action + ", possibly from an io_uring worker thread",
		Then: func(o *Outcome) { o.Want[0].Action = action; o.Want[0].AnyThread = true }}
}

// uringSetupNotDenied: the lsm backend reports io_uring_setup but never
// denies it, since every operation on the ring is judged anyway.
var uringSetupNotDenied = Differ{Backend: LSM, Mode: Enforce,
	Why: "io_uring_setup is reported, never denied: every operation submitted through the ring meets the LSM hooks",
	Then: func(o *Outcome) {
		for i := range o.Want {
			if o.Want[i].Action == ActUringSetup {
				o.Want[i].Denied = false
			}
		}
		o.Errno = 0
	}}

// tracepointGap: the tracepoint backend has no hook for this yet, so the
// case runs there expecting no finding (it fails, and is to be updated, the
// day the hook exists).
func tracepointGap(why string) Differ {
	return Differ{Backend: Tracepoint, Why: "gap, no finding: " + why, Then: func(o *Outcome) { o.Want = nil }}
}

// Cases is the table. Each case has directories of its own ($etc, $var...:
// see Env), so cases do not depend on one another.
func Cases() []Case {
	uringSetup := Want{Kind: xec, Action: ActUringSetup}
	touchEtc := func(t testing.TB, e *Env) { touch(t, e.Etc+"/f") }
	return append([]Case{
		// ---- file mutations: one finding each, exact canonical path ----
		{Group: "file", Name: "open creates",
			Act:  []string{"create", "$etc/f"},
			Want: []Want{{Kind: file, Action: ActOpen, Path: "$etc/f"}}},
		{Group: "file", Name: "open truncates",
			Setup: touchEtc,
			Act:   []string{"truncopen", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActOpen, Path: "$etc/f"}}},
		{Group: "file", Name: "open for writing",
			Setup: touchEtc,
			Act:   []string{"open-w", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActOpen, Path: "$etc/f"}}},
		{Group: "file", Name: "creat",
			Act:  []string{"creat", "$etc/fc"},
			Want: []Want{{Kind: file, Action: ActOpen, Path: "$etc/fc"}}},
		{Group: "file", Name: "openat2",
			Act:  []string{"openat2", "$etc/f2"},
			Want: []Want{{Kind: file, Action: ActOpen, Path: "$etc/f2"}}},
		{Group: "file", Name: "openat with dirfd",
			Act:  []string{"openat-dirfd", "$etc", "rel"},
			Want: []Want{{Kind: file, Action: ActOpen, Path: "$etc/rel"}}},
		{Group: "file", Name: "unlink relative to cwd",
			Setup: touchEtc,
			Act:   []string{"in-dir", "$etc", "unlink", "f"},
			Want:  []Want{{Kind: file, Action: ActUnlink, Path: "$etc/f"}}},
		{Group: "file", Name: "renameat2 both names",
			Setup: touchEtc,
			Act:   []string{"rename", "$etc/f", "$etc/f.new"},
			Want:  []Want{{Kind: file, Action: ActRename, Path: "$etc/f", NewPath: "$etc/f.new"}}},
		{Group: "file", Name: "rename from exempt into protected",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Var+"/x") },
			Act:   []string{"rename-legacy", "$var/x", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActRename, Path: "$var/x", NewPath: "$etc/f"}}},
		{Group: "file", Name: "rename out of protected space",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Etc+"/a") },
			Act:   []string{"rename", "$etc/a", "$var/b"},
			Want:  []Want{{Kind: file, Action: ActRename, Path: "$etc/a", NewPath: "$var/b"}}},
		// A directory's classification is cached (bpf/path.h dclass): moving
		// the directory must change how names in it are judged at once.
		{Group: "file", Name: "create in an exempt directory just moved into protected space",
			Setup: func(t testing.TB, e *Env) { mkdir(t, e.Var+"/d") },
			Pre:   [][]string{{"create", "$var/d/before"}}, // benign: caches the directory as exempt
			Act:   []string{"rename-create", "$var/d", "$etc/d", "$etc/d/after"},
			Want: []Want{{Kind: file, Action: ActRename, Path: "$var/d", NewPath: "$etc/d"},
				{Kind: file, Action: ActOpen, Path: "$etc/d/after"}},
			Differs: []Differ{{Backend: LSM, Mode: Enforce, Why: "the rename is refused, so nothing is created", Then: onlyFirst}}},
		{Group: "file", Name: "create in a protected directory just moved into exempt space",
			Setup: func(t testing.TB, e *Env) { mkdir(t, e.Etc+"/d") },
			Pre:   [][]string{{"create", "$etc/d/before"}}, // drift, by another process: caches the directory as protected
			Act:   []string{"rename-create", "$etc/d", "$var/d", "$var/d/after"},
			Want:  []Want{{Kind: file, Action: ActRename, Path: "$etc/d", NewPath: "$var/d"}},
			Differs: []Differ{{Backend: LSM, Mode: Enforce, Why: "the preparation and the rename are refused",
				Then: func(o *Outcome) { o.PreErrno = unix.EPERM }}}},
		{Group: "file", Name: "unlinkat",
			Setup: touchEtc,
			Act:   []string{"unlinkat", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActUnlink, Path: "$etc/f"}}},
		{Group: "file", Name: "link",
			Setup: touchEtc,
			Act:   []string{"link", "$etc/f", "$etc/f.l"},
			Want:  []Want{{Kind: file, Action: ActLink, Path: "$etc/f", NewPath: "$etc/f.l"}}},
		{Group: "file", Name: "linkat",
			Setup: touchEtc,
			Act:   []string{"linkat", "$etc/f", "$etc/f.l2"},
			Want:  []Want{{Kind: file, Action: ActLink, Path: "$etc/f", NewPath: "$etc/f.l2"}}},
		{Group: "file", Name: "symlink",
			Act:  []string{"symlink", "target", "$etc/f.s"},
			Want: []Want{{Kind: file, Action: ActSymlink, Path: "$etc/f.s", Target: "target"}}},
		{Group: "file", Name: "symlink from exempt dir into protected",
			Act:  []string{"symlink", "$etc", "$var/sneaky"},
			Want: []Want{{Kind: file, Action: ActSymlink, Path: "$var/sneaky", Target: "$etc"}}},
		{Group: "file", Name: "mkdir with .. and .",
			Act:  []string{"mkdir", "$etc/../$tag/./d"},
			Want: []Want{{Kind: file, Action: ActMkdir, Path: "$etc/d"}}},
		{Group: "file", Name: "mkdirat",
			Act:  []string{"mkdirat", "$etc/d2"},
			Want: []Want{{Kind: file, Action: ActMkdir, Path: "$etc/d2"}}},
		{Group: "file", Name: "rmdir",
			Setup: func(t testing.TB, e *Env) { mkdir(t, e.Etc+"/d2") },
			Act:   []string{"rmdir", "$etc/d2"},
			Want:  []Want{{Kind: file, Action: ActRmdir, Path: "$etc/d2"}}},
		{Group: "file", Name: "mknod fifo",
			Act:  []string{"mknod", "$etc/f.fifo"},
			Want: []Want{{Kind: file, Action: ActMknod, Path: "$etc/f.fifo"}}},
		{Group: "file", Name: "chmod",
			Setup: touchEtc,
			Act:   []string{"chmod", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActChmod, Path: "$etc/f"}}},
		{Group: "file", Name: "fchmod",
			Setup: touchEtc,
			Act:   []string{"fchmod", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActChmod, Path: "$etc/f"}}},
		{Group: "file", Name: "fchmodat",
			Setup: touchEtc,
			Act:   []string{"fchmodat", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActChmod, Path: "$etc/f"}}},
		{Group: "file", Name: "chown",
			Setup: touchEtc,
			Act:   []string{"chown", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActChown, Path: "$etc/f"}}},
		{Group: "file", Name: "lchown",
			Setup: touchEtc,
			Act:   []string{"lchown", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActChown, Path: "$etc/f"}}},
		{Group: "file", Name: "fchown",
			Setup: touchEtc,
			Act:   []string{"fchown", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActChown, Path: "$etc/f"}}},
		{Group: "file", Name: "truncate",
			Setup: touchEtc,
			Act:   []string{"truncate", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActTruncate, Path: "$etc/f"}}},
		{Group: "file", Name: "ftruncate",
			Setup: touchEtc,
			Act:   []string{"ftruncate", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActOpen, Path: "$etc/f"}, {Kind: file, Action: ActTruncate, Path: "$etc/f"}},
			Differs: []Differ{{Mode: Enforce, Why: "the open for writing is refused, so there is no descriptor to ftruncate",
				Then: onlyFirst}}},
		{Group: "file", Name: "setxattr",
			Setup: touchEtc,
			Act:   []string{"setxattr", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActSetxattr, Path: "$etc/f"}}},
		{Group: "file", Name: "removexattr",
			Setup: func(t testing.TB, e *Env) {
				touch(t, e.Etc+"/f")
				if err := unix.Setxattr(e.Etc+"/f", "trusted.drift", []byte("1"), 0); err != nil {
					t.Fatal(err)
				}
			},
			Act:  []string{"removexattr", "$etc/f"},
			Want: []Want{{Kind: file, Action: ActRemovexattr, Path: "$etc/f"}}},
		{Group: "file", Name: "utimensat (timestomp)",
			Setup: touchEtc,
			Act:   []string{"utimes", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActUtimes, Path: "$etc/f"}}},
		{Group: "file", Name: "chattr",
			Setup: touchEtc,
			Act:   []string{"chattr", "$etc/f"},
			Want:  []Want{{Kind: file, Action: ActSetflags, Path: "$etc/f"}}},
		{Group: "file", Name: "through a symlinked directory",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Usr+"/tool") },
			Act:   []string{"unlink", "$bin/tool"},
			Want:  []Want{{Kind: file, Action: ActUnlink, Path: "$usr/tool"}}},
		{Group: "file", Name: "mount",
			Setup: func(t testing.TB, e *Env) {
				mkdir(t, e.Etc+"/mnt")
				t.Cleanup(func() { unix.Unmount(e.Etc+"/mnt", unix.MNT_DETACH) })
			},
			Act:  []string{"mount", "$etc/mnt"},
			Want: []Want{{Kind: file, Action: ActMount, Path: "$etc/mnt"}}},
		{Group: "file", Name: "across a mount point",
			Setup: func(t testing.TB, e *Env) { mountAt(t, e.Etc+"/mnt") },
			Act:   []string{"create", "$etc/mnt/inside"},
			Want:  []Want{{Kind: file, Action: ActOpen, Path: "$etc/mnt/inside"}}},
		{Group: "file", Name: "create in an exempt mount just moved into protected space",
			Setup: func(t testing.TB, e *Env) {
				mountAt(t, e.Var+"/m")
				mkdir(t, e.Etc+"/m")
				t.Cleanup(func() { unix.Unmount(e.Etc+"/m", unix.MNT_DETACH) })
			},
			Pre:     [][]string{{"create", "$var/m/before"}}, // benign: caches the mount's root as exempt
			Act:     []string{"move-mount-create", "$var/m", "$etc/m", "$etc/m/after"},
			Want:    []Want{{Kind: file, Action: ActMount, Path: "$etc/m"}, {Kind: file, Action: ActOpen, Path: "$etc/m/after"}},
			Differs: []Differ{{Backend: LSM, Mode: Enforce, Why: "the move is refused, so nothing is created", Then: onlyFirst}}},
		{Group: "file", Name: "umount",
			Setup: func(t testing.TB, e *Env) { mountAt(t, e.Etc+"/mnt") },
			Act:   []string{"umount", "$etc/mnt"},
			Want:  []Want{{Kind: file, Action: ActMount, Path: "$etc/mnt"}}},

		// ---- names: judged by the object they reach, not by the string ----
		// Paths are the mount namespace's, never a chroot's: a chroot in
		// protected space hides nothing, one in a writable directory is not
		// protected space.
		{Group: "names", Name: "chroot in protected space: open",
			Setup: func(t testing.TB, e *Env) { mkdir(t, e.Etc+"/jail") },
			Act:   []string{"chroot", "$etc/jail", "create", "/x"},
			Want:  []Want{{Kind: file, Action: ActOpen, Path: "$etc/jail/x"}}},
		{Group: "names", Name: "chroot in protected space: mkdir by name",
			Setup: func(t testing.TB, e *Env) { mkdir(t, e.Etc+"/jail") },
			Act:   []string{"chroot", "$etc/jail", "mkdir", "/d"},
			Want:  []Want{{Kind: file, Action: ActMkdir, Path: "$etc/jail/d"}}},
		{Group: "names", Name: "chroot in protected space: .. stops at its root",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Etc+"/jail/f") },
			Act:   []string{"chroot", "$etc/jail", "unlink", "/../f"},
			Want:  []Want{{Kind: file, Action: ActUnlink, Path: "$etc/jail/f"}}},
		{Group: "names", Name: "chroot in a writable directory: its own protected-looking open is benign",
			Setup: func(t testing.TB, e *Env) { mkdir(t, e.Var+"/jail"+e.Etc) },
			Act:   []string{"chroot", "$var/jail", "create", "$etc/x"}},
		{Group: "names", Name: "chroot in a writable directory: its own protected-looking unlink is benign",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Var+"/jail"+e.Etc+"/f") },
			Act:   []string{"chroot", "$var/jail", "unlink", "$etc/f"}},
		// /proc magic links lead to the object (the tracepoint backend
		// follows the current process's; /proc itself is exempt).
		{Group: "names", Name: "unlink through /proc/self/root",
			Setup: touchEtc,
			Act:   []string{"unlink", "/proc/self/root$etc/f"},
			Want:  []Want{{Kind: file, Action: ActUnlink, Path: "$etc/f"}}},
		{Group: "names", Name: "chmod through /proc/thread-self/root",
			Setup: touchEtc,
			Act:   []string{"chmod", "/proc/thread-self/root$etc/f"},
			Want:  []Want{{Kind: file, Action: ActChmod, Path: "$etc/f"}}},
		{Group: "names", Name: "mkdir through /proc/self/cwd",
			Act:  []string{"in-dir", "$etc", "mkdir", "/proc/self/cwd/d"},
			Want: []Want{{Kind: file, Action: ActMkdir, Path: "$etc/d"}}},
		{Group: "names", Name: "chmod through /proc/self/fd/N of a protected file",
			Setup: touchEtc,
			Files: func(t testing.TB, e Env) []*os.File { return []*os.File{openRead(t, e.Etc+"/f")} },
			Act:   []string{"chmod", "/proc/self/fd/3"},
			Want:  []Want{{Kind: file, Action: ActChmod, Path: "$etc/f"}}},
		{Group: "names", Name: "chmod through /proc/self/fd/N of a writable-exception file is benign",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Var+"/f") },
			Files: func(t testing.TB, e Env) []*os.File { return []*os.File{openRead(t, e.Var+"/f")} },
			Act:   []string{"chmod", "/proc/self/fd/3"}},
		{Group: "names", Name: "reading through /proc/self/root is benign",
			Setup: touchEtc,
			Act:   []string{"read", "/proc/self/root$etc/f"}},
		{Group: "names", Name: "unlink through its own /proc/<pid>/root",
			Setup: touchEtc,
			Act:   []string{"as-pid", "unlink", "/proc/@pid/root$etc/f"},
			Want:  []Want{{Kind: file, Action: ActUnlink, Path: "$etc/f"}}},
		{Group: "names", Name: "chmod through its own /proc/<pid>/fd/N of a writable-exception file is benign",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Var+"/f") },
			Files: func(t testing.TB, e Env) []*os.File { return []*os.File{openRead(t, e.Var+"/f")} },
			Act:   []string{"as-pid", "chmod", "/proc/@pid/fd/3"}},
		{Group: "names", Name: "unlink through another process's /proc/<pid>/root",
			Setup: touchEtc,
			Act:   []string{"unlink", "/proc/$sensor/root$etc/f"},
			Want:  []Want{{Kind: file, Action: ActUnlink, Path: "/proc/$sensor/root$etc/f", Unresolved: true}},
			Differs: []Differ{{Backend: LSM, Why: "the kernel hands the hook the object the name reached",
				Then: func(o *Outcome) { o.Want[0].Path, o.Want[0].Unresolved = "$etc/f", false }}}},
		// An O_TMPFILE file has no name until it is linked in: the link
		// finding carries the name it lands under ($ino: the actor prints it).
		{Group: "names", Name: "O_TMPFILE linked in through /proc/self/fd",
			Act:  []string{"tmpfile-link", "$var", "$etc/x", "proc"},
			Want: []Want{{Kind: file, Action: ActLink, Path: "$var/#$ino", NewPath: "$etc/x"}}},
		{Group: "names", Name: "O_TMPFILE linked in with AT_EMPTY_PATH",
			Act:  []string{"tmpfile-link", "$var", "$etc/x", "empty"},
			Want: []Want{{Kind: file, Action: ActLink, Path: "$var/#$ino", NewPath: "$etc/x"}}},
		{Group: "names", Name: "O_TMPFILE in protected space, linked in",
			Setup: tmpfileIn("$etc"), // opened by the test process, so the link is the actor's one act
			Files: func(t testing.TB, e Env) []*os.File { return []*os.File{e.Files["tmp"]} },
			Act:   []string{"tmpfile-link", "fd3", "$etc/x", "proc"},
			Want:  []Want{{Kind: file, Action: ActLink, Path: "$etc/#$ino", NewPath: "$etc/x"}}},
		{Group: "names", Name: "O_TMPFILE linked into a writable exception is benign",
			Act: []string{"tmpfile-link", "$var", "$var/x", "empty"}},

		// ---- io_uring: operations that never pass through the file syscalls ----
		{Group: "io_uring", Name: "mkdirat",
			Act:     []string{"uring-mkdir", "$etc/uring-dir"},
			Want:    []Want{{Kind: file, Action: ActUring, Path: "$etc/uring-dir"}},
			Extra:   []Want{uringSetup},
			Differs: []Differ{lsmSameHook(ActMkdir)}},
		{Group: "io_uring", Name: "openat for writing",
			Setup:   touchEtc,
			Act:     []string{"uring-open", "$etc/f"},
			Want:    []Want{{Kind: file, Action: ActUring, Path: "$etc/f"}},
			Extra:   []Want{uringSetup},
			Differs: []Differ{lsmSameHook(ActOpen)}},

		// ---- writes through descriptors opened before sealing ----
		{Group: "write", Name: "through a descriptor opened before sealing",
			Setup:       func(t testing.TB, e *Env) { touch(t, e.Etc+"/app.conf") },
			SealAtReady: true,
			Act:         []string{"prewrite", "$etc/app.conf"},
			Want:        []Want{{Kind: file, Action: ActWrite, Path: "$etc/app.conf"}}},
		{Group: "write", Name: "through an inherited descriptor",
			Setup: touchEtc,
			Files: func(t testing.TB, e Env) []*os.File {
				f, err := os.OpenFile(e.Etc+"/f", os.O_WRONLY, 0) // by the sensor: never judged
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { f.Close() })
				return []*os.File{f}
			},
			Act:  []string{"write-fd3"},
			Want: []Want{{Kind: file, Action: ActWrite, Path: "$etc/f"}}},

		// ---- exec drift ----
		{Group: "exec", Name: "file written after sealing (tainted)",
			Pre:  [][]string{{"write-elf", "$usr/new"}},
			Act:  []string{"exec", "$usr/new"},
			Want: []Want{{Kind: xec, Action: ActExec, Path: "$usr/new", Reasons: []string{"tainted"}}},
			Differs: []Differ{{Backend: LSM, Mode: Enforce,
				Why:  "the write that would taint a file in a protected image directory is itself refused, so the binary never lands and its exec finds nothing; the next case taints one in a writable image directory",
				Then: func(o *Outcome) { o.PreErrno, o.Want, o.Errno = unix.EPERM, nil, unix.ENOENT }}}},
		{Group: "exec", Name: "file written after sealing in a writable image directory (tainted)",
			Pre:  [][]string{{"write-elf", "$app/new"}},
			Act:  []string{"exec", "$app/new"},
			Want: []Want{{Kind: xec, Action: ActExec, Path: "$app/new", Reasons: []string{"tainted"}}}},
		{Group: "exec", Name: "file outside the image paths",
			Setup: func(t testing.TB, e *Env) { writeELF(t, e.Opt+"/tool") },
			Act:   []string{"exec", "$opt/tool"},
			Want: []Want{{Kind: xec, Action: ActExec, Path: "$opt/tool", Reasons: []string{"outside_image"},
				Argv: []string{"$opt/tool", "--drift-arg"}}}},
		{Group: "exec", Name: "memfd",
			Act: []string{"memfd"},
			Want: []Want{{Kind: xec, Action: ActExec, Path: "/memfd:drift",
				Reasons: []string{"outside_image", "memfd", "deleted"}, Argv: []string{"drift"}}}},
		{Group: "exec", Name: "deleted file",
			Setup: func(t testing.TB, e *Env) { writeELF(t, e.App+"/doomed") },
			Act:   []string{"exec-deleted", "$app/doomed"},
			Want:  []Want{{Kind: xec, Action: ActExec, Path: "$app/doomed", Reasons: []string{"deleted"}}}},
		{Group: "exec", Name: "executable mapping of a file written after sealing",
			Pre: [][]string{{"write-elf", "$app/lib.so"}},
			Act: []string{"mmap-x", "$app/lib.so"},
			Want: []Want{{Kind: xec, Action: ActExec, Path: "$app/lib.so", Reasons: []string{"tainted"},
				Arg: u64(unix.PROT_READ | unix.PROT_EXEC)}}},
		{Group: "exec", Name: "executable mapping of a file outside the image paths (the loader, dlopen)",
			Setup: func(t testing.TB, e *Env) { writeELF(t, e.Opt+"/lib.so") },
			Act:   []string{"mmap-x", "$opt/lib.so"},
			Want: []Want{{Kind: xec, Action: ActExec, Path: "$opt/lib.so", Reasons: []string{"outside_image"},
				Arg: u64(unix.PROT_READ | unix.PROT_EXEC)}}},
		{Group: "exec", Name: "script outside the image paths handed to an interpreter",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Opt+"/x.sh") },
			Act:   []string{"interp", "$opt/x.sh"},
			Want:  []Want{{Kind: xec, Action: ActExec, Path: "$opt/x.sh", Reasons: []string{"outside_image"}, Arg: u64(0)}}},
		{Group: "exec", Name: "script written after sealing handed to an interpreter (tainted)",
			Pre:  [][]string{{"create", "$app/x.sh"}},
			Act:  []string{"interp", "$app/x.sh"},
			Want: []Want{{Kind: xec, Action: ActExec, Path: "$app/x.sh", Reasons: []string{"tainted"}, Arg: u64(0)}}},
		{Group: "exec", Name: "mprotect making a mapping of a file outside the image paths executable",
			Setup: func(t testing.TB, e *Env) { writeELF(t, e.Opt+"/lib.so") },
			Act:   []string{"mprotect-x", "$opt/lib.so"},
			Want: []Want{{Kind: xec, Action: ActExec, Path: "$opt/lib.so", Reasons: []string{"outside_image"},
				Arg: u64(unix.PROT_READ | unix.PROT_EXEC)}}},

		// ---- privileged kernel operations: drift when attempted, even when they fail ----
		{Group: "privileged", Name: "init_module",
			Act: []string{"init-module"}, Errno: AnyErrno,
			Want: []Want{{Kind: xec, Action: ActModule}}},
		{Group: "privileged", Name: "finit_module",
			Setup: func(t testing.TB, e *Env) {
				if err := os.WriteFile(e.App+"/m.ko", []byte(strings.Repeat("not a module ", 16)), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			Act: []string{"finit-module", "$app/m.ko"}, Errno: AnyErrno,
			Want: []Want{{Kind: xec, Action: ActModule, Path: "$app/m.ko"}},
			Differs: []Differ{
				{Backend: LSM, Why: "the lsm backend's arg is the kernel_read_file id (READING_MODULE)",
					Then: func(o *Outcome) { o.Want[0].Arg = u64(2) }},
				{Backend: Tracepoint, Why: "the tracepoint backend's arg is the syscall number (x86-64's on every architecture: bpf/arch.h)",
					Then: func(o *Outcome) { o.Want[0].Arg = u64(313) }},
			}},
		{Group: "privileged", Name: "kexec_load",
			Act: []string{"kexec-load"}, Errno: AnyErrno,
			Want: []Want{{Kind: xec, Action: ActKexec}}},
		{Group: "privileged", Name: "bpf program load refused by the kernel",
			Act: []string{"bpf-load-junk"}, Errno: AnyErrno,
			Want: []Want{{Kind: xec, Action: ActBPF, Arg: u64(unix.BPF_PROG_LOAD)}}},
		{Group: "privileged", Name: "bpf program load",
			Act:  []string{"bpf-load"},
			Want: []Want{{Kind: xec, Action: ActBPF, Arg: u64(unix.BPF_PROG_LOAD)}}},
		{Group: "privileged", Name: "ptrace",
			Setup: func(t testing.TB, e *Env) {
				sleeper := exec.Command("sleep", "30") // started by the test process: out of scope
				if err := sleeper.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
				e.Vars["sleeper"] = strconv.Itoa(sleeper.Process.Pid)
			},
			Act:  []string{"ptrace", "$sleeper"},
			Want: []Want{{Kind: xec, Action: ActPtrace, TargetPID: "$sleeper"}}},
		{Group: "privileged", Name: "io_uring_setup",
			Act:     []string{"io-uring-setup"},
			Want:    []Want{uringSetup},
			Differs: []Differ{uringSetupNotDenied}},

		// ---- leaving the sealed scope: reported before it leaves ----
		{Group: "leave", Name: "moving itself into a cgroup outside the scope",
			Setup: outsideCgroup,
			Act:   []string{"cgroup-move-self", "$out"},
			Want:  []Want{{Kind: xec, Action: ActLeaveScope, Path: "$out/cgroup.procs"}}},
		{Group: "leave", Name: "clone3 into a cgroup outside the scope",
			Setup: outsideCgroup,
			Act:   []string{"clone-into", "$out"},
			Want:  []Want{{Kind: xec, Action: ActLeaveScope, Path: "$out"}}},

		// ---- kernel settings and raw devices are part of the seal ----
		{Group: "kernel", Name: "a /proc/sys setting opened for writing",
			Act:  []string{"open-w", "/proc/sys/kernel/hostname"},
			Want: []Want{{Kind: file, Action: ActKSetting, Path: "/proc/sys/kernel/hostname"}}},
		{Group: "kernel", Name: "a /sys attribute opened for writing, by its canonical path",
			Act:  []string{"open-w", "/sys/class/net/lo/mtu"},
			Want: []Want{{Kind: file, Action: ActKSetting, Path: "/sys/devices/virtual/net/lo/mtu"}}},
		{Group: "kernel", Name: "block device under a protected file system opened for writing",
			Setup: loopMount,
			Act:   []string{"open-w", "$loop"},
			Want:  []Want{{Kind: file, Action: ActRawDevice, Path: "$loop"}}},

		// ---- self-protection ----
		{Group: "self", Name: "ptrace of the sensor",
			Act:  []string{"ptrace", "$sensor"},
			Want: []Want{{Kind: xec, Action: ActPtrace, TargetPID: "$sensor"}}},
		{Group: "self", Name: "signal to the sensor",
			Act:     []string{"kill", "$sensor"},
			Want:    []Want{{Kind: xec, Action: ActSignal, TargetPID: "$sensor"}},
			Differs: []Differ{tracepointGap("bpf/tracepoint.c decodes no kill/tgkill/pidfd_send_signal (self-protection is lsm's task_kill)")}},
		{Group: "self", Name: "descriptor for a sensor program",
			Act:  []string{"bpf-prog-fd", "$progid"},
			Want: []Want{{Kind: event.KindSensor, Action: ActTamper}}},

		// ---- network ----
		{Group: "net", Name: "bind to a port the policy does not allow",
			Act: []string{"bind", "47002"}, Errno: unix.EPERM,
			Want: []Want{{Kind: net, Action: ActBind, Port: 47002, Denied: true}}},
		{Group: "net", Name: "listen on a port the policy does not allow",
			AllowBinds: true,
			Act:        []string{"listen", "47003"},
			Want:       []Want{{Kind: net, Action: ActBind, Port: 47003}, {Kind: net, Action: ActListen, Port: 47003}},
			Differs: []Differ{{Mode: Enforce, Why: "the bind is refused, so there is no socket to listen on",
				Then: onlyFirst}}},
		{Group: "net", Name: "listen on a port the kernel picked",
			Act:  []string{"listen", "0"},
			Want: []Want{{Kind: net, Action: ActListen, AnyPort: true}},
			Differs: []Differ{{Backend: LSM, Mode: Detect,
				Why:  "with net.deny_binds the lsm backend refuses the listen as well (socket_listen can deny; the tracepoint backend's inet_sock_set_state cannot)",
				Then: func(o *Outcome) { o.Want[0].Denied = true; o.Errno = unix.EPERM }}}},

		// ---- benign: nothing reaches user space ----
		{Group: "benign", Name: "read of a protected file",
			Setup: touchEtc,
			Act:   []string{"read", "$etc/f"}},
		{Group: "benign", Name: "write under a writable exception",
			Act: []string{"create", "$var/log.txt"}},
		{Group: "benign", Name: "open for writing an exempt file",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Var+"/f") },
			Act:   []string{"open-w", "$var/f"}},
		{Group: "benign", Name: "mkdir under a writable exception",
			Act: []string{"mkdir", "$var/d"}},
		{Group: "benign", Name: "unlink an exempt file",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Var+"/f") },
			Act:   []string{"unlink", "$var/f"}},
		{Group: "benign", Name: "rename within exempt space",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Var+"/a") },
			Act:   []string{"rename", "$var/a", "$var/b"}},
		{Group: "benign", Name: "mutation before sealing",
			Unsealed: true,
			Act:      []string{"create", "$etc/early"}},
		{Group: "benign", Name: "mutation outside the scope",
			Outside: true,
			Setup:   touchEtc,
			Act:     []string{"unlink", "$etc/f"}},
		{Group: "benign", Name: "exec from an image path",
			Act: []string{"exec", "/bin/true"}},
		{Group: "benign", Name: "exec of an untouched image file",
			Setup: func(t testing.TB, e *Env) { writeELF(t, e.Usr+"/tool") },
			Act:   []string{"exec", "$usr/tool"}},
		{Group: "benign", Name: "executable mapping of an untouched file",
			Setup: func(t testing.TB, e *Env) { writeELF(t, e.App+"/lib.so") },
			Act:   []string{"mmap-x", "$app/lib.so"}},
		{Group: "benign", Name: "script under the image paths handed to an interpreter",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Usr+"/x.sh") },
			Act:   []string{"interp", "$usr/x.sh"}},
		{Group: "benign", Name: "inline code (-c) reading a file outside the image paths for data",
			Setup: func(t testing.TB, e *Env) { touch(t, e.Opt+"/data") },
			Act:   []string{"interp", "-c", "$opt/data"}},
		{Group: "benign", Name: "reading a file outside the image paths for data",
			Setup: func(t testing.TB, e *Env) { writeELF(t, e.Opt+"/data") },
			Act:   []string{"read", "$opt/data"}},
		{Group: "benign", Name: "mapping a file outside the image paths without exec",
			Setup: func(t testing.TB, e *Env) { writeELF(t, e.Opt+"/data") },
			Act:   []string{"mmap-r", "$opt/data"}},
		{Group: "benign", Name: "moving into a cgroup inside the scope",
			Setup: insideCgroup,
			Act:   []string{"cgroup-move-self", "$in"}},
		{Group: "benign", Name: "clone3 into a cgroup inside the scope",
			Setup: insideCgroup,
			Act:   []string{"clone-into", "$in"}},
		{Group: "benign", Name: "reading a kernel setting",
			Act: []string{"read", "/proc/sys/kernel/hostname"}},
		{Group: "benign", Name: "a kernel setting the policy allows",
			Act: []string{"open-w", AllowedSetting}},
		{Group: "benign", Name: "a character device that is no raw memory",
			Setup: func(t testing.TB, e *Env) { charDevice(t, e.Var+"/null", 1, 3) },
			Act:   []string{"open-w", "$var/null"}},
		{Group: "benign", Name: "bind on an allowed port",
			Act: []string{"bind", strconv.Itoa(AllowedPort)}},
	}, memDeviceCases()...)
}
