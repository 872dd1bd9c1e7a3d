package decide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// QueueGroup is the NATS queue group replicas share findings in.
const QueueGroup = "driftresponder"

// ApproveSubject carries approvals of held actions (driftctl approve INCIDENT).
const ApproveSubject = event.SubjectRoot + ".ctl.approve"

// CtlSchema is the command format on a host's ctl subject.
const CtlSchema = "driftsensor.ctl/v1"

// Buckets of the state replicas share.
const (
	ClaimBucket = "drift_responder"       // inc.<host> -> incident id; act.<incident>.<action> -> replica
	LimitBucket = "drift_responder_limit" // slot.<n>, host.<host>; keys expire after the window
)

// Config is the responder's wiring and policy.
type Config struct {
	Replica string  // this replica's name in the audit trail
	Policy  *Policy // DefaultPolicy if nil
	DryRun  bool    // decide and record, never act
	// NoStateSync leaves host states in the control plane alone: a cordon
	// or destroy is not written to the state bucket, and an uncordon does
	// not close the host's incident.
	NoStateSync bool

	CtlCordon  bool          // send cordon on the host's ctl subject (the host's tc gate)
	CtlTimeout time.Duration // wait for the sensor's reply; 2s if 0
	Cordoners  []actuator.Cordoner
	Destroyers []actuator.Destroyer

	Prober        actuator.Prober // verifies cordons; none: not verified
	ProbeInterval time.Duration   // per probe; 20ms if 0
	VerifyTimeout time.Duration   // give up verifying after; 10s if 0
	ActTimeout    time.Duration   // per actuator; 30s if 0

	HeartbeatInterval time.Duration // the sensors' interval; 0 disables the silence check
	MissedBeats       int           // silence of this many intervals fires the switch; 3 if 0
	// GapCheck fires the switch on a gap in a host's finding sequence. Each
	// replica of a queue group sees only part of the sequence: enable it with
	// one replica only.
	GapCheck bool

	MaxHosts   int           // at most this many hosts acted on per window; 0: no limit
	MaxPercent float64       // at most this share of the known fleet (0-100); 0: no limit
	Window     time.Duration // of the limiter; 10m if 0

	Log zerolog.Logger
}

// Stats are running counts, for tests and metrics.
type Stats struct {
	Findings, Heartbeats, Rejected, Duplicates atomic.Uint64
	Decisions, Actions, Held, Skipped          atomic.Uint64
	ActionErrors, AuditErrors                  atomic.Uint64
}

// Incident groups the findings of one host.
type Incident struct {
	ID      string
	Host    string
	Opened  time.Time
	Events  []string
	Decided Action // the most severe decision so far
	Acted   Action // the most severe action carried out (or, in dry-run, recorded)
	Held    Action // an action waiting for approval
	Rule    string
	Reason  string
}

type hostState struct {
	mu  sync.Mutex // serialises decisions and actions on the host
	inc *Incident

	// Guarded by Responder.mu.
	lastBeat    time.Time
	beatSeq     uint64
	lost        uint64
	spoolLost   uint64
	lastSeq     uint64
	silentFired bool
}

// Responder is one replica.
type Responder struct {
	cfg    Config
	log    zerolog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	claims jetstream.KeyValue
	limit  jetstream.KeyValue
	states jetstream.KeyValue // host states; nil with NoStateSync
	ctl    *transport.Control // writes host states

	mu      sync.Mutex
	hosts   map[string]*hostState
	seen    *idSet
	pending map[string]string // incident id -> host, held for approval

	subs      []*nats.Subscription
	ctx       context.Context // ends actions still running at Close
	cancel    context.CancelFunc
	closing   bool           // under mu: no new actions
	acts      sync.WaitGroup // actions in flight
	watch     sync.WaitGroup // the silence watcher
	stopW     chan struct{}
	closeOnce sync.Once
	stats     Stats
}

// New prepares a replica on nc; Start makes it listen.
func New(nc *nats.Conn, cfg Config) (*Responder, error) {
	if cfg.Policy == nil {
		cfg.Policy = DefaultPolicy()
	}
	if cfg.Replica == "" {
		cfg.Replica = "driftresponder-" + nuid.Next()[:8]
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.CtlTimeout, 2*time.Second)
	def(&cfg.ProbeInterval, 20*time.Millisecond)
	def(&cfg.VerifyTimeout, 10*time.Second)
	def(&cfg.ActTimeout, 30*time.Second)
	def(&cfg.Window, 10*time.Minute)
	if cfg.MissedBeats <= 0 {
		cfg.MissedBeats = 3
	}
	if cfg.MaxPercent < 0 || cfg.MaxPercent > 100 {
		return nil, fmt.Errorf("responder: max percent %v: want 0-100", cfg.MaxPercent)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("responder: jetstream: %w", err)
	}
	return &Responder{
		cfg: cfg, log: cfg.Log.With().Str("replica", cfg.Replica).Logger(), nc: nc, js: js,
		hosts: map[string]*hostState{}, seen: newIDSet(1 << 16), pending: map[string]string{},
	}, nil
}

// Start creates the audit stream and shared buckets if missing and subscribes.
func (r *Responder) Start(ctx context.Context) error {
	if err := ensureAuditStream(ctx, r.js); err != nil {
		return fmt.Errorf("responder: audit stream %s: %w", event.AuditStream, err)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.stopW = make(chan struct{})
	var err error
	if r.claims, err = r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: ClaimBucket, Description: "driftresponder incidents and action claims", History: 1,
	}); err != nil {
		return fmt.Errorf("responder: bucket %s: %w", ClaimBucket, err)
	}
	if r.limit, err = r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: LimitBucket, Description: "driftresponder blast-radius window", History: 1, TTL: r.cfg.Window,
	}); err != nil {
		return fmt.Errorf("responder: bucket %s: %w", LimitBucket, err)
	}
	if !r.cfg.NoStateSync {
		if err := r.startStateSync(ctx); err != nil {
			return fmt.Errorf("responder: %w", err)
		}
	}
	for _, k := range []event.Kind{event.KindFile, event.KindExec, event.KindNet, event.KindSensor} {
		s, err := r.nc.QueueSubscribe(event.SubjectRoot+".*."+string(k), QueueGroup, r.onFinding)
		if err != nil {
			return fmt.Errorf("responder: subscribe %s findings: %w", k, err)
		}
		r.subs = append(r.subs, s)
	}
	// Heartbeats and approvals go to every replica: each one's dead man's
	// switch needs every beat, and the replica holding an incident must see
	// its approval. Claims in ClaimBucket keep the action single.
	s, err := r.nc.Subscribe(event.SubjectRoot+".*."+event.HeartbeatTok, r.onHeartbeat)
	if err != nil {
		return fmt.Errorf("responder: subscribe heartbeats: %w", err)
	}
	r.subs = append(r.subs, s)
	if s, err = r.nc.Subscribe(ApproveSubject, r.onApprove); err != nil {
		return fmt.Errorf("responder: subscribe approvals: %w", err)
	}
	r.subs = append(r.subs, s)
	if err := r.nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("responder: flush subscriptions: %w", err)
	}
	if r.cfg.HeartbeatInterval > 0 {
		r.watch.Add(1)
		go r.watchSilence()
	}
	r.log.Info().Bool("dry_run", r.cfg.DryRun).Msg("responder started")
	return nil
}

// Close unsubscribes, lets running actions finish, and flushes the audit trail.
func (r *Responder) Close() {
	r.closeOnce.Do(r.close)
}

func (r *Responder) close() {
	for _, s := range r.subs {
		_ = s.Unsubscribe()
	}
	if r.stopW != nil {
		close(r.stopW)
	}
	r.watch.Wait()
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	r.acts.Wait()
	if r.cancel != nil {
		r.cancel()
	}
	select {
	case <-r.js.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
	}
}

// goAct runs f in the background unless the responder is closing.
func (r *Responder) goAct(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return
	}
	r.acts.Add(1)
	go func() {
		defer r.acts.Done()
		f()
	}()
}

// Stats returns the running counts.
func (r *Responder) Stats() *Stats { return &r.stats }

// Incident returns a copy of the host's incident as this replica knows it.
func (r *Responder) Incident(host string) (Incident, bool) {
	hs := r.host(host)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.inc == nil {
		return Incident{}, false
	}
	c := *hs.inc
	c.Events = append([]string(nil), c.Events...)
	return c, true
}

func (r *Responder) host(name string) *hostState {
	r.mu.Lock()
	defer r.mu.Unlock()
	hs := r.hosts[name]
	if hs == nil {
		hs = &hostState{}
		r.hosts[name] = hs
	}
	return hs
}

// subjectHost returns the host token of drift.v1.<host>.<tok>.
func subjectHost(subject string) (host, tok string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0]+"."+parts[1] != event.SubjectRoot {
		return "", "", false
	}
	return parts[2], parts[3], true
}

// checkHost refuses names that are not valid hosts or that collide with
// the control subjects (drift.v1.ctl.*).
func checkHost(h string) error {
	if err := event.ValidHost(h); err != nil {
		return err
	}
	if h == "ctl" {
		return errors.New(`host name "ctl" is reserved for drift.v1.ctl.* control subjects`)
	}
	return nil
}

func (r *Responder) reject(host, why string) {
	r.stats.Rejected.Add(1)
	if event.ValidHost(host) != nil {
		host = "_invalid"
	}
	r.audit(Record{Host: host, Stage: StageReject, Error: why})
}

func (r *Responder) onFinding(m *nats.Msg) {
	received := time.Now()
	host, kind, ok := subjectHost(m.Subject)
	if !ok {
		r.reject("_invalid", "unexpected subject "+m.Subject)
		return
	}
	var ev event.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		r.reject(host, fmt.Sprintf("finding on %s is not JSON: %v", m.Subject, err))
		return
	}
	switch {
	case ev.Schema != event.Schema:
		r.reject(host, fmt.Sprintf("finding %s: schema %q, want %q", ev.ID, ev.Schema, event.Schema))
		return
	case checkHost(host) != nil:
		r.reject(host, checkHost(host).Error())
		return
	case ev.Host != host:
		// Only a host's own credentials may publish under its name; a
		// finding naming another host is forged or misrouted.
		r.reject(host, fmt.Sprintf("finding %s names host %q but arrived on %s", ev.ID, ev.Host, m.Subject))
		return
	case string(ev.Kind) != kind:
		r.reject(host, fmt.Sprintf("finding %s is of kind %q but arrived on %s", ev.ID, ev.Kind, m.Subject))
		return
	case ev.ID == "":
		r.reject(host, "finding without id on "+m.Subject)
		return
	}
	if !r.seen.add(host + "/" + ev.ID) {
		r.stats.Duplicates.Add(1)
		return
	}
	r.stats.Findings.Add(1)
	hs := r.host(host)
	st := Stages{Sensed: ev.Time, Received: received}

	if r.cfg.GapCheck && ev.Seq > 0 {
		r.mu.Lock()
		last := hs.lastSeq
		if ev.Seq > last {
			hs.lastSeq = ev.Seq
		}
		r.mu.Unlock()
		if last > 0 && ev.Seq > last+1 {
			r.deadMan(host, fmt.Sprintf("findings %d-%d of %s never arrived", last+1, ev.Seq-1, host), []string{ev.ID}, st)
		}
	}

	act, rule := r.cfg.Policy.Decide(&ev)
	reason := fmt.Sprintf("%s %s", ev.Kind, ev.Action)
	if p := eventPaths(&ev); len(p) > 0 {
		reason += " " + p[0]
	}
	if ev.Kind == event.KindSensor && ev.Health != nil {
		reason += fmt.Sprintf(" (lost %d: %s)", ev.Health.LostRecords, ev.Health.Detail)
	}
	r.trigger(host, act, rule, reason, []string{ev.ID}, st)
}

func (r *Responder) onHeartbeat(m *nats.Msg) {
	host, _, ok := subjectHost(m.Subject)
	if !ok {
		return
	}
	var hb event.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		r.reject(host, fmt.Sprintf("heartbeat on %s is not JSON: %v", m.Subject, err))
		return
	}
	if hb.Schema != event.HeartbeatSchema || hb.Host != host || checkHost(host) != nil {
		r.reject(host, fmt.Sprintf("heartbeat on %s for host %q with schema %q refused", m.Subject, hb.Host, hb.Schema))
		return
	}
	r.stats.Heartbeats.Add(1)
	now := time.Now()
	hs := r.host(host)
	var why []string
	r.mu.Lock()
	if !hs.lastBeat.IsZero() && hb.Seq < hs.beatSeq {
		why = append(why, fmt.Sprintf("heartbeat sequence went back from %d to %d (sensor restarted or replaced)", hs.beatSeq, hb.Seq))
	}
	if hb.Counters.LostRecords > hs.lost {
		why = append(why, fmt.Sprintf("sensor lost %d kernel records", hb.Counters.LostRecords-hs.lost))
	}
	if hb.Counters.SpoolLost > hs.spoolLost {
		why = append(why, fmt.Sprintf("sensor dropped %d findings from a full spool", hb.Counters.SpoolLost-hs.spoolLost))
	}
	resumed := hs.silentFired
	hs.lastBeat, hs.beatSeq, hs.silentFired = now, hb.Seq, false
	hs.lost = max(hs.lost, hb.Counters.LostRecords)
	hs.spoolLost = max(hs.spoolLost, hb.Counters.SpoolLost)
	r.mu.Unlock()
	if resumed {
		r.audit(Record{Host: host, Stage: StageAlert, Reason: "heartbeats resumed after the dead man's switch fired"})
	}
	if len(why) > 0 {
		r.deadMan(host, strings.Join(why, "; "), nil, Stages{Sensed: hb.Time, Received: now})
	}
}

// watchSilence fires the dead man's switch for hosts whose heartbeats stopped.
func (r *Responder) watchSilence() {
	defer r.watch.Done()
	iv := r.cfg.HeartbeatInterval
	limit := time.Duration(r.cfg.MissedBeats) * iv
	t := time.NewTicker(iv / 2)
	defer t.Stop()
	for {
		select {
		case <-r.stopW:
			return
		case now := <-t.C:
			var silent []string
			var since []time.Duration
			r.mu.Lock()
			for h, hs := range r.hosts {
				if !hs.lastBeat.IsZero() && !hs.silentFired && now.Sub(hs.lastBeat) > limit {
					hs.silentFired = true
					silent = append(silent, h)
					since = append(since, now.Sub(hs.lastBeat))
				}
			}
			r.mu.Unlock()
			for i, h := range silent {
				r.deadMan(h, fmt.Sprintf("no heartbeat for %s (%d intervals of %s)", since[i].Round(time.Millisecond), r.cfg.MissedBeats, iv), nil, Stages{Received: now})
			}
		}
	}
}

func (r *Responder) deadMan(host, reason string, events []string, st Stages) {
	r.audit(Record{Host: host, Stage: StageDeadMan, Action: r.cfg.Policy.DeadMan, Reason: reason, Events: events, Stages: st})
	r.trigger(host, r.cfg.Policy.DeadMan, "dead_man", reason, events, st)
}

// trigger records a decision on the host's incident and acts on it, in the
// background but one at a time per host.
func (r *Responder) trigger(host string, act Action, rule, reason string, events []string, st Stages) {
	hs := r.host(host)
	r.goAct(func() {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		inc, err := r.incident(hs, host)
		if err != nil {
			r.stats.ActionErrors.Add(1)
			r.audit(Record{Host: host, Stage: StageDecision, Action: act, Events: events, Stages: st, Error: err.Error()})
			return
		}
		// An action about to be skipped as done must belong to an incident
		// still open: an uncordon closes it, and the drift is new.
		if act.rank() >= ActCordon.rank() && act.rank() <= inc.Acted.rank() && !r.cfg.DryRun && !r.stillOpen(hs, host) {
			if inc, err = r.incident(hs, host); err != nil {
				r.stats.ActionErrors.Add(1)
				r.audit(Record{Host: host, Stage: StageDecision, Action: act, Events: events, Stages: st, Error: err.Error()})
				return
			}
		}
		inc.Events = append(inc.Events, events...)
		if act.rank() > inc.Decided.rank() {
			inc.Decided, inc.Rule, inc.Reason = act, rule, reason
		}
		st.Decided = time.Now()
		r.stats.Decisions.Add(1)
		r.audit(Record{Host: host, Incident: inc.ID, Stage: StageDecision, Action: act, Rule: rule, Reason: reason, Events: events, Stages: st, DryRun: r.cfg.DryRun})
		if act == ActAlert {
			r.audit(Record{Host: host, Incident: inc.ID, Stage: StageAlert, Action: act, Rule: rule, Reason: reason, Events: events})
			return
		}
		if act.rank() <= inc.Acted.rank() {
			return // already done
		}
		if r.cfg.DryRun {
			inc.Acted = act
			r.audit(Record{Host: host, Incident: inc.ID, Stage: StageDryRun, Action: act, Reason: "dry run: would " + string(act), Events: inc.Events, Stages: st, DryRun: true})
			return
		}
		ok, why, err := r.admit(host)
		if err != nil {
			r.stats.ActionErrors.Add(1)
			r.audit(Record{Host: host, Incident: inc.ID, Stage: StageHold, Action: act, Reason: "limiter unavailable, holding", Error: err.Error()})
			ok = false
		}
		if !ok {
			if act.rank() > inc.Held.rank() {
				inc.Held = act
			}
			r.mu.Lock()
			r.pending[inc.ID] = host
			r.mu.Unlock()
			r.stats.Held.Add(1)
			r.audit(Record{Host: host, Incident: inc.ID, Stage: StageHold, Action: act, Reason: why + "; approve with: driftctl approve " + inc.ID, Events: inc.Events, Stages: st})
			return
		}
		r.act(hs, inc, act, st)
	})
}

// incident returns the host's open incident, shared by every replica through
// ClaimBucket; hs.mu is held.
func (r *Responder) incident(hs *hostState, host string) (*Incident, error) {
	if hs.inc != nil {
		return hs.inc, nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	id := "inc-" + nuid.Next()
	key := "inc." + host
	if _, err := r.claims.Create(ctx, key, []byte(id)); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("open incident for %s: %w", host, err)
		}
		e, err := r.claims.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read incident of %s: %w", host, err)
		}
		id = string(e.Value())
	}
	hs.inc = &Incident{ID: id, Host: host, Opened: time.Now()}
	return hs.inc, nil
}

// claim makes one replica the one that carries out key; it reports who has it.
func (r *Responder) claim(key string) (mine bool, holder string, err error) {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	if _, err := r.claims.Create(ctx, key, []byte(r.cfg.Replica)); err == nil {
		return true, r.cfg.Replica, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, "", err
	}
	e, err := r.claims.Get(ctx, key)
	if err != nil {
		return false, "", err
	}
	return false, string(e.Value()), nil
}

// admit applies the blast-radius limiter: a host already counted in the
// window passes; otherwise it takes one of the window's free slots.
func (r *Responder) admit(host string) (bool, string, error) {
	limit := r.limitNow()
	if limit < 0 {
		return true, "", nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	if _, err := r.limit.Get(ctx, "host."+host); err == nil {
		return true, "", nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, "", err
	}
	for i := 0; i < limit; i++ {
		_, err := r.limit.Create(ctx, fmt.Sprintf("slot.%d", i), []byte(host))
		if err == nil {
			_, err = r.limit.Put(ctx, "host."+host, []byte(r.cfg.Replica))
			return true, "", err
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return false, "", err
		}
	}
	return false, fmt.Sprintf("blast-radius limit: %d hosts already acted on within %s", limit, r.cfg.Window), nil
}

// limitNow is how many hosts may be acted on per window; -1 means no limit.
// A percentage of a small fleet still allows one host.
func (r *Responder) limitNow() int {
	limit := -1
	if r.cfg.MaxHosts > 0 {
		limit = r.cfg.MaxHosts
	}
	if r.cfg.MaxPercent > 0 {
		r.mu.Lock()
		fleet := len(r.hosts)
		r.mu.Unlock()
		p := max(1, int(math.Floor(float64(fleet)*r.cfg.MaxPercent/100)))
		if limit < 0 || p < limit {
			limit = p
		}
	}
	return limit
}

// act carries out act (cordon, destroy) on the incident; hs.mu is held.
func (r *Responder) act(hs *hostState, inc *Incident, act Action, st Stages) {
	if inc.Acted.rank() < ActCordon.rank() {
		r.cordon(inc, st)
	}
	if act == ActDestroy && inc.Acted.rank() < ActDestroy.rank() {
		r.destroy(inc, st)
	}
}

func (r *Responder) target(inc *Incident, act Action) actuator.Target {
	return actuator.Target{Schema: actuator.TargetSchema, Host: inc.Host, Incident: inc.ID, Action: string(act),
		Reason: inc.Reason, Events: append([]string(nil), inc.Events...), Time: time.Now()}
}

func (r *Responder) cordon(inc *Incident, st Stages) {
	mine, holder, err := r.claim("act." + inc.ID + ".cordon")
	if err != nil {
		r.stats.ActionErrors.Add(1)
		r.audit(Record{Host: inc.Host, Incident: inc.ID, Stage: StageAction, Action: ActCordon, Error: "claim: " + err.Error()})
		return
	}
	inc.Acted = ActCordon
	if !mine {
		r.stats.Skipped.Add(1)
		r.audit(Record{Host: inc.Host, Incident: inc.ID, Stage: StageSkip, Action: ActCordon, Reason: "cordoned by replica " + holder})
		return
	}
	t := r.target(inc, ActCordon)
	run := func(name string, f func(context.Context) error) {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ActTimeout)
		defer cancel()
		err := f(ctx)
		st.Acted = time.Now()
		rec := Record{Host: inc.Host, Incident: inc.ID, Stage: StageAction, Action: ActCordon, Actuator: name, Events: inc.Events, Stages: st}
		r.stats.Actions.Add(1)
		if err != nil {
			r.stats.ActionErrors.Add(1)
			rec.Error = err.Error()
		}
		r.audit(rec)
	}
	if r.cfg.CtlCordon {
		run("ctl", func(ctx context.Context) error { return r.ctlCommand(ctx, inc.Host, "cordon", inc.ID) })
	}
	for _, c := range r.cfg.Cordoners {
		run(c.Name(), func(ctx context.Context) error { return c.Cordon(ctx, t) })
	}
	// The control plane learns of the cordon while the probe verifies it:
	// status shows it, and a restarted sensor closes its gate again.
	if r.ctl != nil {
		synced := make(chan struct{})
		go func() { defer close(synced); r.setState(inc, ActCordon, event.StateCordoned) }()
		defer func() { <-synced }()
	}
	if r.cfg.Prober == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.VerifyTimeout)
	defer cancel()
	stopped, err := actuator.WaitBlocked(ctx, r.cfg.Prober, inc.Host, r.cfg.ProbeInterval)
	rec := Record{Host: inc.Host, Incident: inc.ID, Stage: StageVerify, Action: ActCordon, Events: inc.Events}
	if err != nil {
		r.stats.ActionErrors.Add(1)
		rec.Error = "cordon not verified: " + err.Error()
	} else {
		st.Verified = stopped
	}
	rec.Stages = st
	r.audit(rec)
}

func (r *Responder) destroy(inc *Incident, st Stages) {
	mine, holder, err := r.claim("act." + inc.ID + ".destroy")
	if err != nil {
		r.stats.ActionErrors.Add(1)
		r.audit(Record{Host: inc.Host, Incident: inc.ID, Stage: StageAction, Action: ActDestroy, Error: "claim: " + err.Error()})
		return
	}
	inc.Acted = ActDestroy
	if !mine {
		r.stats.Skipped.Add(1)
		r.audit(Record{Host: inc.Host, Incident: inc.ID, Stage: StageSkip, Action: ActDestroy, Reason: "destroyed by replica " + holder})
		return
	}
	if len(r.cfg.Destroyers) == 0 {
		r.audit(Record{Host: inc.Host, Incident: inc.ID, Stage: StageAlert, Action: ActDestroy, Reason: "destroy decided but no destroy actuator is configured: a person must destroy " + inc.Host})
		return
	}
	t := r.target(inc, ActDestroy)
	destroyed := false
	for _, d := range r.cfg.Destroyers {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ActTimeout)
		err := d.Destroy(ctx, t)
		cancel()
		st.Acted = time.Now()
		rec := Record{Host: inc.Host, Incident: inc.ID, Stage: StageAction, Action: ActDestroy, Actuator: d.Name(), Events: inc.Events, Stages: st}
		r.stats.Actions.Add(1)
		if err != nil {
			r.stats.ActionErrors.Add(1)
			rec.Error = err.Error()
		} else {
			destroyed = true
		}
		r.audit(rec)
	}
	if destroyed && r.ctl != nil {
		r.setState(inc, ActDestroy, event.StateDestroyed)
	}
}

type ctlCommand struct {
	Schema string `json:"schema"`
	Cmd    string `json:"cmd"`
	ID     string `json:"id"`
}

type ctlReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// ctlCommand asks the host's sensor to run cmd and waits for its reply.
func (r *Responder) ctlCommand(ctx context.Context, host, cmd, id string) error {
	data, _ := json.Marshal(ctlCommand{Schema: CtlSchema, Cmd: cmd, ID: id})
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CtlTimeout)
	defer cancel()
	m, err := r.nc.RequestWithContext(ctx, event.CtlSubject(host), data)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("ctl %s to %s: no sensor is listening on %s", cmd, host, event.CtlSubject(host))
		}
		return fmt.Errorf("ctl %s to %s: %w", cmd, host, err)
	}
	var rep ctlReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return fmt.Errorf("ctl %s to %s: unreadable reply: %w", cmd, host, err)
	}
	if !rep.OK {
		return fmt.Errorf("ctl %s to %s: refused: %s", cmd, host, rep.Error)
	}
	return nil
}

// Approval is the message on ApproveSubject; a bare incident id works too.
type Approval struct {
	Incident string `json:"incident"`
	By       string `json:"by,omitempty"`
}

func (r *Responder) onApprove(m *nats.Msg) {
	var a Approval
	if err := json.Unmarshal(m.Data, &a); err != nil {
		a.Incident = strings.TrimSpace(string(m.Data))
	}
	r.mu.Lock()
	host, ok := r.pending[a.Incident]
	delete(r.pending, a.Incident)
	r.mu.Unlock()
	if !ok {
		return // another replica holds it, or it is unknown
	}
	if m.Reply != "" {
		_ = m.Respond([]byte(`{"ok":true}`))
	}
	hs := r.host(host)
	r.goAct(func() {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		inc := hs.inc
		if inc == nil || inc.ID != a.Incident || inc.Held == "" {
			return
		}
		act := inc.Held
		inc.Held = ""
		r.audit(Record{Host: host, Incident: inc.ID, Stage: StageApprove, Action: act, Reason: "approved by " + a.By, Events: inc.Events})
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		// Count the host against the window even though it passed the limit.
		_, _ = r.limit.Put(ctx, "host."+host, []byte(r.cfg.Replica))
		cancel()
		r.act(hs, inc, act, Stages{Decided: time.Now()})
	})
}

// idSet remembers the last n ids for deduplication.
type idSet struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring []string
	next int
}

func newIDSet(n int) *idSet {
	return &idSet{set: make(map[string]struct{}, n), ring: make([]string, n)}
}

// add reports whether id is new.
func (s *idSet) add(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.set[id]; dup {
		return false
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.set, old)
	}
	s.ring[s.next] = id
	s.next = (s.next + 1) % len(s.ring)
	s.set[id] = struct{}{}
	return true
}
