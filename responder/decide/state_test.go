package decide

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
)

func newControl(t testing.TB, nc *nats.Conn) *control.Client {
	t.Helper()
	c, err := control.New(nc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

func setState(t testing.TB, c *control.Client, host string, st event.State, by string) {
	t.Helper()
	if _, err := c.SetState(context.Background(), host, st, by); err != nil {
		t.Fatal(err)
	}
}

func stateOfHost(t testing.TB, c *control.Client, host string) event.State {
	t.Helper()
	st, _, err := c.State(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// lastStateChange is the newest state change record of host in the findings stream.
func lastStateChange(t testing.TB, nc *nats.Conn, host string) event.StateChange {
	t.Helper()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), event.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), event.StateSubject(host))
	if err != nil {
		t.Fatal(err)
	}
	var ch event.StateChange
	if err := json.Unmarshal(m.Data, &ch); err != nil {
		t.Fatal(err)
	}
	return ch
}

// A cordon is written to the control plane; an uncordon there closes the
// incident, so the next drift on the host is a new incident, acted on again.
func TestCordonSetsStateAndUncordonReopens(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	agent := newCtlAgent(t, nc, nil)
	audit := watchAudit(t, nc)
	ctl := newControl(t, nc)
	setState(t, ctl, "db-1", event.StateSealed, "test")
	r := startResponder(t, url, Config{Replica: "r1", Policy: cordonEtc(t), CtlCordon: true})

	s := newSensor(t, nc, "db-1")
	s.finding(event.KindFile, "/etc/passwd")
	eventually(t, "the first cordon", func() bool { return agent.count("db-1") == 1 })
	eventually(t, "the state record", func() bool { return len(audit.find(stage("db-1", StageState))) == 1 })
	first, _ := r.Incident("db-1")
	if st := stateOfHost(t, ctl, "db-1"); st != event.StateCordoned {
		t.Fatalf("host state %s after the cordon, want cordoned", st)
	}
	if ch := lastStateChange(t, nc, "db-1"); ch.By != "driftresponder/r1" || ch.From != event.StateSealed || ch.To != event.StateCordoned {
		t.Errorf("state change record %+v", ch)
	}
	if rec := audit.find(stage("db-1", StageState))[0]; rec.Error != "" || rec.Incident != first.ID || !contains(rec.Reason, "sealed -> cordoned") {
		t.Errorf("state audit record %+v", rec)
	}
	// More drift while cordoned joins the incident.
	s.finding(event.KindFile, "/etc/hosts")
	eventually(t, "two decisions", func() bool { return r.Stats().Decisions.Load() == 2 })

	setState(t, ctl, "db-1", event.StateSealed, "alice") // driftctl uncordon db-1
	eventually(t, "the close record", func() bool { return len(audit.find(stage("db-1", StageClose))) == 1 })
	cl := audit.find(stage("db-1", StageClose))[0]
	if cl.Incident != first.ID || cl.Error != "" || cl.Action != ActCordon || !contains(cl.Reason, "by alice") {
		t.Errorf("close record %+v, want incident %s closed by alice", cl, first.ID)
	}
	if _, open := r.Incident("db-1"); open {
		t.Error("incident still open in the replica after the uncordon")
	}

	s.finding(event.KindFile, "/etc/shadow")
	eventually(t, "the second cordon", func() bool { return agent.count("db-1") == 2 })
	eventually(t, "cordoned again", func() bool { return stateOfHost(t, ctl, "db-1") == event.StateCordoned })
	second, _ := r.Incident("db-1")
	if second.ID == "" || second.ID == first.ID {
		t.Errorf("second drift in incident %q, want a new one (first %s)", second.ID, first.ID)
	}
	if agent.cmds["db-1"][1].ID != second.ID {
		t.Errorf("second cordon for %s, want %s", agent.cmds["db-1"][1].ID, second.ID)
	}
}

// Two replicas close the incident once, and the next drift is cordoned once.
func TestUncordonWithTwoReplicas(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	agent := newCtlAgent(t, nc, nil)
	audit := watchAudit(t, nc)
	ctl := newControl(t, nc)
	cfg := Config{Policy: cordonEtc(t), CtlCordon: true}
	cfg.Replica = "a"
	startResponder(t, url, cfg)
	cfg.Replica = "b"
	startResponder(t, url, cfg)

	s := newSensor(t, nc, "db-1")
	for i := 0; i < 5; i++ {
		s.finding(event.KindFile, "/etc/passwd")
	}
	eventually(t, "cordoned", func() bool { return stateOfHost(t, ctl, "db-1") == event.StateCordoned })
	eventually(t, "five decisions", func() bool { return len(audit.find(stage("db-1", StageDecision))) == 5 })
	setState(t, ctl, "db-1", event.StateSealed, "alice")
	eventually(t, "the close record", func() bool { return len(audit.find(stage("db-1", StageClose))) == 1 })
	for i := 0; i < 5; i++ {
		s.finding(event.KindFile, "/etc/passwd")
	}
	eventually(t, "cordoned again", func() bool { return agent.count("db-1") == 2 && stateOfHost(t, ctl, "db-1") == event.StateCordoned })
	eventually(t, "ten decisions", func() bool { return len(audit.find(stage("db-1", StageDecision))) == 10 })
	// Barrier: a replica acts on an incident right after its first decision
	// for it, ending with an action or a skip record; once every replica that
	// decided has one for each incident, no late cordon can follow.
	eventually(t, "every replica done acting on each incident it decided", func() bool {
		done := map[[2]string]bool{}
		for _, r := range audit.find(func(r Record) bool {
			return r.Host == "db-1" && (r.Stage == StageAction || r.Stage == StageSkip)
		}) {
			done[[2]string{r.Replica, r.Incident}] = true
		}
		for _, d := range audit.find(stage("db-1", StageDecision)) {
			if !done[[2]string{d.Replica, d.Incident}] {
				return false
			}
		}
		return true
	})
	if n := agent.count("db-1"); n != 2 {
		t.Errorf("%d cordons, want 2 (one per incident)", n)
	}
	if n := len(audit.find(stage("db-1", StageClose))); n != 1 {
		t.Errorf("%d close records, want 1\n%s", n, audit.dump())
	}
	ids := map[string]bool{}
	for _, d := range audit.find(stage("db-1", StageDecision)) {
		ids[d.Incident] = true
	}
	if len(ids) != 2 {
		t.Errorf("incidents %v, want two", ids)
	}
}

// An uncordon made while no responder ran closes the incident when one starts.
func TestUncordonWhileDown(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	agent := newCtlAgent(t, nc, nil)
	audit := watchAudit(t, nc)
	ctl := newControl(t, nc)
	cfg := Config{Replica: "r1", Policy: cordonEtc(t), CtlCordon: true}
	r1 := startResponder(t, url, cfg)
	s := newSensor(t, nc, "db-1")
	s.finding(event.KindFile, "/etc/passwd")
	eventually(t, "cordoned", func() bool { return stateOfHost(t, ctl, "db-1") == event.StateCordoned })
	first, _ := r1.Incident("db-1")
	r1.Close()

	setState(t, ctl, "db-1", event.StateSealed, "alice")
	cfg.Replica = "r2"
	startResponder(t, url, cfg)
	eventually(t, "the close record", func() bool { return len(audit.find(stage("db-1", StageClose))) == 1 })
	if cl := audit.find(stage("db-1", StageClose))[0]; cl.Incident != first.ID || cl.Replica != "r2" {
		t.Errorf("close record %+v", cl)
	}
	s.finding(event.KindFile, "/etc/passwd")
	eventually(t, "cordoned again", func() bool { return agent.count("db-1") == 2 })
}

// A destroy is written to the control plane; a dry run writes nothing.
func TestDestroySetsStateDryRunDoesNot(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	audit := watchAudit(t, nc)
	ctl := newControl(t, nc)
	rec := newRecorder()
	startResponder(t, url, Config{Replica: "r1", Policy: cordonEtc(t), Cordoners: []actuator.Cordoner{rec}, Destroyers: []actuator.Destroyer{rec}})
	newSensor(t, nc, "web-1").finding(event.KindExec, "/tmp/x")
	eventually(t, "destroyed", func() bool { return stateOfHost(t, ctl, "web-1") == event.StateDestroyed })
	eventually(t, "two state records (cordoned, destroyed)", func() bool { return len(audit.find(stage("web-1", StageState))) == 2 })

	url2 := natsServer(t)
	nc2 := connect(t, url2)
	audit2 := watchAudit(t, nc2)
	ctl2 := newControl(t, nc2)
	startResponder(t, url2, Config{Replica: "dry", Policy: cordonEtc(t), DryRun: true, Destroyers: []actuator.Destroyer{rec}})
	newSensor(t, nc2, "web-1").finding(event.KindExec, "/tmp/x")
	eventually(t, "the dry-run record", func() bool { return len(audit2.find(stage("web-1", StageDryRun))) == 1 })
	if st := stateOfHost(t, ctl2, "web-1"); st != event.StateMutable {
		t.Errorf("dry run set the host state to %s", st)
	}
	if n := len(audit2.find(stage("web-1", StageState))); n != 0 {
		t.Errorf("%d state records in a dry run", n)
	}
}
