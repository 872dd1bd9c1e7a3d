package transport

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Options say how to reach an existing NATS server or cluster.
type Options struct {
	URL          string // one or more server URLs, comma-separated (nats://, tls://)
	CAFile       string // PEM CA bundle to verify the server
	CertFile     string // client certificate (PEM), with KeyFile, for mutual TLS
	KeyFile      string
	CredsFile    string // .creds file: user JWT and nkey seed
	NKeySeedFile string // bare nkey seed file, when the server knows the public key
	Name         string // connection name shown by the server; default driftsensor/<host>
	// InboxPrefix is where replies to this connection go; a Publisher uses
	// _INBOX_<host> so per-host credentials can confine it to its own inboxes.
	InboxPrefix string

	AckTimeout    time.Duration // wait for a JetStream ack or a flush; default 2s
	ReconnectWait time.Duration // pause between reconnect attempts; default 250ms

	// OnCommand handles a decoded ctl command other than ping. A non-nil error
	// rejects the command: it is logged, counted and sent back to the caller.
	OnCommand func(Command) error
}

func (o *Options) defaults() {
	if o.AckTimeout <= 0 {
		o.AckTimeout = 2 * time.Second
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = 250 * time.Millisecond
	}
}

// natsOptions turns the security options into nats.go options.
func (o Options) natsOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if o.Name != "" {
		opts = append(opts, nats.Name(o.Name))
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	switch {
	case o.CertFile != "" && o.KeyFile != "":
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	case o.CertFile != "" || o.KeyFile != "":
		return nil, fmt.Errorf("nats TLS: client certificate %q and key %q must be given together", o.CertFile, o.KeyFile)
	}
	switch {
	case o.CredsFile != "" && o.NKeySeedFile != "":
		return nil, fmt.Errorf("nats: give a credentials file (%s) or an nkey seed file (%s), not both", o.CredsFile, o.NKeySeedFile)
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.NKeySeedFile != "":
		nk, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed %s: %w", o.NKeySeedFile, err)
		}
		opts = append(opts, nk)
	}
	return opts, nil
}

// Connect dials the server once and fails fast: for driftctl and tools. The
// sensor's Publisher keeps its own connection that never gives up.
func Connect(o Options) (*nats.Conn, error) {
	o.defaults()
	if o.URL == "" {
		return nil, fmt.Errorf("nats: no server URL")
	}
	if o.Name == "" {
		o.Name = "driftctl"
	}
	opts, err := o.natsOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Timeout(o.AckTimeout))
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", o.URL, err)
	}
	return nc, nil
}
