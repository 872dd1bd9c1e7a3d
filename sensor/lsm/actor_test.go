package lsm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"github.com/driftsensor/driftsensor/sensor/testenv"
	"golang.org/x/sys/unix"
)

// The tests drive the hooks from a child process (this binary again, started
// inside the test's cgroup): the sensor never judges itself, and the child's
// pid is what a record must name. The child does one syscall and prints
// "errno=N tid=T" for the test to check against the verdict.
const actorEnv = "DRIFT_LSM_ACTOR"

func TestMain(m *testing.M) {
	if os.Getenv(actorEnv) != "" {
		os.Exit(actor(os.Args[1:]))
	}
	os.Exit(testenv.Main(m))
}

func actor(args []string) int {
	runtime.LockOSThread() // the syscall runs on the thread whose tid is printed
	if len(args) == 0 {
		fmt.Println("actor: no action")
		return 2
	}
	err := act(args[0], args[1:])
	var en syscall.Errno
	switch {
	case err == nil:
	case errors.As(err, &en):
	default:
		fmt.Printf("actor: %s %v: %v\n", args[0], args[1:], err)
		return 2
	}
	fmt.Printf("errno=%d tid=%d\n", int(en), unix.Gettid())
	return 0
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

func act(op string, a []string) error {
	switch op {
	case "open-w":
		return closeFd(unix.Open(a[0], unix.O_WRONLY, 0))
	case "open-r":
		return closeFd(unix.Open(a[0], unix.O_RDONLY, 0))
	case "create":
		return closeFd(unix.Open(a[0], unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644))
	case "write": // create or replace a file with content
		fd, err := unix.Open(a[0], unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, err = unix.Write(fd, []byte(a[1]))
		return err
	case "write-fd3":
		_, err := unix.Write(3, []byte("drift\n"))
		return err
	case "truncate":
		return unix.Truncate(a[0], 0)
	case "unlink":
		return unix.Unlink(a[0])
	case "rmdir":
		return unix.Rmdir(a[0])
	case "mkdir":
		return unix.Mkdir(a[0], 0o755)
	case "mkfifo":
		return unix.Mknod(a[0], unix.S_IFIFO|0o644, 0)
	case "rename":
		return unix.Rename(a[0], a[1])
	case "link":
		return unix.Link(a[0], a[1])
	case "symlink":
		return unix.Symlink(a[0], a[1])
	case "chmod":
		return unix.Chmod(a[0], 0o600)
	case "chown":
		return unix.Chown(a[0], 0, 0)
	case "setxattr":
		return unix.Setxattr(a[0], "trusted.drift", []byte("1"), 0)
	case "removexattr":
		return unix.Removexattr(a[0], "trusted.drift")
	case "setflags": // what chattr does
		fd, err := unix.Open(a[0], unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, 0)
	case "uring-open":
		fd, err := uringOpenat(a[0], unix.O_WRONLY)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "exec":
		return unix.Exec(a[0], []string{a[0]}, os.Environ())
	case "mmap-x":
		fd, err := unix.Open(a[0], unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE)
		if err == nil {
			unix.Munmap(b)
		}
		return err
	case "bind", "listen":
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		if err := unix.Bind(s, &unix.SockaddrInet4{Port: atoi(a[0])}); err != nil || op == "bind" {
			return err
		}
		return unix.Listen(s, 1)
	case "mount":
		return unix.Mount("none", a[0], "tmpfs", 0, "")
	case "init-module":
		// longer than an ELF header, or the kernel refuses it before the hook
		return unix.InitModule(bytes.Repeat([]byte("not a module "), 16), "")
	case "finit-module":
		fd, err := unix.Open(a[0], unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.FinitModule(fd, "", 0)
	case "bpf-load":
		return closeFd(bpfProgLoad())
	case "bpf-prog-fd":
		return closeFd(bpfGetFDByID(cmdProgGetFDByID, uint32(atoi(a[0]))))
	case "kill":
		return unix.Kill(atoi(a[0]), unix.SIGURG) // the Go runtime ignores SIGURG
	case "ptrace":
		return unix.PtraceSeize(atoi(a[0])) // no stop: the tracee runs on, detached when we exit
	}
	return fmt.Errorf("unknown action %q", op)
}

func closeFd(fd int, err error) error {
	if err == nil {
		unix.Close(fd)
	}
	return err
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

func bpfGetFDByID(cmd int, id uint32) (int, error) {
	var attr [16]byte
	*(*uint32)(unsafe.Pointer(&attr[0])) = id
	fd, _, en := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
	if en != 0 {
		return -1, en
	}
	return int(fd), nil
}

// io_uring, just enough to submit one IORING_OP_OPENAT and wait for it.
type uringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  [10]uint32 // head tail mask entries flags dropped array resv1 resv2(u64)
	CqOff                                                                  [10]uint32 // head tail mask entries overflow cqes flags resv1 resv2(u64)
}

const (
	ioringOpOpenat       = 18
	ioringOffSQRing      = 0
	ioringOffCQRing      = 0x8000000
	ioringOffSQEs        = 0x10000000
	ioringEnterGetEvents = 1
)

func uringOpenat(path string, flags int) (int, error) {
	var p uringParams
	ufd, _, en := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0)
	if en != 0 {
		return -1, fmt.Errorf("io_uring_setup: %w", en)
	}
	defer unix.Close(int(ufd))
	sq, err := unix.Mmap(int(ufd), ioringOffSQRing, int(p.SqOff[6]+p.SqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return -1, fmt.Errorf("mmap sq ring: %w", err)
	}
	defer unix.Munmap(sq)
	cq, err := unix.Mmap(int(ufd), ioringOffCQRing, int(p.CqOff[5]+p.CqEntries*16), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return -1, fmt.Errorf("mmap cq ring: %w", err)
	}
	defer unix.Munmap(cq)
	sqes, err := unix.Mmap(int(ufd), ioringOffSQEs, int(p.SqEntries*64), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return -1, fmt.Errorf("mmap sqes: %w", err)
	}
	defer unix.Munmap(sqes)

	name := append([]byte(path), 0)
	sqe := sqes[:64]
	clear(sqe)
	sqe[0] = ioringOpOpenat
	fdcwd := int32(unix.AT_FDCWD)
	*(*int32)(unsafe.Pointer(&sqe[4])) = fdcwd
	*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(&name[0])))
	*(*uint32)(unsafe.Pointer(&sqe[28])) = uint32(flags)
	*(*uint64)(unsafe.Pointer(&sqe[32])) = 1

	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	tail := atomic.LoadUint32(u32(sq, p.SqOff[1]))
	mask := *u32(sq, p.SqOff[2])
	*u32(sq, p.SqOff[6]+(tail&mask)*4) = 0
	atomic.StoreUint32(u32(sq, p.SqOff[1]), tail+1)

	_, _, en = unix.Syscall6(unix.SYS_IO_URING_ENTER, ufd, 1, 1, ioringEnterGetEvents, 0, 0)
	runtime.KeepAlive(name)
	if en != 0 {
		return -1, fmt.Errorf("io_uring_enter: %w", en)
	}
	head := atomic.LoadUint32(u32(cq, p.CqOff[0]))
	if head == atomic.LoadUint32(u32(cq, p.CqOff[1])) {
		return -1, errors.New("io_uring: no completion")
	}
	cmask := *u32(cq, p.CqOff[2])
	res := *(*int32)(unsafe.Pointer(&cq[p.CqOff[5]+(head&cmask)*16+8]))
	atomic.StoreUint32(u32(cq, p.CqOff[0]), head+1)
	if res < 0 {
		return -1, syscall.Errno(-res)
	}
	return int(res), nil
}
