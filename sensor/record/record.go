// Package record decodes the records the kernel programs write to the ring
// buffer (layout: bpf/common.h, generated into rec_bpfel.go) and names their
// operations (Ops). Decoding reads fixed offsets with encoding/binary, without
// reflection, and points into the caller's buffer: it allocates nothing per
// record. A test checks that both backends' objects
// were built with the same layout, so a stale object fails loudly.
package record

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// The format's constants and structs are generated from bpf/common.h by
// bpf2go -type (rec_bpfel.go): the names below only give them Go names and
// the field types they are compared with.

// Kinds (enum rec_kind).
const (
	KindFile = uint16(recRecKindREC_FILE)
	KindExec = uint16(recRecKindREC_EXEC)
	KindNet  = uint16(recRecKindREC_NET)
)

// Ops (enum rec_op). Ops lists them with their names.
const (
	OpOpen        = uint16(recRecOpDOP_OPEN)
	OpTruncate    = uint16(recRecOpDOP_TRUNCATE)
	OpRename      = uint16(recRecOpDOP_RENAME)
	OpUnlink      = uint16(recRecOpDOP_UNLINK)
	OpRmdir       = uint16(recRecOpDOP_RMDIR)
	OpLink        = uint16(recRecOpDOP_LINK)
	OpSymlink     = uint16(recRecOpDOP_SYMLINK)
	OpMkdir       = uint16(recRecOpDOP_MKDIR)
	OpMknod       = uint16(recRecOpDOP_MKNOD)
	OpChmod       = uint16(recRecOpDOP_CHMOD)
	OpChown       = uint16(recRecOpDOP_CHOWN)
	OpSetxattr    = uint16(recRecOpDOP_SETXATTR)
	OpRemovexattr = uint16(recRecOpDOP_REMOVEXATTR)
	OpUtimes      = uint16(recRecOpDOP_UTIMES)
	OpMount       = uint16(recRecOpDOP_MOUNT)
	OpSetflags    = uint16(recRecOpDOP_SETFLAGS)
	OpWrite       = uint16(recRecOpDOP_WRITE)
	OpUring       = uint16(recRecOpDOP_URING)
	OpKSetting    = uint16(recRecOpDOP_KSETTING) // a kernel setting opened for writing (/proc/sys, a /sys attribute)
	OpRawDev      = uint16(recRecOpDOP_RAWDEV)   // a raw device opened for writing (a block device under a protected file system, /dev/mem...)

	OpExec       = uint16(recRecOpDOP_EXEC)
	OpModule     = uint16(recRecOpDOP_MODULE)
	OpKexec      = uint16(recRecOpDOP_KEXEC)
	OpBPF        = uint16(recRecOpDOP_BPF)
	OpPtrace     = uint16(recRecOpDOP_PTRACE)
	OpUringSetup = uint16(recRecOpDOP_URING_SETUP)
	OpSignal     = uint16(recRecOpDOP_SIGNAL)      // a signal aimed at the sensor (lsm enforce mode)
	OpSelfBPF    = uint16(recRecOpDOP_SELF_BPF)    // a bpf() command by another process on the sensor's own object; Arg = cmd << 32 | id
	OpSelfOpen   = uint16(recRecOpDOP_SELF_OPEN)   // another process opened one of the sensor's own files; Arg = open flags
	OpLeaveScope = uint16(recRecOpDOP_LEAVE_SCOPE) // a process in the sealed scope moves itself or another out of it; Arg = destination cgroup id

	OpBind   = uint16(recRecOpDOP_BIND)
	OpListen = uint16(recRecOpDOP_LISTEN)
)

// Header flags (enum rec_flag).
const (
	FlagDenied     = uint16(recRecFlagRF_DENIED)
	FlagTrunc      = uint16(recRecFlagRF_TRUNC)
	FlagKilled     = uint16(recRecFlagRF_KILLED)
	FlagAttempt    = uint16(recRecFlagRF_ATTEMPT)
	FlagLexical    = uint16(recRecFlagRF_LEXICAL)
	FlagCordoned   = uint16(recRecFlagRF_CORDONED)
	FlagUnresolved = uint16(recRecFlagRF_UNRESOLVED)
)

// Exec reasons (enum exec_reason).
const (
	ReasonTainted      = uint32(recExecReasonEX_TAINTED)
	ReasonOutsideImage = uint32(recExecReasonEX_OUTSIDE_IMAGE)
	ReasonMemfd        = uint32(recExecReasonEX_MEMFD)
	ReasonDeleted      = uint32(recExecReasonEX_DELETED)
)

// Rule ids of the seal's own classes (enum seal_rule): findings carry them
// like the policy's rule ids.
const (
	RuleKernelSetting = uint32(recSealRuleRULE_KERNEL_SETTING)
	RuleRawDevice     = uint32(recSealRuleRULE_RAW_DEVICE)
	RuleUnresolved    = uint32(recSealRuleRULE_UNRESOLVED)
)

// Offsets of the C structs, from their generated Go mirrors (bpf2go pads
// them to the C layout). TestLayout checks both backends' objects agree.
const (
	HdrSize = int(unsafe.Sizeof(recRecHdr{}))

	hdrKind   = int(unsafe.Offsetof(recRecHdr{}.Kind))
	hdrSize   = int(unsafe.Offsetof(recRecHdr{}.Size))
	hdrOp     = int(unsafe.Offsetof(recRecHdr{}.Op))
	hdrFlags  = int(unsafe.Offsetof(recRecHdr{}.Flags))
	hdrKtime  = int(unsafe.Offsetof(recRecHdr{}.Ktime))
	hdrTgid   = int(unsafe.Offsetof(recRecHdr{}.Tgid))
	hdrPid    = int(unsafe.Offsetof(recRecHdr{}.Pid))
	hdrPpid   = int(unsafe.Offsetof(recRecHdr{}.Ppid))
	hdrUID    = int(unsafe.Offsetof(recRecHdr{}.Uid))
	hdrGID    = int(unsafe.Offsetof(recRecHdr{}.Gid))
	hdrPTag   = int(unsafe.Offsetof(recRecHdr{}.Ptag))
	hdrCgroup = int(unsafe.Offsetof(recRecHdr{}.CgroupId))
	hdrStart  = int(unsafe.Offsetof(recRecHdr{}.Start))
	hdrPStart = int(unsafe.Offsetof(recRecHdr{}.Pstart))
	hdrComm   = int(unsafe.Offsetof(recRecHdr{}.Comm))
	commLen   = len(recRecHdr{}.Comm)

	fileRet       = int(unsafe.Offsetof(recFileRec{}.Ret))
	fileDev       = int(unsafe.Offsetof(recFileRec{}.Dev))
	fileIno       = int(unsafe.Offsetof(recFileRec{}.Ino))
	fileMntID     = int(unsafe.Offsetof(recFileRec{}.MntId))
	fileFlags     = int(unsafe.Offsetof(recFileRec{}.Flags))
	fileMode      = int(unsafe.Offsetof(recFileRec{}.Mode))
	fileRule      = int(unsafe.Offsetof(recFileRec{}.Rule))
	filePathLen   = int(unsafe.Offsetof(recFileRec{}.PathLen))
	filePath2Len  = int(unsafe.Offsetof(recFileRec{}.Path2Len))
	fileTargetLen = int(unsafe.Offsetof(recFileRec{}.TargetLen))
	fileData      = int(unsafe.Offsetof(recFileRec{}.Data))

	execRet     = int(unsafe.Offsetof(recExecRec{}.Ret))
	execDev     = int(unsafe.Offsetof(recExecRec{}.Dev))
	execIno     = int(unsafe.Offsetof(recExecRec{}.Ino))
	execArg     = int(unsafe.Offsetof(recExecRec{}.Arg))
	execMntID   = int(unsafe.Offsetof(recExecRec{}.MntId))
	execReasons = int(unsafe.Offsetof(recExecRec{}.Reasons))
	execPathLen = int(unsafe.Offsetof(recExecRec{}.PathLen))
	execArgsLen = int(unsafe.Offsetof(recExecRec{}.ArgsLen))
	execRule    = int(unsafe.Offsetof(recExecRec{}.Rule))
	execData    = int(unsafe.Offsetof(recExecRec{}.Data))

	netFamily   = int(unsafe.Offsetof(recNetRec{}.Family))
	netProtocol = int(unsafe.Offsetof(recNetRec{}.Protocol))
	netPort     = int(unsafe.Offsetof(recNetRec{}.Port))
	netAddr     = int(unsafe.Offsetof(recNetRec{}.Addr))
	netSize     = int(unsafe.Sizeof(recNetRec{}))
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
	Start    uint64 // the process's start, ns after boot; 0 = unknown (see bpf/common.h)
	PStart   uint64 // the parent's start, likewise
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
	h.Start = le.Uint64(raw[hdrStart:])
	h.PStart = le.Uint64(raw[hdrPStart:])
	h.Comm = cstr(raw[hdrComm : hdrComm+commLen])
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
