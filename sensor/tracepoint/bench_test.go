package tracepoint

import (
	"testing"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// BenchmarkVerify is the per-heartbeat integrity check on an untouched
// sensor (default policy, sealed, one scope cgroup): the configuration, scope,
// prefix tries and all 65,536 port entries read back, and every link's info.
// The heartbeat also reads the kernel counters (Stats), measured apart.
func BenchmarkVerify(b *testing.B) {
	testenv.RequireBPF(b)
	cg := testenv.NewCgroup(b)
	root, _ := sysfs.CgroupRoot()
	be, err := Load(backend.Options{Scope: []string{cg.Path}, CgroupRoot: root})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	if err := be.Apply(sensor.RulesFor(policy.Default())); err != nil {
		b.Fatal(err)
	}
	if err := be.SetSealed(true); err != nil {
		b.Fatal(err)
	}
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if d := be.Verify(); d != nil {
				b.Fatalf("untouched sensor: %q", d)
			}
		}
	})
	b.Run("stats", func(b *testing.B) {
		for b.Loop() {
			if _, err := be.Stats(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
