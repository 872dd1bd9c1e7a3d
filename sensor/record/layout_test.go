package record

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/driftsensor/driftsensor/sensor/lsm"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
)

// recordStructs are the structs of the record format (bpf/common.h).
var recordStructs = []string{"rec_hdr", "file_rec", "exec_rec", "net_rec"}

// TestLayout: both backends' committed objects lay out every record struct
// exactly as the object the decoder's offsets are generated from (a stale
// object, or a backend compiled with another definition, fails here). Needs
// no privileges.
func TestLayout(t *testing.T) {
	ref, err := loadRec()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		name string
		spec func() (*ebpf.CollectionSpec, error)
	}{{"tracepoint", tracepoint.Spec}, {"lsm", lsm.Spec}} {
		spec, err := o.spec()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range recordStructs {
			var want, got *btf.Struct
			if err := ref.Types.TypeByName(name, &want); err != nil {
				t.Fatalf("struct %s not in bpf/record.c's BTF: %v", name, err)
			}
			if err := spec.Types.TypeByName(name, &got); err != nil {
				t.Errorf("%s object: struct %s not in its BTF (keep it referenced): %v", o.name, name, err)
				continue
			}
			if got.Size != want.Size {
				t.Errorf("%s object: sizeof(%s) = %d, the decoder's is %d", o.name, name, got.Size, want.Size)
			}
			if len(got.Members) != len(want.Members) {
				t.Errorf("%s object: %s has %d members, the decoder's %d", o.name, name, len(got.Members), len(want.Members))
				continue
			}
			for i, m := range want.Members {
				g := got.Members[i]
				if g.Name != m.Name || g.Offset != m.Offset {
					t.Errorf("%s object: %s member %d is %s at byte %d, the decoder's %s at byte %d",
						o.name, name, i, g.Name, g.Offset.Bytes(), m.Name, m.Offset.Bytes())
				}
			}
		}
	}
}

// TestOpsCoverEnum: every value of enum rec_op has exactly one entry in Ops,
// with an action name, and Ops holds no code the enum lacks.
func TestOpsCoverEnum(t *testing.T) {
	ref, err := loadRec()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := ref.Types.TypeByName("rec_op", &e); err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]int{}
	for _, o := range Ops {
		seen[o.Code]++
		if o.Action == "" {
			t.Errorf("op %d has no action name", o.Code)
		}
	}
	for _, v := range e.Values {
		if n := seen[uint16(v.Value)]; n != 1 {
			t.Errorf("%s (%d): %d entries in Ops, want 1", v.Name, v.Value, n)
		}
		delete(seen, uint16(v.Value))
	}
	for code := range seen {
		t.Errorf("Ops has op %d, which enum rec_op lacks", code)
	}
}
