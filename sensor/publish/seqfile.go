package publish

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// seqFile keeps the last assigned sequence number in a shared memory map of a
// small file in the spool directory. A store into the map reaches the page
// cache at once, so the number survives the process being killed at any
// instant without a system call per event; fsync (at Close) covers power loss
// for everything but the last moments, and New also looks at the spool and the
// stream, which are durable, before trusting it.
type seqFile struct {
	f   *os.File
	mem []byte
	v   *atomic.Uint64
}

const (
	seqMagic    = 0x71655374666972 // marks a file this code wrote; a zeroed or foreign file starts at 0
	seqFileSize = 16
)

func openSeqFile(dir string) (*seqFile, error) {
	path := filepath.Join(dir, "seq")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sequence file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sequence file: %w", err)
	}
	fresh := st.Size() < seqFileSize
	if fresh {
		if err := f.Truncate(seqFileSize); err != nil {
			f.Close()
			return nil, fmt.Errorf("sequence file %s: %w", path, err)
		}
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, seqFileSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sequence file %s: mmap: %w", path, err)
	}
	s := &seqFile{f: f, mem: mem, v: (*atomic.Uint64)(unsafe.Pointer(&mem[8]))}
	if fresh || binary.LittleEndian.Uint64(mem) != seqMagic {
		binary.LittleEndian.PutUint64(mem, seqMagic)
		s.v.Store(0)
	}
	return s, nil
}

// raise makes the counter at least n.
func (s *seqFile) raise(n uint64) {
	if s.v.Load() < n {
		s.v.Store(n)
	}
}

// next assigns the next number. Callers serialise calls to next.
func (s *seqFile) next() uint64 { return s.v.Add(1) }

// last is the last number assigned.
func (s *seqFile) last() uint64 { return s.v.Load() }

func (s *seqFile) close() error {
	if s.f == nil { // in memory (NewNumberer)
		return nil
	}
	err := s.f.Sync() // writes back the mapped page too
	if uerr := syscall.Munmap(s.mem); err == nil {
		err = uerr
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}
