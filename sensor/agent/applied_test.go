package agent

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// sensorRecords reads host's sensor findings kept in the stream, oldest first.
func (p *pipeline) sensorRecords(t *testing.T) []event.Event {
	t.Helper()
	js, _ := jetstream.New(p.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, event.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{event.Subject(p.host, event.KindSensor)}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for range info.NumPending {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var ev event.Event
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// TestStateChangesAreRecorded: every state the sensor applies is a record
// in the stream: the state it booted with, set by itself, and each change
// from the control plane with the KV revision whose audit record names who.
func TestStateChangesAreRecorded(t *testing.T) {
	p := start(t, "cp5", true)
	ctx := context.Background()
	// The control plane seals a host that booted sealed: no change, no record.
	if _, err := p.ctl.SetState(ctx, p.host, event.StateSealed, "carol"); err != nil {
		t.Fatal(err)
	}
	unseal, err := p.ctl.SetState(ctx, p.host, event.StateMutable, "alice")
	if err != nil {
		t.Fatal(err)
	}
	p.waitState(t, event.StateMutable)
	cordon, err := p.ctl.SetState(ctx, p.host, event.StateCordoned, "bob")
	if err != nil {
		t.Fatal(err)
	}
	p.waitState(t, event.StateCordoned)

	want := []event.StateApplied{
		{From: event.StateNone, To: event.StateSealed, By: "driftsensor at start (--seal or the policy's seal_on_start)"},
		{From: event.StateSealed, To: event.StateMutable, Revision: unseal.Revision},
		{From: event.StateMutable, To: event.StateCordoned, Revision: cordon.Revision},
	}
	var got []event.Event
	testenv.Eventually(t, "three state_applied records in the stream", func() bool {
		got = got[:0]
		for _, ev := range p.sensorRecords(t) {
			if ev.Action == event.ActionStateApplied {
				got = append(got, ev)
			}
		}
		return len(got) >= len(want)
	})
	if len(got) != len(want) {
		t.Fatalf("%d state_applied records, want %d: %+v", len(got), len(want), got)
	}
	for i, ev := range got {
		if ev.Health == nil || ev.Health.Applied == nil || *ev.Health.Applied != want[i] || ev.Host != p.host || ev.Seq == 0 || ev.Backend != "tracepoint" {
			t.Fatalf("record %d: %+v (applied %+v), want %+v", i, ev, ev.Health.Applied, want[i])
		}
	}
	if unseal.Revision == 0 || cordon.Revision <= unseal.Revision {
		t.Fatalf("revisions %d, %d", unseal.Revision, cordon.Revision)
	}
}
