package lsm

import (
	"os"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/hooktest"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// The tests drive the hooks from a child process, this binary again started
// inside the test's cgroup: the sensor never judges itself, and the child's
// pid is what a finding must name. It is the shared actor of sensor/hooktest,
// or a benchmark worker (bench_test.go).
func TestMain(m *testing.M) {
	if act.IsActor() {
		os.Exit(act.ActorMain())
	}
	if hooktest.IsWorkload() {
		os.Exit(hooktest.WorkloadMain())
	}
	os.Exit(testenv.Main(m))
}
