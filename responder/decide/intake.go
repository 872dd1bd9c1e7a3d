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

	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// The responder reads findings from the findings stream through a durable
// consumer with explicit acks: a finding is acknowledged once its decision
// is in the audit trail, so a responder that stops or dies loses none (the
// stream redelivers what was not acknowledged, to another replica or to the
// next run), and one that restarts resumes where it left off. Core
// subscriptions would lose every finding published while the responder is
// away, and, one per kind, reorder a host's findings.

// findingSubjects are the consumer's filters: the findings stream's
// subjects but the host state changes, which the state watch follows.
func findingSubjects() []string {
	var out []string
	for _, subj := range transport.StreamSubjects {
		if !strings.HasSuffix(subj, "."+event.StateTok) {
			out = append(out, subj)
		}
	}
	return out
}

// startIntake creates (or reuses) the durable consumer and starts reading;
// a consumer that goes away (deleted, its stream lost and recreated) is
// made again, so the responder never stops reading without saying so.
func (r *Responder) startIntake(ctx context.Context) error {
	r.lost = make(chan struct{}, 1)
	if err := r.consume(ctx); err != nil {
		return err
	}
	r.watch.Add(1)
	go func() {
		defer r.watch.Done()
		for {
			select {
			case <-r.stopW:
				return
			case <-r.lost:
			}
			r.log.Error().Str("consumer", r.cfg.Consumer).Msg("the durable consumer is gone (deleted, or its stream lost); making it again")
			for {
				ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
				err := r.consume(ctx)
				cancel()
				if err == nil {
					r.audit(Record{Host: ResponderHost, Stage: StageInfra, Action: ActAlert,
						Reason: fmt.Sprintf("durable consumer %s on %s was lost and is made again; it reads the stream from its beginning", r.cfg.Consumer, event.StreamName)})
					break
				}
				r.log.Error().Err(err).Msg("making the durable consumer again; retrying")
				select {
				case <-r.stopW:
					return
				case <-time.After(time.Second):
				}
			}
		}
	}()
	return nil
}

// consume makes the durable consumer (and the findings stream, if it was
// lost) and reads from it.
func (r *Responder) consume(ctx context.Context) error {
	s, err := r.js.Stream(ctx, event.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		ctl, cerr := control.New(r.nc, 5*time.Second)
		if cerr == nil {
			cerr = ctl.Setup(ctx)
		}
		if cerr == nil {
			s, err = r.js.Stream(ctx, event.StreamName)
		}
	}
	if err != nil {
		return fmt.Errorf("findings stream %s: %w (driftctl init creates it)", event.StreamName, err)
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:        r.cfg.Consumer,
		Description:    "driftresponder: every finding, decided once",
		FilterSubjects: findingSubjects(),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.cfg.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  1 << 16,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("durable consumer %s on %s: %w", r.cfg.Consumer, event.StreamName, err)
	}
	cc, err := cons.Consume(r.onMsg, jetstream.PullMaxMessages(1024), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		switch {
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
			select {
			case r.lost <- struct{}{}:
			default:
			}
		case errors.Is(err, jetstream.ErrNoHeartbeat), errors.Is(err, nats.ErrConnectionClosed):
			r.log.Debug().Err(err).Msg("consumer")
		default:
			r.log.Warn().Err(err).Str("consumer", r.cfg.Consumer).Msg("reading findings")
		}
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", r.cfg.Consumer, err)
	}
	r.mu.Lock()
	old := r.consumer
	r.consumer, r.stream = cc, s
	r.mu.Unlock()
	if old != nil {
		old.Stop()
	}
	return nil
}

// onMsg checks a finding and queues its decision on its host.
func (r *Responder) onMsg(m jetstream.Msg) {
	received := time.Now()
	subject := m.Subject()
	var streamSeq uint64
	redelivered := false
	if md, err := m.Metadata(); err == nil {
		streamSeq, redelivered = md.Sequence.Stream, md.NumDelivered > 1
	}
	host, kind, ok := subjectHost(subject)
	if !ok {
		r.reject("_invalid", "unexpected subject "+subject)
		_ = m.Ack()
		return
	}
	var ev event.Event
	bad := ""
	if err := json.Unmarshal(m.Data(), &ev); err != nil {
		bad = fmt.Sprintf("finding on %s is not JSON: %v", subject, err)
	} else {
		switch {
		case ev.Schema != event.Schema:
			bad = fmt.Sprintf("finding %s: schema %q, want %q", ev.ID, ev.Schema, event.Schema)
		case checkHost(host) != nil:
			bad = checkHost(host).Error()
		case ev.Host != host:
			// Only a host's own credentials may publish under its name; a
			// finding naming another host is forged or misrouted.
			bad = fmt.Sprintf("finding %s names host %q but arrived on %s", ev.ID, ev.Host, subject)
		case string(ev.Kind) != kind:
			bad = fmt.Sprintf("finding %s is of kind %q but arrived on %s", ev.ID, ev.Kind, subject)
		case ev.ID == "":
			bad = "finding without id on " + subject
		}
	}
	if bad != "" {
		r.reject(host, bad)
		_ = m.Ack() // recorded as rejected; a redelivery would say the same
		return
	}
	hs := r.host(host)
	if !r.seen.add(host + "/" + ev.ID) {
		r.stats.Duplicates.Add(1)
		_ = m.Ack()
		return
	}
	r.stats.Findings.Add(1)
	if ev.Seq > 0 {
		r.mu.Lock()
		hs.seq.saw(ev.Seq, streamSeq, received)
		r.mu.Unlock()
	}
	if ev.Kind == event.KindSensor && ev.Action == event.ActionStateApplied {
		_ = m.Ack() // the sensor's record of a state it applied: counted and sequence-checked above, not drift
		return
	}
	st := Stages{Sensed: ev.Time, Received: received}
	act, rule := r.cfg.Policy.Decide(&ev)
	reason := fmt.Sprintf("%s %s", ev.Kind, ev.Action)
	if p := eventPaths(&ev); len(p) > 0 {
		reason += " " + p[0]
	}
	if ev.Kind == event.KindSensor && ev.Health != nil {
		reason += fmt.Sprintf(" (lost %d: %s)", ev.Health.LostRecords, ev.Health.Detail)
	}
	id := ev.ID
	r.trigger(host, decision{act: act, rule: rule, reason: reason, events: []string{id}, st: st,
		dedup: "decision/" + host + "/" + id, redelivered: redelivered, drill: r.drillFor(host, &ev, received),
		done: func(recorded bool) {
			if !recorded {
				// Not in the trail: let the stream give it again.
				r.seen.remove(host + "/" + id)
				_ = m.NakWithDelay(time.Second)
				return
			}
			if err := m.Ack(); err == nil {
				r.stats.Acked.Add(1)
			}
		}})
}

// subjectHost returns the host token of drift.v1.<host>.<tok>.
func subjectHost(subject string) (host, tok string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0]+"."+parts[1] != event.SubjectRoot {
		return "", "", false
	}
	return parts[2], parts[3], true
}
