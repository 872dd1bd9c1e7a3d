package transport

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
)

// StateTok is the last token of the subject that keeps host state changes,
// drift.v1.<host>.state, in the findings stream.
const StateTok = "state"

// StateSubject is where the audit record of a host's state change goes.
func StateSubject(host string) string { return event.SubjectRoot + "." + host + "." + StateTok }

// StateChangeSchema names the version of the state change audit record.
const StateChangeSchema = "driftsensor.state/v1"

// StateChange is the audit record of one change of a host's state.
type StateChange struct {
	Schema   string      `json:"schema"`
	Host     string      `json:"host"`
	From     event.State `json:"from"`
	To       event.State `json:"to"`
	By       string      `json:"by"` // who asked: a person, the responder
	Time     time.Time   `json:"time"`
	Revision uint64      `json:"revision"` // KV revision holding the new state
}

// transitions lists the changes SetState allows. A destroyed host is
// replaced, never revived; a cordoned host goes back to sealed (uncordon)
// before it can be unsealed.
var transitions = map[event.State][]event.State{
	event.StateMutable:   {event.StateSealed, event.StateCordoned, event.StateDestroyed},
	event.StateSealed:    {event.StateMutable, event.StateCordoned, event.StateDestroyed},
	event.StateCordoned:  {event.StateSealed, event.StateDestroyed},
	event.StateDestroyed: nil,
}

// ParseState checks a state name.
func ParseState(s string) (event.State, error) {
	st := event.State(s)
	if _, ok := transitions[st]; !ok {
		return "", fmt.Errorf("host state %q (want mutable, sealed, cordoned or destroyed)", s)
	}
	return st, nil
}

// stateBucket opens the host state bucket, creating it when missing.
func stateBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, event.StateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, StateBucketConfig(Settings{}))
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, event.StateBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w", event.StateBucket, err)
	}
	return kv, nil
}

// entryState reads a KV entry; a deleted or purged key means mutable.
func entryState(e jetstream.KeyValueEntry) (event.State, error) {
	if e == nil || e.Operation() != jetstream.KeyValuePut {
		return event.StateMutable, nil
	}
	return ParseState(string(e.Value()))
}

// Control changes host states and sends commands; driftctl and the
// responder use it.
type Control struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	timeout time.Duration
}

// NewControl wraps a connection (see Connect). timeout bounds each call; 0 means 2s.
func NewControl(nc *nats.Conn, timeout time.Duration) (*Control, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &Control{nc: nc, js: js, timeout: timeout}, nil
}

// State reads a host's state (mutable when it has none) and its KV revision.
func (c *Control) State(ctx context.Context, host string) (event.State, uint64, error) {
	if err := event.ValidHost(host); err != nil {
		return "", 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	kv, err := stateBucket(ctx, c.js)
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
	st, err := entryState(e)
	return st, e.Revision(), err
}

// SetState moves host to state on behalf of by, and appends the change to
// the findings stream on drift.v1.<host>.state. Setting the current state is
// a no-op (no audit record). Concurrent changes are detected by KV revision:
// SetState re-reads and re-checks the transition instead of overwriting.
func (c *Control) SetState(ctx context.Context, host string, state event.State, by string) (StateChange, error) {
	if err := event.ValidHost(host); err != nil {
		return StateChange{}, err
	}
	if _, err := ParseState(string(state)); err != nil {
		return StateChange{}, err
	}
	if by == "" {
		return StateChange{}, errors.New("set state: say who asks (by)")
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := ensureStream(ctx, c.js, zerolog.Nop(), true); err != nil {
		return StateChange{}, err
	}
	kv, err := stateBucket(ctx, c.js)
	if err != nil {
		return StateChange{}, err
	}
	for attempt := 0; ; attempt++ {
		from, rev := event.StateMutable, uint64(0)
		e, err := kv.Get(ctx, host)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return StateChange{}, fmt.Errorf("read state of %s: %w", host, err)
		default:
			if from, err = entryState(e); err != nil {
				return StateChange{}, fmt.Errorf("state of %s in %s: %w; fix it with a put", host, event.StateBucket, err)
			}
			rev = e.Revision()
		}
		ch := StateChange{Schema: StateChangeSchema, Host: host, From: from, To: state, By: by, Time: time.Now().UTC(), Revision: rev}
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
		msg := &nats.Msg{Subject: StateSubject(host), Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, "state-"+host+"-"+strconv.FormatUint(ch.Revision, 10))
		if _, err := c.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(event.StreamName)); err != nil {
			return ch, fmt.Errorf("host %s is now %s (revision %d) but the audit record was not stored: %w", host, state, ch.Revision, err)
		}
		return ch, nil
	}
}

// Command sends a ctl command to host and waits for its reply.
func (c *Control) Command(ctx context.Context, host, cmd string) (Reply, error) {
	if err := event.ValidHost(host); err != nil {
		return Reply{}, err
	}
	msg, err := event.NewCtlCommand(cmd, nuid.Next())
	if err != nil {
		return Reply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, event.CtlSubject(host), msg.Encode())
	if err != nil {
		return Reply{}, fmt.Errorf("ctl %s: %w", host, err)
	}
	r, err := event.DecodeCtlReply(m.Data)
	if err != nil {
		return Reply{}, fmt.Errorf("ctl %s: %w", host, err)
	}
	return r, nil
}
