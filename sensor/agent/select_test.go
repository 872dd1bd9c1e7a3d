package agent

import (
	"strings"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/lsm"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// TestOpenBackend: auto takes lsm only where BPF-LSM works and says why not
// otherwise; a forced lsm on a kernel without it is a clear error; a bad name
// is refused.
func TestOpenBackend(t *testing.T) {
	testenv.RequireBPF(t)
	cg := testenv.NewCgroup(t)
	root, _ := sysfs.CgroupRoot()
	opts := backend.Options{Scope: []string{cg.Path}, CgroupRoot: root}
	lsmOK, lsmWhy := lsm.Available()

	b, why, err := OpenBackend("auto", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	switch {
	case lsmOK && b.Name() != "lsm":
		t.Fatalf("auto chose %s on a kernel where BPF-LSM works", b.Name())
	case !lsmOK && (b.Name() != "tracepoint" || !strings.Contains(why, lsmWhy)):
		t.Fatalf("auto chose %s (%q); want tracepoint, saying %q", b.Name(), why, lsmWhy)
	}
	b.Close()

	if !lsmOK {
		if _, _, err := OpenBackend("lsm", opts); err == nil || !strings.Contains(err.Error(), "--backend lsm: BPF-LSM is not usable here") {
			t.Fatalf("forced lsm without BPF-LSM: %v", err)
		}
	}
	if _, _, err := OpenBackend("kprobe", opts); err == nil || !strings.Contains(err.Error(), `"kprobe"`) {
		t.Fatalf("unknown backend: %v", err)
	}
}
