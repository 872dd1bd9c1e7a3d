package main

import (
	"os"

	"github.com/driftsensor/driftsensor/sensor/creds"
)

// stateDirEnv names a sensor state directory other than the default, for
// finding the operator's seed of that sensor's embedded server.
const stateDirEnv = "DRIFT_STATE_DIR"

// localAdminSeed is the operator's seed that a driftsensor running its
// embedded server on this host generated ($DRIFT_STATE_DIR, default
// /var/lib/driftsensor, then creds/admin.nk), when this user can read it
// (root): so driftctl on the sensor's own host needs no flag. "" otherwise.
func localAdminSeed() string {
	dir := os.Getenv(stateDirEnv)
	if dir == "" {
		dir = creds.DefaultStateDir
	}
	seed := creds.EmbeddedAdminSeed(dir)
	f, err := os.Open(seed)
	if err != nil {
		return ""
	}
	f.Close()
	return seed
}
