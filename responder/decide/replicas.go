package decide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Replicas share their work through ClaimBucket:
//
//	inc.<host>               the host's open incident id
//	act.<incident>.<action>  who carries out an action (claimValue); Done once it ran
//	held.<incident>          an action the blast-radius limiter held for approval (heldValue)
//	replica.<name>           refreshed while the replica lives
//
// A claim whose holder stopped refreshing its liveness key before marking
// it done is taken over by another replica; a held action is in the bucket,
// not in one replica's memory, so any replica carries out its approval.

type claimValue struct {
	Replica string `json:"replica"`
	Host    string `json:"host"`
	Action  Action `json:"action"`
	Done    bool   `json:"done,omitempty"`
}

type heldValue struct {
	Host    string `json:"host"`
	Action  Action `json:"action"`
	Replica string `json:"replica"`
}

func actKey(incident string, act Action) string { return "act." + incident + "." + string(act) }
func heldKey(incident string) string            { return "held." + incident }
func replicaKey(name string) string             { return "replica." + name }

// startReplica announces this replica and keeps its liveness key fresh,
// sweeping for claims that dead replicas left unfinished.
func (r *Responder) startReplica(ctx context.Context) error {
	if strings.ContainsAny(r.cfg.Replica, ". *>") {
		return fmt.Errorf("replica name %q: no dots, spaces or wildcards (it is a key in %s)", r.cfg.Replica, ClaimBucket)
	}
	if _, err := r.claims.Put(ctx, replicaKey(r.cfg.Replica), []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return fmt.Errorf("announce replica in %s: %w", ClaimBucket, err)
	}
	r.watch.Add(1)
	go func() {
		defer r.watch.Done()
		t := time.NewTicker(r.cfg.ReplicaTimeout / 4)
		defer t.Stop()
		for {
			select {
			case <-r.stopW:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
			_, err := r.claims.Put(ctx, replicaKey(r.cfg.Replica), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
			if err == nil {
				r.sweepClaims(ctx)
			}
			cancel()
		}
	}()
	return nil
}

// stopReplica removes the liveness key: a replica that stops cleanly has
// finished its actions, and its absence is not a death to recover from.
func (r *Responder) stopReplica() {
	if r.claims == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.claims.Delete(ctx, replicaKey(r.cfg.Replica))
}

// alive reports whether replica refreshed its liveness key recently.
func (r *Responder) alive(ctx context.Context, replica string) bool {
	e, err := r.claims.Get(ctx, replicaKey(replica))
	if err != nil {
		return !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted)
	}
	return time.Since(e.Created()) < r.cfg.ReplicaTimeout
}

func parseClaim(b []byte) claimValue {
	var c claimValue
	if json.Unmarshal(b, &c) != nil {
		c.Replica = string(b)
	}
	return c
}

// claim makes one replica the one that carries out key; it reports who has
// it. A claim left unfinished by a replica that died is taken over.
func (r *Responder) claim(key, host string, act Action) (mine bool, holder string, err error) {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	val, _ := json.Marshal(claimValue{Replica: r.cfg.Replica, Host: host, Action: act})
	if _, err := r.claims.Create(ctx, key, val); err == nil {
		return true, r.cfg.Replica, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, "", err
	}
	e, err := r.claims.Get(ctx, key)
	if err != nil {
		return false, "", err
	}
	cur := parseClaim(e.Value())
	if cur.Done || (cur.Replica != r.cfg.Replica && r.alive(ctx, cur.Replica)) {
		return false, cur.Replica, nil
	}
	// The holder died (or is this replica, restarted) before the action was
	// done: carry it out; the revision check lets one replica win.
	if _, err := r.claims.Update(ctx, key, val, e.Revision()); err != nil {
		return false, cur.Replica, nil
	}
	r.stats.Takeovers.Add(1)
	inc := strings.TrimSuffix(strings.TrimPrefix(key, "act."), "."+string(act))
	r.audit(Record{Host: host, Incident: inc, Stage: StageTakeover, Action: act, Reason: fmt.Sprintf("replica %s stopped before finishing %s; taken over", cur.Replica, act)})
	return true, r.cfg.Replica, nil
}

// claimDone marks a claimed action carried out (whether or not each
// actuator succeeded: the errors are in the trail, and a retry is a person's call).
func (r *Responder) claimDone(key, host string, act Action) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	val, _ := json.Marshal(claimValue{Replica: r.cfg.Replica, Host: host, Action: act, Done: true})
	if _, err := r.claims.Put(ctx, key, val); err != nil {
		r.log.Warn().Err(err).Str("claim", key).Msg("could not mark the action done; another replica may repeat it")
	}
}

// sweepClaims finds actions claimed by replicas that died before finishing
// them and queues them on their hosts.
func (r *Responder) sweepClaims(ctx context.Context) {
	lister, err := r.claims.ListKeysFiltered(ctx, "act.>")
	if err != nil {
		return
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		e, err := r.claims.Get(ctx, k)
		if err != nil {
			continue
		}
		c := parseClaim(e.Value())
		if c.Done || c.Host == "" || c.Replica == r.cfg.Replica || r.alive(ctx, c.Replica) {
			continue
		}
		parts := strings.Split(k, ".") // act.<incident>.<action>
		if len(parts) != 3 {
			continue
		}
		incID, act := parts[1], Action(parts[2])
		hs := r.host(c.Host)
		r.enqueue(hs, func() {
			hs.mu.Lock()
			defer hs.mu.Unlock()
			inc, err := r.incident(hs, c.Host)
			if err != nil || inc.ID != incID {
				return // closed meanwhile
			}
			r.act(hs, inc, act, Stages{Decided: time.Now()})
		})
	}
}

// hold records an action the limiter held; hs.mu is held.
func (r *Responder) hold(inc *Incident, act Action, why string, st Stages) {
	if rank(act) > rank(inc.Held) {
		inc.Held = act
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	val, _ := json.Marshal(heldValue{Host: inc.Host, Action: inc.Held, Replica: r.cfg.Replica})
	if _, err := r.claims.Put(ctx, heldKey(inc.ID), val); err != nil {
		r.stats.ActionErrors.Add(1)
		r.audit(Record{Host: inc.Host, Incident: inc.ID, Stage: StageHold, Action: act, Error: "recording the hold: " + err.Error()})
	}
	r.stats.Held.Add(1)
	r.audit(Record{Host: inc.Host, Incident: inc.ID, Stage: StageHold, Action: act, Reason: why + "; approve with: driftctl approve " + inc.ID, Events: inc.Events, Stages: st})
}

// Approval is the message on ApproveSubject; a bare incident id works too.
type Approval struct {
	Incident string `json:"incident"`
	By       string `json:"by,omitempty"`
}

// onApprove carries out a held action. Every replica hears the approval;
// the one that removes the hold from ClaimBucket acts and replies.
func (r *Responder) onApprove(m *nats.Msg) {
	var a Approval
	if err := json.Unmarshal(m.Data, &a); err != nil {
		a.Incident = strings.TrimSpace(string(m.Data))
	}
	if a.Incident == "" || strings.ContainsAny(a.Incident, ". *>") {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	e, err := r.claims.Get(ctx, heldKey(a.Incident))
	if err != nil {
		return // not held (unknown, or approved already)
	}
	var h heldValue
	if json.Unmarshal(e.Value(), &h) != nil || checkHost(h.Host) != nil {
		return
	}
	if err := r.claims.Delete(ctx, heldKey(a.Incident), jetstream.LastRevision(e.Revision())); err != nil {
		return // another replica took it
	}
	if m.Reply != "" {
		_ = m.Respond([]byte(`{"ok":true}`))
	}
	hs := r.host(h.Host)
	r.enqueue(hs, func() {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		inc, err := r.incident(hs, h.Host)
		if err != nil || inc.ID != a.Incident {
			r.audit(Record{Host: h.Host, Incident: a.Incident, Stage: StageApprove, Action: h.Action, Reason: "approved by " + a.By + ", but the incident is closed: nothing done"})
			return
		}
		inc.Held = ""
		r.audit(Record{Host: h.Host, Incident: inc.ID, Stage: StageApprove, Action: h.Action, Reason: "approved by " + a.By, Events: inc.Events})
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		// Count the host against the window even though it passed the limit.
		_, _ = r.limit.Put(ctx, "host."+h.Host, []byte(r.cfg.Replica))
		cancel()
		r.act(hs, inc, h.Action, Stages{Decided: time.Now()})
	})
}
