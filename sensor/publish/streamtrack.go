package publish

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// streamTrack remembers which incarnation of the findings stream acked this
// host's findings (its creation time) and which of them, so that a stream
// lost and created again (a wiped store, a deleted stream) is reported as a
// finding naming what may be gone, not silently refilled. The incarnation and
// the first finding it acked live in a small file next to the spool.
type streamTrack struct {
	path      string
	mu        sync.Mutex
	rec       streamRecord
	last      uint64 // highest host seq acked, this run
	streamSeq uint64 // highest stream sequence in an ack, this run
}

type streamRecord struct {
	Stream   string    `json:"stream"`
	Created  time.Time `json:"created"`   // of the stream that acked our findings
	FirstSeq uint64    `json:"first_seq"` // the host's first finding it acked; 0: none yet
}

func (t *streamTrack) open(dir string) error {
	t.path = filepath.Join(dir, "stream.json")
	b, err := os.ReadFile(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = json.Unmarshal(b, &t.rec)
	}
	if err != nil {
		// Losing this record only loses the detection of one stream loss:
		// start over rather than refuse to run.
		t.rec = streamRecord{}
	}
	return nil
}

func (t *streamTrack) save() error {
	b, _ := json.Marshal(t.rec)
	tmp := t.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, t.path)
}

// acked notes findings first..last (host seqs, 0 when unknown) acked by the
// stream up to stream sequence streamSeq.
func (t *streamTrack) acked(first, last, streamSeq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last = max(t.last, last)
	t.streamSeq = max(t.streamSeq, streamSeq)
	if t.rec.FirstSeq == 0 && first > 0 && !t.rec.Created.IsZero() {
		t.rec.FirstSeq = first
		_ = t.save() // best effort: see open
	}
}

// streamLoss is a range of this host's findings the stream may have lost.
type streamLoss struct {
	first, last     uint64
	was, now        time.Time
	lastSeq, wasSeq uint64
}

// observe compares the stream as it is now with the one that acked our
// findings; it returns the loss when the stream is another one (created at
// another time) or went back in sequence. bound is the highest host seq that
// can have been acked, for a run that has acked nothing yet.
func (t *streamTrack) observe(info *jetstream.StreamInfo, bound uint64) (streamLoss, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	created := info.Created
	if t.rec.Created.IsZero() {
		t.rec = streamRecord{Stream: info.Config.Name, Created: created}
		_ = t.save()
		return streamLoss{}, false
	}
	if t.rec.Created.Equal(created) && info.State.LastSeq >= t.streamSeq {
		return streamLoss{}, false
	}
	loss := streamLoss{first: t.rec.FirstSeq, last: max(t.last, bound), was: t.rec.Created, now: created, lastSeq: info.State.LastSeq, wasSeq: t.streamSeq}
	t.rec = streamRecord{Stream: info.Config.Name, Created: created}
	t.last, t.streamSeq = 0, 0
	_ = t.save()
	return loss, loss.first > 0 && loss.last >= loss.first
}

// checkStream reports, as a finding, findings the stream acked and may no
// longer hold because it is not the stream that acked them.
func (p *Publisher) checkStream(info *jetstream.StreamInfo) {
	bound := p.num.Last()
	p.mu.Lock()
	if p.q.len() > 0 {
		bound = min(bound, p.q.at(p.q.head).seq-1) // queued findings were never acked
	}
	p.mu.Unlock()
	if recs, err := p.spool.PeekN(1); err == nil && len(recs) == 1 {
		if s, ok := seqOf(recs[0]); ok && s > 0 {
			bound = min(bound, s-1) // spooled findings were never acked
		}
	}
	loss, ok := p.stream.observe(info, bound)
	if !ok {
		return
	}
	detail := fmt.Sprintf("stream %s is not the one that acked this host's findings (created %s, now %s; its last sequence %d, acks reached %d): findings seq %d..%d of host %s may be gone from it",
		event.StreamName, loss.was.UTC().Format(time.RFC3339Nano), loss.now.UTC().Format(time.RFC3339Nano), loss.lastSeq, loss.wasSeq, loss.first, loss.last, p.host)
	p.log.Error().Uint64("first_seq", loss.first).Uint64("last_seq", loss.last).Msg(detail)
	ev := &event.Event{Kind: event.KindSensor, Action: "stream_lost", Backend: p.opts.Backend,
		Health: &event.Health{LostRecords: loss.last - loss.first + 1, Detail: detail}}
	// Callers do not hold p.mu; the stream is not in use yet (the probe
	// has not passed), so this finding goes to the spool and out first.
	if err := p.Publish(ev); err != nil {
		p.log.Error().Err(err).Msg("stream_lost finding")
	}
}

// jsonSeq reads the seq of an encoded finding.
func jsonSeq(data []byte) uint64 {
	// The encoding puts seq before any nested object, and a "seq": inside
	// a string would have its quotes escaped: the first one is the field.
	if seq, ok := seqField(data); ok {
		return seq
	}
	var v struct {
		Seq uint64 `json:"seq"`
	}
	_ = json.Unmarshal(data, &v)
	return v.Seq
}

// seqField reads the number after the first "seq": in a JSON object (a
// finding, a publish ack) without encoding/json, which costs a
// microsecond per call at tens of thousands of calls a second. ok is false
// when it is not a plain unsigned number.
func seqField(data []byte) (seq uint64, ok bool) {
	_, num, found := bytes.Cut(data, []byte(`"seq":`))
	if !found {
		return 0, false
	}
	n := 0
	for ; n < len(num) && n < 20 && num[n] >= '0' && num[n] <= '9'; n++ {
		seq = seq*10 + uint64(num[n]-'0')
	}
	if n == 0 || n >= 20 || n == len(num) || (num[n] != ',' && num[n] != '}') {
		return 0, false
	}
	return seq, true
}
