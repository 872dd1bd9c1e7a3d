package spool

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// mark keeps, in a shared memory map of a small file, the seq of the newest
// record appended and of the newest consumed. A store reaches the page cache
// at once, so it survives the process being killed without a system call per
// record. Open compares the files with it: records missing below the newest
// appended (a truncated or deleted segment) are counted exactly, and an ack
// log naming more than was consumed (a forged entry) is caught.
type mark struct {
	f     *os.File
	mem   []byte
	last  *atomic.Uint64
	acked *atomic.Uint64
}

const (
	markMagic = 0x6b72616d6c6f6f70 // "poolmark": a zeroed or foreign file is no mark
	markSize  = 24
)

// openMark maps dir/mark; ok is false when there was no valid mark before.
func openMark(dir string) (m *mark, ok bool, err error) {
	path := filepath.Join(dir, "mark")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("spool: mark: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() < markSize {
		err = f.Truncate(markSize)
	}
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("spool: mark %s: %w", path, err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, markSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("spool: mark %s: mmap: %w", path, err)
	}
	m = &mark{f: f, mem: mem,
		last:  (*atomic.Uint64)(unsafe.Pointer(&mem[8])),
		acked: (*atomic.Uint64)(unsafe.Pointer(&mem[16]))}
	ok = binary.LittleEndian.Uint64(mem) == markMagic && m.acked.Load() <= m.last.Load()
	return m, ok, nil
}

// set records the newest appended and consumed seqs, and makes the mark valid.
func (m *mark) set(last, acked uint64) {
	m.last.Store(last)
	m.acked.Store(acked)
	binary.LittleEndian.PutUint64(m.mem, markMagic)
}

func (m *mark) sync() error {
	if err := m.f.Sync(); err != nil { // writes back the mapped page too
		return fmt.Errorf("spool: fsync mark: %w", err)
	}
	return nil
}

func (m *mark) close() {
	syscall.Munmap(m.mem)
	m.f.Close()
}
