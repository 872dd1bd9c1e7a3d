// Package act holds the actions the hook tests and the chaos drills make
// happen (each a syscall, by name), the actor process that makes one, and
// the one-line description of a finding. It does not import testing: the
// drill runs in driftctl.
package act

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ActorEnv, set in a test binary's environment, makes it the actor.
const ActorEnv = "DRIFT_HOOKTEST_ACTOR"

// interpEnv, set by the interp action, makes the actor behave as an
// interpreter: it reads the file its last argument names, as a script.
const interpEnv = "DRIFT_HOOKTEST_INTERP"

// ActorComm is how the kernel names the actor process (comm): the test
// binary's name, cut to 15 bytes.
func ActorComm() string {
	c := filepath.Base(os.Args[0])
	if len(c) > 15 {
		c = c[:15]
	}
	return c
}

// VarPrefix starts a line the actor prints to name a value the case's
// wants can use: "var NAME=VALUE" sets $NAME (an inode number known only
// once the actor ran).
const VarPrefix = "var "

// IsActor says whether this process was started as the actor.
func IsActor() bool { return os.Getenv(ActorEnv) != "" }

// ActorMain runs the action in os.Args[1:] and returns the exit status. The
// actor prints "tid=T" (the thread making the syscall), then "errno=N" with
// the syscall's result; an exec that succeeds prints no errno. Anything but
// a syscall error (a setup step that failed) exits 2.
func ActorMain() int {
	runtime.LockOSThread() // the syscall runs on the thread whose tid is printed
	args := os.Args[1:]
	if len(args) == 0 {
		fmt.Println("actor: no action")
		return 2
	}
	fmt.Printf("tid=%d\n", unix.Gettid())
	if os.Getenv(interpEnv) != "" { // started as an interpreter: read the file named last
		args = []string{"read", args[len(args)-1]}
	}
	err := act(args[0], args[1:])
	var en syscall.Errno
	if err != nil && !errors.As(err, &en) {
		fmt.Printf("actor: %s %q: %v\n", args[0], args[1:], err)
		return 2
	}
	fmt.Printf("errno=%d\n", int(en))
	return 0
}

// Do runs one actor action (the names ActorMain takes) in this process and
// returns the syscall's error; other drivers of the same syscalls (the
// chaos drills) use it so each action is written once.
func Do(op string, args ...string) error { return act(op, args) }

func act(op string, a []string) error {
	arg := func(i int) string {
		if i < len(a) {
			return a[i]
		}
		return ""
	}
	switch op {
	case "create":
		return os.WriteFile(arg(0), []byte("x"), 0o644)
	case "read":
		_, err := os.ReadFile(arg(0))
		return err
	case "chmod-all": // chmod every file in a directory, one after another
		ents, err := os.ReadDir(arg(0))
		if err != nil {
			return fmt.Errorf("read directory: %w", err) // not the syscall under test
		}
		for _, e := range ents {
			if err := unix.Chmod(filepath.Join(arg(0), e.Name()), 0o600); err != nil {
				return err
			}
		}
		return nil
	case "open-w":
		return closeFd(unix.Open(arg(0), unix.O_WRONLY, 0))
	case "truncopen":
		return closeFd(unix.Open(arg(0), unix.O_WRONLY|unix.O_TRUNC, 0))
	case "creat":
		return closeFd(unix.Creat(arg(0), 0o644))
	case "openat2":
		return closeFd(unix.Openat2(unix.AT_FDCWD, arg(0), &unix.OpenHow{Flags: unix.O_CREAT | unix.O_WRONLY, Mode: 0o644}))
	case "openat-dirfd": // openat(dirfd(arg0), arg1, O_CREAT)
		dfd, err := unix.Open(arg(0), unix.O_DIRECTORY|unix.O_RDONLY, 0)
		if err != nil {
			return fmt.Errorf("open directory: %w", err) // not the syscall under test
		}
		return closeFd(unix.Openat(dfd, arg(1), unix.O_CREAT|unix.O_WRONLY, 0o644))
	case "write-elf": // create or replace an executable with TrueELF
		fd, err := unix.Open(arg(0), unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, err = unix.Write(fd, TrueELF())
		return err
	case "write-fd3":
		_, err := unix.Write(3, []byte("drift\n"))
		return err
	case "prewrite": // open for writing, wait for the seal, then write
		fd, err := unix.Open(arg(0), unix.O_WRONLY|unix.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("open before sealing: %w", err)
		}
		defer unix.Close(fd)
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
		_, err = unix.Write(fd, []byte("late\n"))
		return err
	case "chroot": // chroot(arg0), chdir("/"), then the action in the rest
		if err := unix.Chroot(arg(0)); err != nil {
			return fmt.Errorf("chroot: %v", err) // not the syscall under test
		}
		if err := unix.Chdir("/"); err != nil {
			return fmt.Errorf("chdir: %v", err)
		}
		return act(arg(1), a[min(2, len(a)):])
	case "as-pid": // the action in the rest, "@pid" in its arguments replaced by this process's pid
		rest := make([]string, 0, len(a))
		for _, s := range a {
			rest = append(rest, strings.ReplaceAll(s, "@pid", strconv.Itoa(os.Getpid())))
		}
		return act(rest[0], rest[1:])
	case "in-dir": // chdir(arg0), then the action in the rest
		if err := unix.Chdir(arg(0)); err != nil {
			return fmt.Errorf("chdir: %v", err)
		}
		return act(arg(1), a[min(2, len(a)):])
	case "tmpfile-link": // an O_TMPFILE file in arg0 (or "fd3": the one inherited), written, linked in as arg1 through arg2: "proc" or "empty"
		fd := 3
		if arg(0) != "fd3" {
			var err error
			if fd, err = unix.Open(arg(0), unix.O_TMPFILE|unix.O_WRONLY, 0o644); err != nil {
				return fmt.Errorf("open O_TMPFILE: %v", err) // not the syscall under test
			}
			defer unix.Close(fd)
		}
		var st unix.Stat_t
		if arg(0) != "fd3" { // an inherited one stays unwritten: a write to it is a finding of its own
			if _, err := unix.Write(fd, []byte("x")); err != nil {
				return fmt.Errorf("write: %v", err)
			}
		}
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("fstat: %v", err)
		}
		fmt.Printf("%sino=%d\n", VarPrefix, st.Ino) // the name the kernel gives it: #<inode>
		if arg(2) == "empty" {
			return unix.Linkat(fd, "", unix.AT_FDCWD, arg(1), unix.AT_EMPTY_PATH)
		}
		return unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, arg(1), unix.AT_SYMLINK_FOLLOW)
	case "rename":
		return unix.Renameat2(unix.AT_FDCWD, arg(0), unix.AT_FDCWD, arg(1), 0)
	case "rename-legacy":
		return syscall.Rename(arg(0), arg(1))
	case "rename-create": // rename(arg0, arg1), then create arg2: a file in a directory just moved
		if err := unix.Renameat2(unix.AT_FDCWD, arg(0), unix.AT_FDCWD, arg(1), 0); err != nil {
			return err
		}
		return os.WriteFile(arg(2), []byte("x"), 0o644)
	case "unlink":
		return unix.Unlink(arg(0))
	case "unlinkat":
		return unix.Unlinkat(unix.AT_FDCWD, arg(0), 0)
	case "rmdir":
		return unix.Rmdir(arg(0))
	case "link":
		return unix.Link(arg(0), arg(1))
	case "linkat":
		return unix.Linkat(unix.AT_FDCWD, arg(0), unix.AT_FDCWD, arg(1), 0)
	case "symlink":
		return unix.Symlink(arg(0), arg(1))
	case "mkdir":
		return unix.Mkdir(arg(0), 0o755)
	case "mkdirat":
		return unix.Mkdirat(unix.AT_FDCWD, arg(0), 0o755)
	case "mknod":
		return unix.Mknod(arg(0), unix.S_IFIFO|0o644, 0)
	case "chmod":
		return unix.Chmod(arg(0), 0o600)
	case "fchmod":
		return withFd(arg(0), unix.O_RDONLY, func(fd int) error { return unix.Fchmod(fd, 0o600) })
	case "fchmodat":
		return unix.Fchmodat(unix.AT_FDCWD, arg(0), 0o600, 0)
	case "chown":
		return unix.Chown(arg(0), 0, 0)
	case "lchown":
		return unix.Lchown(arg(0), 0, 0)
	case "fchown":
		return withFd(arg(0), unix.O_RDONLY, func(fd int) error { return unix.Fchown(fd, 0, 0) })
	case "truncate":
		return unix.Truncate(arg(0), 0)
	case "ftruncate": // the open for writing is itself a finding
		fd, err := unix.Open(arg(0), unix.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Ftruncate(fd, 0)
	case "setxattr": // trusted.*: every file system with xattrs has it, tmpfs on 6.1 too
		return unix.Setxattr(arg(0), "trusted.drift", []byte("1"), 0)
	case "removexattr":
		return unix.Removexattr(arg(0), "trusted.drift")
	case "utimes":
		return unix.UtimesNano(arg(0), []unix.Timespec{{Sec: 1}, {Sec: 1}})
	case "chattr": // what chattr +d does
		return withFd(arg(0), unix.O_RDONLY, func(fd int) error {
			flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
			if err != nil {
				return fmt.Errorf("FS_IOC_GETFLAGS: %v", err)
			}
			return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|0x00000040 /* FS_NODUMP_FL */))
		})
	case "mount":
		return unix.Mount("none", arg(0), "tmpfs", 0, "size=1m")
	case "move-mount-create": // mount(arg0, arg1, MS_MOVE), then create arg2: a file in a mount just moved
		if err := unix.Mount(arg(0), arg(1), "", unix.MS_MOVE, ""); err != nil {
			return err
		}
		return os.WriteFile(arg(2), []byte("x"), 0o644)
	case "umount":
		return unix.Unmount(arg(0), 0)
	case "exec":
		return unix.Exec(arg(0), []string{arg(0), "--drift-arg"}, []string{})
	case "memfd":
		fd, err := unix.MemfdCreate("drift", 0)
		if err != nil {
			return fmt.Errorf("memfd_create: %v", err)
		}
		if _, err := unix.Write(fd, TrueELF()); err != nil {
			return fmt.Errorf("write memfd: %v", err)
		}
		return execveat(fd, "drift")
	case "exec-deleted":
		fd, err := unix.Open(arg(0), unix.O_RDONLY, 0)
		if err != nil {
			return fmt.Errorf("open: %v", err)
		}
		if err := unix.Unlink(arg(0)); err != nil {
			return err
		}
		return execveat(fd, arg(0))
	case "mmap-x":
		return mmapExec(arg(0))
	case "mmap-x-then": // mmap-x of one file, then of another: the kernel soon reuses a closed file's memory
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := mmapExec(arg(0)); err != nil {
			return fmt.Errorf("the first mapping: %v", err) // not the syscall under test
		}
		return mmapExec(arg(1))
	case "mmap-r":
		return withFd(arg(0), unix.O_RDONLY, func(fd int) error {
			b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ, unix.MAP_PRIVATE)
			if err == nil {
				unix.Munmap(b)
			}
			return err
		})
	case "mprotect-x": // map for reading, then make the mapping executable
		return withFd(arg(0), unix.O_RDONLY, func(fd int) error {
			b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ, unix.MAP_PRIVATE)
			if err != nil {
				return fmt.Errorf("mmap: %v", err) // not the syscall under test
			}
			defer unix.Munmap(b)
			return unix.Mprotect(b, unix.PROT_READ|unix.PROT_EXEC)
		})
	case "mprotect-all": // mprotect-x every file in a directory, while another thread maps and unmaps memory
		ents, err := os.ReadDir(arg(0))
		if err != nil {
			return fmt.Errorf("read directory: %w", err) // not the syscall under test
		}
		stop := make(chan struct{})
		defer close(stop)
		go churnMappings(stop)
		for _, e := range ents {
			if err := act("mprotect-x", []string{filepath.Join(arg(0), e.Name())}); err != nil {
				return err
			}
		}
		return nil
	case "init-module":
		// longer than an ELF header, or the kernel refuses it before any hook
		return unix.InitModule(bytes.Repeat([]byte("not a module "), 16), "")
	case "finit-module":
		return withFd(arg(0), unix.O_RDONLY, func(fd int) error { return unix.FinitModule(fd, "", 0) })
	case "kexec-load":
		_, _, e := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0xffff0000, 0, 0)
		return errnoOf(e)
	case "bpf-load-junk": // zero attributes: the kernel refuses, the attempt is drift
		attr := make([]byte, 128)
		_, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
		return errnoOf(e)
	case "bpf-load":
		return closeFd(bpfProgLoad())
	case "bpf-prog-fd":
		return closeFd(bpfProgFD(uint32(atoi(arg(0)))))
	case "bpf-map-update": // map id, key and value in hex: a descriptor by id, then the write
		return bpfOnMap(arg(0), func(fd int) error {
			key, val := unhex(arg(1)), unhex(arg(2))
			return bpfElem(unix.BPF_MAP_UPDATE_ELEM, fd, key, val)
		})
	case "bpf-map-delete": // map id, key in hex
		return bpfOnMap(arg(0), func(fd int) error { return bpfElem(unix.BPF_MAP_DELETE_ELEM, fd, unhex(arg(1)), nil) })
	case "bpf-link-detach": // link id: a descriptor by id, then BPF_LINK_DETACH
		var attr [16]byte
		*(*uint32)(unsafe.Pointer(&attr[0])) = uint32(atoi(arg(0)))
		fd, err := bpfCall(unix.BPF_LINK_GET_FD_BY_ID, attr[:])
		if err != nil {
			return err
		}
		defer unix.Close(int(fd))
		*(*uint32)(unsafe.Pointer(&attr[0])) = uint32(fd)
		_, err = bpfCall(unix.BPF_LINK_DETACH, attr[:])
		return err
	case "ptrace":
		return unix.PtraceSeize(atoi(arg(0))) // no stop: the tracee runs on, detached when we exit
	case "kill":
		return unix.Kill(atoi(arg(0)), unix.SIGURG) // the Go runtime ignores SIGURG
	case "io-uring-setup":
		var p uringParams
		fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		return errnoOf(e)
	case "uring-open":
		name := append([]byte(arg(0)), 0)
		res, err := uringSubmit(uringSQE{op: ioringOpOpenat, fd: unix.AT_FDCWD, addr: unsafe.Pointer(&name[0]), opFlags: unix.O_WRONLY})
		runtime.KeepAlive(name)
		if err != nil {
			return err
		}
		unix.Close(int(res))
		return nil
	case "uring-mkdir":
		name := append([]byte(arg(0)), 0)
		_, err := uringSubmit(uringSQE{op: ioringOpMkdirat, fd: unix.AT_FDCWD, addr: unsafe.Pointer(&name[0]), len: 0o755})
		runtime.KeepAlive(name)
		if err != nil {
			return err
		}
		if _, err := os.Stat(arg(0)); err != nil {
			return fmt.Errorf("io_uring mkdir did not happen: %v", err)
		}
		return nil
	case "bind", "listen":
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return fmt.Errorf("socket: %v", err)
		}
		defer unix.Close(s)
		if err := unix.Bind(s, &unix.SockaddrInet4{Port: atoi(arg(0)), Addr: [4]byte{127, 0, 0, 1}}); err != nil || op == "bind" {
			return err
		}
		return unix.Listen(s, 1)
	case "interp": // exec ourselves as an interpreter with argv [self, args...]
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("own executable: %v", err)
		}
		return unix.Exec(self, append([]string{self}, a...), append(os.Environ(), interpEnv+"=1"))
	case "cgroup-move-self": // write our pid into arg0/cgroup.procs
		fd, err := unix.Open(arg(0)+"/cgroup.procs", unix.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, err = unix.Write(fd, []byte(strconv.Itoa(os.Getpid())))
		return err
	case "clone-into": // clone3(CLONE_INTO_CGROUP) of a child that runs "true" in cgroup arg0
		dir, err := os.Open(arg(0))
		if err != nil {
			return fmt.Errorf("open cgroup: %v", err) // not the syscall under test
		}
		defer dir.Close()
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("own executable: %v", err)
		}
		cmd := exec.Command(self, "true")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
		if err := cmd.Start(); err != nil {
			return err // the clone3 refused: its errno
		}
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("child: %v", err)
		}
		return nil
	case "true":
		return nil
	}
	return fmt.Errorf("unknown action %q", op)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(fmt.Sprintf("actor: %q is not a number", s))
	}
	return n
}

func errnoOf(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func closeFd(fd int, err error) error {
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// withFd opens path (a step that must work) and runs the syscall under test on it.
func withFd(path string, flags int, f func(fd int) error) error {
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		return fmt.Errorf("open %s: %v", path, err)
	}
	defer unix.Close(fd)
	return f(fd)
}

// churnMappings changes the process's mappings until stop closes, on a
// thread of its own: each change takes the mmap lock for writing, so a
// reader that only tries the lock (bpf_find_vma) often finds it taken. It
// maps and unmaps memory, and flips the protection of 16 MiB of small pages,
// which holds the lock while every page table entry changes (long enough to
// be preempted inside on one CPU).
func churnMappings(stop <-chan struct{}) {
	runtime.LockOSThread()
	const big = 16 << 20
	region, err := unix.Mmap(-1, 0, big, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err == nil {
		unix.Madvise(region, unix.MADV_NOHUGEPAGE)
		for i := 0; i < big; i += 4096 {
			region[i] = 1
		}
		defer unix.Munmap(region)
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		if b, err := unix.Mmap(-1, 0, 1<<16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err == nil {
			unix.Munmap(b)
		}
		if region != nil {
			unix.Mprotect(region, unix.PROT_READ)
			unix.Mprotect(region, unix.PROT_READ|unix.PROT_WRITE)
		}
	}
}

// execveat executes the file open at fd, with argv [argv0].
func execveat(fd int, argv0 string) error {
	empty := []byte{0}
	a0 := append([]byte(argv0), 0)
	argv := []*byte{&a0[0], nil}
	envv := []*byte{nil}
	_, _, e := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(&empty[0])),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])), unix.AT_EMPTY_PATH, 0)
	runtime.KeepAlive(a0)
	return errnoOf(e)
}

// TrueELF is a complete static executable of this architecture (x86-64 or
// arm64) that exits 0: the ELF header, one PT_LOAD program header mapping the
// file, and the exit syscall. Exec cases write it where they need
// a binary: no copy of a system binary, no dependence on the host's files.
func TrueELF() []byte {
	const base, ehsize, phsize = 0x400000, 64, 56
	// exit(0): x86-64 mov eax, 60; xor edi, edi; syscall. arm64: mov x8, #93; mov x0, #0; svc #0.
	code, machine := []byte{0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05}, uint16(62) // EM_X86_64
	if runtime.GOARCH == "arm64" {
		code, machine = []byte{0xa8, 0x0b, 0x80, 0xd2, 0x00, 0x00, 0x80, 0xd2, 0x01, 0x00, 0x00, 0xd4}, 183 // EM_AARCH64
	}
	size := ehsize + phsize + len(code)
	b := make([]byte, size)
	le := binary.LittleEndian
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // 64-bit, little-endian, version 1
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], machine)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], base+ehsize+phsize) // entry: the code
	le.PutUint64(b[32:], ehsize)             // program headers right after
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[54:], phsize)
	le.PutUint16(b[56:], 1)
	le.PutUint16(b[58:], 64)
	ph := b[ehsize:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 5) // R+X
	le.PutUint64(ph[16:], base)
	le.PutUint64(ph[24:], base)
	le.PutUint64(ph[32:], uint64(size))
	le.PutUint64(ph[40:], uint64(size))
	le.PutUint64(ph[48:], 0x1000)
	copy(b[ehsize+phsize:], code)
	return b
}

// bpfProgLoad loads "r0 = 0; exit" as a socket filter with one bpf(2) call.
func bpfProgLoad() (int, error) {
	insns := []uint64{0x00000000000000b7, 0x0000000000000095}
	license := []byte("GPL\x00")
	var attr [128]byte
	*(*uint32)(unsafe.Pointer(&attr[0])) = unix.BPF_PROG_TYPE_SOCKET_FILTER
	*(*uint32)(unsafe.Pointer(&attr[4])) = uint32(len(insns))
	*(*uint64)(unsafe.Pointer(&attr[8])) = uint64(uintptr(unsafe.Pointer(&insns[0])))
	*(*uint64)(unsafe.Pointer(&attr[16])) = uint64(uintptr(unsafe.Pointer(&license[0])))
	fd, _, en := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if en != 0 {
		return -1, en
	}
	return int(fd), nil
}

// bpfProgFD turns a program id into a descriptor (BPF_PROG_GET_FD_BY_ID).
// bpfCall makes one bpf(2) call with attr.
func bpfCall(cmd int, attr []byte) (uintptr, error) {
	r, _, en := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	return r, errnoOf(en)
}

// bpfOnMap turns a map id into a descriptor (BPF_MAP_GET_FD_BY_ID) and runs f on it.
func bpfOnMap(id string, f func(fd int) error) error {
	var attr [16]byte
	*(*uint32)(unsafe.Pointer(&attr[0])) = uint32(atoi(id))
	fd, err := bpfCall(unix.BPF_MAP_GET_FD_BY_ID, attr[:])
	if err != nil {
		return err
	}
	defer unix.Close(int(fd))
	return f(int(fd))
}

// bpfElem is a map element command: map_fd, key, value, flags.
func bpfElem(cmd, fd int, key, val []byte) error {
	var attr [32]byte
	*(*uint32)(unsafe.Pointer(&attr[0])) = uint32(fd)
	*(*uint64)(unsafe.Pointer(&attr[8])) = uint64(uintptr(unsafe.Pointer(&key[0])))
	if val != nil {
		*(*uint64)(unsafe.Pointer(&attr[16])) = uint64(uintptr(unsafe.Pointer(&val[0])))
	}
	_, err := bpfCall(cmd, attr[:])
	runtime.KeepAlive(key)
	runtime.KeepAlive(val)
	return err
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 {
		panic(fmt.Sprintf("actor: %q is not hex bytes", s))
	}
	return b
}

func bpfProgFD(id uint32) (int, error) {
	var attr [16]byte
	*(*uint32)(unsafe.Pointer(&attr[0])) = id
	fd, _, en := unix.Syscall(unix.SYS_BPF, 13 /* BPF_PROG_GET_FD_BY_ID */, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
	if en != 0 {
		return -1, en
	}
	return int(fd), nil
}

// mmapExec maps a file for reading and executing, as the dynamic loader does
// a library, then unmaps and closes it.
func mmapExec(name string) error {
	return withFd(name, unix.O_RDONLY, func(fd int) error {
		b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE)
		if err == nil {
			unix.Munmap(b)
		}
		return err
	})
}
