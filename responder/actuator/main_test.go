package actuator

import (
	"os"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

func TestMain(m *testing.M) {
	testbed.ServeEchoIfChild()
	os.Exit(testenv.Main(m))
}
