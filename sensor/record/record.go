// Package record decodes the records the kernel programs write to the ring
// buffer (layout: bpf/common.h). Decoding reads fixed offsets with
// encoding/binary, without reflection, and points into the caller's buffer:
// it allocates nothing per record. Offsets are checked against the object's
// BTF by a test, so a change on either side fails loudly.
package record

import (
	"encoding/binary"
	"fmt"
)

// Kinds (enum rec_kind).
const (
	KindFile = 1
	KindExec = 2
	KindNet  = 3
)

// Ops (enum rec_op).
const (
	OpOpen = iota + 1
	OpTruncate
	OpRename
	OpUnlink
	OpRmdir
	OpLink
	OpSymlink
	OpMkdir
	OpMknod
	OpChmod
	OpChown
	OpSetxattr
	OpRemovexattr
	OpUtimes
	OpMount
	OpSetflags
	OpWrite
	OpUring
	OpKSetting // a kernel setting opened for writing (/proc/sys, a /sys attribute)
	OpRawDev   // a raw device opened for writing (a block device under a protected file system, /dev/mem...)
)

// Exec-family and net ops.
const (
	OpExec = iota + 32
	OpModule
	OpKexec
	OpBPF
	OpPtrace
	OpUringSetup
	OpSignal     // a signal aimed at the sensor (lsm enforce mode)
	OpSelfBPF    // a bpf() command by another process on the sensor's own object; Arg = cmd << 32 | id
	OpSelfOpen   // another process opened one of the sensor's own files; Arg = open flags
	OpLeaveScope // a process in the sealed scope moves itself or another out of it; Arg = destination cgroup id
)

// Net ops.
const (
	OpBind = iota + 64
	OpListen
)

// Header flags (RF_*).
const (
	FlagDenied     = 1 << 0
	FlagTrunc      = 1 << 1
	FlagKilled     = 1 << 2
	FlagAttempt    = 1 << 3
	FlagLexical    = 1 << 4
	FlagCordoned   = 1 << 5
	FlagUnresolved = 1 << 6 // a /proc magic link in the name was not followed: the path is the name as given
)

// Exec reasons (EX_*).
const (
	ReasonTainted = 1 << iota
	ReasonOutsideImage
	ReasonMemfd
	ReasonDeleted
)

// Offsets of the C structs, verified against BTF in layout_test.go.
const (
	HdrSize = 64

	hdrKind   = 0
	hdrSize   = 2
	hdrOp     = 4
	hdrFlags  = 6
	hdrKtime  = 8
	hdrTgid   = 16
	hdrPid    = 20
	hdrPpid   = 24
	hdrUID    = 28
	hdrGID    = 32
	hdrPTag   = 36
	hdrCgroup = 40
	hdrComm   = 48

	fileRet       = 64
	fileDev       = 72
	fileIno       = 80
	fileMntID     = 88
	fileFlags     = 92
	fileMode      = 96
	fileRule      = 100
	filePathLen   = 104
	filePath2Len  = 106
	fileTargetLen = 108
	fileData      = 116

	execRet     = 64
	execDev     = 72
	execIno     = 80
	execArg     = 88
	execMntID   = 96
	execReasons = 100
	execPathLen = 104
	execArgsLen = 106
	execRule    = 108
	execData    = 120

	netFamily   = 64
	netProtocol = 66
	netPort     = 68
	netAddr     = 72
	netSize     = 88
)

// Header is the common start of every record.
type Header struct {
	Kind     uint16
	Size     uint16
	Op       uint16
	Flags    uint16
	KTime    uint64
	TGID     uint32
	PID      uint32
	PPID     uint32
	UID      uint32
	GID      uint32
	PTag     uint32 // process identity tag; 0 = unknown (see bpf/common.h)
	CgroupID uint64
	Comm     []byte // NUL-trimmed, points into the record
}

// Record is one decoded record. Byte slices point into the buffer passed to
// Decode and are valid until that buffer is reused.
type Record struct {
	Header
	Ret     int64
	Dev     uint64
	Ino     uint64
	MountID uint32
	Flags   uint32 // open/rename flags, ioctl cmd, io_uring opcode
	Mode    uint32
	Rule    uint32
	Reasons uint32
	Arg     uint64
	Path    []byte
	Path2   []byte
	Target  []byte
	Args    []byte // NUL-separated argv

	Family   uint16
	Protocol uint16
	Port     uint16
	Addr     []byte // 4 or 16 bytes
}

var le = binary.LittleEndian

// Decode parses raw into r. It never panics: every length is checked against
// the buffer, and a record that does not fit its own size is an error.
func Decode(raw []byte, r *Record) error {
	if len(raw) < HdrSize {
		return fmt.Errorf("record of %d bytes is shorter than its %d-byte header", len(raw), HdrSize)
	}
	h := &r.Header
	h.Kind = le.Uint16(raw[hdrKind:])
	h.Size = le.Uint16(raw[hdrSize:])
	h.Op = le.Uint16(raw[hdrOp:])
	h.Flags = le.Uint16(raw[hdrFlags:])
	h.KTime = le.Uint64(raw[hdrKtime:])
	h.TGID = le.Uint32(raw[hdrTgid:])
	h.PID = le.Uint32(raw[hdrPid:])
	h.PPID = le.Uint32(raw[hdrPpid:])
	h.UID = le.Uint32(raw[hdrUID:])
	h.GID = le.Uint32(raw[hdrGID:])
	h.PTag = le.Uint32(raw[hdrPTag:])
	h.CgroupID = le.Uint64(raw[hdrCgroup:])
	h.Comm = cstr(raw[hdrComm : hdrComm+16])
	if int(h.Size) > len(raw) || int(h.Size) < HdrSize {
		return fmt.Errorf("record kind %d says it has %d bytes, buffer has %d", h.Kind, h.Size, len(raw))
	}
	raw = raw[:h.Size]
	r.Path, r.Path2, r.Target, r.Args, r.Addr = nil, nil, nil, nil, nil
	r.Ret, r.Dev, r.Ino, r.MountID, r.Flags, r.Mode, r.Rule, r.Reasons, r.Arg = 0, 0, 0, 0, 0, 0, 0, 0, 0
	r.Family, r.Protocol, r.Port = 0, 0, 0

	switch h.Kind {
	case KindFile:
		if len(raw) < fileData {
			return fmt.Errorf("file record of %d bytes is shorter than its %d fixed bytes", len(raw), fileData)
		}
		r.Ret = int64(le.Uint64(raw[fileRet:]))
		r.Dev = le.Uint64(raw[fileDev:])
		r.Ino = le.Uint64(raw[fileIno:])
		r.MountID = le.Uint32(raw[fileMntID:])
		r.Flags = le.Uint32(raw[fileFlags:])
		r.Mode = le.Uint32(raw[fileMode:])
		r.Rule = le.Uint32(raw[fileRule:])
		data := raw[fileData:]
		var ok bool
		if r.Path, data, ok = field(data, le.Uint16(raw[filePathLen:])); !ok {
			return fmt.Errorf("file record: path of %d bytes overruns the record", le.Uint16(raw[filePathLen:]))
		}
		if r.Path2, data, ok = field(data, le.Uint16(raw[filePath2Len:])); !ok {
			return fmt.Errorf("file record: second path overruns the record")
		}
		if r.Target, _, ok = field(data, le.Uint16(raw[fileTargetLen:])); !ok {
			return fmt.Errorf("file record: symlink target overruns the record")
		}
	case KindExec:
		if len(raw) < execData {
			return fmt.Errorf("exec record of %d bytes is shorter than its %d fixed bytes", len(raw), execData)
		}
		r.Ret = int64(le.Uint64(raw[execRet:]))
		r.Dev = le.Uint64(raw[execDev:])
		r.Ino = le.Uint64(raw[execIno:])
		r.Arg = le.Uint64(raw[execArg:])
		r.MountID = le.Uint32(raw[execMntID:])
		r.Reasons = le.Uint32(raw[execReasons:])
		r.Rule = le.Uint32(raw[execRule:])
		data := raw[execData:]
		var ok bool
		if r.Path, data, ok = field(data, le.Uint16(raw[execPathLen:])); !ok {
			return fmt.Errorf("exec record: path overruns the record")
		}
		n := int(le.Uint16(raw[execArgsLen:]))
		if n > len(data) {
			return fmt.Errorf("exec record: %d bytes of arguments overrun the record", n)
		}
		r.Args = data[:n]
	case KindNet:
		if len(raw) < netSize {
			return fmt.Errorf("net record of %d bytes is shorter than %d", len(raw), netSize)
		}
		r.Family = le.Uint16(raw[netFamily:])
		r.Protocol = le.Uint16(raw[netProtocol:])
		r.Port = le.Uint16(raw[netPort:])
		if r.Family == 2 {
			r.Addr = raw[netAddr : netAddr+4]
		} else {
			r.Addr = raw[netAddr : netAddr+16]
		}
	default:
		return fmt.Errorf("record of unknown kind %d (sensor and BPF object out of step?)", h.Kind)
	}
	return nil
}

// field cuts a NUL-terminated string of n bytes from the front of data.
func field(data []byte, n uint16) (s, rest []byte, ok bool) {
	if int(n) >= len(data) {
		if n == 0 {
			return nil, nil, true
		}
		return nil, nil, false
	}
	return data[:n], data[n+1:], true
}

func cstr(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
