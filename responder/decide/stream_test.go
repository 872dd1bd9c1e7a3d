package decide

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// hostSeq reads the responder's view of a host's sequence.
func hostSeq(r *Responder, host string) (contig uint64, open bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	hs := r.hosts[host]
	if hs == nil {
		return 0, false
	}
	return hs.seq.contig, !hs.seq.since.IsZero()
}

// decidedEvents maps each finding id to the decision records the audit
// stream kept for it.
func decidedEvents(recs []Record) map[string]int {
	out := map[string]int{}
	for _, r := range recs {
		if r.Stage == StageDecision {
			for _, id := range r.Events {
				out[id]++
			}
		}
	}
	return out
}

// TestExecFilePairsRaiseNoGap: each exec and the file finding after it
// (different subjects) come from the stream in the host's order; none of
// 100 pairs looks like a gap. Core subscriptions, one per kind, raised 43.
func TestExecFilePairsRaiseNoGap(t *testing.T) {
	url := natsServer(t)
	r := startResponder(t, url, Config{GapCheck: true, GapWait: 20 * time.Millisecond})
	p := realSensor(t, url, "h1")
	for i := 0; i < 100; i++ {
		publishFinding(t, p, event.KindExec, "/tmp/x")
		publishFinding(t, p, event.KindFile, "/etc/motd")
	}
	eventually(t, "200 findings decided and acknowledged", func() bool { return r.Stats().Acked.Load() == 200 })
	eventually(t, "the sequence complete", func() bool { c, open := hostSeq(r, "h1"); return c == 200 && !open })
	if n := r.Stats().Gaps.Load(); n != 0 {
		t.Fatalf("%d gap alarms on 100 exec+file pairs, want 0", n)
	}
	if r.Stats().Decisions.Load() != 200 {
		t.Errorf("%d decisions, want 200", r.Stats().Decisions.Load())
	}
}

// TestGapOnlyWhenTheStreamLacksIt: findings that arrive out of order or
// late are no gap; numbers the stream does not hold are, named exactly.
func TestGapOnlyWhenTheStreamLacksIt(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	rec := newRecorder()
	r := startResponder(t, url, Config{GapCheck: true, GapWait: 50 * time.Millisecond, Cordoners: []actuator.Cordoner{rec}})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	put := func(seq uint64) {
		t.Helper()
		ev := event.Event{Schema: event.Schema, ID: fmt.Sprintf("h1-%d", seq), Host: "h1", Seq: seq, Time: time.Now(),
			Kind: event.KindNet, Action: "listen", Net: &event.Net{Family: "inet", Protocol: "tcp", Port: 9}}
		data, _ := json.Marshal(ev)
		if _, err := js.Publish(context.Background(), event.Subject("h1", event.KindNet), data); err != nil {
			t.Fatal(err)
		}
	}
	// 3 comes after 5 in the stream; 4 never comes.
	for _, q := range []uint64{1, 2, 5, 3} {
		put(q)
	}
	eventually(t, "the alarm for 4", func() bool { return r.Stats().Gaps.Load() == 1 })
	eventually(t, "the dead man's cordon", func() bool { return rec.total() == 1 })
	eventually(t, "the sequence judged", func() bool { c, open := hostSeq(r, "h1"); return c == 5 && !open })
	var reason string
	eventually(t, "the dead man record", func() bool {
		for _, x := range streamRecords(t, nc) {
			if x.Stage == StageDeadMan && x.Host == "h1" {
				reason = x.Reason
				return true
			}
		}
		return false
	})
	if want := "findings 4 of h1 are not in the stream DRIFT"; !contains(reason, want) {
		t.Errorf("dead man reason %q, want %q", reason, want)
	}

	// A heartbeat saying the stream holds up to 8 while it holds 6: 7-8
	// are missing. A spool still holding 2 would explain them: no alarm.
	put(6)
	eventually(t, "6 read", func() bool { c, _ := hostSeq(r, "h1"); return c == 6 })
	hb := event.Heartbeat{Schema: event.HeartbeatSchema, Host: "h1", Seq: 8, Time: time.Now(), Transport: event.TransportJetStream,
		Counters: event.Counters{SpoolDepth: 2}}
	s := newSensor(t, nc, "h1")
	s.publish(event.HeartbeatSubject("h1"), hb)
	eventually(t, "the heartbeat read", func() bool { return r.Stats().Heartbeats.Load() == 1 })
	if c, open := hostSeq(r, "h1"); c != 6 || open {
		t.Fatalf("spooled findings taken for a hole: contig %d, open %v", c, open)
	}
	hb.Counters.SpoolDepth = 0
	s.publish(event.HeartbeatSubject("h1"), hb)
	eventually(t, "the alarm for 7-8", func() bool { return r.Stats().Gaps.Load() == 2 })
	eventually(t, "the second dead man record", func() bool {
		for _, x := range streamRecords(t, nc) {
			if x.Stage == StageDeadMan && contains(x.Reason, "findings 7-8 of h1 are not in the stream") {
				return true
			}
		}
		return false
	})
}

// TestSpooledFindingsReachTheResponder: findings a sensor spooled while the
// server was down reach the responder once it is back, in order, with no
// gap alarm and no cordon; the responder's own outage is one
// infrastructure incident.
func TestSpooledFindingsReachTheResponder(t *testing.T) {
	ts := startTestServer(t)
	rec := newRecorder()
	r := startResponderOn(t, fastConnect(t, ts.url), Config{GapCheck: true, GapWait: 20 * time.Millisecond,
		Cordoners: []actuator.Cordoner{rec}, HeartbeatInterval: 50 * time.Millisecond})
	p := realSensor(t, ts.url, "h1")
	first := publishFinding(t, p, event.KindFile, "/etc/motd")
	eventually(t, "the first finding acked", func() bool { return r.Stats().Acked.Load() == 1 })

	ts.stop()
	eventually(t, "the sensor offline", func() bool { return p.Transport() == event.TransportOffline })
	var spooled []string
	for i := 0; i < 3; i++ {
		spooled = append(spooled, publishFinding(t, p, event.KindFile, fmt.Sprintf("/etc/spooled-%d", i)).ID)
	}
	if d := p.Counters().SpoolDepth; d != 3 {
		t.Fatalf("spool depth %d, want 3", d)
	}
	ts.start()
	eventually(t, "the spooled findings acked", func() bool { return r.Stats().Acked.Load() == 4 })
	eventually(t, "the sequence complete", func() bool { c, open := hostSeq(r, "h1"); return c == 4 && !open })

	nc := connect(t, ts.url)
	var recs []Record
	eventually(t, "four decisions in the trail", func() bool {
		recs = streamRecords(t, nc)
		return len(decidedEvents(recs)) == 4
	})
	got := decidedEvents(recs)
	for _, id := range append([]string{first.ID}, spooled...) {
		if got[id] != 1 {
			t.Errorf("finding %s decided %d times, want 1", id, got[id])
		}
	}
	eventually(t, "the outage recorded", func() bool { return r.Stats().Infra.Load() == 1 })
	if r.Stats().Gaps.Load() != 0 || rec.total() != 0 {
		t.Errorf("%d gap alarms and %d cordons after the outage, want none", r.Stats().Gaps.Load(), rec.total())
	}
}

// TestResponderRestartResumes: a responder dies mid-stream (its connection
// cut, nothing acknowledged after); the next one on the same durable
// consumer decides every finding, none twice in the trail, and cordons once.
func TestResponderRestartResumes(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	rec := newRecorder()
	cfg := Config{Policy: cordonEtc(t), Cordoners: []actuator.Cordoner{rec}, GapCheck: true, GapWait: 20 * time.Millisecond, AckWait: 500 * time.Millisecond}
	cfg.Replica = "first"
	first := startResponderOn(t, fastConnect(t, url), cfg)
	p := realSensor(t, url, "db-1")
	var ids []string
	for i := 0; i < 100; i++ {
		ids = append(ids, publishFinding(t, p, event.KindFile, "/etc/passwd").ID)
	}
	eventually(t, "the first replica midway", func() bool { return first.Stats().Acked.Load() >= 10 })
	first.nc.Close() // killed: whatever it read and did not acknowledge goes to the next
	for i := 0; i < 100; i++ {
		ids = append(ids, publishFinding(t, p, event.KindFile, "/etc/passwd").ID)
	}
	cfg.Replica = "second"
	second := startResponderOn(t, fastConnect(t, url), cfg)
	var got map[string]int
	eventually(t, "every finding decided", func() bool {
		got = decidedEvents(streamRecords(t, nc))
		return len(got) == len(ids)
	})
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("finding %s decided %d times in the trail, want 1", id, got[id])
		}
	}
	eventually(t, "the second replica acknowledged the rest", func() bool {
		return first.Stats().Acked.Load()+second.Stats().Acked.Load() >= uint64(len(ids))
	})
	if n := rec.total(); n != 1 {
		t.Errorf("db-1 cordoned %d times, want once", n)
	}
	if second.Stats().Gaps.Load() != 0 {
		t.Errorf("%d gap alarms after the restart, want 0", second.Stats().Gaps.Load())
	}
}

// TestLostConsumerIsMadeAgain: the durable consumer deleted under a running
// responder is made again, said so in the trail, and findings keep being
// decided, each once.
func TestLostConsumerIsMadeAgain(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	r := startResponder(t, url, Config{})
	p := realSensor(t, url, "h1")
	publishFinding(t, p, event.KindFile, "/etc/motd")
	eventually(t, "the first finding acked", func() bool { return r.Stats().Acked.Load() == 1 })
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(context.Background(), event.StreamName, Consumer); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the consumer made again", func() bool {
		for _, x := range streamRecords(t, nc) {
			if x.Stage == StageInfra && x.Host == ResponderHost && contains(x.Reason, "was lost and is made again") {
				return true
			}
		}
		return false
	})
	second := publishFinding(t, p, event.KindFile, "/etc/motd")
	eventually(t, "the second finding acked", func() bool { return r.Stats().Acked.Load() == 2 })
	if got := decidedEvents(streamRecords(t, nc)); len(got) != 2 || got[second.ID] != 1 {
		t.Errorf("decisions per finding %v, want two findings decided once each", got)
	}
}
