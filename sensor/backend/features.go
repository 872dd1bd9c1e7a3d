package backend

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// NoDirectLoadsEnv, set to any value, makes the programs read kernel memory
// with helper calls even where the kernel allows direct loads: benchmarks and
// tests use it to run the older kernels' code path on this one.
const NoDirectLoadsEnv = "DRIFT_NO_DIRECT_LOADS"

var directLoads = sync.OnceValues(func() (bool, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false, fmt.Errorf("read the kernel's BTF: %w", err)
	}
	var fn *btf.Func
	if err := spec.TypeByName("bpf_rdonly_cast", &fn); err != nil {
		if errors.Is(err, btf.ErrNotFound) {
			return false, nil // before 6.2
		}
		return false, fmt.Errorf("look up bpf_rdonly_cast in the kernel's BTF: %w", err)
	}
	return true, nil
})

// setDirectLoads sets btf_loads (bpf/path.h) when the running kernel has the
// bpf_rdonly_cast kfunc (6.2+), so the programs follow kernel pointers with
// direct loads instead of a helper call per hop.
func setDirectLoads(spec *ebpf.CollectionSpec) error {
	v, ok := spec.Variables["btf_loads"]
	if !ok {
		return errors.New("BPF object has no btf_loads variable (bpf/path.h): rebuild it with make generate")
	}
	if os.Getenv(NoDirectLoadsEnv) != "" {
		return nil
	}
	on, err := directLoads()
	if err != nil || !on {
		return err
	}
	if err := v.Set(uint32(1)); err != nil {
		return fmt.Errorf("set btf_loads: %w", err)
	}
	return nil
}
