package transport

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// Options say how to reach an existing NATS server or cluster and how to log
// in to it. driftsensor, driftresponder and driftctl fill the connection part
// from the same flags (RegisterFlags), so one deployment story fits all three.
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
	// InProcess, when the server runs in this process (the sensor's
	// embedded one), carries the connection over an in-memory pipe instead
	// of loopback TCP: a finding skips two socket hops and the netpoller's
	// wakeups on its way to the server. URL still names the server (logs,
	// errors, CheckLogin); the login is the same.
	InProcess nats.InProcessConnProvider

	AckTimeout    time.Duration // wait for a JetStream ack or a flush; default 2s
	ReconnectWait time.Duration // pause between reconnect attempts; default 250ms

	// Backend names the kernel backend in findings the transport itself
	// reports (stream_lost).
	Backend string

	// OnCommand handles a decoded ctl command other than ping. A non-nil error
	// rejects the command: it is logged, counted and sent back to the caller.
	OnCommand func(event.CtlCommand) error
	// Answer, when set, handles every command but ping instead of
	// OnCommand, and may fill the reply (evidence, drill).
	Answer func(event.CtlCommand, *event.CtlReply) error
}

// RegisterFlags registers the connection flags every driftsensor command
// shares: --nats (urlDefault, described by urlHelp), --nats-creds,
// --nats-nkey, --tls-ca, --tls-cert and --tls-key.
func (o *Options) RegisterFlags(fs *flag.FlagSet, urlDefault, urlHelp string) {
	fs.StringVar(&o.URL, "nats", urlDefault, urlHelp)
	fs.StringVar(&o.CredsFile, "nats-creds", "", "NATS .creds file (user JWT and nkey seed), for servers with JWT accounts")
	fs.StringVar(&o.NKeySeedFile, "nats-nkey", "", "NATS nkey seed file (from driftctl creds: hosts/HOST.nk, responder.nk, admin.nk)")
	fs.StringVar(&o.CAFile, "tls-ca", "", "PEM CA bundle to verify the NATS server (TLS)")
	fs.StringVar(&o.CertFile, "tls-cert", "", "PEM client certificate for mutual TLS (with --tls-key)")
	fs.StringVar(&o.KeyFile, "tls-key", "", "PEM client key for mutual TLS (with --tls-cert)")
}

// SetDefaults fills the timeouts left zero.
func (o *Options) SetDefaults() {
	if o.AckTimeout <= 0 {
		o.AckTimeout = 2 * time.Second
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = 250 * time.Millisecond
	}
}

// NATSOptions turns the name, inbox and security options into nats.go options.
func (o Options) NATSOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if o.Name != "" {
		opts = append(opts, nats.Name(o.Name))
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.InProcess != nil {
		opts = append(opts, nats.InProcessServer(o.InProcess))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	switch {
	case o.CertFile != "" && o.KeyFile != "":
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	case o.CertFile != "" || o.KeyFile != "":
		return nil, fmt.Errorf("nats TLS: --tls-cert %q and --tls-key %q must be given together", o.CertFile, o.KeyFile)
	}
	switch {
	case o.CredsFile != "" && o.NKeySeedFile != "":
		return nil, fmt.Errorf("nats: give --nats-creds (%s) or --nats-nkey (%s), not both", o.CredsFile, o.NKeySeedFile)
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.NKeySeedFile != "":
		nk, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey %s: %w (want an nkey seed file from driftctl creds)", o.NKeySeedFile, err)
		}
		opts = append(opts, nk)
	}
	return opts, nil
}

// ErrUnauthorized marks a connection the server refused for its credentials.
var ErrUnauthorized = errors.New("the NATS server refused the credentials")

// IsAuthError reports whether err is the server refusing a login. (A
// client certificate refused in the TLS handshake is not told apart from a
// dropped connection reliably under TLS 1.3, so it stays a connect error.)
func IsAuthError(err error) bool {
	return errors.Is(err, ErrUnauthorized) || errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// Credential says which credential a connection presents, for error messages.
func (o Options) Credential() string {
	switch {
	case o.CredsFile != "":
		return "--nats-creds " + o.CredsFile
	case o.NKeySeedFile != "":
		return "--nats-nkey " + o.NKeySeedFile
	case o.CertFile != "":
		return "--tls-cert " + o.CertFile
	}
	return "none given: pass --nats-nkey or --nats-creds"
}

// ConnectError explains a failed first connection; a refused credential
// wraps ErrUnauthorized so commands exit with status 2.
func (o Options) ConnectError(err error) error {
	if IsAuthError(err) {
		return fmt.Errorf("nats %s: %w (%s): the server says %q; check that this credential is in the server's configuration (driftctl creds) and that it is this host's", RedactURLs(o.URL), ErrUnauthorized, o.Credential(), err.Error())
	}
	return fmt.Errorf("nats connect %s: %w", RedactURLs(o.URL), err)
}

// RedactURLs hides passwords in a URL list.
func RedactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// CheckLogin, for a connection InProcess, logs in once over TCP (URL) and
// returns the refusal, if any. The pipe cannot carry one: it has no buffer,
// so the server's "-ERR Authorization Violation" waits for a client still
// writing its CONNECT until the server's write deadline (10 s), and the
// client then sees only a closed pipe. An unreachable URL is not an error
// here: the in-process connection does not need it.
func (o Options) CheckLogin() error {
	if o.InProcess == nil {
		return nil
	}
	o.InProcess = nil
	nc, err := Connect(o)
	if err != nil && IsAuthError(err) {
		return err
	}
	if err == nil {
		nc.Close()
	}
	return nil
}

// Connect dials the server once and fails fast: for driftctl and tools. The
// sensor's publisher (sensor/publish) keeps its own connection that never gives up. A refused
// credential is an error wrapping ErrUnauthorized.
func Connect(o Options, extra ...nats.Option) (*nats.Conn, error) {
	o.SetDefaults()
	if o.URL == "" {
		return nil, fmt.Errorf("nats: no server URL (--nats)")
	}
	if o.Name == "" {
		o.Name = "driftctl"
	}
	if err := o.CheckLogin(); err != nil {
		return nil, err
	}
	opts, err := o.NATSOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Timeout(o.AckTimeout))
	opts = append(opts, extra...)
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, o.ConnectError(err)
	}
	return nc, nil
}

// InboxPrefix is where a host's publisher receives replies (acks, API
// answers, its state watch); per-host credentials grant it only these.
func InboxPrefix(host string) string { return "_INBOX_" + host }
