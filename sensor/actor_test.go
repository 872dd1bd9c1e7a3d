package sensor_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"unsafe"

	"github.com/driftsensor/driftsensor/sensor/testenv"
	"golang.org/x/sys/unix"
)

// The actor is this test binary re-executed inside the test's cgroup: it makes
// exactly one kind of syscall, so a finding can be matched to its pid.
func TestMain(m *testing.M) {
	if a := os.Getenv("DRIFT_ACTOR"); a != "" {
		if err := act(a, os.Args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "actor %s: %v\n", a, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(testenv.Main(m))
}

func act(a string, args []string) error {
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch a {
	case "create":
		return os.WriteFile(arg(0), []byte("x"), 0o644)
	case "read":
		_, err := os.ReadFile(arg(0))
		return err
	case "truncopen":
		f, err := os.OpenFile(arg(0), os.O_WRONLY|os.O_TRUNC, 0)
		if err == nil {
			f.Close()
		}
		return err
	case "creat":
		fd, err := unix.Creat(arg(0), 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "openat2":
		fd, err := unix.Openat2(unix.AT_FDCWD, arg(0), &unix.OpenHow{Flags: unix.O_CREAT | unix.O_WRONLY, Mode: 0o644})
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "openat-dirfd": // openat(dirfd(arg0), arg1, O_CREAT)
		dfd, err := unix.Open(arg(0), unix.O_DIRECTORY|unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		fd, err := unix.Openat(dfd, arg(1), unix.O_CREAT|unix.O_WRONLY, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "unlink-cwd": // chdir(arg0); unlink(arg1)
		if err := os.Chdir(arg(0)); err != nil {
			return err
		}
		return unix.Unlink(arg(1))
	case "rename":
		return unix.Renameat2(unix.AT_FDCWD, arg(0), unix.AT_FDCWD, arg(1), 0)
	case "rename-legacy":
		return syscall.Rename(arg(0), arg(1))
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
		f, err := os.Open(arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Fchmod(int(f.Fd()), 0o600)
	case "fchmodat":
		return unix.Fchmodat(unix.AT_FDCWD, arg(0), 0o600, 0)
	case "chown":
		return unix.Chown(arg(0), 0, 0)
	case "lchown":
		return unix.Lchown(arg(0), 0, 0)
	case "fchown":
		f, err := os.Open(arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Fchown(int(f.Fd()), 0, 0)
	case "truncate":
		return unix.Truncate(arg(0), 0)
	case "ftruncate":
		f, err := os.OpenFile(arg(0), os.O_RDWR, 0) // the open is itself a finding
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Ftruncate(int(f.Fd()), 0)
	case "setxattr":
		return unix.Setxattr(arg(0), "user.drift", []byte("1"), 0)
	case "removexattr":
		return unix.Removexattr(arg(0), "user.drift")
	case "utimes":
		return unix.UtimesNano(arg(0), []unix.Timespec{{Sec: 1}, {Sec: 1}})
	case "mount":
		return unix.Mount("none", arg(0), "tmpfs", 0, "size=1m")
	case "umount":
		return unix.Unmount(arg(0), 0)
	case "chattr":
		f, err := os.Open(arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
		if err != nil {
			return err
		}
		return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|0x00000040 /* FS_NODUMP_FL */))
	case "prewrite": // open for writing, wait for the seal, then write
		f, err := os.OpenFile(arg(0), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		fmt.Println("opened")
		bufio.NewReader(os.Stdin).ReadString('\n')
		_, err = f.Write([]byte("late\n"))
		return err
	case "exec":
		return syscall.Exec(arg(0), []string{arg(0), "--drift-arg"}, nil)
	case "memfd":
		fd, err := unix.MemfdCreate("drift", 0)
		if err != nil {
			return err
		}
		bin, err := os.ReadFile("/bin/true")
		if err != nil {
			return err
		}
		if _, err := unix.Write(fd, bin); err != nil {
			return err
		}
		return execveat(fd)
	case "exec-deleted":
		fd, err := unix.Open(arg(0), unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		if err := unix.Unlink(arg(0)); err != nil {
			return err
		}
		return execveat(fd)
	case "init_module":
		junk := []byte("not a module")
		_, _, e := unix.Syscall(unix.SYS_INIT_MODULE, uintptr(unsafe.Pointer(&junk[0])), uintptr(len(junk)), uintptr(unsafe.Pointer(&[]byte{0}[0])))
		fmt.Println("init_module:", e)
		return nil
	case "kexec_load":
		_, _, e := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0xffff0000, 0, 0)
		fmt.Println("kexec_load:", e)
		return nil
	case "bpf_load":
		attr := make([]byte, 128) // zero prog type and insns: the kernel refuses, the attempt is drift
		_, _, e := unix.Syscall(unix.SYS_BPF, 5, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
		fmt.Println("bpf:", e)
		return nil
	case "ptrace":
		pid, _ := strconv.Atoi(arg(0))
		err := unix.PtraceSeize(pid)
		fmt.Println("ptrace:", err)
		return nil
	case "io_uring_setup":
		params := make([]byte, 120)
		fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&params[0])), 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		return nil
	case "uring-mkdir":
		return uringMkdir(arg(0))
	case "listen":
		l, err := net.Listen("tcp", "127.0.0.1:"+arg(0))
		if err != nil {
			return err
		}
		return l.Close()
	case "bind":
		l, err := net.Listen("tcp", "127.0.0.1:"+arg(0))
		if err != nil {
			fmt.Println("bind:", err)
			return nil
		}
		return l.Close()
	}
	return fmt.Errorf("unknown action %q", a)
}

func execveat(fd int) error {
	empty := []byte{0}
	argv := []*byte{&[]byte("drift\x00")[0], nil}
	envv := []*byte{nil}
	_, _, e := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(&empty[0])),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])), unix.AT_EMPTY_PATH, 0)
	return e
}

// uringMkdir submits one IORING_OP_MKDIRAT through a raw io_uring: the
// operation never passes through the mkdir syscalls.
func uringMkdir(path string) error {
	var p [120]byte
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&p[0])), 0)
	if e != 0 {
		return e
	}
	defer unix.Close(int(fd))
	u32 := func(off int) uint32 { return *(*uint32)(unsafe.Pointer(&p[off])) }
	sqEntries := u32(0)
	const sqOff = 40 // struct io_sqring_offsets inside io_uring_params
	tailOff, maskOff, arrayOff := u32(sqOff+4), u32(sqOff+8), u32(sqOff+24)
	ring, err := unix.Mmap(int(fd), 0, int(arrayOff+sqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(ring)
	sqes, err := unix.Mmap(int(fd), 0x10000000, int(sqEntries*64), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(sqes)
	name := append([]byte(path), 0)
	sqe := sqes[:64]
	for i := range sqe {
		sqe[i] = 0
	}
	sqe[0] = 37 // IORING_OP_MKDIRAT
	dfd := int32(unix.AT_FDCWD)
	*(*int32)(unsafe.Pointer(&sqe[4])) = dfd
	*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(&name[0])))
	*(*uint32)(unsafe.Pointer(&sqe[24])) = 0o755
	tail := (*uint32)(unsafe.Pointer(&ring[tailOff]))
	mask := *(*uint32)(unsafe.Pointer(&ring[maskOff]))
	*(*uint32)(unsafe.Pointer(&ring[arrayOff+(*tail&mask)*4])) = 0
	*tail = *tail + 1
	_, _, e = unix.Syscall6(unix.SYS_IO_URING_ENTER, fd, 1, 1, 1 /* IORING_ENTER_GETEVENTS */, 0, 0)
	runtimeKeepAlive(name)
	if e != 0 {
		return e
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("io_uring mkdir did not happen: %w", err)
	}
	return nil
}

//go:noinline
func runtimeKeepAlive(b []byte) { _ = b }
