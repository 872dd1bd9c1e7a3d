package creds

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// Where the authenticated embedded server keeps its credentials: in the
// sensor's state directory, root's alone.
const (
	DefaultStateDir = "/var/lib/driftsensor" // driftsensor --state-dir default
	EmbeddedDir     = "creds"                // <state-dir>/creds: mode 0700, seeds 0600
)

// StateDirEnv names a sensor state directory other than DefaultStateDir,
// where driftctl and driftresponder look for a local sensor's seeds.
const StateDirEnv = "DRIFT_STATE_DIR"

// LocalSeed is the seed (AdminSeed or ResponderSeed) that a driftsensor
// running its embedded server on this host generated, in $DRIFT_STATE_DIR
// (default /var/lib/driftsensor)/creds, when this user can read it (root):
// so driftctl and a responder on the sensor's own host need no flag. ""
// otherwise.
func LocalSeed(name string) string {
	dir := os.Getenv(StateDirEnv)
	if dir == "" {
		dir = DefaultStateDir
	}
	seed := filepath.Join(dir, EmbeddedDir, name)
	f, err := os.Open(seed)
	if err != nil {
		return ""
	}
	f.Close()
	return seed
}

// EmbeddedAdminSeed is the operator's (driftctl's) seed for the embedded
// server of a sensor whose state directory is stateDir.
func EmbeddedAdminSeed(stateDir string) string {
	return filepath.Join(stateDir, EmbeddedDir, AdminSeed)
}

// EmbeddedHostSeedDir makes (mode 0700) and returns the directory of the
// embedded server's host seeds, for the sensor to guard before they are
// written: its own credential. The operator's and the responder's seeds sit
// one level up, where driftctl and a local responder read them unguarded.
func EmbeddedHostSeedDir(stateDir string) (string, error) {
	dir := filepath.Join(stateDir, EmbeddedDir)
	hosts := filepath.Join(dir, HostSeedDir)
	if err := os.MkdirAll(hosts, 0o700); err != nil {
		return "", fmt.Errorf("creds: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("creds: %w", err)
	}
	return hosts, nil
}

// Embedded is a running authenticated embedded server.
type Embedded struct {
	Server   *server.Server
	URL      string
	Creds    *Result // the seeds: the host's, the responder's, the admin's
	HostSeed string  // the seed the sensor connects with
}

// StartEmbedded starts the server driftsensor runs when no --nats URL is
// given, authenticated like a fleet's: at first start it generates, in
// stateDir/creds, an nkey seed for host's sensor, one for a responder and
// one for the operator's driftctl (kept on later starts), with the
// permissions of their roles. Nothing connects without one of them, so an
// unprivileged local user can neither read nor publish, nor change the
// host's state. It creates the findings stream and the state bucket as the
// admin, since the host's own credentials may not. port 0 picks a free one.
func StartEmbedded(stateDir, host string, port int) (*Embedded, error) {
	listen := "127.0.0.1:" + strconv.Itoa(port)
	if port == 0 {
		listen = "127.0.0.1:-1"
	}
	e, err := StartServer([]string{host}, filepath.Join(stateDir, EmbeddedDir), Options{
		Listen: listen, StoreDir: filepath.Join(stateDir, "jetstream"), ServerName: "driftsensor-embedded"})
	if err != nil {
		return nil, fmt.Errorf("embedded server: %w", err)
	}
	if u, ok := e.Creds.User(host); ok {
		e.HostSeed = u.SeedFile
	}
	return e, nil
}

// StartServer generates (or keeps) the credentials of hosts in dir, as
// Generate does with o, and starts the server they configure, in this
// process; it creates the findings stream and the state bucket as the
// admin. StartEmbedded and the test bed's pipeline run it.
func StartServer(hosts []string, dir string, o Options) (*Embedded, error) {
	res, err := Generate(hosts, dir, o)
	if err != nil {
		return nil, err
	}
	opts, err := server.ProcessConfigFile(res.ServerConfig)
	if err != nil {
		return nil, fmt.Errorf("server configuration %s: %w", res.ServerConfig, err)
	}
	opts.NoSigs = true // the process owns signal handling
	opts.NoLog = true
	opts.MaxPayload = 1 << 20
	srv, url, err := transport.StartServer(opts)
	if err != nil {
		return nil, err
	}
	e := &Embedded{Server: srv, URL: url, Creds: res}
	admin, _ := res.User(RoleAdmin)
	nc, err := transport.Connect(transport.Options{URL: url, NKeySeedFile: admin.SeedFile, Name: "driftsensor-setup"})
	if err == nil {
		var ctl *control.Client
		if ctl, err = control.New(nc, 5*time.Second); err == nil {
			err = ctl.Setup(context.Background())
		}
		nc.Close()
	}
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("create the stream and the state bucket as admin: %w", err)
	}
	return e, nil
}

// Close stops the server and waits for it.
func (e *Embedded) Close() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}
