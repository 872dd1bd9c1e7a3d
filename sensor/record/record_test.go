package record

import (
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
	raw := fileRecord("/usr/lib/x86_64-linux-gnu/libc.so.6", "", "")
	var r Record
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := Decode(raw, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(fileRecord("/etc/a", "/etc/b", "x"))
	f.Add(make([]byte, HdrSize))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var r Record
		if Decode(raw, &r) == nil {
			for _, s := range [][]byte{r.Path, r.Path2, r.Target, r.Args} {
				if len(s) > len(raw) {
					t.Fatal("field longer than the record")
				}
			}
		}
	})
}
