package decide

import (
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// TestStateAppliedIsNotActedOn: the sensor's record of a state it applied
// is counted (its seq fills the sequence) but is not drift: with the default
// policy, which cordons on any other sensor finding, it causes no decision.
// A lost_records finding after it is the barrier: once that one is decided,
// the record before it was handled too.
func TestStateAppliedIsNotActedOn(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	agent := newCtlAgent(t, nc, nil)
	r := startResponder(t, url, Config{Policy: DefaultPolicy(), CtlCordon: true})
	s := newSensor(t, nc, "db-7")
	s.seq++
	s.publish(event.Subject("db-7", event.KindSensor), event.Event{
		Schema: event.Schema, ID: "db-7-1", Host: "db-7", Seq: s.seq, Time: time.Now(), Kind: event.KindSensor,
		Action: event.ActionStateApplied, Backend: "tracepoint",
		Health: &event.Health{Applied: &event.StateApplied{From: event.StateSealed, To: event.StateMutable, Revision: 4}},
	})
	marker := s.finding(event.KindSensor, "")
	eventually(t, "the marker's decision", func() bool { return r.Stats().Decisions.Load() == 1 })
	eventually(t, "the marker's cordon", func() bool { return agent.total() == 1 })
	r.Close()
	if f, d := r.Stats().Findings.Load(), r.Stats().Decisions.Load(); f != 2 || d != 1 {
		t.Fatalf("%d findings counted, %d decisions; want 2 (the record and the marker %s), 1", f, d, marker)
	}
}
