package decide

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// armDrill does what driftctl drill --host does before the drill: it puts
// a marker signed by kp for host in the bucket, then asks the responders,
// with one request that one replica answers, to arm it.
func armDrill(t *testing.T, nc *nats.Conn, kp nkeys.KeyPair, host string) event.DrillMarker {
	t.Helper()
	now := time.Now()
	m := event.DrillMarker{Schema: event.DrillSchema, ID: fmt.Sprintf("d%d", now.UnixNano()), Host: host, Mode: event.DrillRecord,
		Techniques: []string{"file"}, Issued: now, Expires: now.Add(5 * time.Minute)}
	signed, err := event.SignMarker(m, kp)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, event.DrillBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, host, signed); err != nil {
		t.Fatal(err)
	}
	arm, _ := json.Marshal(drillArm{Host: host, ID: m.ID})
	msg, err := nc.RequestWithContext(ctx, event.DrillArmSubject, arm)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := event.DecodeCtlReply(msg.Data); err != nil || !rep.OK {
		t.Fatalf("arm drill %s: %+v %v", m.ID, rep, err)
	}
	return m
}

// heldMarker is the marker r holds for host.
func heldMarker(r *Responder, host string) (event.DrillMarker, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.markers[host]
	return m, ok
}

// TestDrillMarkerAcrossReplicas: of two replicas sharing the findings, one
// answers driftctl's arm request; the other reads the drill's finding while
// its watch of the drill bucket has not delivered the marker yet (it holds
// no marker for the host, or still the host's previous drill's). The
// finding is the drill's all the same: decided under the drill's incident,
// recorded only, and nothing is cordoned.
func TestDrillMarkerAcrossReplicas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		previous bool // the host had a drill before
	}{{"no marker yet", false}, {"the previous drill's marker", true}} {
		t.Run(tc.name, func(t *testing.T) {
			url := natsServer(t)
			nc := connect(t, url)
			kp, err := nkeys.CreateUser()
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := kp.PublicKey()
			pol, err := ParsePolicy("p.yaml", []byte("default: cordon\n"))
			if err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			cfg := Config{Policy: pol, Cordoners: []actuator.Cordoner{rec}, DrillKeys: []string{pub}, NoStateSync: true, AckWait: time.Second}
			cfg.Replica = "a"
			a := startResponderOn(t, connect(t, url), cfg)
			cfg.Replica = "b"
			b := startResponderOn(t, connect(t, url), cfg)
			audit := watchAudit(t, nc)
			const host = "web-1"
			if tc.previous {
				prev := armDrill(t, nc, kp, host)
				eventually(t, "b holds the previous drill's marker", func() bool { m, _ := heldMarker(b, host); return m.ID == prev.ID })
			}
			before, had := heldMarker(b, host)
			m := armDrill(t, nc, kp, host)
			// b's watch delivers the new marker in its own time; put b
			// back where it was before, as if it had not yet.
			eventually(t, "b's watch delivers the marker", func() bool { got, _ := heldMarker(b, host); return got.ID == m.ID })
			b.mu.Lock()
			if had {
				b.markers[host] = before
			} else {
				delete(b.markers, host)
			}
			b.mu.Unlock()
			a.Close() // the replica that answered the arm request (or not): b reads the finding
			id := newSensor(t, nc, host).finding(event.KindFile, "/var/lib/driftsensor/drill/"+event.DrillDir(m.ID)+"/file")
			var got Record
			eventually(t, "the finding's decision", func() bool {
				for _, r := range audit.find(stage(host, StageDecision)) {
					if slices.Contains(r.Events, id) {
						got = r
						return true
					}
				}
				return false
			})
			if got.Replica != "b" || got.Incident != DrillIncidentPrefix+m.ID {
				t.Fatalf("the drill's finding was decided by %s under incident %q, want b under %s%s (a real incident: the drill unseen)\n%s",
					got.Replica, got.Incident, DrillIncidentPrefix, m.ID, audit.dump())
			}
			eventually(t, "the drill's dry run", func() bool {
				return len(audit.find(func(r Record) bool { return r.Stage == StageDryRun && r.Incident == got.Incident })) == 1
			})
			if n := rec.total(); n != 0 {
				t.Fatalf("%d actions on a drill in record mode: %v\n%s", n, rec.actions(host), audit.dump())
			}
		})
	}
}
