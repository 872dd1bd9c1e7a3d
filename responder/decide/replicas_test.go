package decide

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// stuckCordoner hangs on its first call, as an actuator whose replica dies
// under it, and records the calls after it.
type stuckCordoner struct {
	*recorder
	mu      sync.Mutex
	first   bool
	entered chan struct{}
	release chan struct{}
}

func newStuckCordoner() *stuckCordoner {
	return &stuckCordoner{recorder: newRecorder(), entered: make(chan struct{}), release: make(chan struct{})}
}

func (s *stuckCordoner) Cordon(ctx context.Context, t actuator.Target) error {
	s.mu.Lock()
	first := !s.first
	s.first = true
	s.mu.Unlock()
	if first {
		close(s.entered)
		select {
		case <-s.release:
		case <-ctx.Done():
		}
		return fmt.Errorf("replica died")
	}
	return s.add(t)
}

// TestReplicaDiesHoldingIncidents: of two replicas sharing the consumer, the
// one that holds a held incident and a half-done cordon is killed; the other
// carries out the approval of the held one, finishes the cordon, and raises
// no false gap on the findings the dead one had read.
func TestReplicaDiesHoldingIncidents(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	stuck := newStuckCordoner()
	cfg := Config{Policy: cordonEtc(t), Cordoners: []actuator.Cordoner{stuck}, MaxHosts: 2, Window: time.Hour,
		GapCheck: true, GapWait: 20 * time.Millisecond, ReplicaTimeout: time.Second, AckWait: 500 * time.Millisecond}
	replicas := map[string]*Responder{}
	for _, name := range []string{"a", "b"} {
		cfg.Replica = name
		replicas[name] = startResponderOn(t, fastConnect(t, url), cfg)
	}
	t.Cleanup(func() { close(stuck.release) }) // runs before the replicas close
	p := realSensor(t, url, "db-1")
	for i := 0; i < 50; i++ { // alerts, shared by the replicas
		publishFinding(t, p, event.KindFile, "/var/lib/x")
	}
	publishFinding(t, p, event.KindFile, "/etc/passwd") // db-1: cordon, which hangs
	<-stuck.entered
	newSensor(t, nc, "web-1").finding(event.KindFile, "/etc/passwd") // second slot: cordoned
	eventually(t, "web-1 cordoned", func() bool { return stuck.hosts()["web-1"] == 1 })
	newSensor(t, nc, "web-2").finding(event.KindFile, "/etc/passwd") // over the limit: held
	var hold Record
	eventually(t, "web-2 held", func() bool {
		for _, r := range streamRecords(t, nc) {
			if r.Stage == StageHold && r.Host == "web-2" && r.Error == "" {
				hold = r
				return true
			}
		}
		return false
	})

	// Kill the replica holding db-1's cordon claim.
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), ClaimBucket)
	if err != nil {
		t.Fatal(err)
	}
	inc, err := kv.Get(context.Background(), "inc.db-1")
	if err != nil {
		t.Fatal(err)
	}
	claim, err := kv.Get(context.Background(), actKey(string(inc.Value()), ActCordon))
	if err != nil {
		t.Fatal(err)
	}
	var cv claimValue
	if err := json.Unmarshal(claim.Value(), &cv); err != nil || cv.Done {
		t.Fatalf("db-1's cordon claim %s: %v", claim.Value(), err)
	}
	dead := replicas[cv.Replica]
	survivor := replicas[map[string]string{"a": "b", "b": "a"}[cv.Replica]]
	dead.nc.Close()

	eventually(t, "db-1's cordon finished by the survivor", func() bool { return stuck.hosts()["db-1"] == 1 })
	if survivor.Stats().Takeovers.Load() != 1 {
		t.Errorf("%d takeovers, want 1", survivor.Stats().Takeovers.Load())
	}
	// The held incident is in the bucket, not in the dead replica's memory.
	resp, err := nc.Request(ApproveSubject, mustJSON(Approval{Incident: hold.Incident, By: "alice"}), 5*time.Second)
	if err != nil || string(resp.Data) != `{"ok":true}` {
		t.Fatalf("approve %s: %v %s", hold.Incident, err, resp.Data)
	}
	eventually(t, "web-2 cordoned on approval", func() bool { return stuck.hosts()["web-2"] == 1 })
	eventually(t, "every finding acknowledged", func() bool {
		return dead.Stats().Acked.Load()+survivor.Stats().Acked.Load() >= 53
	})
	// The survivor read only part of db-1's sequence; the rest is in the
	// stream, read by the dead replica: the holes close without an alarm.
	eventually(t, "no open hole on the survivor", func() bool {
		c, open := hostSeq(survivor, "db-1")
		return c > 0 && !open
	})
	if n := survivor.Stats().Gaps.Load(); n != 0 {
		t.Errorf("%d gap alarms on the survivor, want 0 (the dead replica's findings are in the stream)", n)
	}
	var approvals []Record
	for _, r := range streamRecords(t, nc) {
		if r.Stage == StageApprove {
			approvals = append(approvals, r)
		}
	}
	if len(approvals) != 1 || approvals[0].Replica != survivor.cfg.Replica || approvals[0].Host != "web-2" {
		t.Errorf("approval records %+v, want one by the survivor %s", approvals, survivor.cfg.Replica)
	}
	if got := stuck.hosts(); len(got) != 3 {
		t.Errorf("cordons %v, want db-1, web-1, web-2 once each", got)
	}
}
