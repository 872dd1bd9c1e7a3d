package sensor_test

import (
	"os"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// The actor is this test binary re-executed inside the test's cgroup
// (sensor/hooktest): it makes exactly one kind of syscall, so a finding can be
// matched to its pid.
func TestMain(m *testing.M) {
	if act.IsActor() {
		os.Exit(act.ActorMain())
	}
	os.Exit(testenv.Main(m))
}
