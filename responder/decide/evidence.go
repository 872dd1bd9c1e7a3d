package decide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// The containment ladder is cordon, evidence, destroy. Once a host is
// cordoned, and before it is destroyed, the responder keeps what an
// investigation needs in the EvidenceBucket object store: the incident's
// findings (each with its process ancestry), the host's recent findings,
// and each named file as the host's sensor reads it (hash, size, first
// 4 KiB). It runs after the cordon, so it never delays it.

// Evidence defaults.
const (
	evidenceRecent  = 100              // the host's last findings kept
	evidenceWindow  = 10 * time.Minute // how far back they are read
	evidenceFiles   = 16               // files asked of the sensor, at most
	evidenceTimeout = 10 * time.Second // for the whole capture
)

// openEvidence creates (or binds) the evidence bucket.
func (r *Responder) openEvidence(ctx context.Context) error {
	store, err := r.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: event.EvidenceBucket, Description: "driftresponder evidence, one object per incident (driftctl evidence INCIDENT)",
	})
	if err != nil {
		return fmt.Errorf("evidence bucket %s: %w", event.EvidenceBucket, err)
	}
	r.evidence = store
	return nil
}

// keepEvidence captures the incident's evidence once, stores it and audits
// the stage with its time; hs.mu is held.
func (r *Responder) keepEvidence(inc *Incident, drill string, st Stages) {
	if r.evidence == nil || inc.Evidence {
		return
	}
	inc.Evidence = true
	ctx, cancel := context.WithTimeout(r.ctx, evidenceTimeout)
	defer cancel()
	rec := Record{Host: inc.Host, Incident: inc.ID, Stage: StageEvidence, Events: inc.Events, Drill: drill}
	if _, err := r.evidence.GetInfo(ctx, inc.ID); err == nil {
		rec.Reason = "evidence already kept by another replica"
		r.audit(rec)
		return
	}
	ev, err := r.captureEvidence(ctx, inc, drill)
	if err == nil {
		var data []byte
		if data, err = json.Marshal(ev); err == nil {
			_, err = r.evidence.PutBytes(ctx, inc.ID, data)
		}
	}
	st.Evidence = time.Now()
	rec.Stages = st
	if err != nil {
		r.stats.ActionErrors.Add(1)
		rec.Error = "evidence not kept: " + err.Error()
	} else {
		read := 0
		for _, f := range ev.Files {
			if f.Error == "" {
				read++
			}
		}
		rec.Reason = fmt.Sprintf("kept in %s/%s: %d findings of the incident (%d missing), %d recent, %d of %d files read",
			event.EvidenceBucket, inc.ID, len(ev.Chain), len(ev.Missing), len(ev.Recent), read, len(ev.Files))
	}
	r.audit(rec)
}

// captureEvidence reads the host's recent findings from the findings
// stream and asks the host's sensor for the files the incident names.
func (r *Responder) captureEvidence(ctx context.Context, inc *Incident, drill string) (*event.Evidence, error) {
	ev := &event.Evidence{Schema: event.EvidenceSchema, Incident: inc.ID, Host: inc.Host, Replica: r.cfg.Replica, Drill: drill,
		Started: time.Now(), RecentWindow: evidenceWindow, RecentLimit: evidenceRecent}
	recent, chain, err := r.recentFindings(ctx, inc.Host, inc.Events, ev.Started.Add(-evidenceWindow))
	if err != nil {
		return nil, err
	}
	ev.Recent, ev.Chain = recent, chain
	for _, id := range inc.Events {
		if !slices.ContainsFunc(chain, func(e event.Event) bool { return e.ID == id }) && !slices.Contains(ev.Missing, id) {
			ev.Missing = append(ev.Missing, id)
		}
	}
	var paths []string
	for i := range chain {
		for _, p := range eventPaths(&chain[i]) {
			if !slices.Contains(paths, p) && len(paths) < evidenceFiles {
				paths = append(paths, p)
			}
		}
	}
	for _, p := range paths {
		ev.Files = append(ev.Files, r.fileEvidence(ctx, inc.Host, p))
	}
	ev.Finished = time.Now()
	return ev, nil
}

// recentFindings reads the host's findings since from the stream: the last
// evidenceRecent of them, and every one whose id is in ids (the chain).
func (r *Responder) recentFindings(ctx context.Context, host string, ids []string, since time.Time) (recent, chain []event.Event, err error) {
	var subjects []string
	for _, k := range []event.Kind{event.KindFile, event.KindExec, event.KindNet, event.KindSensor} {
		subjects = append(subjects, event.Subject(host, k))
	}
	cons, err := r.js.OrderedConsumer(ctx, event.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read %s's findings from %s: %w", host, event.StreamName, err)
	}
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s's findings from %s: %w", host, event.StreamName, err)
		}
		n, pending := 0, uint64(0)
		for m := range batch.Messages() {
			n++
			if md, err := m.Metadata(); err == nil {
				pending = md.NumPending
			}
			var e event.Event
			if json.Unmarshal(m.Data(), &e) != nil || e.Schema != event.Schema || e.Host != host {
				continue
			}
			if slices.Contains(ids, e.ID) && !slices.ContainsFunc(chain, func(c event.Event) bool { return c.ID == e.ID }) {
				chain = append(chain, e)
			}
			if len(recent) == evidenceRecent {
				recent = slices.Delete(recent, 0, 1)
			}
			recent = append(recent, e)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, nil, fmt.Errorf("read %s's findings from %s: %w", host, event.StreamName, err)
		}
		if n == 0 || pending == 0 {
			return recent, chain, nil
		}
	}
}

// fileEvidence asks the host's sensor for one file; what fails is said in
// the result's Error.
func (r *Responder) fileEvidence(ctx context.Context, host, path string) event.FileEvidence {
	fe := event.FileEvidence{Path: path}
	msg, err := event.NewCtlCommandArg(event.CmdEvidence, "evidence", path)
	if err != nil {
		fe.Error = err.Error()
		return fe
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CtlTimeout)
	defer cancel()
	m, err := r.nc.RequestWithContext(ctx, event.CtlSubject(host), msg.Encode())
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		fe.Error = "no sensor is listening on " + event.CtlSubject(host)
		return fe
	case err != nil:
		fe.Error = "asking the sensor: " + err.Error()
		return fe
	}
	rep, err := event.DecodeCtlReply(m.Data)
	switch {
	case err != nil:
		fe.Error = "unreadable reply: " + err.Error()
	case !rep.OK:
		fe.Error = "refused by the sensor: " + rep.Error
	case rep.File == nil || rep.File.Path != path:
		fe.Error = "the sensor's reply is not about " + path
	default:
		fe = *rep.File
	}
	return fe
}
