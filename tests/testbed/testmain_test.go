package testbed

import (
	"os"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// TestMain unmounts the kernel file systems the tests mounted.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
