package lsm

import (
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// TestProgramSelection checks, against this kernel's BTF and without loading
// anything (so it runs where BPF-LSM is off too), that of each program
// written twice for kernels that differ exactly one is kept, and that every
// program either fits or names the hook it lacks.
func TestProgramSelection(t *testing.T) {
	testenv.RequireBPF(t)
	spec, err := loadLsm()
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	var missing []string
	for name, p := range spec.Programs {
		keep, miss := fits(kernel, name, p)
		kept[name] = keep
		if miss != "" {
			missing = append(missing, miss)
		}
		if keep && miss != "" {
			t.Errorf("%s: kept, yet its hook %s is missing", name, miss)
		}
	}
	for _, pair := range [][2]string{
		{"drift_inode_setattr", "drift_inode_setattr_old"},
		{"drift_uring_allowed", "drift_uring_create"},
	} {
		if kept[pair[0]] == kept[pair[1]] {
			t.Errorf("%s kept %v, %s kept %v: want exactly one", pair[0], kept[pair[0]], pair[1], kept[pair[1]])
		}
	}
	t.Logf("kept inode_setattr (idmap) %v, uring_allowed %v; hooks missing: %v",
		kept["drift_inode_setattr"], kept["drift_uring_allowed"], missing)
}
