package decide

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// Consumer is the durable JetStream consumer replicas share by default: the
// stream delivers each finding to one replica, and a replica that dies
// leaves its unacknowledged findings to the others.
const Consumer = "driftresponder"

// ApproveSubject carries approvals of held actions (driftctl approve INCIDENT).
const ApproveSubject = event.SubjectRoot + ".ctl.approve"

// CtlSchema is the command format on a host's ctl subject (sensor/event).
const CtlSchema = event.CtlSchema

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

	// Consumer names the durable consumer on the findings stream; Consumer
	// if empty. Replicas sharing it share the work.
	Consumer string
	AckWait  time.Duration // before the stream redelivers an unacknowledged finding; 1m if 0

	// HeartbeatInterval is assumed for hosts whose heartbeats do not carry
	// their interval (older sensors) and for hosts known only from the
	// control plane; with 0 only hosts whose heartbeats carry it are judged.
	HeartbeatInterval time.Duration
	MissedBeats       int // silence of this many of the host's intervals makes it a suspect; 3 if 0
	// SilenceWindow is how long a suspect waits for others to fall silent
	// before it is judged alone; one of the host's intervals if 0.
	SilenceWindow time.Duration
	// More than MassHosts hosts silent at once, or more than MassPercent of
	// the tracked fleet (and at least two), is one infrastructure incident:
	// an alert, never a cordon. 5 and 10 if 0; negative disables.
	MassHosts   int
	MassPercent float64
	// GapCheck fires the switch when a host's finding sequence has a hole
	// that the findings stream itself lacks, GapWait (5s if 0) after it
	// was first seen.
	GapCheck bool
	GapWait  time.Duration
	// ReplicaTimeout is how long a replica may go without refreshing its
	// liveness key before others take over its unfinished actions; 10s if 0.
	ReplicaTimeout time.Duration

	MaxHosts   int           // at most this many hosts acted on per window; 0: no limit
	MaxPercent float64       // at most this share of the known fleet (0-100); 0: no limit
	Window     time.Duration // of the limiter; 10m if 0

	// Evidence keeps each cordoned or destroyed incident's evidence in the
	// evidence bucket, after the cordon and before any destroy.
	Evidence bool
	// DrillKeys are the operators' public nkeys (U...) trusted to sign
	// drill markers; with none, every drill's findings are real incidents.
	DrillKeys []string

	Log zerolog.Logger
	// OnRecord, if set, is given every audit record this replica appended
	// (once, duplicates left out), without blocking: the alert outputs.
	OnRecord func(Record)
}

// Stats are running counts, for tests and metrics.
type Stats struct {
	Findings, Heartbeats, Rejected, Duplicates atomic.Uint64
	Decisions, Actions, Held, Skipped          atomic.Uint64
	ActionErrors, AuditErrors                  atomic.Uint64
	Gaps, Restarts, Infra, Takeovers           atomic.Uint64
	Acked                                      atomic.Uint64 // findings acknowledged to the stream
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
	// Evidence: this replica has kept (or tried to keep) its evidence.
	Evidence bool
}

type hostState struct {
	mu  sync.Mutex // serialises decisions and actions on the host
	inc *Incident

	// Guarded by Responder.mu.
	queue   []func() // the host's work, run in order by one goroutine
	running bool

	tracked     bool          // judged for silence: it beat, or the control plane knows it
	lastBeat    time.Time     // local time of the last heartbeat
	interval    time.Duration // from its heartbeat; 0: unknown
	beatSeq     uint64
	lost        uint64
	spoolLost   uint64
	live        event.Liveness
	uptime      float64
	suspect     time.Time // when it first passed its silence limit; zero: not silent
	silentFired bool      // judged silent alone: the dead man's switch fired
	inInfra     bool      // judged silent as part of an infrastructure incident
	seq         seqTrack
}

// Responder is one replica.
type Responder struct {
	cfg       Config
	log       zerolog.Logger
	nc        *nats.Conn
	js        jetstream.JetStream
	claims    jetstream.KeyValue
	limit     jetstream.KeyValue
	states    jetstream.KeyValue    // host states; nil with NoStateSync
	ctl       *control.Client       // writes host states
	evidence  jetstream.ObjectStore // nil unless Config.Evidence
	drillKV   jetstream.KeyValue
	markers   map[string]event.DrillMarker // under mu: host -> verified marker
	drillIncs map[string]*Incident         // under mu: drill incidents by id

	// Under mu, by host: the bucket revision of the last marker entry
	// applied, and the last drill id read from the bucket in vain.
	markerRev  map[string]uint64
	markerMiss map[string]string

	mu    sync.Mutex
	hosts map[string]*hostState
	seen  *idSet
	conn  connState      // under mu
	infra *infraIncident // under mu: the open infrastructure incident, if any

	consumer  jetstream.ConsumeContext // under mu once started
	stream    jetstream.Stream         // under mu once started
	lost      chan struct{}            // the consumer went away: make it again
	subs      []*nats.Subscription
	ctx       context.Context // ends actions still running at Close
	cancel    context.CancelFunc
	closing   bool           // under mu: no new actions
	acts      sync.WaitGroup // actions in flight
	watch     sync.WaitGroup // the silence watcher
	stopW     chan struct{}
	closeOnce sync.Once
	stats     Stats
	met       metrics
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
	def(&cfg.AckWait, time.Minute)
	def(&cfg.GapWait, 5*time.Second)
	def(&cfg.ReplicaTimeout, 10*time.Second)
	if cfg.Consumer == "" {
		cfg.Consumer = Consumer
	}
	if cfg.MissedBeats <= 0 {
		cfg.MissedBeats = 3
	}
	if cfg.MassHosts == 0 {
		cfg.MassHosts = 5
	}
	if cfg.MassPercent == 0 {
		cfg.MassPercent = 10
	}
	if cfg.MaxPercent < 0 || cfg.MaxPercent > 100 {
		return nil, fmt.Errorf("responder: max percent %v: want 0-100", cfg.MaxPercent)
	}
	if cfg.MassPercent > 100 {
		return nil, fmt.Errorf("responder: mass-silence percent %v: want 0-100", cfg.MassPercent)
	}
	// Audit records go out asynchronously; a burst of findings must not
	// stall on the client's default bound of 4,000 unacknowledged ones.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1<<16))
	if err != nil {
		return nil, fmt.Errorf("responder: jetstream: %w", err)
	}
	r := &Responder{
		cfg: cfg, log: cfg.Log.With().Str("replica", cfg.Replica).Logger(), nc: nc, js: js,
		hosts: map[string]*hostState{}, seen: newIDSet(1 << 16),
		markers: map[string]event.DrillMarker{}, markerRev: map[string]uint64{}, markerMiss: map[string]string{}, drillIncs: map[string]*Incident{},
	}
	r.trackConn()
	return r, nil
}

// Start creates the audit stream, the findings stream and the shared
// buckets if missing, reads the known hosts from the control plane, and
// starts reading findings from the durable consumer and heartbeats.
func (r *Responder) Start(ctx context.Context) error {
	if err := ensureAuditStream(ctx, r.js); err != nil {
		return fmt.Errorf("responder: audit stream %s: %w", event.AuditStream, err)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.stopW = make(chan struct{})
	var err error
	if r.claims, err = r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: ClaimBucket, Description: "driftresponder incidents, held actions, action claims and replica liveness", History: 1,
	}); err != nil {
		return fmt.Errorf("responder: bucket %s: %w", ClaimBucket, err)
	}
	if r.limit, err = r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: LimitBucket, Description: "driftresponder blast-radius window", History: 1, TTL: r.cfg.Window,
	}); err != nil {
		return fmt.Errorf("responder: bucket %s: %w", LimitBucket, err)
	}
	if r.cfg.Evidence {
		if err := r.openEvidence(ctx); err != nil {
			return fmt.Errorf("responder: %w", err)
		}
	}
	if err := r.startDrills(ctx); err != nil {
		return fmt.Errorf("responder: %w", err)
	}
	if err := r.startReplica(ctx); err != nil {
		return fmt.Errorf("responder: %w", err)
	}
	if r.cfg.NoStateSync {
		ctl, err := control.New(r.nc, 5*time.Second)
		if err == nil {
			err = ctl.Setup(ctx) // the findings stream, which the consumer reads
		}
		if err != nil {
			return fmt.Errorf("responder: findings stream %s: %w", event.StreamName, err)
		}
	} else if err := r.startStateSync(ctx); err != nil {
		return fmt.Errorf("responder: %w", err)
	}
	// Heartbeats and approvals go to every replica on core subscriptions.
	// A heartbeat proves liveness now: one replayed from a stream after an
	// outage would prove nothing, so heartbeats are not read from one.
	// Claims in ClaimBucket keep actions single across replicas.
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
	if err := r.startIntake(ctx); err != nil {
		return fmt.Errorf("responder: %w", err)
	}
	r.watch.Add(1)
	go r.watchSilence()
	r.log.Info().Bool("dry_run", r.cfg.DryRun).Str("consumer", r.cfg.Consumer).Msg("responder started")
	return nil
}

// Close stops reading, lets queued work and running actions finish, and
// flushes the audit trail. Findings read but not yet decided are not
// acknowledged: the stream gives them to the next replica or run.
func (r *Responder) Close() {
	r.closeOnce.Do(r.close)
}

func (r *Responder) close() {
	r.mu.Lock()
	cc := r.consumer
	r.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
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
	r.stopReplica()
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

// enqueue adds f to the host's work, which one goroutine runs in order: a
// host's findings are decided in the order they were read.
func (r *Responder) enqueue(hs *hostState, f func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false
	}
	hs.queue = append(hs.queue, f)
	if !hs.running {
		hs.running = true
		r.acts.Add(1)
		go r.drainHost(hs)
	}
	return true
}

func (r *Responder) drainHost(hs *hostState) {
	defer r.acts.Done()
	for {
		r.mu.Lock()
		if len(hs.queue) == 0 {
			hs.running = false
			r.mu.Unlock()
			return
		}
		f := hs.queue[0]
		hs.queue[0] = nil
		hs.queue = hs.queue[1:]
		r.mu.Unlock()
		f()
	}
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

// decision is one decision to record on a host's incident.
type decision struct {
	act    Action
	rule   string
	reason string
	events []string
	st     Stages
	// dedup, when set, is the audit record's Nats-Msg-Id: a finding
	// redelivered after its decision was recorded (a replica died before
	// acknowledging it) finds its decision already in the trail.
	dedup string
	// redelivered says the stream gave the finding before: its decision
	// may be in the trail already, so it is recorded synchronously to learn that.
	redelivered bool
	done        func(recorded bool) // called once the decision is recorded (or failed to be)
	drill       *event.DrillMarker  // the verified drill marker covering the finding, if any
}

func (r *Responder) deadMan(host, reason string, events []string, st Stages) {
	r.audit(Record{Host: host, Stage: StageDeadMan, Action: r.cfg.Policy.DeadMan, Reason: reason, Events: events, Stages: st})
	r.trigger(host, decision{act: r.cfg.Policy.DeadMan, rule: "dead_man", reason: reason, events: events, st: st})
}

// trigger queues a decision on the host; the host's decisions and actions
// run one at a time, in order.
func (r *Responder) trigger(host string, d decision) {
	hs := r.host(host)
	if !r.enqueue(hs, func() { r.decide(hs, host, d) }) && d.done != nil {
		d.done(false)
	}
}

// decide records d on the host's incident and acts on it; it runs in the
// host's queue.
func (r *Responder) decide(hs *hostState, host string, d decision) {
	act, rule, reason, events, st := d.act, d.rule, d.reason, d.events, d.st
	hs.mu.Lock()
	defer hs.mu.Unlock()
	recorded := false
	defer func() {
		if d.done != nil {
			d.done(recorded)
		}
	}()
	if d.drill != nil {
		recorded = r.decideDrill(hs, host, d)
		return
	}
	inc, err := r.incident(hs, host)
	if err != nil {
		r.stats.ActionErrors.Add(1)
		r.audit(Record{Host: host, Stage: StageDecision, Action: act, Events: events, Stages: st, Error: err.Error()})
		return
	}
	// An action about to be skipped as done must belong to an incident
	// still open: an uncordon closes it, and the drift is new.
	if rank(act) >= rank(ActCordon) && rank(act) <= rank(inc.Acted) && !r.cfg.DryRun && !r.stillOpen(hs, host) {
		if inc, err = r.incident(hs, host); err != nil {
			r.stats.ActionErrors.Add(1)
			r.audit(Record{Host: host, Stage: StageDecision, Action: act, Events: events, Stages: st, Error: err.Error()})
			return
		}
	}
	inc.Events = append(inc.Events, events...)
	if rank(act) > rank(inc.Decided) {
		inc.Decided, inc.Rule, inc.Reason = act, rule, reason
	}
	st.Decided = time.Now()
	r.stats.Decisions.Add(1)
	rec := Record{Host: host, Incident: inc.ID, Stage: StageDecision, Action: act, Rule: rule, Reason: reason, Events: events, Stages: st, DryRun: r.cfg.DryRun}
	again := false
	switch {
	case d.dedup != "" && d.redelivered:
		var err error
		again, err = r.auditSync(rec, d.dedup)
		recorded = err == nil
	case d.dedup != "" && d.done != nil:
		// The usual case: the finding is acknowledged once the stream has
		// its decision, without holding the host's next decision for it.
		r.auditAck(rec, d.dedup, d.done)
		d.done = nil
		recorded = true
	default:
		r.audit(rec)
		recorded = true
	}
	if again {
		// Decided before by a replica that did not live to acknowledge
		// it: the alert went out then; an action left undone is finished
		// below, under the claims that keep it single.
		r.log.Info().Str("host", host).Strs("events", events).Msg("finding redelivered; its decision is already recorded")
	}
	if act == ActAlert {
		if !again {
			r.audit(Record{Host: host, Incident: inc.ID, Stage: StageAlert, Action: act, Rule: rule, Reason: reason, Events: events})
		}
		return
	}
	if rank(act) <= rank(inc.Acted) {
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
		r.hold(inc, act, why, st)
		return
	}
	// The finding is acknowledged once its decision is recorded; acting
	// may take seconds (probe verification) and must not hold the stream.
	if d.done != nil {
		d.done(recorded)
		d.done = nil
	}
	r.act(hs, inc, act, st)
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
	if rank(inc.Acted) < rank(ActCordon) {
		r.cordon(inc, st)
	}
	r.keepEvidence(inc, "", st)
	if act == ActDestroy && rank(inc.Acted) < rank(ActDestroy) {
		r.destroy(inc, st)
	}
}

func (r *Responder) target(inc *Incident, act Action) actuator.Target {
	return actuator.Target{Schema: actuator.TargetSchema, Host: inc.Host, Incident: inc.ID, Action: string(act),
		Reason: inc.Reason, Events: append([]string(nil), inc.Events...), Time: time.Now()}
}

// cordon carries out the incident's cordon once across the replicas; it
// reports whether this replica did (it held the claim).
func (r *Responder) cordon(inc *Incident, st Stages) bool {
	key := actKey(inc.ID, ActCordon)
	mine, holder, err := r.claim(key, inc.Host, ActCordon)
	if err != nil {
		r.stats.ActionErrors.Add(1)
		r.audit(Record{Host: inc.Host, Incident: inc.ID, Stage: StageAction, Action: ActCordon, Error: "claim: " + err.Error()})
		return false
	}
	inc.Acted = ActCordon
	if !mine {
		r.stats.Skipped.Add(1)
		r.audit(Record{Host: inc.Host, Incident: inc.ID, Stage: StageSkip, Action: ActCordon, Reason: "cordoned by replica " + holder})
		return false
	}
	defer r.claimDone(key, inc.Host, ActCordon)
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
		run(ctlActuator, func(ctx context.Context) error { return r.ctlCommand(ctx, inc.Host, "cordon", inc.ID) })
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
		return true
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
	return true
}

func (r *Responder) destroy(inc *Incident, st Stages) {
	key := actKey(inc.ID, ActDestroy)
	mine, holder, err := r.claim(key, inc.Host, ActDestroy)
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
	defer r.claimDone(key, inc.Host, ActDestroy)
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

// ctlCommand asks the host's sensor to run cmd and waits for its reply.
func (r *Responder) ctlCommand(ctx context.Context, host, cmd, id string) error {
	msg, err := event.NewCtlCommand(cmd, id)
	if err != nil {
		return fmt.Errorf("ctl %s to %s: %w", cmd, host, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CtlTimeout)
	defer cancel()
	m, err := r.nc.RequestWithContext(ctx, event.CtlSubject(host), msg.Encode())
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("ctl %s to %s: no sensor is listening on %s", cmd, host, event.CtlSubject(host))
		}
		return fmt.Errorf("ctl %s to %s: %w", cmd, host, err)
	}
	rep, err := event.DecodeCtlReply(m.Data)
	if err != nil {
		return fmt.Errorf("ctl %s to %s: unreadable reply: %w", cmd, host, err)
	}
	if !rep.OK {
		return fmt.Errorf("ctl %s to %s: refused: %s", cmd, host, rep.Error)
	}
	return nil
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

// remove forgets id, so that a redelivery of it is handled again.
func (s *idSet) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.set, id) // its ring slot is reused later; deleting a missing key is harmless
}
