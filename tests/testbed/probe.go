package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// Echo serves a TCP and a UDP echo on port of every address of the host
// until cleanup. Probes only ever reach addresses of Net.
func (h *Host) Echo(port uint16) error {
	addr := fmt.Sprintf(":%d", port)
	l, err := h.Listen("tcp4", addr)
	if err != nil {
		return fmt.Errorf("echo on %s tcp %d: %w", h.Name, port, err)
	}
	pc, err := h.ListenPacket("udp4", addr)
	if err != nil {
		l.Close()
		return fmt.Errorf("echo on %s udp %d: %w", h.Name, port, err)
	}
	h.bed.onCleanup(func() error { l.Close(); pc.Close(); return nil })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return nil
}

// AddrPort is the host's address with port.
func (h *Host) AddrPort(port uint16) netip.AddrPort { return netip.AddrPortFrom(h.Addr, port) }

// checkTarget refuses any destination outside the test bed's network, and
// the machine's own addresses in it.
func checkTarget(from *Host, to netip.AddrPort) error {
	if !Net.Contains(to.Addr()) {
		return fmt.Errorf("probe target %s is outside the test bed network %s", to, Net)
	}
	if from.bed.taken[to.Addr()] {
		return fmt.Errorf("probe target %s is the machine's own address or gateway, outside the test bed", to)
	}
	return nil
}

// Probe sends a random payload over TCP from host from to to and expects it
// echoed back before ctx ends (Echo serves the other side). nil means the
// path works both ways.
func Probe(ctx context.Context, from *Host, to netip.AddrPort) error {
	if err := checkTarget(from, to); err != nil {
		return err
	}
	c, err := from.DialContext(ctx, "tcp4", to.String())
	if err != nil {
		return fmt.Errorf("probe %s -> %s: %w", from.Name, to, err)
	}
	defer c.Close()
	return exchange(ctx, c, from.Name, to)
}

// ProbeUDP is Probe over UDP: one datagram out, the same one back.
func ProbeUDP(ctx context.Context, from *Host, to netip.AddrPort) error {
	if err := checkTarget(from, to); err != nil {
		return err
	}
	c, err := from.DialContext(ctx, "udp4", to.String())
	if err != nil {
		return fmt.Errorf("probe %s -> %s: %w", from.Name, to, err)
	}
	defer c.Close()
	return exchange(ctx, c, from.Name, to)
}

func exchange(ctx context.Context, c net.Conn, from string, to netip.AddrPort) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	if _, err := c.Write(nonce); err != nil {
		return fmt.Errorf("probe %s -> %s: send: %w", from, to, err)
	}
	got := make([]byte, len(nonce))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("probe %s -> %s: no echo: %w", from, to, err)
	}
	if !bytes.Equal(got, nonce) {
		return errors.New("probe: echo differs from what was sent")
	}
	return nil
}

// WaitBlocked probes every interval until a probe fails, and returns when it
// first failed; it gives up with an error when ctx ends.
func WaitBlocked(ctx context.Context, probe func(context.Context) error, each time.Duration) (time.Time, error) {
	for {
		pctx, cancel := context.WithTimeout(ctx, each)
		err := probe(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("probe still passes: %w", ctx.Err())
		case <-time.After(each / 4):
		}
	}
}
