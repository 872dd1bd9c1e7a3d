package actuator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// Prober checks whether a host is still reachable: nil means a probe passed.
type Prober interface {
	Probe(ctx context.Context, host string) error
}

// TCPProber connects to a per-host address. A connection, or a refusal (an
// RST is an answer too), passes; silence or unreachability does not.
type TCPProber struct {
	Addr func(host string) (string, error)
	// Dial opens the connection; a net.Dialer if nil. The test bed dials
	// from inside one of its hosts.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Probe dials the host once.
func (p *TCPProber) Probe(ctx context.Context, host string) error {
	addr, err := p.Addr(host)
	if err != nil {
		return fmt.Errorf("probe %s: %w", host, err)
	}
	dial := p.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	c, err := dial(ctx, "tcp", addr)
	if err == nil {
		c.Close()
		return nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	return fmt.Errorf("probe %s (%s): %w", host, addr, err)
}

// WaitBlocked probes host every interval (each probe given that long) until
// one fails, and returns the time the first failing probe was sent.
func WaitBlocked(ctx context.Context, p Prober, host string, interval time.Duration) (time.Time, error) {
	for {
		sent := time.Now()
		pctx, cancel := context.WithTimeout(ctx, interval)
		err := p.Probe(pctx, host)
		cancel()
		if ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("%s still reachable: %w", host, ctx.Err())
		}
		if err != nil {
			return sent, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s still reachable: %w", host, ctx.Err())
		case <-time.After(interval / 10):
		}
	}
}
