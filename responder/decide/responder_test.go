package decide

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/event"
)

func cordonEtc(t *testing.T) *Policy {
	t.Helper()
	p, err := ParsePolicy("test", []byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindingCordonsThroughCtlAndAudits(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	agent := newCtlAgent(t, nc, nil)
	audit := watchAudit(t, nc)
	rec := newRecorder()
	r := startResponder(t, url, Config{Policy: cordonEtc(t), CtlCordon: true, Cordoners: []actuator.Cordoner{rec}})

	s := newSensor(t, nc, "db-1")
	id := s.finding(event.KindFile, "/etc/shadow")
	eventually(t, "a cordon on db-1's ctl subject", func() bool { return agent.count("db-1") == 1 })
	eventually(t, "the external cordon", func() bool { return rec.total() == 1 })
	eventually(t, "two action records", func() bool { return len(audit.find(stage("db-1", StageAction))) == 2 })

	inc, ok := r.Incident("db-1")
	if !ok || inc.Acted != ActCordon || len(inc.Events) != 1 || inc.Events[0] != id {
		t.Errorf("incident %+v", inc)
	}
	agent.mu.Lock()
	cmd := agent.cmds["db-1"][0]
	agent.mu.Unlock()
	if cmd.Cmd != "cordon" || cmd.ID != inc.ID || cmd.Schema != CtlSchema {
		t.Errorf("ctl command %+v, want cordon with id %s", cmd, inc.ID)
	}
	if got := rec.calls["db-1"][0]; got.Incident != inc.ID || len(got.Events) != 1 || got.Events[0] != id {
		t.Errorf("actuator target %+v", got)
	}
	dec := audit.find(stage("db-1", StageDecision))
	if len(dec) != 1 || dec[0].Action != ActCordon || dec[0].Rule != "etc" || dec[0].Events[0] != id ||
		dec[0].Stages.Received.IsZero() || dec[0].Stages.Decided.IsZero() || dec[0].Stages.Sensed.IsZero() {
		t.Errorf("decision records %+v", dec)
	}
	for _, a := range audit.find(stage("db-1", StageAction)) {
		if a.Error != "" || a.Stages.Acted.IsZero() || a.Incident != inc.ID {
			t.Errorf("action record %+v", a)
		}
	}

	// More findings join the incident without a second cordon.
	s.finding(event.KindFile, "/etc/hosts")
	s.finding(event.KindNet, "")
	eventually(t, "three decisions", func() bool { return r.Stats().Decisions.Load() == 3 })
	r.Close()
	if agent.count("db-1") != 1 || rec.total() != 1 {
		t.Errorf("cordoned %d times by ctl and %d externally, want once each", agent.count("db-1"), rec.total())
	}
	if inc, _ := r.Incident("db-1"); len(inc.Events) != 3 {
		t.Errorf("incident has events %v, want 3", inc.Events)
	}

	// The audit trail is in JetStream, not just on the wire.
	js, _ := nc.JetStream()
	si, err := js.StreamInfo(event.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	if si.State.Msgs < 5 {
		t.Errorf("audit stream holds %d records, want at least 5", si.State.Msgs)
	}
}

func TestAuthenticity(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	agent := newCtlAgent(t, nc, nil)
	r := startResponder(t, url, Config{Policy: cordonEtc(t), CtlCordon: true})

	forged := event.Event{Schema: event.Schema, ID: "x-1", Host: "db-2", Seq: 1, Kind: event.KindFile, File: &event.File{Path: "/etc/passwd"}}
	s := newSensor(t, nc, "db-1")
	s.publish(event.Subject("db-1", event.KindFile), forged) // db-1 accusing db-2
	wrongKind := forged
	wrongKind.ID, wrongKind.Host = "x-2", "db-1"
	s.publish(event.Subject("db-1", event.KindExec), wrongKind) // a file finding on the exec subject
	oldSchema := wrongKind
	oldSchema.ID, oldSchema.Schema = "x-3", "driftsensor.event/v0"
	s.publish(event.Subject("db-1", event.KindFile), oldSchema)
	ctlHost := forged
	ctlHost.ID, ctlHost.Host = "x-4", "ctl"
	s.publish(event.Subject("ctl", event.KindFile), ctlHost) // the reserved name
	_ = nc.Publish(event.Subject("db-1", event.KindFile), []byte("not json"))
	hb := event.Heartbeat{Schema: event.HeartbeatSchema, Host: "db-2", Counters: event.Counters{LostRecords: 9}}
	s.publish(event.HeartbeatSubject("db-1"), hb)

	eventually(t, "six rejections", func() bool { return r.Stats().Rejected.Load() == 6 })
	r.Close()
	if n := agent.total(); n != 0 || r.Stats().Decisions.Load() != 0 {
		t.Errorf("acted on forged input: %d cordons, %d decisions", n, r.Stats().Decisions.Load())
	}
}

func TestDuplicatesAreDropped(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	r := startResponder(t, url, Config{})
	ev := event.Event{Schema: event.Schema, ID: "dup-1", Host: "h1", Seq: 1, Kind: event.KindFile, File: &event.File{Path: "/x"}}
	s := newSensor(t, nc, "h1")
	for i := 0; i < 3; i++ {
		s.publish(event.Subject("h1", event.KindFile), ev)
	}
	eventually(t, "two duplicates", func() bool { return r.Stats().Duplicates.Load() == 2 })
	r.Close()
	if r.Stats().Decisions.Load() != 1 {
		t.Errorf("%d decisions, want 1", r.Stats().Decisions.Load())
	}
}

func TestDryRunNeverActs(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	agent := newCtlAgent(t, nc, nil)
	audit := watchAudit(t, nc)
	rec := newRecorder()
	r := startResponder(t, url, Config{
		Policy: cordonEtc(t), DryRun: true, CtlCordon: true,
		Cordoners: []actuator.Cordoner{rec}, Destroyers: []actuator.Destroyer{rec},
		HeartbeatInterval: 20 * time.Millisecond, GapCheck: true, MassHosts: -1, MassPercent: -1,
	})
	web := newSensor(t, nc, "web-1")
	web.heartbeat(event.Counters{})
	web.finding(event.KindFile, "/etc/passwd") // cordon
	web.finding(event.KindExec, "/tmp/x")      // destroy
	db := newSensor(t, nc, "db-1")
	db.heartbeat(event.Counters{LostRecords: 3}) // dead man
	db.seq = 10
	db.finding(event.KindSensor, "") // dead man again, and a gap
	// web-1 and db-1 now fall silent: the dead man's switch fires too.
	eventually(t, "silence noticed", func() bool {
		return len(audit.find(func(r Record) bool { return r.Stage == StageDeadMan && r.Host == "web-1" })) > 0
	})
	// Findings on different subjects may be handled in either order, so
	// web-1 gets "would destroy" and perhaps "would cordon" before it.
	eventually(t, "dry-run records for both hosts", func() bool {
		return len(audit.find(func(r Record) bool { return r.Host == "web-1" && r.Stage == StageDryRun && r.Action == ActDestroy })) == 1 &&
			len(audit.find(stage("db-1", StageDryRun))) == 1
	})
	r.Close()
	if agent.total() != 0 || rec.total() != 0 {
		t.Errorf("dry run acted: %d ctl commands, %d actuator calls", agent.total(), rec.total())
	}
	if n := len(audit.find(func(r Record) bool { return r.Stage == StageAction || r.Stage == StageVerify })); n != 0 {
		t.Errorf("%d action records in a dry run", n)
	}
	for _, d := range audit.find(func(r Record) bool { return r.Stage == StageDecision }) {
		if !d.DryRun {
			t.Errorf("decision not marked dry run: %+v", d)
		}
	}
}

func TestDeadManSwitch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cause func(s *sensor)
		want  string
	}{
		{"silence", func(s *sensor) {}, "no heartbeat"},
		{"lost records", func(s *sensor) { s.heartbeat(event.Counters{LostRecords: 7}) }, "lost 7 kernel records"},
		{"spool overflow", func(s *sensor) { s.heartbeat(event.Counters{SpoolLost: 2}) }, "dropped 2 findings"},
		{"sequence reset", func(s *sensor) { s.seq = 1; s.heartbeat(event.Counters{}) }, "went back from 50 to 1 within one sensor run"},
		{"tamper finding", func(s *sensor) { s.finding(event.KindSensor, "") }, "sensor write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := natsServer(t)
			nc := connect(t, url)
			audit := watchAudit(t, nc)
			rec := newRecorder()
			iv := 20 * time.Millisecond
			r := startResponder(t, url, Config{Cordoners: []actuator.Cordoner{rec}, HeartbeatInterval: iv, MissedBeats: 3, GapCheck: true})
			s := newSensor(t, nc, "h1")
			s.seq = 49
			s.finding(event.KindNet, "") // seq 50, alert only
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { // a healthy sensor beats until stopped
				defer close(done)
				tk := time.NewTicker(iv)
				defer tk.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tk.C:
						s.heartbeat(event.Counters{})
					}
				}
			}()
			eventually(t, "heartbeats", func() bool { return r.Stats().Heartbeats.Load() >= 5 })
			if tc.name != "silence" {
				close(stop)
				<-done
				stop = make(chan struct{})
				done = make(chan struct{})
				tc.cause(s)
				go func() { // and keeps beating, so only the cause can fire
					defer close(done)
					for {
						select {
						case <-stop:
							return
						case <-time.After(iv):
							s.heartbeat(event.Counters{LostRecords: 7, SpoolLost: 2})
						}
					}
				}()
			}
			if tc.name == "silence" {
				if rec.total() != 0 {
					t.Fatal("cordoned while heartbeats arrived")
				}
				close(stop) // the sensor is killed
				<-done
			}
			eventually(t, "the dead man's cordon", func() bool { return rec.total() == 1 })
			if tc.name != "silence" {
				close(stop)
				<-done
			}
			r.Close()
			dmRecord := func(r Record) bool { return r.Host == "h1" && r.Stage == StageDeadMan }
			if tc.name == "tamper finding" {
				dmRecord = func(r Record) bool { return r.Host == "h1" && r.Stage == StageDecision && r.Rule == "dead_man" }
			}
			eventually(t, "the dead man's audit record", func() bool { return len(audit.find(dmRecord)) > 0 })
			if dm := audit.find(dmRecord); !contains(dm[0].Reason, tc.want) {
				t.Errorf("dead man records %+v, want reason with %q\n%s", dm, tc.want, audit.dump())
			}
			if rec.total() != 1 {
				t.Errorf("cordoned %d times, want once", rec.total())
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestLimiterHoldsAtK(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	audit := watchAudit(t, nc)
	rec := newRecorder()
	// Exec drift destroys, a step past the cordon, so a finding on a
	// cordoned host meets the limiter again.
	pol, err := ParsePolicy("limiter.yaml", []byte("default: alert\nrules:\n  - {kind: file, path_prefix: /etc, action: cordon}\n  - {kind: exec, action: destroy}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := startResponder(t, url, Config{Policy: pol, Cordoners: []actuator.Cordoner{rec}, Destroyers: []actuator.Destroyer{rec}, MaxHosts: 2, Window: time.Hour})
	const n = 5
	for i := 0; i < n; i++ {
		newSensor(t, nc, fmt.Sprintf("h%d", i)).finding(event.KindFile, "/etc/passwd")
	}
	eventually(t, "every host decided", func() bool {
		return len(audit.find(func(r Record) bool { return r.Stage == StageDecision })) == n
	})
	eventually(t, "the rest held", func() bool { return r.Stats().Held.Load() == n-2 })
	eventually(t, "the first two cordoned", func() bool { return rec.total() >= 2 })
	if got := rec.total(); got != 2 {
		t.Fatalf("cordoned %d hosts, want 2 (the limit)", got)
	}
	eventually(t, "hold records", func() bool { return len(audit.find(func(r Record) bool { return r.Stage == StageHold })) == n-2 })
	// A new finding on a cordoned host is not a new host: it passes the
	// limiter (destroyed, not held), though the window is full.
	var acted string
	for h := range rec.hosts() {
		acted = h
	}
	s := newSensor(t, nc, acted)
	s.seq = 1
	s.finding(event.KindExec, "/tmp/x")
	eventually(t, "the destroy of the cordoned host", func() bool { return rec.hosts()[acted] == 2 })
	if got := rec.actions(acted); !slices.Equal(got, []string{"cordon", "destroy"}) {
		t.Errorf("%s: actions %v, want [cordon destroy]", acted, got)
	}
	if h := r.Stats().Held.Load(); h != n-2 {
		t.Errorf("%d held, want %d: the cordoned host's new finding was held", h, n-2)
	}
	// A person approves one held incident.
	held := audit.find(func(r Record) bool { return r.Stage == StageHold })
	if !contains(held[0].Reason, "driftctl approve "+held[0].Incident) {
		t.Errorf("hold record does not say how to approve: %q", held[0].Reason)
	}
	resp, err := nc.Request(ApproveSubject, mustJSON(Approval{Incident: held[0].Incident, By: "alice"}), 5*time.Second)
	if err != nil {
		t.Fatalf("approve: %v", err)
	}
	if string(resp.Data) != `{"ok":true}` {
		t.Errorf("approve reply %s", resp.Data)
	}
	eventually(t, "the approved cordon", func() bool { return rec.hosts()[held[0].Host] == 1 })
	r.Close()
	if got := rec.total(); got != 4 {
		t.Errorf("%d actions, want 4 (2 cordons + 1 destroy + 1 approved cordon): %v", got, rec.hosts())
	}
	eventually(t, "the approval record", func() bool { return len(audit.find(stage(held[0].Host, StageApprove))) > 0 })
	if a := audit.find(stage(held[0].Host, StageApprove)); len(a) != 1 || !contains(a[0].Reason, "alice") {
		t.Errorf("approval records %+v", a)
	}
}

func TestLimiterPercentOfFleet(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	rec := newRecorder()
	r := startResponder(t, url, Config{Policy: cordonEtc(t), Cordoners: []actuator.Cordoner{rec}, MaxPercent: 20})
	var ss []*sensor
	for i := 0; i < 10; i++ {
		s := newSensor(t, nc, fmt.Sprintf("h%d", i))
		s.heartbeat(event.Counters{})
		ss = append(ss, s)
	}
	eventually(t, "the fleet known", func() bool { return r.Stats().Heartbeats.Load() == 10 })
	for _, s := range ss[:5] {
		s.finding(event.KindFile, "/etc/passwd")
	}
	eventually(t, "holds", func() bool { return r.Stats().Held.Load() == 3 })
	r.Close()
	if rec.total() != 2 {
		t.Errorf("cordoned %d of 10 hosts at 20%%, want 2", rec.total())
	}
}

func TestTwoReplicasActOnce(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	agent := newCtlAgent(t, nc, nil)
	audit := watchAudit(t, nc)
	rec := newRecorder()
	cfg := Config{Policy: cordonEtc(t), CtlCordon: true, Cordoners: []actuator.Cordoner{rec}, Destroyers: []actuator.Destroyer{rec},
		HeartbeatInterval: 20 * time.Millisecond, MassHosts: -1, MassPercent: -1,
		NoStateSync: true} // hosts known from the control plane would be judged silent too
	cfg.Replica = "a"
	ra := startResponder(t, url, cfg)
	cfg.Replica = "b"
	rb := startResponder(t, url, cfg)

	hosts := []string{"db-1", "db-2", "web-1"}
	for round := 0; round < 20; round++ {
		for _, h := range hosts {
			s := newSensor(t, nc, h)
			s.seq = uint64(round)
			s.finding(event.KindFile, "/etc/passwd")
		}
	}
	// web-1 also runs a dropped binary: destroy, once.
	s := newSensor(t, nc, "web-1")
	s.seq = 100
	s.finding(event.KindExec, "/tmp/x")
	// A silent host: both replicas notice, one acts.
	q := newSensor(t, nc, "quiet")
	q.heartbeat(event.Counters{})

	// The replicas share one durable consumer: each finding goes to one.
	eventually(t, "every finding read once", func() bool {
		return ra.Stats().Findings.Load()+rb.Stats().Findings.Load() == 61
	})
	eventually(t, "the silent host handled by both", func() bool {
		return len(audit.find(stage("quiet", StageDeadMan))) == 2
	})
	eventually(t, "all decisions", func() bool { return ra.Stats().Decisions.Load()+rb.Stats().Decisions.Load() == 63 })
	ra.Close()
	rb.Close()
	want := map[string]int{"db-1": 1, "db-2": 1, "web-1": 2, "quiet": 1} // web-1: cordon + destroy
	for h, n := range want {
		if got := rec.hosts()[h]; got != n {
			t.Errorf("%s: %d actuator calls, want %d", h, got, n)
		}
		if got := agent.count(h); got != 1 {
			t.Errorf("%s: %d ctl cordons, want 1", h, got)
		}
	}
	// Both replicas used one incident per host.
	for _, h := range hosts {
		ids := map[string]bool{}
		for _, d := range audit.find(stage(h, StageDecision)) {
			ids[d.Incident] = true
		}
		if len(ids) != 1 {
			t.Errorf("%s: incidents %v across replicas, want one", h, ids)
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
