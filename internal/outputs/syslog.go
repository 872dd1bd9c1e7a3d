package outputs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"
	"golang.org/x/sys/unix"
)

// Syslog message fields.
const (
	// syslogFacility is "security/authorization messages" (RFC 5424 table 1).
	syslogFacility = 4
	syslogApp      = "driftsensor"
	// syslogSDID names the structured data element: 32473 is the private
	// enterprise number RFC 5612 reserves for documentation and examples.
	syslogSDID = "drift@32473"
	// maxDatagram is the largest UDP payload over IPv4.
	maxDatagram = 65507
)

// FormatSyslog renders rec as an RFC 5424 message: facility auth, the
// record's severity, HOSTNAME the host it is about, APP-NAME driftsensor,
// MSGID the record's source, structured data with its id, and the JSON
// document as MSG.
func FormatSyslog(rec Record) (string, error) {
	m := &rfc5424.SyslogMessage{}
	m.SetVersion(1)
	m.SetPriority(uint8(syslogFacility*8 + min(max(rec.Severity, 0), 7)))
	m.SetTimestamp(rec.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00")) // TIME-SECFRAC: at most 6 digits
	if rec.Host != "" {
		m.SetHostname(rec.Host)
	}
	m.SetAppname(syslogApp)
	if rec.Source != "" {
		m.SetMsgID(rec.Source)
	}
	m.SetParameter(syslogSDID, "id", rec.ID)
	m.SetMessage(string(rec.Doc))
	s, err := m.String()
	if err != nil {
		return "", fmt.Errorf("record %s: not a valid RFC 5424 message (host %q, source %q)", rec.ID, rec.Host, rec.Source)
	}
	return s, nil
}

// syslogSink writes to one syslog receiver: one datagram per message over
// UDP; octet-counted frames (RFC 6587, RFC 5425) over TCP and TLS, on one
// connection dialled again after a failure.
type syslogSink struct {
	network, addr string
	tls           *tls.Config
	conn          net.Conn
}

func newSyslog(u *url.URL, transport string, tc *tls.Config) (Sink, error) {
	if u.Port() == "" {
		return nil, fmt.Errorf("syslog needs a port (514 for udp and tcp, 6514 for tls)")
	}
	s := &syslogSink{addr: u.Host}
	switch transport {
	case "udp", "tcp":
		s.network = transport
	case "tls":
		s.network = "tcp"
		s.tls = tc
		if s.tls == nil {
			s.tls = &tls.Config{}
		}
		s.tls.ServerName = u.Hostname()
	default:
		return nil, fmt.Errorf("syslog over %q (want udp, tcp or tls)", transport)
	}
	return s, nil
}

func (s *syslogSink) dial(ctx context.Context) error {
	if s.conn != nil && s.network != "udp" && !s.open() {
		s.conn.Close()
		s.conn = nil
	}
	if s.conn != nil {
		return nil
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	var err error
	if s.tls != nil {
		s.conn, err = (&tls.Dialer{NetDialer: d, Config: s.tls}).DialContext(ctx, s.network, s.addr)
	} else {
		s.conn, err = d.DialContext(ctx, s.network, s.addr)
	}
	return err
}

func (s *syslogSink) Send(ctx context.Context, recs []Record) ([]Record, int, error) {
	refused := 0
	var last error
	for i, rec := range recs {
		msg, err := FormatSyslog(rec)
		if err == nil && s.network == "udp" && len(msg) > maxDatagram {
			err = fmt.Errorf("record %s: %d bytes do not fit a UDP datagram (use syslog+tcp or syslog+tls)", rec.ID, len(msg))
		}
		if err != nil {
			refused++
			last = err
			continue
		}
		if err := s.dial(ctx); err != nil {
			return recs[i:], refused, err
		}
		frame := msg
		if s.network != "udp" {
			frame = strconv.Itoa(len(msg)) + " " + msg
		}
		s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := s.conn.Write([]byte(frame)); err != nil {
			s.conn.Close()
			s.conn = nil
			return recs[i:], refused, err
		}
	}
	return nil, refused, last
}

// open reports whether the receiver still has the connection open. A
// receiver never writes, so a socket that reads as ended is its close:
// without this check the first message written after the close would be
// taken by the kernel and lost with no error (RFC 6587 has no acks).
func (s *syslogSink) open() bool {
	raw := s.conn
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n, peekErr := 0, error(nil)
	if err := rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, peekErr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); err != nil {
		return false
	}
	switch {
	case errors.Is(peekErr, unix.EAGAIN):
		return true
	case peekErr != nil || n == 0:
		return false // reset, or ended
	}
	// The receiver sent something: a TLS session ticket, or its close_notify.
	// Reading it (briefly) tells which.
	s.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [512]byte
	_, err = s.conn.Read(b[:])
	s.conn.SetReadDeadline(time.Time{})
	return err == nil || errors.Is(err, os.ErrDeadlineExceeded)
}

func (s *syslogSink) Close() error {
	if s.conn == nil {
		return nil
	}
	return s.conn.Close()
}

// tlsConfig loads the roots and client certificate named; nil when none is.
func tlsConfig(ca, cert, key string) (*tls.Config, error) {
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate in it", ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("cert and key go together (got cert %q, key %q)", cert, key)
	}
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("cert %s, key %s: %w", cert, key, err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c, nil
}
