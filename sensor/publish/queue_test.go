package publish

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// TestParsePubAck: the usual acks are read without encoding/json, with the
// stream sequence; anything else goes through encoding/json, and an error
// the server answered is the error the client library would return.
func TestParsePubAck(t *testing.T) {
	for _, c := range []struct {
		data   string
		status string
		seq    uint64
		err    error // errors.Is; nil: no error
		apiErr bool  // a *jetstream.APIError
	}{
		{data: `{"stream":"DRIFT","seq":42}`, seq: 42},
		{data: `{"stream":"DRIFT","seq":7,"duplicate":true}`, seq: 7},
		{data: `{"stream":"DRIFT","domain":"hub","seq":18446744073709551615}`, seq: 18446744073709551615},
		{data: `{"stream":"DRIFT", "seq": 9}`, seq: 9}, // spaced: the slow path
		{data: `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, apiErr: true},
		{data: `{"stream":"DRIFT","seq":0,"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}`, apiErr: true},
		{data: ``, status: "503", err: jetstream.ErrNoStreamResponse},
		{data: `not json`, err: jetstream.ErrInvalidJSAck},
		{data: `{"seq":3}`, err: jetstream.ErrInvalidJSAck},
	} {
		m := &nats.Msg{Data: []byte(c.data)}
		if c.status != "" {
			m.Header = nats.Header{"Status": []string{c.status}}
		}
		seq, err := parsePubAck(m)
		var apiErr *jetstream.APIError
		switch {
		case c.apiErr && !errors.As(err, &apiErr):
			t.Errorf("%s: error %v, want the server's", c.data, err)
		case c.err != nil && !errors.Is(err, c.err):
			t.Errorf("%s: error %v, want %v", c.data, err, c.err)
		case !c.apiErr && c.err == nil && (err != nil || seq != c.seq):
			t.Errorf("%s: seq %d, error %v; want seq %d", c.data, seq, err, c.seq)
		}
	}
}

// TestSpoolDrainsThroughQueue: a backlog spooled while the server was down
// goes out through the memory queue once it is back, in order and once each,
// also when the server goes away again in the middle of the drain; while it
// drains, the counters count those findings in the spool, not also in the
// queue.
func TestSpoolDrainsThroughQueue(t *testing.T) {
	ts := startTestServer(t, true)
	p := newPublisher(t, ts.url, "h1", t.TempDir(), transport.Options{})
	nc := connect(t, ts.url)
	ts.stop()
	// Until the publisher has seen the server go, a finding may still enter
	// the queue (and stay there, ahead of the spool).
	eventually(t, "the publisher offline", func() bool { return p.Transport() == event.TransportOffline })
	const backlog = 3 * QueueLen
	var ids []string
	for len(ids) < backlog {
		evs := make([]*event.Event, 256)
		for i := range evs {
			evs[i] = finding(len(ids) + i)
		}
		if _, err := p.Enqueue(evs, nil); err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
		for _, ev := range evs {
			ids = append(ids, ev.ID)
		}
	}
	if c := p.Counters(); c.SpoolDepth != backlog || c.Queued != 0 {
		t.Fatalf("counters %+v with the server down; want all %d in the spool", c, backlog)
	}
	ts.restart(t)
	eventually(t, "the drain under way", func() bool { return p.Counters().Published > 0 })
	if c := p.Counters(); c.Queued != 0 {
		t.Fatalf("counters %+v: the spool's findings counted in the queue too", c)
	}
	ts.stop()
	if c := p.Counters(); c.SpoolDepth == 0 {
		t.Log("the drain ended before the server stopped: the stop mid-drain was not exercised")
	}
	ts.restart(t)
	eventually(t, "test client reconnected", nc.IsConnected)
	eventually(t, "spool drained", func() bool { return drained(p) })
	got := streamFindings(t, nc, "h1")
	checkExactlyOnceInOrder(t, got, ids)
	if len(got) != backlog {
		t.Fatalf("stream holds %d findings, %d were enqueued", len(got), backlog)
	}
	if c := p.Counters(); c.SpoolOverflow != 0 || c.Published < backlog {
		t.Fatalf("counters %+v, want %d published, none lost", c, backlog)
	}
}
