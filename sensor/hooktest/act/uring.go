package act

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// io_uring, just enough to submit one operation and wait for its completion,
// without the syscalls the operation stands for.
type uringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  [10]uint32 // head tail mask entries flags dropped array resv1 resv2(u64)
	CqOff                                                                  [10]uint32 // head tail mask entries overflow cqes flags resv1 resv2(u64)
}

const (
	ioringOpOpenat       = 18
	ioringOpMkdirat      = 37
	ioringOffSQRing      = 0
	ioringOffCQRing      = 0x8000000
	ioringOffSQEs        = 0x10000000
	ioringEnterGetEvents = 1
)

// uringSQE is the part of a submission queue entry the actor fills.
type uringSQE struct {
	op      uint8
	fd      int32          // dfd
	addr    unsafe.Pointer // path
	len     uint32         // mode
	opFlags uint32         // open flags
}

// uringSubmit sets up a ring, submits one operation, waits for it and returns
// its result; a negative result comes back as the errno.
func uringSubmit(e uringSQE) (int32, error) {
	var p uringParams
	ufd, _, en := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0)
	if en != 0 {
		return -1, en // the setup itself is judged: its errno is the result
	}
	defer unix.Close(int(ufd))
	sq, err := unix.Mmap(int(ufd), ioringOffSQRing, int(p.SqOff[6]+p.SqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return -1, fmt.Errorf("mmap sq ring: %v", err)
	}
	defer unix.Munmap(sq)
	cq, err := unix.Mmap(int(ufd), ioringOffCQRing, int(p.CqOff[5]+p.CqEntries*16), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return -1, fmt.Errorf("mmap cq ring: %v", err)
	}
	defer unix.Munmap(cq)
	sqes, err := unix.Mmap(int(ufd), ioringOffSQEs, int(p.SqEntries*64), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return -1, fmt.Errorf("mmap sqes: %v", err)
	}
	defer unix.Munmap(sqes)

	sqe := sqes[:64]
	clear(sqe)
	sqe[0] = e.op
	*(*int32)(unsafe.Pointer(&sqe[4])) = e.fd
	*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(e.addr))
	*(*uint32)(unsafe.Pointer(&sqe[24])) = e.len
	*(*uint32)(unsafe.Pointer(&sqe[28])) = e.opFlags
	*(*uint64)(unsafe.Pointer(&sqe[32])) = 1 // user_data

	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	tail := atomic.LoadUint32(u32(sq, p.SqOff[1]))
	mask := *u32(sq, p.SqOff[2])
	*u32(sq, p.SqOff[6]+(tail&mask)*4) = 0
	atomic.StoreUint32(u32(sq, p.SqOff[1]), tail+1)

	_, _, en = unix.Syscall6(unix.SYS_IO_URING_ENTER, ufd, 1, 1, ioringEnterGetEvents, 0, 0)
	if en != 0 {
		return -1, fmt.Errorf("io_uring_enter: %v", en)
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
	return res, nil
}
