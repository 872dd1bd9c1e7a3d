package publish

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// WatchOK is the heartbeat's state_watch when the watch on the host's state
// is established and has delivered the current value.
const WatchOK = "ok"

var errWatchStopped = errors.New("state watch stopped")

// WatchState calls fn with the host's state in the control plane and again
// on every change, until ctx ends or the publisher closes. When the control
// plane holds no state for the host, fn gets StateNone: a host that boots
// sealed stays sealed, and one that does not stays mutable.
//
// The watch follows the control plane through every fault: it starts when
// the connection first comes up (the server may be down at start), starts
// over after every reconnect and whenever the bucket is deleted or recreated
// (a wiped store, driftctl init again), and each time reads the state anew
// and calls fn with it. StateWatch says how it is doing; heartbeats carry it.
// A value that is not a state is logged, counted as rejected and skipped.
// It returns no error: a control plane that is not there yet is waited for.
func (p *Publisher) WatchState(ctx context.Context, fn func(event.State)) error {
	p.setWatch("starting")
	p.wg.Add(1)
	go p.watchLoop(ctx, fn)
	return nil
}

// StateWatch is the health of the state watch: WatchOK, or why the state
// applied may be stale; "" when no watch runs.
func (p *Publisher) StateWatch() string {
	s := p.watch.Load()
	switch {
	case s == nil:
		return ""
	case *s == WatchOK && !p.nc.IsConnected():
		return notConnected // the watch resumes after the reconnect
	}
	return *s
}

const notConnected = "not connected to NATS: the state applied may be stale"

func (p *Publisher) setWatch(s string) { p.watch.Store(&s) }

// watchEvery is how often the watch checks that its bucket is the same one,
// and retries a watch that could not be set up.
func (p *Publisher) watchEvery() time.Duration {
	return min(max(8*p.opts.ReconnectWait, 100*time.Millisecond), 5*time.Second)
}

func (p *Publisher) watchLoop(ctx context.Context, fn func(event.State)) {
	defer p.wg.Done()
	retry := time.NewTicker(p.watchEvery())
	defer retry.Stop()
	var logged string
	var pos watchPos
	for {
		why := notConnected
		if p.nc.IsConnected() {
			err := p.watchOnce(ctx, fn, &pos)
			if errors.Is(err, errWatchStopped) {
				return
			}
			why = err.Error()
			if errors.Is(err, errReconnected) {
				p.setWatch(why)
				continue // at once: nothing to wait for
			}
		}
		p.setWatch(why)
		if why != logged {
			p.log.Warn().Str("state_watch", why).Msg("host state watch down; re-establishing it")
			logged = why
		}
		select {
		case <-ctx.Done():
			return
		case <-p.done:
			return
		case <-p.reconn:
		case <-retry.C:
		}
	}
}

var errReconnected = errors.New("reconnected to NATS: re-reading the state")

// watchPos is where the last watch left off, so the next one resumes there:
// a change made while the watch was down (cordoned, then sealed again) is
// still handed over, in order, not only the state it ended in.
type watchPos struct {
	created time.Time   // of the bucket the revision belongs to
	rev     uint64      // last revision handed over; 0: none
	state   event.State // the state handed over last
}

// stateKV opens the state bucket, creating it only when the sensor may (mayCreate).
func (p *Publisher) stateKV(ctx context.Context) (jetstream.KeyValue, error) {
	if p.mayCreate() {
		return transport.StateBucket(ctx, p.js)
	}
	kv, err := p.js.KeyValue(ctx, event.StateBucket)
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w (driftctl init creates it)", event.StateBucket, err)
	}
	return kv, nil
}

// bucketCreated is when the state bucket's stream was made: a new value
// means it was deleted and created again.
func (p *Publisher) bucketCreated(ctx context.Context) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.AckTimeout)
	defer cancel()
	s, err := p.js.Stream(ctx, "KV_"+event.StateBucket)
	if err != nil {
		return time.Time{}, err
	}
	return s.CachedInfo().Created, nil
}

// watchOnce sets up one watch and follows it until it must start over; the
// error says why.
func (p *Publisher) watchOnce(ctx context.Context, fn func(event.State), pos *watchPos) error {
	setup, cancel := context.WithTimeout(ctx, p.opts.AckTimeout)
	kv, err := p.stateKV(setup)
	cancel()
	if err != nil {
		return err
	}
	created, err := p.bucketCreated(ctx)
	if err != nil {
		return fmt.Errorf("KV bucket %s: %w", event.StateBucket, err)
	}
	// The watch keeps wctx: its ordered consumer uses it again whenever it
	// recreates itself, so it must not be the setup timeout.
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var opts []jetstream.WatchOpt
	resume := pos.rev > 0 && pos.created.Equal(created)
	if resume {
		opts = append(opts, jetstream.ResumeFromRevision(pos.rev+1))
	} else {
		*pos = watchPos{created: created}
	}
	w, err := kv.Watch(wctx, p.host, opts...)
	if err != nil {
		return fmt.Errorf("watch %s/%s: %w", event.StateBucket, p.host, err)
	}
	defer w.Stop()
	check := time.NewTicker(p.watchEvery())
	defer check.Stop()
	initial := true
	for {
		select {
		case <-ctx.Done():
			return errWatchStopped
		case <-p.done:
			return errWatchStopped
		case <-p.reconn:
			return errReconnected
		case <-check.C:
			now, err := p.bucketCreated(ctx)
			switch {
			case errors.Is(err, jetstream.ErrStreamNotFound):
				return fmt.Errorf("KV bucket %s was deleted: the state applied may be stale (driftctl init creates it)", event.StateBucket)
			case err == nil && !now.Equal(created):
				return fmt.Errorf("KV bucket %s was recreated: re-reading the state", event.StateBucket)
			}
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the state watch ended")
			}
			if e == nil { // end of the initial values
				switch {
				case initial && resume:
					fn(pos.state) // nothing changed while the watch was down: the same state, read anew
				case initial:
					fn(event.StateNone) // no key: the control plane has not decided
				}
				initial = false
				p.setWatch(WatchOK)
				continue
			}
			pos.rev = e.Revision()
			st, err := transport.EntryState(e)
			if err != nil {
				p.rejected.Add(1)
				p.log.Error().Err(err).Str("bucket", event.StateBucket).Uint64("revision", e.Revision()).Msg("ignoring bad host state")
			} else {
				pos.state = st
				p.stateRev.Store(e.Revision())
				fn(st)
			}
			if initial { // the key's current value is the initial one
				initial = false
				p.setWatch(WatchOK)
			}
		}
	}
}

// StateRevision is the KV revision of the state WatchState last passed on:
// the sensor records it with each state it applies.
func (p *Publisher) StateRevision() uint64 { return p.stateRev.Load() }
