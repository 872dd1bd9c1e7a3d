package bpftest

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/driftsensor/driftsensor/sensor/lsm"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
)

// TestProductionObjectsHoldNoTestProgram: the objects the sensor loads carry
// its hooks only; every test program and test map lives in this package's
// object. Needs no privileges.
func TestProductionObjectsHoldNoTestProgram(t *testing.T) {
	test, err := loadBpftest()
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
		for name := range spec.Programs {
			if !strings.HasPrefix(name, "drift_") || test.Programs[name] != nil {
				t.Errorf("%s object: program %s is not a hook (hooks are drift_*; test programs belong in bpf/test)", o.name, name)
			}
		}
		for name := range spec.Maps {
			if strings.HasPrefix(name, "test_") {
				t.Errorf("%s object: map %s is a test map (test maps belong in bpf/test)", o.name, name)
			}
		}
	}
	for name := range test.Programs {
		if !strings.HasPrefix(name, "test_") {
			t.Errorf("test object: program %s: test programs are named test_*", name)
		}
	}
}
