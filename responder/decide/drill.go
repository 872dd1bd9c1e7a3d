package decide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// Drills on a live fleet: the operator's signed, short-lived marker in the
// DrillBucket declares a drill on a host; the responder trusts only the
// operator keys of its configuration (Config.DrillKeys). A finding the
// marker covers (arrived while it is valid, of a kind its techniques
// produce, every path inside the drill's own directory) belongs to the
// drill's incident, drill-<marker id>: in record mode it is decided and
// recorded only; in cordon mode the host is cordoned for real (verified),
// its evidence kept, and the cordon released; never destroyed. Either way
// every stage is timed in the audit trail. Any other finding, and every
// finding under an unsigned, foreign-signed or expired marker, is real.

// DrillIncidentPrefix starts the id of a drill's incident.
const DrillIncidentPrefix = "drill-"

// drillBucketTTL drops markers long after they expired.
const drillBucketTTL = time.Hour

// startDrills watches the drill markers and answers arm requests.
func (r *Responder) startDrills(ctx context.Context) error {
	kv, err := r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: event.DrillBucket, Description: "drill markers signed by operators (driftctl drill --host)", History: 1, TTL: drillBucketTTL,
	})
	if err != nil {
		return fmt.Errorf("drill bucket %s: %w", event.DrillBucket, err)
	}
	w, err := kv.WatchAll(r.ctx)
	if err != nil {
		return fmt.Errorf("drill bucket %s: watch: %w", event.DrillBucket, err)
	}
	r.drillKV = kv
	r.watch.Add(1)
	go func() {
		defer r.watch.Done()
		defer w.Stop()
		for {
			select {
			case <-r.stopW:
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					r.onMarker(e.Key(), e.Value(), e.Operation() == jetstream.KeyValuePut, e.Revision())
				}
			}
		}
	}()
	s, err := r.nc.Subscribe(event.DrillArmSubject, r.onArm)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", event.DrillArmSubject, err)
	}
	r.subs = append(r.subs, s)
	return nil
}

// onMarker verifies a marker put for host and keeps it, or drops the host's
// marker when it is refused or deleted; it returns the refusal. rev is the
// entry's revision in the bucket: an entry older than one already applied
// (the watch delivering late what a Get already read) changes nothing.
func (r *Responder) onMarker(host string, value []byte, put bool, rev uint64) error {
	var err error
	var m event.DrillMarker
	switch {
	case !put:
		err = errors.New("drill marker deleted")
	default:
		m, err = event.VerifyMarker(value, r.cfg.DrillKeys, time.Now())
		if err == nil && m.Host != host {
			err = fmt.Errorf("drill marker %s names host %s but is stored under %s", m.ID, m.Host, host)
		}
	}
	r.mu.Lock()
	switch {
	case rev < r.markerRev[host]:
		r.mu.Unlock()
		return err
	case err != nil:
		delete(r.markers, host)
	default:
		r.markers[host] = m
	}
	r.markerRev[host] = rev
	r.mu.Unlock()
	if err != nil && put {
		r.log.Warn().Err(err).Str("host", host).Msg("drill marker refused: findings on the host stay real")
	}
	return err
}

// drillArm is the body of an arm request.
type drillArm struct {
	Host string `json:"host"`
	ID   string `json:"id"`
}

// onArm answers driftctl before a drill starts: whether this responder
// holds the host's marker with that id and trusts it. It reads the marker
// from the bucket itself, so a finding of the drill never arrives before
// this replica knows the marker.
func (r *Responder) onArm(m *nats.Msg) {
	var req drillArm
	rep := event.CtlReply{Schema: event.CtlSchema}
	err := json.Unmarshal(m.Data, &req)
	if err == nil {
		rep.ID = req.ID
		err = checkHost(req.Host)
	}
	if err == nil {
		err = r.loadMarker(req.Host)
		if err == nil {
			r.mu.Lock()
			if got := r.markers[req.Host]; got.ID != req.ID {
				err = fmt.Errorf("the marker of %s is %s, not %s", req.Host, got.ID, req.ID)
			}
			r.mu.Unlock()
		}
	}
	rep.OK = err == nil
	if err != nil {
		rep.Error = err.Error()
	}
	_ = m.Respond(rep.Encode())
}

// loadMarker reads host's marker from the bucket and applies it.
func (r *Responder) loadMarker(host string) error {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	e, err := r.drillKV.Get(ctx, host)
	if err != nil {
		return err
	}
	return r.onMarker(host, e.Value(), true, e.Revision())
}

// drillFor returns the marker covering ev, received at at, if any. Every
// path of the finding must be inside the directory of one drill. When
// this replica holds no marker of that drill it reads the bucket first:
// driftctl arms a drill with one request, which one replica answers, so
// another replica's watch may not have delivered the marker yet (or may
// still hold the host's previous drill) when it reads the drill's first
// finding. A drill id read from the bucket in vain is not read again.
func (r *Responder) drillFor(host string, ev *event.Event, at time.Time) *event.DrillMarker {
	id := drillID(eventPaths(ev))
	if id == "" {
		return nil
	}
	r.mu.Lock()
	m, ok := r.markers[host]
	missed := r.markerMiss[host] == id
	r.mu.Unlock()
	if (!ok || m.ID != id) && !missed {
		if err := r.loadMarker(host); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			r.log.Warn().Err(err).Str("host", host).Str("drill", id).Msg("drill marker not read: the finding is real")
		}
		r.mu.Lock()
		m, ok = r.markers[host]
		if !ok || m.ID != id {
			r.markerMiss[host] = id
		}
		r.mu.Unlock()
	}
	if !ok || m.ID != id || !at.Before(m.Expires) || at.Before(m.Issued.Add(-5*time.Second)) {
		return nil
	}
	kindOK := false
	for _, t := range m.Techniques {
		kindOK = kindOK || slices.Contains(event.DrillTechniques[t], ev.Kind)
	}
	if !kindOK {
		return nil
	}
	return &m
}

// drillID is the marker id of the drill directory every path is inside
// (a component DrillDirPrefix+id), or "" if any path is outside one or
// they name different drills.
func drillID(paths []string) string {
	id := ""
	for _, p := range paths {
		_, rest, ok := strings.Cut(p, "/"+event.DrillDirPrefix)
		if !ok {
			return ""
		}
		this, _, _ := strings.Cut(rest, "/")
		if this == "" || (id != "" && this != id) {
			return ""
		}
		id = this
	}
	return id
}

// drillIncident is the incident of the drill m, shared by its findings.
func (r *Responder) drillIncident(m *event.DrillMarker) *Incident {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := DrillIncidentPrefix + m.ID
	inc := r.drillIncs[id]
	if inc == nil {
		inc = &Incident{ID: id, Host: m.Host, Opened: time.Now()}
		r.drillIncs[id] = inc
	}
	return inc
}

// decideDrill records a drill's finding on the drill's incident and, the
// first time its policy acts, runs the drill's ladder; hs.mu is held. It
// reports whether the decision is in the audit trail.
func (r *Responder) decideDrill(hs *hostState, host string, d decision) bool {
	m := d.drill
	inc := r.drillIncident(m)
	inc.Events = append(inc.Events, d.events...)
	if rank(d.act) > rank(inc.Decided) {
		inc.Decided, inc.Rule, inc.Reason = d.act, d.rule, d.reason
	}
	st := d.st
	st.Decided = time.Now()
	r.stats.Decisions.Add(1)
	rec := Record{Host: host, Incident: inc.ID, Stage: StageDecision, Action: d.act, Rule: d.rule, Events: d.events, Stages: st,
		Reason: fmt.Sprintf("%s (drill %s, mode %s, signed by an operator)", d.reason, m.ID, m.Mode), DryRun: m.Mode == event.DrillRecord}
	recorded, again := true, false
	if d.dedup != "" {
		var err error
		again, err = r.auditSync(rec, d.dedup)
		recorded = err == nil
	} else {
		r.audit(rec)
	}
	if d.act == ActAlert || again || rank(d.act) <= rank(inc.Acted) {
		return recorded
	}
	inc.Acted = d.act
	if m.Mode == event.DrillRecord || r.cfg.DryRun {
		r.audit(Record{Host: host, Incident: inc.ID, Stage: StageDryRun, Action: d.act, DryRun: true, Events: inc.Events, Stages: st,
			Reason: fmt.Sprintf("drill %s records only: would %s", m.ID, d.act)})
		r.keepEvidence(inc, m.ID, st)
		return recorded
	}
	// A cordon the drill did not make is never lifted by it.
	prior := event.StateCordoned
	if r.ctl != nil {
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		if st, _, err := r.ctl.State(ctx, host); err == nil {
			prior = st
		}
		cancel()
	}
	if !r.cordon(inc, st) {
		// Another replica carries out this drill's cordon: its evidence
		// and its release are that replica's too (a release here would
		// open the host in the middle of its cordon).
		return recorded
	}
	r.keepEvidence(inc, m.ID, st)
	if d.act == ActDestroy {
		r.audit(Record{Host: host, Incident: inc.ID, Stage: StageSkip, Action: ActDestroy, Events: inc.Events,
			Reason: "a drill never destroys: cordon, evidence and release instead"})
	}
	r.release(hs, inc, prior, st)
	return recorded
}

// release lifts the cordon a drill made: the host's state back to sealed
// (its sensor opens its gate), and external cordons undone; hs.mu is held.
func (r *Responder) release(hs *hostState, inc *Incident, prior event.State, st Stages) {
	rec := Record{Host: inc.Host, Incident: inc.ID, Stage: StageRelease, Action: ActCordon, Events: inc.Events}
	var errs []string
	switch {
	case hs.inc != nil && rank(hs.inc.Acted) >= rank(ActCordon):
		errs = append(errs, fmt.Sprintf("not released: the host is held by incident %s", hs.inc.ID))
	case r.ctl == nil:
		errs = append(errs, "not released: the responder runs without the control plane (-state-sync=false); driftctl uncordon "+inc.Host)
	case held(prior):
		// Its sensor reported drift, so it runs sealed; a host cordoned or
		// destroyed before the drill stays so.
		errs = append(errs, fmt.Sprintf("not released: the host was %s before the drill", prior))
	default:
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		if _, err := r.ctl.SetState(ctx, inc.Host, event.StateSealed, r.stateBy()+" (drill release)"); err != nil {
			errs = append(errs, "set host state sealed: "+err.Error())
		}
		cancel()
		t := r.target(inc, ActCordon)
		for _, c := range r.cfg.Cordoners {
			if u, ok := c.(actuator.Uncordoner); ok {
				ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ActTimeout)
				if err := u.Uncordon(ctx, t); err != nil {
					errs = append(errs, c.Name()+": "+err.Error())
				}
				cancel()
			}
		}
	}
	st.Released = time.Now()
	rec.Stages = st
	if len(errs) > 0 {
		r.stats.ActionErrors.Add(1)
		rec.Error = strings.Join(errs, "; ")
	} else {
		rec.Reason = "drill over: cordon released"
	}
	r.audit(rec)
}
