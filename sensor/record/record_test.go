package record

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func fileRecord(path, path2, target string) []byte {
	n := fileData + len(path) + 1 + len(path2) + 1 + len(target) + 1
	b := make([]byte, n)
	le := binary.LittleEndian
	le.PutUint16(b[hdrKind:], KindFile)
	le.PutUint16(b[hdrSize:], uint16(n))
	le.PutUint16(b[hdrOp:], OpRename)
	le.PutUint32(b[hdrTgid:], 42)
	copy(b[hdrComm:], "mv")
	le.PutUint16(b[filePathLen:], uint16(len(path)))
	le.PutUint16(b[filePath2Len:], uint16(len(path2)))
	le.PutUint16(b[fileTargetLen:], uint16(len(target)))
	off := fileData
	off += copy(b[off:], path) + 1
	off += copy(b[off:], path2) + 1
	copy(b[off:], target)
	return b
}

func TestDecodeFile(t *testing.T) {
	var r Record
	if err := Decode(fileRecord("/etc/a", "/etc/b", ""), &r); err != nil {
		t.Fatal(err)
	}
	if r.Kind != KindFile || r.Op != OpRename || r.TGID != 42 || string(r.Comm) != "mv" ||
		string(r.Path) != "/etc/a" || string(r.Path2) != "/etc/b" || len(r.Target) != 0 {
		t.Fatalf("decoded %+v", r)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := fileRecord("/etc/a", "", "")
	cases := map[string][]byte{
		"short header": good[:10],
		"size too big": append([]byte(nil), good[:HdrSize+8]...),
		"unknown kind": func() []byte { b := append([]byte(nil), good...); b[0] = 99; return b }(),
		"path overruns": func() []byte {
			b := append([]byte(nil), good...)
			binary.LittleEndian.PutUint16(b[filePathLen:], 4000)
			return b
		}(),
	}
	for name, raw := range cases {
		var r Record
		if err := Decode(raw, &r); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	raw := fileRecord("/usr/bin/x", "/usr/bin/y", "")
	var r Record
	if n := testing.AllocsPerRun(100, func() { _ = Decode(raw, &r) }); n != 0 {
		t.Fatalf("Decode allocates %v times per record", n)
	}
}

func BenchmarkDecode(b *testing.B) {
	const path = "/usr/lib/x86_64-linux-gnu/libc.so.6"
	raw := fileRecord(path, "", "")
	var r Record
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := Decode(raw, &r); err != nil {
			b.Fatal(err)
		}
	}
	if r.Kind != KindFile || r.Op != OpRename || r.TGID != 42 || string(r.Path) != path {
		b.Fatalf("decoded %+v, want the rename of %s by pid 42", r, path)
	}
}

// encode is the test's writer of the record layout (the kernel's side is
// C): the header, the kind's fixed fields, then the strings, each but the
// argument block followed by a NUL, as bpf/common.h lays them out.
func encode(r *Record) []byte {
	var b []byte
	switch r.Kind {
	case KindFile:
		b = make([]byte, fileData, fileData+len(r.Path)+len(r.Path2)+len(r.Target)+3)
		le.PutUint64(b[fileRet:], uint64(r.Ret))
		le.PutUint64(b[fileDev:], r.Dev)
		le.PutUint64(b[fileIno:], r.Ino)
		le.PutUint32(b[fileMntID:], r.MountID)
		le.PutUint32(b[fileFlags:], r.Flags)
		le.PutUint32(b[fileMode:], r.Mode)
		le.PutUint32(b[fileRule:], r.Rule)
		le.PutUint16(b[filePathLen:], uint16(len(r.Path)))
		le.PutUint16(b[filePath2Len:], uint16(len(r.Path2)))
		le.PutUint16(b[fileTargetLen:], uint16(len(r.Target)))
		for _, f := range [][]byte{r.Path, r.Path2, r.Target} {
			b = append(append(b, f...), 0)
		}
	case KindExec:
		b = make([]byte, execData, execData+len(r.Path)+1+len(r.Args))
		le.PutUint64(b[execRet:], uint64(r.Ret))
		le.PutUint64(b[execDev:], r.Dev)
		le.PutUint64(b[execIno:], r.Ino)
		le.PutUint64(b[execArg:], r.Arg)
		le.PutUint32(b[execMntID:], r.MountID)
		le.PutUint32(b[execReasons:], r.Reasons)
		le.PutUint32(b[execRule:], r.Rule)
		le.PutUint16(b[execPathLen:], uint16(len(r.Path)))
		le.PutUint16(b[execArgsLen:], uint16(len(r.Args)))
		b = append(append(append(b, r.Path...), 0), r.Args...)
	case KindNet:
		b = make([]byte, netSize)
		le.PutUint16(b[netFamily:], r.Family)
		le.PutUint16(b[netProtocol:], r.Protocol)
		le.PutUint16(b[netPort:], r.Port)
		copy(b[netAddr:], r.Addr)
	}
	le.PutUint16(b[hdrKind:], r.Kind)
	le.PutUint16(b[hdrSize:], uint16(len(b)))
	le.PutUint16(b[hdrOp:], r.Op)
	le.PutUint16(b[hdrFlags:], r.Header.Flags)
	le.PutUint64(b[hdrKtime:], r.KTime)
	le.PutUint32(b[hdrTgid:], r.TGID)
	le.PutUint32(b[hdrPid:], r.PID)
	le.PutUint32(b[hdrPpid:], r.PPID)
	le.PutUint32(b[hdrUID:], r.UID)
	le.PutUint32(b[hdrGID:], r.GID)
	le.PutUint32(b[hdrPTag:], r.PTag)
	le.PutUint64(b[hdrCgroup:], r.CgroupID)
	le.PutUint64(b[hdrStart:], r.Start)
	le.PutUint64(b[hdrPStart:], r.PStart)
	copy(b[hdrComm:hdrComm+16], r.Comm)
	return b
}

// sameRecord compares two decoded records field by field (a nil and an
// empty string are the same string).
func sameRecord(a, b *Record) bool {
	ha, hb := a.Header, b.Header
	if ha.Kind != hb.Kind || ha.Op != hb.Op || ha.Flags != hb.Flags || ha.KTime != hb.KTime || ha.TGID != hb.TGID ||
		ha.PID != hb.PID || ha.PPID != hb.PPID || ha.UID != hb.UID || ha.GID != hb.GID || ha.PTag != hb.PTag ||
		ha.CgroupID != hb.CgroupID || ha.Start != hb.Start || ha.PStart != hb.PStart || !bytes.Equal(ha.Comm, hb.Comm) {
		return false
	}
	for _, f := range [][2][]byte{{a.Path, b.Path}, {a.Path2, b.Path2}, {a.Target, b.Target}, {a.Args, b.Args}, {a.Addr, b.Addr}} {
		if !bytes.Equal(f[0], f[1]) {
			return false
		}
	}
	return a.Ret == b.Ret && a.Dev == b.Dev && a.Ino == b.Ino && a.MountID == b.MountID && a.Flags == b.Flags &&
		a.Mode == b.Mode && a.Rule == b.Rule && a.Reasons == b.Reasons && a.Arg == b.Arg &&
		a.Family == b.Family && a.Protocol == b.Protocol && a.Port == b.Port
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, r := range []Record{
		{Header: Header{Kind: KindFile, Op: OpRename, TGID: 42, PPID: 41, Start: 2_345_678_901, PStart: 1_234_567_890, Comm: []byte("mv")}, Path: []byte("/etc/a"), Path2: []byte("/etc/b"), Ret: -13},
		{Header: Header{Kind: KindExec, Op: OpExec, TGID: 7, Comm: []byte("sh")}, Path: []byte("/tmp/x"), Args: []byte("x\x00-y\x00"), Reasons: ReasonTainted},
		{Header: Header{Kind: KindNet, Op: OpBind}, Family: 2, Protocol: 6, Port: 4444, Addr: []byte{127, 0, 0, 1}},
		{Header: Header{Kind: KindNet, Op: OpListen}, Family: 10, Protocol: 6, Port: 80, Addr: make([]byte, 16)},
	} {
		var got Record
		if err := Decode(encode(&r), &got); err != nil || !sameRecord(&r, &got) {
			t.Errorf("round trip of %+v: %+v, %v", r, got, err)
		}
	}
}

// FuzzDecode: Decode refuses what does not fit with an error, never a
// panic; what it accepts lies within the record's own size (bytes after it
// change nothing), has the address length its family implies, and survives
// being written out again and read back unchanged.
func FuzzDecode(f *testing.F) {
	f.Add(fileRecord("/etc/a", "/etc/b", "x"))
	f.Add(make([]byte, HdrSize))
	f.Add(encode(&Record{Header: Header{Kind: KindExec, Op: OpExec}, Path: []byte("/tmp/x"), Args: []byte("a\x00b")}))
	f.Add(encode(&Record{Header: Header{Kind: KindNet, Op: OpBind}, Family: 2, Port: 1, Addr: []byte{1, 2, 3, 4}}))
	f.Add(encode(&Record{Header: Header{Kind: KindNet, Op: OpListen}, Family: 10, Port: 1, Addr: make([]byte, 16)}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var r Record
		err := Decode(raw, &r)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if len(raw) < HdrSize || int(r.Size) < HdrSize || int(r.Size) > len(raw) {
			t.Fatalf("accepted %d bytes with size %d (header %d)", len(raw), r.Size, HdrSize)
		}
		if len(r.Comm) > 16 || bytes.IndexByte(r.Comm, 0) >= 0 {
			t.Fatalf("comm %q", r.Comm)
		}
		var fixed int
		switch r.Kind {
		case KindFile:
			fixed = fileData + len(r.Path) + len(r.Path2) + len(r.Target)
		case KindExec:
			fixed = execData + len(r.Path) + len(r.Args)
		case KindNet:
			fixed = netSize
			if want := map[bool]int{true: 4, false: 16}[r.Family == 2]; len(r.Addr) != want {
				t.Fatalf("family %d with a %d-byte address, want %d", r.Family, len(r.Addr), want)
			}
		default:
			t.Fatalf("accepted unknown kind %d", r.Kind)
		}
		if fixed > int(r.Size) {
			t.Fatalf("%d bytes of fields in a record of %d", fixed, r.Size)
		}
		var cut Record
		if err := Decode(raw[:r.Size], &cut); err != nil || !sameRecord(&r, &cut) {
			t.Fatalf("the bytes after the record's size changed it: %v", err)
		}
		var again Record
		if err := Decode(encode(&r), &again); err != nil || !sameRecord(&r, &again) {
			t.Fatalf("round trip of %+v: %+v, %v", r, again, err)
		}
	})
}
