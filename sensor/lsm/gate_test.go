package lsm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/record"
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

// TestCordonReflex: with reflex.cordon the hook that finds drift sets the
// cordon gate's flag in the kernel (RF_CORDONED on the record) before the
// syscall returns, in detect and in enforce mode; without it, or for a
// benign act, the flag stays down. A backend without a gate refuses the
// reflex with the fix. The flag map has the gate's layout (responder/gate
// tests what the gate does with it).
func TestCordonReflex(t *testing.T) {
	requireLSM(t)
	flag, err := ebpf.NewMap(&ebpf.MapSpec{Name: "gate_cordon", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer flag.Close()
	cordoned := func() uint32 {
		var v uint32
		if err := flag.Lookup(uint32(0), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	noGate := newFixture(t)
	r := noGate.rules
	r.ReflexCordon = true
	want := "reflex.cordon: no cordon gate is attached to flip (attach one: driftsensor --gate)"
	if err := noGate.b.Apply(r); err == nil || err.Error() != want {
		t.Fatalf("reflex.cordon without a gate: %v, want %q", err, want)
	}

	fx := newFixtureWith(t, backend.Options{CordonFlag: flag})
	for _, c := range []struct {
		name            string
		reflex, enforce bool
		file            string
		wantFlag        uint32
	}{
		{"benign act, reflex on", true, false, "free/f", 0},
		{"drift, reflex off", false, false, "off", 0},
		{"drift, reflex on", true, false, "detect", 1},
		{"drift, reflex on, enforce", true, true, "enforce", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := flag.Put(uint32(0), uint32(0)); err != nil {
				t.Fatal(err)
			}
			r := fx.rules
			r.ReflexCordon, r.Enforce = c.reflex, c.enforce
			if err := fx.b.Apply(r); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(fx.base, c.file)
			mkfile(t, f, "x")
			_, _, recs := fx.run(t, "unlink", f)
			if got := cordoned(); got != c.wantFlag {
				t.Fatalf("cordon flag %d after the unlink, want %d (records %v)", got, c.wantFlag, recs)
			}
			if c.wantFlag == 0 {
				for _, r := range recs {
					if r.Flags&record.FlagCordoned != 0 {
						t.Errorf("record says cordoned, the flag is down: %v", r)
					}
				}
				return
			}
			if len(recs) != 1 || recs[0].Path != f || recs[0].Flags&record.FlagCordoned == 0 {
				t.Fatalf("records %v, want one unlink of %s flagged cordoned", recs, f)
			}
		})
	}
}
