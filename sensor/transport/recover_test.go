package transport

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// TestStreamDeletedRecovers: an operator deletes the findings stream under a
// running publisher. The next finding fails to land, waits in the spool, and
// once the publisher has re-probed the server and recreated the stream it
// goes out, followed by the rest, in order and with their numbers: nothing
// accepted is lost.
func TestStreamDeletedRecovers(t *testing.T) {
	ts := startTestServer(t, true)
	p := newPublisher(t, ts.url, "h1", t.TempDir(), Options{})
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
	eventually(t, "the recreated stream to hold the five findings made after the delete", func() bool {
		s, err := js.Stream(context.Background(), event.StreamName)
		if err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs == 5
	})
	got := streamFindings(t, admin, "h1")
	checkExactlyOnceInOrder(t, got, accepted)
	if len(got) != 5 || got[0].Seq != first.Seq+1 {
		t.Fatalf("recreated stream holds %d findings from seq %d, want 5 from %d", len(got), got[0].Seq, first.Seq+1)
	}
	if c := p.Counters(); c.Transport != TransportJetStream || c.SpoolOverflow != 0 {
		t.Fatalf("counters after recovery %+v: want JetStream transport and nothing lost", c)
	}
}
