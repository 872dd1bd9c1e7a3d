package decide

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

func destroyEtc(t *testing.T) *Policy {
	t.Helper()
	p, err := ParsePolicy("test", []byte("rules:\n  - kind: file\n    path_prefix: /etc\n    action: destroy\n"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// evidenceDestroyer destroys by reading the evidence bucket: what it finds
// there is what was kept before the destroy.
type evidenceDestroyer struct {
	js  jetstream.JetStream
	mu  sync.Mutex
	got map[string]*event.Evidence // incident -> evidence found at destroy time; nil: none
}

func (d *evidenceDestroyer) Name() string { return "evidence-check" }

func (d *evidenceDestroyer) Destroy(ctx context.Context, t actuator.Target) error {
	var ev *event.Evidence
	if store, err := d.js.ObjectStore(ctx, event.EvidenceBucket); err == nil {
		if raw, err := store.GetBytes(ctx, t.Incident); err == nil {
			ev = &event.Evidence{}
			if err := json.Unmarshal(raw, ev); err != nil {
				return err
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got[t.Incident] = ev
	return nil
}

func (d *evidenceDestroyer) seen(inc string) (*event.Evidence, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ev, ok := d.got[inc]
	return ev, ok
}

func ids(evs []event.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

// The ladder on a destroy: cordon through ctl, then the evidence (the
// incident's finding, the host's recent findings, the file as the sensor
// answers for it) is in the bucket before the destroyer runs.
func TestEvidenceKeptBeforeDestroy(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	js, _ := jetstream.New(nc)
	audit := watchAudit(t, nc)
	content := []byte("root:x:0:0::/root:/bin/sh\nevil\n")
	sum := sha256.Sum256(content)
	answered := &event.FileEvidence{Path: "/etc/passwd", Size: int64(len(content)), Mode: "-rw-r--r--", Hashed: true,
		SHA256: hex.EncodeToString(sum[:]), Head: content}
	var mu sync.Mutex
	var cmds []string
	sp := realSensorWith(t, url, "web-1", transport.Options{Answer: func(c event.CtlCommand, r *event.CtlReply) error {
		mu.Lock()
		cmds = append(cmds, c.Cmd+" "+c.Arg)
		mu.Unlock()
		switch {
		case c.Cmd == event.CmdEvidence && c.Arg == answered.Path:
			r.File = answered
		case c.Cmd == event.CmdEvidence:
			return errors.New("open " + c.Arg + ": no such file or directory")
		}
		return nil
	}})
	d := &evidenceDestroyer{js: js, got: map[string]*event.Evidence{}}
	r := startResponder(t, url, Config{Policy: destroyEtc(t), CtlCordon: true, Evidence: true, Destroyers: []actuator.Destroyer{d}})

	// A record of the sensor's own (recent, never in an incident), an alert
	// (in the incident, its file gone), the drift.
	applied := &event.Event{Kind: event.KindSensor, Action: event.ActionStateApplied, Backend: "tracepoint",
		Health: &event.Health{Applied: &event.StateApplied{To: event.StateSealed}}}
	if err := sp.Publish(applied); err != nil {
		t.Fatal(err)
	}
	before := publishFinding(t, sp, event.KindFile, "/var/lib/app/state")
	drift := publishFinding(t, sp, event.KindFile, "/etc/passwd")
	var inc Incident
	eventually(t, "the destroy", func() bool {
		var ok bool
		inc, ok = r.Incident("web-1")
		return ok && inc.Acted == ActDestroy
	})
	ev, ok := d.seen(inc.ID)
	if !ok || ev == nil {
		t.Fatalf("the destroyer found no evidence of %s in %s; audit:\n%s", inc.ID, event.EvidenceBucket, audit.dump())
	}
	if ev.Schema != event.EvidenceSchema || ev.Incident != inc.ID || ev.Host != "web-1" || ev.Drill != "" ||
		!slices.Equal(ids(ev.Chain), []string{before.ID, drift.ID}) || len(ev.Missing) != 0 ||
		!slices.Equal(ids(ev.Recent), []string{applied.ID, before.ID, drift.ID}) || ev.Finished.Before(ev.Started) {
		t.Fatalf("evidence %+v, want chain [%s %s] and recent [%s %s %s]", ev, before.ID, drift.ID, applied.ID, before.ID, drift.ID)
	}
	if len(ev.Files) != 2 ||
		!reflect.DeepEqual(ev.Files[0], event.FileEvidence{Path: "/var/lib/app/state", Error: "refused by the sensor: open /var/lib/app/state: no such file or directory"}) ||
		ev.Files[1].Path != "/etc/passwd" || ev.Files[1].SHA256 != answered.SHA256 ||
		ev.Files[1].Size != answered.Size || string(ev.Files[1].Head) != string(content) || ev.Files[1].Error != "" {
		t.Fatalf("files %+v, want /var/lib/app/state refused and /etc/passwd as the sensor answered", ev.Files)
	}
	mu.Lock()
	got := slices.Clone(cmds)
	mu.Unlock()
	if !slices.Equal(got, []string{"cordon ", "evidence /var/lib/app/state", "evidence /etc/passwd"}) {
		t.Fatalf("ctl commands %q, want the cordon, then the evidence of each file", got)
	}
	recs := audit.find(stage("web-1", StageEvidence))
	if len(recs) != 1 || recs[0].Incident != inc.ID || recs[0].Error != "" || recs[0].Stages.Evidence.IsZero() ||
		recs[0].Reason != "kept in drift_evidence/"+inc.ID+": 2 findings of the incident (0 missing), 3 recent, 1 of 2 files read" {
		t.Fatalf("evidence records %+v", recs)
	}
}

// A host whose sensor does not answer (killed, or its link cut) still
// gets its evidence kept, the file's error said, and is destroyed.
func TestEvidenceWithoutSensor(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	js, _ := jetstream.New(nc)
	audit := watchAudit(t, nc)
	d := &evidenceDestroyer{js: js, got: map[string]*event.Evidence{}}
	r := startResponder(t, url, Config{Policy: destroyEtc(t), Evidence: true, CtlTimeout: time.Second, Destroyers: []actuator.Destroyer{d}})
	s := newSensor(t, nc, "db-1") // publishes; nothing listens on its ctl subject
	id := s.finding(event.KindFile, "/etc/shadow")
	var inc Incident
	eventually(t, "the destroy", func() bool {
		var ok bool
		inc, ok = r.Incident("db-1")
		return ok && inc.Acted == ActDestroy
	})
	ev, ok := d.seen(inc.ID)
	if !ok || ev == nil || !slices.Equal(ids(ev.Chain), []string{id}) || len(ev.Files) != 1 ||
		!reflect.DeepEqual(ev.Files[0], event.FileEvidence{Path: "/etc/shadow", Error: "no sensor is listening on drift.v1.db-1.ctl"}) {
		t.Fatalf("evidence at destroy %+v; audit:\n%s", ev, audit.dump())
	}
	if recs := audit.find(stage("db-1", StageEvidence)); len(recs) != 1 || recs[0].Error != "" ||
		recs[0].Reason != "kept in drift_evidence/"+inc.ID+": 1 findings of the incident (0 missing), 1 recent, 0 of 1 files read" {
		t.Fatalf("evidence records %+v", recs)
	}
}
