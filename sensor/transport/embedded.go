package transport

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StartEmbedded starts a nats-server on 127.0.0.1 with a random port and
// JetStream stored in dir. driftsensor runs it when no --nats URL is given, so
// one machine runs the whole pipeline; tests use it as the real thing.
// Stop it with Shutdown and WaitForShutdown.
func StartEmbedded(dir string) (*server.Server, string, error) {
	return StartLoopback(dir, server.RANDOM_PORT, true)
}

// StartEmbeddedOn is StartEmbedded on a chosen loopback port (0: any), so
// driftctl and a responder on the same machine know where to connect.
func StartEmbeddedOn(dir string, port int) (*server.Server, string, error) {
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return StartLoopback(dir, port, true)
}

// startServer starts a loopback server on port (server.RANDOM_PORT for any),
// with JetStream in dir when js is set.
func StartLoopback(dir string, port int, js bool) (*server.Server, string, error) {
	opts := &server.Options{
		ServerName: "driftsensor-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  js,
		StoreDir:   dir,
		NoSigs:     true, // the daemon owns signal handling
		NoLog:      true,
		MaxPayload: 1 << 20,
	}
	return StartServer(opts)
}

// StartServer starts an in-process nats-server with opts (signals and
// logging are the caller's to set) and waits until it takes connections.
// The authenticated embedded server (creds.StartEmbedded) starts here with
// the options of its generated configuration.
func StartServer(opts *server.Options) (*server.Server, string, error) {
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, "", fmt.Errorf("embedded nats-server (store %s): %w", opts.StoreDir, err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, "", fmt.Errorf("embedded nats-server (store %s) not ready after 10s; is %s:%d free?", opts.StoreDir, opts.Host, opts.Port)
	}
	return s, s.ClientURL(), nil
}
