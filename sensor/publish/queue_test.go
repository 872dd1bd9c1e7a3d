package publish

import (
	"testing"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// TestEnqueueSpillsInOrder: a burst larger than the memory queue spills its
// tail to the spool, and every finding reaches the stream once, in order
// (the queue's first, then the spool's), with nothing lost.
func TestEnqueueSpillsInOrder(t *testing.T) {
	ts := startTestServer(t, true)
	p := newPublisher(t, ts.url, "h1", t.TempDir(), transport.Options{})
	nc := connect(t, ts.url)
	const spill = 3000
	evs := make([]*event.Event, QueueLen+spill)
	ids := make([]string, len(evs))
	for i := range evs {
		evs[i] = finding(i)
	}
	lines, err := p.Enqueue(evs, nil)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	for i, ev := range evs {
		ids[i] = ev.ID
		if lines[i] == nil {
			t.Fatalf("finding %d has no encoding", i)
		}
	}
	if c := p.Counters(); c.Spooled != spill {
		t.Fatalf("spooled %d of a burst of %d into a queue of %d; want %d", c.Spooled, len(evs), QueueLen, spill)
	}
	eventually(t, "queue and spool drained", func() bool { return drained(p) })
	got := streamFindings(t, nc, "h1")
	checkExactlyOnceInOrder(t, got, ids)
	if len(got) != len(ids) {
		t.Fatalf("stream holds %d findings, %d were enqueued", len(got), len(ids))
	}
	// Publish errors (acks timed out on a loaded machine) are allowed: the
	// findings went again, and the stream holds each once, in order.
	if c := p.Counters(); c.Published != uint64(len(ids)) || c.SpoolOverflow != 0 {
		t.Fatalf("counters %+v, want %d published, none lost", c, len(ids))
	}
}
