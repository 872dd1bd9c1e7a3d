// Package incidents reads driftresponder's audit stream and folds its
// records into one summary per incident, for driftctl incidents.
package incidents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// Filter selects audit records: of one host ("" for all), stored at or after Since (zero: all).
type Filter struct {
	Host  string
	Since time.Time
}

// Stage is one stage an incident went through, with its first time.
type Stage struct {
	Name  string    `json:"stage"`
	Time  time.Time `json:"time"`
	Count int       `json:"count"`
}

// Incident summarises the audit records of one incident.
type Incident struct {
	ID        string        `json:"incident"`
	Host      string        `json:"host"`
	Status    string        `json:"status"`            // alert, held, cordoned, destroyed, dry_run, closed, failed
	Opened    time.Time     `json:"opened"`            // the first record
	Sensed    time.Time     `json:"sensed,omitzero"`   // the triggering finding, by the sensor's clock
	Decided   decide.Action `json:"decided,omitempty"` // the most severe decision
	Action    decide.Action `json:"action,omitempty"`  // the most severe action carried out
	Rule      string        `json:"rule,omitempty"`
	Reason    string        `json:"reason,omitempty"`
	Actuators []string      `json:"actuators,omitempty"`
	Stages    []Stage       `json:"stages"`
	Verified  time.Time     `json:"verified,omitzero"` // the first probe that no longer passed
	Approval  string        `json:"approval,omitempty"`
	Closed    time.Time     `json:"closed,omitzero"`
	DryRun    bool          `json:"dry_run,omitempty"`
	Replicas  []string      `json:"replicas,omitempty"`
	Events    []string      `json:"events,omitempty"` // triggering finding ids
	Errors    []string      `json:"errors,omitempty"`
}

// rank orders actions by severity.
func rank(a decide.Action) int {
	return map[decide.Action]int{decide.ActAlert: 1, decide.ActCordon: 2, decide.ActDestroy: 3}[a]
}

func addUnique(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// add folds one record into the incident.
func (in *Incident) add(r *decide.Record) {
	t := r.Time
	if r.Stage == decide.StageVerify && !r.Stages.Verified.IsZero() {
		t = r.Stages.Verified
	}
	if in.Opened.IsZero() || t.Before(in.Opened) {
		in.Opened = t
	}
	if s := r.Stages.Sensed; !s.IsZero() && (in.Sensed.IsZero() || s.Before(in.Sensed)) {
		in.Sensed = s
	}
	i := slices.IndexFunc(in.Stages, func(s Stage) bool { return s.Name == r.Stage })
	if i < 0 {
		in.Stages = append(in.Stages, Stage{Name: r.Stage, Time: t, Count: 1})
	} else {
		in.Stages[i].Count++
		if t.Before(in.Stages[i].Time) {
			in.Stages[i].Time = t
		}
	}
	in.Replicas = addUnique(in.Replicas, r.Replica)
	for _, e := range r.Events {
		in.Events = addUnique(in.Events, e)
	}
	if r.Error != "" {
		in.Errors = addUnique(in.Errors, r.Stage+": "+r.Error)
	}
	in.DryRun = in.DryRun || r.DryRun
	switch r.Stage {
	case decide.StageDecision:
		if rank(r.Action) > rank(in.Decided) {
			in.Decided, in.Rule, in.Reason = r.Action, r.Rule, r.Reason
		}
	case decide.StageAction:
		in.Actuators = addUnique(in.Actuators, r.Actuator)
		if r.Error == "" && rank(r.Action) > rank(in.Action) {
			in.Action = r.Action
		}
	case decide.StageVerify:
		if r.Error == "" && !r.Stages.Verified.IsZero() && (in.Verified.IsZero() || r.Stages.Verified.Before(in.Verified)) {
			in.Verified = r.Stages.Verified
		}
	case decide.StageApprove:
		in.Approval = r.Reason
	case decide.StageClose:
		if r.Error == "" {
			in.Closed = r.Time
		}
	}
}

func (in *Incident) has(stage string) bool {
	return slices.ContainsFunc(in.Stages, func(s Stage) bool { return s.Name == stage })
}

// finish sorts the stages and sets the status.
func (in *Incident) finish() {
	sort.SliceStable(in.Stages, func(i, j int) bool { return in.Stages[i].Time.Before(in.Stages[j].Time) })
	switch {
	case !in.Closed.IsZero():
		in.Status = "closed"
	case in.Action == decide.ActDestroy:
		in.Status = "destroyed"
	case in.Action == decide.ActCordon:
		in.Status = "cordoned"
	case in.has(decide.StageHold) && !in.has(decide.StageApprove):
		in.Status = "held"
	case in.DryRun:
		in.Status = "dry_run"
	case rank(in.Decided) > rank(decide.ActAlert) && in.has(decide.StageSkip):
		in.Status = "acted by another replica"
	case rank(in.Decided) > rank(decide.ActAlert) && len(in.Errors) > 0:
		in.Status = "failed"
	case rank(in.Decided) > rank(decide.ActAlert):
		in.Status = "acting"
	default:
		in.Status = "alert"
	}
}

// Collect reads the audit stream and returns the incidents its records
// matching f belong to, oldest first. Records about no incident (rejected
// messages, a dead man's switch before its decision) are left out; skipped
// counts records that were not audit records.
func Collect(ctx context.Context, js jetstream.JetStream, f Filter) (list []*Incident, skipped int, err error) {
	s, err := js.Stream(ctx, event.AuditStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, 0, fmt.Errorf("no stream %s on the server: no driftresponder has run against it yet", event.AuditStream)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: %w", event.AuditStream, err)
	}
	last := s.CachedInfo().State.LastSeq
	subject := decide.AuditPrefix + ".>"
	if f.Host != "" {
		subject = decide.AuditSubject(f.Host)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !f.Since.IsZero() {
		since := f.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("consumer on %s: %w", event.AuditStream, err)
	}
	byID := map[string]*Incident{}
	for done := last == 0; !done; {
		if err := ctx.Err(); err != nil {
			return nil, skipped, err
		}
		batch, err := cons.FetchNoWait(512)
		if err != nil {
			return nil, skipped, fmt.Errorf("read %s: %w", event.AuditStream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return nil, skipped, fmt.Errorf("read %s: %w", event.AuditStream, err)
			}
			// Records stored after the listing started belong to the next one.
			if meta.Sequence.Stream >= last || meta.NumPending == 0 {
				done = true
			}
			if meta.Sequence.Stream > last {
				continue
			}
			var r decide.Record
			if err := json.Unmarshal(m.Data(), &r); err != nil || r.Schema != decide.AuditSchema {
				skipped++
				continue
			}
			if r.Incident == "" {
				continue
			}
			in := byID[r.Incident]
			if in == nil {
				in = &Incident{ID: r.Incident, Host: r.Host}
				byID[r.Incident] = in
			}
			in.add(&r)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, skipped, fmt.Errorf("read %s: %w", event.AuditStream, err)
		}
		if got == 0 {
			done = true
		}
	}
	for _, in := range byID {
		in.finish()
		list = append(list, in)
	}
	sort.Slice(list, func(i, j int) bool {
		if !list[i].Opened.Equal(list[j].Opened) {
			return list[i].Opened.Before(list[j].Opened)
		}
		return list[i].ID < list[j].ID
	})
	return list, skipped, nil
}

// WriteJSON writes one JSON object per incident per line.
func WriteJSON(w io.Writer, list []*Incident) error {
	enc := json.NewEncoder(w)
	for _, in := range list {
		if err := enc.Encode(in); err != nil {
			return err
		}
	}
	return nil
}

// WriteText writes one line per incident: when it opened, the host, the
// incident, its status and action, when the cordon was verified, every stage
// with its time after the triggering finding, and the errors.
func WriteText(w io.Writer, list []*Incident) error {
	for _, in := range list {
		base := in.Opened
		if !in.Sensed.IsZero() && in.Sensed.Before(base) {
			base = in.Sensed
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s  %s  %s  %s", base.UTC().Format("2006-01-02T15:04:05.000000Z"), in.Host, in.ID, in.Status)
		act := in.Action
		if act == "" {
			act = in.Decided
		}
		if act != "" {
			fmt.Fprintf(&b, "  action=%s", act)
		}
		if in.Rule != "" {
			fmt.Fprintf(&b, " rule=%q", in.Rule)
		}
		if len(in.Actuators) > 0 {
			fmt.Fprintf(&b, " actuators=%s", strings.Join(in.Actuators, ","))
		}
		if !in.Verified.IsZero() {
			fmt.Fprintf(&b, " verified=%s (+%s)", in.Verified.UTC().Format("15:04:05.000000Z"), since(base, in.Verified))
		}
		b.WriteString("  stages:")
		for i, s := range in.Stages {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, " %s +%s", s.Name, since(base, s.Time))
			if s.Count > 1 {
				fmt.Fprintf(&b, " (x%d)", s.Count)
			}
		}
		if in.Status == "held" {
			fmt.Fprintf(&b, "  approve with: driftctl approve %s", in.ID)
		}
		if in.Approval != "" {
			fmt.Fprintf(&b, "  %s", in.Approval)
		}
		if len(in.Errors) > 0 {
			fmt.Fprintf(&b, "  errors: %s", strings.Join(in.Errors, "; "))
		}
		b.WriteByte('\n')
		if _, err := io.WriteString(w, clean(b.String())); err != nil {
			return err
		}
	}
	return nil
}

// since formats t - base for a person: microseconds up to milliseconds.
func since(base, t time.Time) time.Duration {
	d := t.Sub(base)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Millisecond)
	}
}

// clean keeps control characters from audit text (reasons, errors) off the
// terminal; the final newline stays.
func clean(s string) string {
	body := strings.TrimSuffix(s, "\n")
	body = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, body)
	return body + "\n"
}
