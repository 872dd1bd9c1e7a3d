package main

import (
	"testing"

	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

// TestDemo runs make demo's program on freshly built binaries, so the
// README's first command is proved by make test: it fails unless benign work
// produced no finding, the three drifts were reported and web was cut off;
// and it leaves nothing of its bed behind.
func TestDemo(t *testing.T) {
	testenv.RequireBPF(t)
	bin := testenv.BuildAll(t, "github.com/driftsensor/driftsensor/cmd/driftsensor", "github.com/driftsensor/driftsensor/cmd/driftresponder")
	if err := run(bin); err != nil {
		t.Fatal(err)
	}
	if left := testbed.Leftovers(testbed.CLIPrefix + bedName); len(left) > 0 {
		t.Fatalf("the demo left %v", left)
	}
}
