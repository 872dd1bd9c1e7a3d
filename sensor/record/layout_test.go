package record

import (
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/driftsensor/driftsensor/sensor/tracepoint"
)

// TestLayoutMatchesBTF checks the decoder's offsets against the C structs as
// compiled into the committed object. It needs no privileges.
func TestLayoutMatchesBTF(t *testing.T) {
	spec, err := tracepoint.Spec()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		st     string
		member string
		off    int
	}{
		{"rec_hdr", "kind", hdrKind}, {"rec_hdr", "size", hdrSize}, {"rec_hdr", "op", hdrOp},
		{"rec_hdr", "flags", hdrFlags}, {"rec_hdr", "ktime", hdrKtime}, {"rec_hdr", "tgid", hdrTgid},
		{"rec_hdr", "pid", hdrPid}, {"rec_hdr", "ppid", hdrPpid}, {"rec_hdr", "uid", hdrUID},
		{"rec_hdr", "gid", hdrGID}, {"rec_hdr", "ptag", hdrPTag}, {"rec_hdr", "cgroup_id", hdrCgroup}, {"rec_hdr", "comm", hdrComm},
		{"file_rec", "ret", fileRet}, {"file_rec", "dev", fileDev}, {"file_rec", "ino", fileIno},
		{"file_rec", "mnt_id", fileMntID}, {"file_rec", "flags", fileFlags}, {"file_rec", "mode", fileMode},
		{"file_rec", "rule", fileRule}, {"file_rec", "path_len", filePathLen}, {"file_rec", "path2_len", filePath2Len},
		{"file_rec", "target_len", fileTargetLen}, {"file_rec", "data", fileData},
		{"exec_rec", "ret", execRet}, {"exec_rec", "dev", execDev}, {"exec_rec", "ino", execIno},
		{"exec_rec", "arg", execArg}, {"exec_rec", "mnt_id", execMntID}, {"exec_rec", "reasons", execReasons},
		{"exec_rec", "path_len", execPathLen}, {"exec_rec", "args_len", execArgsLen}, {"exec_rec", "rule", execRule},
		{"exec_rec", "data", execData},
		{"net_rec", "family", netFamily}, {"net_rec", "protocol", netProtocol}, {"net_rec", "port", netPort},
		{"net_rec", "addr", netAddr},
	}
	for _, c := range cases {
		var s *btf.Struct
		if err := spec.Types.TypeByName(c.st, &s); err != nil {
			t.Fatalf("struct %s not in the object's BTF: %v", c.st, err)
		}
		found := false
		for _, m := range s.Members {
			if m.Name == c.member {
				found = true
				if got := int(m.Offset.Bytes()); got != c.off {
					t.Errorf("%s.%s: C offset %d, decoder uses %d", c.st, c.member, got, c.off)
				}
			}
		}
		if !found {
			t.Errorf("%s.%s: no such member in C", c.st, c.member)
		}
	}
	for name, size := range map[string]int{"rec_hdr": HdrSize, "net_rec": netSize} {
		var s *btf.Struct
		if err := spec.Types.TypeByName(name, &s); err != nil {
			t.Fatal(err)
		}
		if int(s.Size) != size {
			t.Errorf("sizeof(%s) = %d in C, decoder assumes %d", name, s.Size, size)
		}
	}
}
