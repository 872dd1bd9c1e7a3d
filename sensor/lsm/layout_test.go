package lsm

import (
	"testing"
	"unsafe"
)

// The lsm records must be byte for byte the tracepoint backend's: user space
// decodes both with one decoder (sensor/record), whose offsets these are.
func TestRecordLayout(t *testing.T) {
	var f lsmFileRec
	var x lsmExecRec
	var n lsmNetRec
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"rec_hdr size", unsafe.Sizeof(lsmRecHdr{}), 64},
		{"file_rec.ret", unsafe.Offsetof(f.Ret), 64},
		{"file_rec.mnt_id", unsafe.Offsetof(f.MntId), 88},
		{"file_rec.rule", unsafe.Offsetof(f.Rule), 100},
		{"file_rec.path_len", unsafe.Offsetof(f.PathLen), 104},
		{"file_rec.data", unsafe.Offsetof(f.Data), 116},
		{"exec_rec.arg", unsafe.Offsetof(x.Arg), 88},
		{"exec_rec.reasons", unsafe.Offsetof(x.Reasons), 100},
		{"exec_rec.data", unsafe.Offsetof(x.Data), 120},
		{"net_rec.port", unsafe.Offsetof(n.Port), 68},
		{"net_rec size", unsafe.Sizeof(n), 88},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d (bpf/common.h and sensor/record disagree with bpf/lsm.c's object)", c.name, c.got, c.want)
		}
	}
}
