package publish

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// TestStreamDeletedRecovers: an operator deletes the findings stream under a
// running publisher. The next finding fails to land, waits in the spool, and
// once the publisher has re-probed the server and recreated the stream it
// goes out, followed by the rest, in order and with their numbers, and a
// stream_lost finding says the finding acked before the delete may be gone.
func TestStreamDeletedRecovers(t *testing.T) {
	ts := startTestServer(t, true)
	p := newPublisher(t, ts.url, "h1", t.TempDir(), transport.Options{})
	admin := connect(t, ts.url)
	first := finding(0)
	if err := p.Publish(first); err != nil {
		t.Fatal(err)
	}
	if got := streamFindings(t, admin, "h1"); len(got) != 1 || got[0].ID != first.ID {
		t.Fatalf("stream before the delete: %+v, want %s", got, first.ID)
	}
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), event.StreamName); err != nil {
		t.Fatal(err)
	}
	var accepted []string
	for i := 1; i <= 5; i++ {
		ev := finding(i)
		if err := p.Publish(ev); err != nil {
			t.Fatalf("publish %d after the delete: %v", i, err)
		}
		accepted = append(accepted, ev.ID)
	}
	// The recreated stream holds the five, and a stream_lost finding saying
	// that the one finding acked before the delete may be gone.
	var got []event.Event
	eventually(t, "the recreated stream to hold the five findings and the stream_lost finding", func() bool {
		got = nil
		if _, err := js.Stream(context.Background(), event.StreamName); err != nil {
			return false
		}
		got = streamFindings(t, admin, "h1")
		return len(got) == 6
	})
	var findings []event.Event
	lost := 0
	for _, ev := range got {
		if ev.Kind == event.KindSensor && ev.Action == "stream_lost" {
			lost++
			want := fmt.Sprintf("findings seq 1..%d of host h1 may be gone", first.Seq)
			if ev.Health == nil || ev.Health.LostRecords != 1 || !strings.Contains(ev.Health.Detail, want) {
				t.Errorf("stream_lost finding %+v: want 1 lost and %q", ev.Health, want)
			}
			continue
		}
		findings = append(findings, ev)
	}
	if lost != 1 {
		t.Errorf("%d stream_lost findings, want 1", lost)
	}
	checkExactlyOnceInOrder(t, findings, accepted)
	if len(findings) != 5 || findings[0].Seq != first.Seq+1 {
		t.Fatalf("recreated stream holds %d findings from seq %d, want 5 from %d", len(findings), findings[0].Seq, first.Seq+1)
	}
	if c := p.Counters(); c.Transport != event.TransportJetStream || c.SpoolOverflow != 0 {
		t.Fatalf("counters after recovery %+v: want JetStream transport and nothing lost", c)
	}
}
