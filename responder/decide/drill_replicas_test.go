package decide

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
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
func armDrill(t *testing.T, nc *nats.Conn, kp nkeys.KeyPair, host, mode string) event.DrillMarker {
	t.Helper()
	now := time.Now()
	m := event.DrillMarker{Schema: event.DrillSchema, ID: fmt.Sprintf("d%d", now.UnixNano()), Host: host, Mode: mode,
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

// drillWorld is a server, a connection to it, an operator's key, and the
// configuration of replicas that trust that key and cordon on any finding.
func drillWorld(t *testing.T) (string, *nats.Conn, nkeys.KeyPair, Config) {
	t.Helper()
	url := natsServer(t)
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	pol, err := ParsePolicy("p.yaml", []byte("default: cordon\n"))
	if err != nil {
		t.Fatal(err)
	}
	return url, connect(t, url), kp, Config{Policy: pol, DrillKeys: []string{pub}, AckWait: time.Second}
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
			url, nc, kp, cfg := drillWorld(t)
			rec := newRecorder()
			cfg.Cordoners, cfg.NoStateSync = []actuator.Cordoner{rec}, true
			cfg.Replica = "a"
			a := startResponderOn(t, connect(t, url), cfg)
			cfg.Replica = "b"
			b := startResponderOn(t, connect(t, url), cfg)
			audit := watchAudit(t, nc)
			const host = "web-1"
			if tc.previous {
				prev := armDrill(t, nc, kp, host, event.DrillRecord)
				eventually(t, "b holds the previous drill's marker", func() bool { m, _ := heldMarker(b, host); return m.ID == prev.ID })
			}
			before, had := heldMarker(b, host)
			m := armDrill(t, nc, kp, host, event.DrillRecord)
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

// gatedCordoner holds its first cordon until released, and records every
// cordon and uncordon.
type gatedCordoner struct {
	*recorder
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gatedCordoner) Cordon(ctx context.Context, t actuator.Target) error {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	return g.add(t)
}

func (g *gatedCordoner) Uncordon(_ context.Context, t actuator.Target) error {
	t.Action = "uncordon"
	return g.add(t)
}

// TestDrillLadderOnceAcrossReplicas: a cordon drill's findings read by two
// replicas run the drill's ladder once. Replica a cordons on the drill's
// first finding; b reads the next one while a's cordon is under way. b
// neither keeps evidence nor releases the host (which would open it in the
// middle of a's cordon, or record a failed release that ends driftctl's
// report early): the one release is a's, after its cordon.
func TestDrillLadderOnceAcrossReplicas(t *testing.T) {
	url, nc, kp, cfg := drillWorld(t)
	gate := &gatedCordoner{recorder: newRecorder(), entered: make(chan struct{}), release: make(chan struct{})}
	cfg.Cordoners = []actuator.Cordoner{gate}
	cfg.Replica = "a"
	a := startResponderOn(t, connect(t, url), cfg)
	t.Cleanup(func() {
		select {
		case <-gate.release:
		default:
			close(gate.release)
		}
	}) // before a closes
	audit := watchAudit(t, nc)
	const host = "web-1"
	m := armDrill(t, nc, kp, host, event.DrillCordon)
	dir := "/var/lib/driftsensor/drill/" + event.DrillDir(m.ID) + "/"
	s := newSensor(t, nc, host)
	s.finding(event.KindFile, dir+"one")
	<-gate.entered // a cordons, and holds the drill's cordon claim
	a.mu.Lock()
	cc := a.consumer
	a.mu.Unlock()
	cc.Stop() // a reads nothing more: the next findings go to b
	cfg.Replica = "b"
	startResponderOn(t, connect(t, url), cfg)
	decided := func(id string) Record {
		var got Record
		eventually(t, "the decision of "+id, func() bool {
			for _, r := range audit.find(stage(host, StageDecision)) {
				if slices.Contains(r.Events, id) {
					got = r
					return true
				}
			}
			return false
		})
		return got
	}
	if r := decided(s.finding(event.KindFile, dir+"two")); r.Replica != "b" || r.Incident != DrillIncidentPrefix+m.ID {
		t.Fatalf("the second finding was decided by %s under %q, want b under the drill's incident\n%s", r.Replica, r.Incident, audit.dump())
	}
	// b decides a host's findings one after the other: once the third is
	// decided, all b did about the second is in the trail.
	decided(s.finding(event.KindFile, dir+"three"))
	if rs := audit.find(func(r Record) bool { return r.Replica == "b" && (r.Stage == StageRelease || r.Stage == StageEvidence) }); len(rs) > 0 {
		t.Fatalf("b ran the drill's ladder while a's cordon was under way: %+v\n%s", rs, audit.dump())
	}
	close(gate.release)
	eventually(t, "the drill's release", func() bool { return len(audit.find(stage(host, StageRelease))) > 0 })
	rel := audit.find(stage(host, StageRelease))
	if len(rel) != 1 || rel[0].Replica != "a" || rel[0].Error != "" {
		t.Fatalf("release records %+v, want one by a without error\n%s", rel, audit.dump())
	}
	if got := gate.actions(host); !slices.Equal(got, []string{"cordon", "uncordon"}) {
		t.Fatalf("actions on %s: %v, want one cordon, then one uncordon", host, got)
	}
}
