// Package livedrill runs a drill on one live host for driftctl drill --host:
// it signs a short-lived drill marker with the operator's nkey, has the
// responder confirm it trusts it, asks the host's sensor to perform
// harmless techniques in its drill directory, and reports every stage the
// responder went through, timed, from its audit records.
package livedrill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/nats-io/nuid"

	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// Options say what to drill.
type Options struct {
	Host       string
	Mode       string   // event.DrillRecord or event.DrillCordon
	Techniques []string // keys of event.DrillTechniques
	TTL        time.Duration
	By         string
	Wait       time.Duration // for the responder's records after the techniques ran
	Timeout    time.Duration // per request
}

// Stage is one stage of the drill with its time.
type Stage struct {
	Name  string        `json:"stage"`
	Time  time.Time     `json:"time"`
	Since time.Duration `json:"since_ns"` // after the drill command was sent to the sensor
	Error string        `json:"error,omitempty"`
}

// Report is what a drill measured.
type Report struct {
	Marker   event.DrillMarker `json:"marker"`
	Signer   string            `json:"signer"`
	Run      *event.DrillRun   `json:"run"`
	Started  time.Time         `json:"started"` // the drill command was sent to the sensor
	Incident string            `json:"incident"`
	Findings []string          `json:"findings"`
	Stages   []Stage           `json:"stages"`
	Records  []decide.Record   `json:"records"`
	Complete bool              `json:"complete"` // the last stage of the mode was seen
}

// Run performs the drill.
func Run(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, kp nkeys.KeyPair, o Options) (*Report, error) {
	now := time.Now()
	m := event.DrillMarker{Schema: event.DrillSchema, ID: nuid.Next(), Host: o.Host, Mode: o.Mode, Techniques: o.Techniques,
		By: o.By, Issued: now, Expires: now.Add(o.TTL)}
	signed, err := event.SignMarker(m, kp)
	if err != nil {
		return nil, err
	}
	rep := &Report{Marker: m, Incident: decide.DrillIncidentPrefix + m.ID}
	rep.Signer, _ = kp.PublicKey()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: event.DrillBucket, History: 1, TTL: time.Hour})
	if err != nil {
		return nil, fmt.Errorf("drill bucket %s: %w", event.DrillBucket, err)
	}
	if _, err := kv.Put(ctx, o.Host, signed); err != nil {
		return nil, fmt.Errorf("publish the drill marker: %w", err)
	}
	// The responder must hold and trust the marker before anything happens
	// on the host: otherwise the drill is a real incident.
	arm, _ := json.Marshal(map[string]string{"host": o.Host, "id": m.ID})
	if err := request(ctx, nc, event.DrillArmSubject, arm, o.Timeout, "the responder", func(r event.CtlReply) error { return nil }); err != nil {
		return nil, fmt.Errorf("arm drill %s: %w", m.ID, err)
	}
	// Follow the host's audit records from now on.
	recs := make(chan decide.Record, 1024)
	sub, err := nc.Subscribe(decide.AuditSubject(o.Host), func(msg *nats.Msg) {
		var r decide.Record
		if json.Unmarshal(msg.Data, &r) == nil && r.Drill == m.ID {
			select {
			case recs <- r:
			default:
			}
		}
	})
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.FlushTimeout(o.Timeout); err != nil {
		return nil, err
	}
	cmd, err := event.NewCtlCommandArg(event.CmdDrill, m.ID, strings.Join(o.Techniques, ","))
	if err != nil {
		return nil, err
	}
	rep.Started = time.Now()
	err = request(ctx, nc, event.CtlSubject(o.Host), cmd.Encode(), o.Timeout, "the sensor of "+o.Host, func(r event.CtlReply) error {
		rep.Run = r.Drill
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("drill %s: %w", m.ID, err)
	}
	deadline := time.NewTimer(o.Wait)
	defer deadline.Stop()
	for !rep.Complete {
		select {
		case r := <-recs:
			rep.add(r)
		case <-deadline.C:
			return rep, nil
		case <-ctx.Done():
			return rep, ctx.Err()
		}
	}
	return rep, nil
}

// request sends a ctl-style request and checks the CtlReply.
func request(ctx context.Context, nc *nats.Conn, subject string, data []byte, timeout time.Duration, who string, ok func(event.CtlReply) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, subject, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%s does not listen on %s", who, subject)
	case err != nil:
		return fmt.Errorf("%s on %s: %w", who, subject, err)
	}
	r, err := event.DecodeCtlReply(msg.Data)
	if err != nil {
		return fmt.Errorf("%s: %w", who, err)
	}
	if !r.OK {
		return fmt.Errorf("%s refused: %s", who, r.Error)
	}
	return ok(r)
}

// add folds one audit record of the drill into the report.
func (rep *Report) add(r decide.Record) {
	rep.Records = append(rep.Records, r)
	stage := func(name string, t time.Time, errText string) {
		if t.IsZero() {
			return
		}
		for _, s := range rep.Stages {
			if s.Name == name {
				return
			}
		}
		rep.Stages = append(rep.Stages, Stage{Name: name, Time: t, Since: t.Sub(rep.Started), Error: errText})
	}
	switch r.Stage {
	case decide.StageDecision:
		rep.Findings = append(rep.Findings, r.Events...)
		stage("sensed", r.Stages.Sensed, "")
		stage("received", r.Stages.Received, "")
		stage("decided", r.Stages.Decided, "")
	case decide.StageAction:
		stage("cordoned ("+r.Actuator+")", r.Stages.Acted, r.Error)
	case decide.StageVerify:
		if r.Error != "" {
			stage("verified", r.Time, r.Error)
		}
		stage("verified", r.Stages.Verified, "")
	case decide.StageEvidence:
		stage("evidence", r.Stages.Evidence, r.Error)
		rep.Complete = rep.Complete || rep.Marker.Mode == event.DrillRecord
	case decide.StageRelease:
		stage("released", r.Stages.Released, r.Error)
		rep.Complete = true
	}
}

// WriteText prints the report as a table.
func (rep *Report) WriteText(w io.Writer) error {
	m := rep.Marker
	fmt.Fprintf(w, "drill %s on %s: mode %s, techniques %s; marker signed by %s, valid until %s\n",
		m.ID, m.Host, m.Mode, strings.Join(m.Techniques, ","), rep.Signer, m.Expires.UTC().Format(time.RFC3339))
	if rep.Run != nil {
		fmt.Fprintf(w, "performed by pid %d in %s\n", rep.Run.PID, rep.Run.Dir)
	}
	fmt.Fprintf(w, "incident %s: %d findings matched the marker\n\n", rep.Incident, len(rep.Findings))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tAFTER THE DRILL COMMAND\tFROM SENSED\tERROR")
	var sensed time.Time
	for _, s := range rep.Stages {
		if s.Name == "sensed" {
			sensed = s.Time
		}
	}
	for _, s := range rep.Stages {
		from := "-"
		if !sensed.IsZero() {
			from = s.Time.Sub(sensed).Round(time.Microsecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Since.Round(time.Microsecond), from, s.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !rep.Complete {
		fmt.Fprintf(w, "\nincomplete: no %s record within the wait (a policy that only alerts on these findings has no later stage; driftctl incidents --host %s shows what the responder did)\n", map[string]string{event.DrillRecord: "evidence", event.DrillCordon: "release"}[m.Mode], m.Host)
	}
	return nil
}
