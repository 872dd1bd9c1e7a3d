package decide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// The control plane keeps each host's state (event.StateBucket). The
// responder writes it when it cordons or destroys a host, so driftctl status
// shows it and a restarted sensor closes its gate again; and it reads it,
// because a host leaving cordoned (driftctl uncordon) ends the host's
// incident: the next finding opens a new one and is acted on again.

// stateBy is who the responder says it is in host state changes.
func (r *Responder) stateBy() string { return "driftresponder/" + r.cfg.Replica }

// startStateSync opens the host state bucket (creating it and the findings
// stream, which keeps state change records, when missing) and watches it
// until the responder closes. It returns once the bucket's current content
// has been read.
func (r *Responder) startStateSync(ctx context.Context) error {
	ctl, err := control.New(r.nc, 5*time.Second)
	if err != nil {
		return err
	}
	if err := ctl.Setup(ctx); err != nil {
		return fmt.Errorf("host states: %w (driftresponder -state-sync=false runs without them)", err)
	}
	kv, err := r.js.KeyValue(ctx, event.StateBucket)
	if err != nil {
		return fmt.Errorf("host states: bucket %s: %w", event.StateBucket, err)
	}
	// The watch keeps r.ctx, not the setup context: its ordered consumer
	// reuses it whenever it recreates itself.
	w, err := kv.WatchAll(r.ctx, jetstream.IncludeHistory())
	if err != nil {
		return fmt.Errorf("host states: watch %s: %w", event.StateBucket, err)
	}
	r.ctl, r.states = ctl, kv
	ready := make(chan struct{})
	r.watch.Add(1)
	go r.watchStates(w, ready)
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("host states: reading %s: %w", event.StateBucket, ctx.Err())
	}
}

// leave is a host moving out of cordoned or destroyed (uncordon, or a
// replacement host under the same name).
type leave struct {
	host     string
	from, to event.State
	at       time.Time // the server's time of the change
	revision uint64
}

func stateOf(e jetstream.KeyValueEntry) (event.State, error) {
	if e.Operation() != jetstream.KeyValuePut {
		return event.StateMutable, nil
	}
	return event.ParseState(string(e.Value()))
}

func held(st event.State) bool { return st == event.StateCordoned || st == event.StateDestroyed }

// watchStates follows every host's state. History is read too, so that an
// uncordon made while this replica was down still closes the incident.
func (r *Responder) watchStates(w jetstream.KeyWatcher, ready chan struct{}) {
	defer r.watch.Done()
	defer w.Stop()
	cur := map[string]event.State{}
	pending := map[string]leave{} // while reading history: the last leave per host
	initial := true
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-r.stopW:
			return
		case u, ok := <-w.Updates():
			if !ok {
				if initial {
					close(ready)
				}
				return
			}
			e = u
		}
		if e == nil {
			if initial {
				initial = false
				close(ready)
				for _, l := range pending {
					r.closeIncident(l)
				}
				pending = nil
			}
			continue
		}
		st, err := stateOf(e)
		if err != nil {
			r.log.Warn().Err(err).Str("host", e.Key()).Uint64("revision", e.Revision()).Msg("ignoring bad host state")
			continue
		}
		host := e.Key()
		if e.Operation() == jetstream.KeyValuePut {
			r.trackHost(host, st)
		} else {
			r.trackHost(host, event.StateDestroyed) // removed from the fleet
		}
		old, known := cur[host]
		cur[host] = st
		left := known && held(old) && !held(st)
		switch {
		case initial && left:
			pending[host] = leave{host: host, from: old, to: st, at: e.Created(), revision: e.Revision()}
		case initial && held(st):
			delete(pending, host)
		case left:
			r.closeIncident(leave{host: host, from: old, to: st, at: e.Created(), revision: e.Revision()})
		}
	}
}

// closeIncident ends the host's incident if it was opened before the host
// left cordoned; one opened after it is a new drift and stays.
func (r *Responder) closeIncident(l leave) {
	if checkHost(l.host) != nil {
		return
	}
	hs := r.host(l.host)
	r.goAct(func() {
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		defer cancel()
		hs.mu.Lock()
		var report func()
		e, err := r.claims.Get(ctx, "inc."+l.host)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			r.dropIncident(hs, "") // closed by another replica
		case err != nil:
			r.stats.ActionErrors.Add(1)
			r.audit(Record{Host: l.host, Stage: StageClose, Error: fmt.Sprintf("host is %s again but its incident could not be read: %v", l.to, err)})
		case e.Created().Before(l.at):
			report = r.endIncident(ctx, hs, l.host, e, l.to, l.revision)
		default:
			r.dropIncident(hs, string(e.Value()))
		}
		hs.mu.Unlock()
		if report != nil {
			report()
		}
	})
}

// dropIncident forgets this replica's copy of the host's incident unless it
// is live (the id ClaimBucket holds now); hs.mu is held.
func (r *Responder) dropIncident(hs *hostState, live string) {
	if hs.inc == nil || hs.inc.ID == live {
		return
	}
	hs.inc = nil
}

// endIncident deletes the host's incident claim e, if nobody changed it
// meanwhile; hs.mu is held. Every replica may try: the revision check lets
// one succeed, which gets a function that audits the close. Call it without
// hs.mu: it looks up who moved the host, which may take a moment.
func (r *Responder) endIncident(ctx context.Context, hs *hostState, host string, e jetstream.KeyValueEntry, to event.State, revision uint64) func() {
	id := string(e.Value())
	err := r.claims.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
	var acted Action
	var events []string
	if hs.inc != nil && hs.inc.ID == id {
		acted, events = hs.inc.Acted, hs.inc.Events
	}
	r.dropIncident(hs, "")
	if err == nil {
		_ = r.claims.Delete(ctx, heldKey(id)) // an approval of a closed incident does nothing
	}
	if err != nil {
		if now, gerr := r.claims.Get(ctx, e.Key()); gerr == nil && string(now.Value()) != id || errors.Is(gerr, jetstream.ErrKeyNotFound) {
			return nil // another replica closed it first
		}
		r.stats.ActionErrors.Add(1)
		r.audit(Record{Host: host, Incident: id, Stage: StageClose, Error: fmt.Sprintf("host is %s again but incident %s could not be closed: %v", to, id, err)})
		return nil
	}
	// Who moved the host is in the state change record, which SetState
	// stores right after the KV change.
	return func() {
		reason := fmt.Sprintf("host is %s again (state revision %d", to, revision)
		if by := r.changedBy(host, revision); by != "" {
			reason += ", by " + by
		}
		reason += "): incident closed; the next finding opens a new one"
		r.audit(Record{Host: host, Incident: id, Stage: StageClose, Action: acted, Reason: reason, Events: events})
	}
}

// changedBy reads who made the host's state change at revision from the
// findings stream, giving the record a moment to arrive; "" if unknown.
func (r *Responder) changedBy(host string, revision uint64) string {
	ctx, cancel := context.WithTimeout(r.ctx, time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, event.StreamName)
	if err != nil {
		return ""
	}
	for i := 0; i < 10; i++ {
		m, err := s.GetLastMsgForSubject(ctx, event.StateSubject(host))
		if err == nil {
			var ch event.StateChange
			if json.Unmarshal(m.Data, &ch) == nil && ch.Revision >= revision {
				if ch.Revision == revision {
					return ch.By
				}
				return ""
			}
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(20 * time.Millisecond):
		}
	}
	return ""
}

// stillOpen checks, before an action is skipped as already done, that the
// incident is still open: another replica may have closed it, or the host
// may have been uncordoned before this replica's watch saw it. In the second
// case it closes the incident now; hs.mu is held.
func (r *Responder) stillOpen(hs *hostState, host string) bool {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	e, err := r.claims.Get(ctx, "inc."+host)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		r.dropIncident(hs, "")
		return false
	case err != nil:
		return true // keep what we know; the watch will catch up
	case string(e.Value()) != hs.inc.ID:
		r.dropIncident(hs, string(e.Value()))
		return false
	}
	if r.states == nil {
		return true
	}
	se, err := r.states.Get(ctx, host)
	if err != nil {
		return true
	}
	st, err := stateOf(se)
	if err != nil || held(st) || !se.Created().After(e.Created()) {
		return true
	}
	if report := r.endIncident(ctx, hs, host, e, st, se.Revision()); report != nil {
		r.goAct(report)
	}
	return false
}

// setState records the host's new state in the control plane and audits it.
func (r *Responder) setState(inc *Incident, act Action, st event.State) {
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	ch, err := r.ctl.SetState(ctx, inc.Host, st, r.stateBy())
	rec := Record{Host: inc.Host, Incident: inc.ID, Stage: StageState, Action: act, Events: inc.Events, Actuator: "control-plane"}
	switch {
	case err != nil:
		r.stats.ActionErrors.Add(1)
		rec.Error = "set host state: " + err.Error()
	case ch.From == ch.To:
		rec.Reason = fmt.Sprintf("host state already %s", st)
	default:
		rec.Reason = fmt.Sprintf("host state %s -> %s (revision %d)", ch.From, ch.To, ch.Revision)
	}
	r.audit(rec)
}
