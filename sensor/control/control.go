// Package control is the fleet's control client: it sets up the findings
// stream, the audit stream and the host state bucket, changes host states
// (with an audit record of each change) and sends ctl commands to hosts.
// driftctl and the responder use it; it links none of the host's publisher.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// transitions lists the changes SetState allows. A destroyed host is
// replaced, never revived; a cordoned host goes back to sealed (uncordon)
// before it can be unsealed.
var transitions = map[event.State][]event.State{
	event.StateMutable:   {event.StateSealed, event.StateCordoned, event.StateDestroyed},
	event.StateSealed:    {event.StateMutable, event.StateCordoned, event.StateDestroyed},
	event.StateCordoned:  {event.StateSealed, event.StateDestroyed},
	event.StateDestroyed: nil,
}

// Client changes host states and sends commands.
type Client struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	timeout time.Duration
}

// New wraps a connection (see transport.Connect). timeout bounds each call; 0 means 2s.
func New(nc *nats.Conn, timeout time.Duration) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &Client{nc: nc, js: js, timeout: timeout}, nil
}

// State reads a host's state (mutable when it has none) and its KV revision.
func (c *Client) State(ctx context.Context, host string) (event.State, uint64, error) {
	if err := event.ValidHost(host); err != nil {
		return "", 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	kv, err := transport.StateBucket(ctx, c.js)
	if err != nil {
		return "", 0, err
	}
	e, err := kv.Get(ctx, host)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return event.StateMutable, 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("read state of %s: %w", host, err)
	}
	st, err := transport.EntryState(e)
	return st, e.Revision(), err
}

// SetState moves host to state on behalf of by, and appends the change to
// the findings stream on drift.v1.<host>.state. Setting the current state is
// a no-op (no audit record). Concurrent changes are detected by KV revision:
// SetState re-reads and re-checks the transition instead of overwriting.
func (c *Client) SetState(ctx context.Context, host string, state event.State, by string) (event.StateChange, error) {
	if err := event.ValidHost(host); err != nil {
		return event.StateChange{}, err
	}
	if _, err := event.ParseState(string(state)); err != nil {
		return event.StateChange{}, err
	}
	if by == "" {
		return event.StateChange{}, errors.New("set state: say who asks (by)")
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := transport.EnsureStream(ctx, c.js, zerolog.Nop(), true); err != nil {
		return event.StateChange{}, err
	}
	kv, err := transport.StateBucket(ctx, c.js)
	if err != nil {
		return event.StateChange{}, err
	}
	for attempt := 0; ; attempt++ {
		from, rev := event.StateMutable, uint64(0)
		e, err := kv.Get(ctx, host)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return event.StateChange{}, fmt.Errorf("read state of %s: %w", host, err)
		default:
			if from, err = transport.EntryState(e); err != nil {
				return event.StateChange{}, fmt.Errorf("state of %s in %s: %w; fix it with a put", host, event.StateBucket, err)
			}
			rev = e.Revision()
		}
		ch := event.StateChange{Schema: event.StateChangeSchema, Host: host, From: from, To: state, By: by, Time: time.Now().UTC(), Revision: rev}
		if from == state {
			return ch, nil
		}
		if !slices.Contains(transitions[from], state) {
			return ch, fmt.Errorf("host %s: %s -> %s is not allowed (from %s: %v)", host, from, state, from, transitions[from])
		}
		if rev == 0 {
			ch.Revision, err = kv.Create(ctx, host, []byte(state))
		} else {
			ch.Revision, err = kv.Update(ctx, host, []byte(state), rev)
		}
		if err != nil {
			if attempt < 5 && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
				continue // someone else changed it: decide again on the new value
			}
			return ch, fmt.Errorf("set state of %s to %s: %w", host, state, err)
		}
		data, _ := json.Marshal(ch)
		msg := &nats.Msg{Subject: event.StateSubject(host), Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, "state-"+host+"-"+strconv.FormatUint(ch.Revision, 10))
		if _, err := c.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(event.StreamName)); err != nil {
			return ch, fmt.Errorf("host %s is now %s (revision %d) but the audit record was not stored: %w", host, state, ch.Revision, err)
		}
		return ch, nil
	}
}

// Command sends a ctl command to host and waits for its reply.
func (c *Client) Command(ctx context.Context, host, cmd string) (event.CtlReply, error) {
	if err := event.ValidHost(host); err != nil {
		return event.CtlReply{}, err
	}
	msg, err := event.NewCtlCommand(cmd, nuid.Next())
	if err != nil {
		return event.CtlReply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, event.CtlSubject(host), msg.Encode())
	if err != nil {
		return event.CtlReply{}, fmt.Errorf("ctl %s: %w", host, err)
	}
	r, err := event.DecodeCtlReply(m.Data)
	if err != nil {
		return event.CtlReply{}, fmt.Errorf("ctl %s: %w", host, err)
	}
	return r, nil
}
