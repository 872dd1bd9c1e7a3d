package fleetscale

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/driftsensor/driftsensor/sensor/spool"
)

// startServer runs nats-server from the configuration driftctl creds wrote.
func startServer(conf string) (*server.Server, error) {
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		return nil, fmt.Errorf("server config %s: %w", conf, err)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		return nil, fmt.Errorf("server from %s not ready", conf)
	}
	return s, nil
}

func openSpool(dir string) (*spool.Spool, error) {
	sp, _, err := spool.Open(dir, spool.Options{})
	return sp, err
}
