package lsm

import (
	"os"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// requireLSM skips a test where BPF-LSM is not usable (most machines: make
// vmtest runs these tests in a VM that has it); with DRIFT_REQUIRE_LSM set
// (the VM sets it) it fails instead, so the VM run never passes by skipping.
func requireLSM(t testing.TB) {
	t.Helper()
	testenv.RequireBPF(t)
	ok, why := Available()
	if ok {
		return
	}
	if os.Getenv("DRIFT_REQUIRE_LSM") != "" {
		t.Fatalf("%s (DRIFT_REQUIRE_LSM is set, so this fails instead of skipping)", why)
	}
	t.Skipf("%s; make vmtest runs this test in a VM with BPF-LSM on (DRIFT_REQUIRE_LSM=1 makes this a failure)", why)
}
