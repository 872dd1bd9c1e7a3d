package decide

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// The audit record is defined in sensor/event, with every other message on
// the wire; these names are the responder's own for it.
type (
	// Record is one entry of the audit trail.
	Record = event.AuditRecord
	// Stages are the times an incident went through.
	Stages = event.AuditStages
)

// AuditSchema names the version of audit records.
const AuditSchema = event.AuditSchema

// AuditPrefix starts every audit subject: drift.audit.<host>.
const AuditPrefix = event.AuditRoot

// AuditSubject is where records about host go.
func AuditSubject(host string) string { return event.AuditSubject(host) }

// Audit stages.
const (
	StageReject   = "reject"   // a message failed the authenticity or schema check
	StageDecision = "decision" // policy chose an action for an incident
	StageAlert    = "alert"    // an alert-only decision, or a hold that needs a person
	StageHold     = "hold"     // the blast-radius limiter held an action for approval
	StageApprove  = "approve"  // a person approved a held action
	StageSkip     = "skip"     // another replica already acted
	StageDryRun   = "dry_run"  // the action that would have been taken
	StageAction   = "action"   // an actuator ran (Error set if it failed)
	StageVerify   = "verify"   // the cordon probe stopped passing (or never did: Error)
	StageDeadMan  = "dead_man" // the dead man's switch fired
	StageState    = "state"    // the host's state in the control plane was set (cordoned, destroyed)
	StageClose    = "close"    // the host left cordoned (driftctl uncordon): its incident is closed
	StageTakeover = "takeover" // a replica took over an action another replica died before finishing
	StageInfra    = "infra"    // an infrastructure incident: many hosts silent at once, or the responder's own connection lost
	StageRestart  = "restart"  // a sensor restarted: new instance, new boot, or uptime reset
	StageEvidence = "evidence" // evidence kept in the evidence bucket, before any destroy (Error if not)
	StageRelease  = "release"  // a drill's cordon lifted (Error if it was not)
)

// auditStages are the stages above, each counted by the metrics from the start.
var auditStages = []string{StageReject, StageDecision, StageAlert, StageHold, StageApprove, StageSkip, StageDryRun,
	StageAction, StageVerify, StageDeadMan, StageState, StageClose, StageTakeover, StageInfra, StageRestart, StageEvidence, StageRelease}

// Hosts of records that concern no one host.
const (
	FleetHost     = "_fleet"     // infrastructure incidents
	ResponderHost = "_responder" // the responder's own connection
)

// ensureAuditStream creates the audit stream unless it exists (perhaps
// created by someone else with other limits, which are kept).
func ensureAuditStream(ctx context.Context, js jetstream.JetStream) error {
	if _, err := js.Stream(ctx, event.AuditStream); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err := js.CreateStream(ctx, transport.AuditStreamConfig(transport.Settings{}))
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil
	}
	return err
}

// encode stamps rec with the schema, this replica and the time, and encodes it.
func (r *Responder) encode(rec *Record) ([]byte, error) {
	rec.Schema = AuditSchema
	rec.Replica = r.cfg.Replica
	if id, ok := strings.CutPrefix(rec.Incident, DrillIncidentPrefix); ok && rec.Drill == "" {
		rec.Drill = id // every record of a drill's incident names the drill
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	data, err := json.Marshal(rec)
	if err != nil {
		r.stats.AuditErrors.Add(1)
	}
	return data, err
}

// auditSync appends rec with msgID as its Nats-Msg-Id and waits for the
// stream's ack; again reports that the stream already had a record with
// that id (within its duplicate window).
func (r *Responder) auditSync(rec Record, msgID string) (again bool, err error) {
	data, err := r.encode(&rec)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	ack, err := r.js.PublishMsg(ctx, &nats.Msg{Subject: AuditSubject(rec.Host), Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{msgID}}})
	if err != nil {
		r.stats.AuditErrors.Add(1)
		r.log.Error().Err(err).Str("host", rec.Host).Str("stage", rec.Stage).Msg("audit append failed")
		return false, err
	}
	if !ack.Duplicate {
		r.logRecord(rec)
	}
	return ack.Duplicate, nil
}

// auditAck appends rec with msgID as its Nats-Msg-Id without waiting, and
// calls done with whether the stream stored it, once it knows.
func (r *Responder) auditAck(rec Record, msgID string, done func(bool)) {
	data, err := r.encode(&rec)
	if err != nil {
		done(false)
		return
	}
	f, err := r.js.PublishMsgAsync(&nats.Msg{Subject: AuditSubject(rec.Host), Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{msgID}}})
	if err != nil {
		r.stats.AuditErrors.Add(1)
		r.log.Error().Err(err).Str("host", rec.Host).Str("stage", rec.Stage).Msg("audit append failed")
		done(false)
		return
	}
	r.logRecord(rec)
	go func() {
		select {
		case <-f.Ok():
			done(true)
		case err := <-f.Err():
			r.stats.AuditErrors.Add(1)
			r.log.Error().Err(err).Str("host", rec.Host).Str("stage", rec.Stage).Msg("audit append failed")
			done(false)
		}
	}()
}

// audit appends rec without waiting for the server's ack: acting must not
// wait on the audit trail; failures are counted (Stats.AuditErrors).
func (r *Responder) audit(rec Record) {
	data, err := r.encode(&rec)
	if err != nil {
		return
	}
	f, err := r.js.PublishAsync(AuditSubject(rec.Host), data)
	if err != nil {
		r.stats.AuditErrors.Add(1)
		r.log.Error().Err(err).Str("host", rec.Host).Str("stage", rec.Stage).Msg("audit append failed")
		return
	}
	go func() {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			r.stats.AuditErrors.Add(1)
			r.log.Error().Err(err).Str("host", rec.Host).Str("stage", rec.Stage).Msg("audit append failed")
		}
	}()
	r.logRecord(rec)
}

// logRecord logs a record the stream took (once, not for a duplicate) and
// counts it in the metrics.
func (r *Responder) logRecord(rec Record) {
	r.met.observe(rec)
	if r.cfg.OnRecord != nil {
		r.cfg.OnRecord(rec)
	}
	ev := r.log.Info()
	if rec.Error != "" {
		ev = r.log.Warn().Str("error", rec.Error)
	}
	ev.Str("host", rec.Host).Str("incident", rec.Incident).Str("stage", rec.Stage).Str("action", string(rec.Action)).
		Str("actuator", rec.Actuator).Bool("dry_run", rec.DryRun).Str("reason", rec.Reason).Msg("audit")
}
