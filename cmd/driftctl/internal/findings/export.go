package findings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/internal/outputs"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// ExportBatch is how many findings an export reads, writes and acknowledges
// at once; it is also the most a killed export can have written without
// acknowledging, which bounds how far back it looks in its file at restart.
const ExportBatch = 256

// Export is a follower of the findings stream through a durable consumer:
// each batch is written (and, for a file, synced) and delivered to every
// output before it is acknowledged, so a restart resumes after the last
// acknowledged finding and nothing is lost.
type Export struct {
	Durable string // the consumer's name; one export runs per name at a time
	Filter  Filter
	Format  string    // FormatJSON or FormatOCSF
	Out     io.Writer // where lines go; nil: none
	// File, when Out is a file opened for appending: its last lines tell
	// which findings a killed export wrote but did not acknowledge, so they
	// are not written twice.
	File    *os.File
	Outputs []*outputs.Output
	Count   int       // stop after this many findings; 0: until ctx ends
	Warn    io.Writer // skipped messages and output failures

	// Repeats counts findings not written again: in the file already (a
	// killed export's unacknowledged batch) or stored twice in the stream.
	Repeats int
}

// Run follows the stream until ctx ends or Count findings are exported and
// returns how many it exported. ready, if not nil, is told the stream
// sequence it resumes from, once it is in place.
func (x *Export) Run(ctx context.Context, js jetstream.JetStream, ready func(resumeSeq uint64)) (int, error) {
	s, err := js.Stream(ctx, event.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, fmt.Errorf("no stream %s on the server: nothing recorded yet, or the server has no JetStream (run driftctl init)", event.StreamName)
	}
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", event.StreamName, err)
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       x.Durable,
		Description:   "driftctl export",
		FilterSubject: x.Filter.streamFilter(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckAllPolicy,
		MaxAckPending: ExportBatch,
	})
	if err != nil {
		return 0, fmt.Errorf("durable consumer %s on %s: %w (a durable name keeps its filter: use another --durable for another --host or --kind)", x.Durable, event.StreamName, err)
	}
	// What a killed export had fetched but not acknowledged is still pending
	// on the server, and would be redelivered only after the ack wait, behind
	// newer findings: start over from the acknowledged floor, in order.
	reset, err := s.ResetConsumer(ctx, x.Durable)
	if err != nil {
		return 0, fmt.Errorf("durable consumer %s: resume from its last acknowledgement: %w", x.Durable, err)
	}
	p := &Printer{Warn: x.Warn, Format: x.Format}
	if x.File != nil {
		ids, err := tailIDs(x.File, ExportBatch)
		if err != nil {
			return 0, err
		}
		for _, id := range ids {
			p.seen.check(id)
		}
	}
	if ready != nil {
		ready(reset.ResetSeq)
	}
	exported := 0
	var lines bytes.Buffer
	var recs []outputs.Record
	for ctx.Err() == nil {
		want := ExportBatch
		if x.Count > 0 {
			want = min(want, x.Count-exported)
		}
		batch, err := cons.Fetch(want, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return exported, fmt.Errorf("read %s: %w", event.StreamName, err)
		}
		lines.Reset()
		recs = recs[:0]
		var last jetstream.Msg
		for m := range batch.Messages() {
			last = m
			if !isFindingSubject(m.Subject()) {
				continue // the host's state records share the filter
			}
			ev, err := Decode(m.Subject(), m.Data())
			if err != nil {
				fmt.Fprintf(x.Warn, "driftctl: skipping a message on %s: %v\n", m.Subject(), err)
				continue
			}
			if p.seen.check(ev.ID) {
				x.Repeats++ // written before a restart, or stored twice
				continue
			}
			line, err := p.render(ev, m.Data())
			if err != nil || line == nil {
				if err != nil {
					return exported, err
				}
				continue
			}
			lines.Write(line)
			lines.WriteByte('\n')
			recs = append(recs, outputs.Record{ID: ev.ID, Time: ev.Time, Host: ev.Host, Source: "finding", Severity: FindingSeverity, Doc: line})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return exported, fmt.Errorf("read %s: %w", event.StreamName, err)
		}
		if last == nil {
			continue
		}
		if err := x.deliver(ctx, lines.Bytes(), recs); err != nil {
			return exported, err
		}
		// AckAll: this acknowledges the whole batch; the double ack waits for
		// the server to confirm, so a later restart resumes after it.
		if err := last.DoubleAck(ctx); err != nil {
			return exported, fmt.Errorf("acknowledge to %s: %w", x.Durable, err)
		}
		exported += len(recs)
		if x.Count > 0 && exported >= x.Count {
			break
		}
	}
	return exported, nil
}

// FindingSeverity is the syslog severity of a finding: every finding is
// drift on a sealed host, so critical.
const FindingSeverity = 2

func (x *Export) deliver(ctx context.Context, lines []byte, recs []outputs.Record) error {
	if x.Out != nil && len(lines) > 0 {
		if _, err := x.Out.Write(lines); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if x.File != nil {
			if err := x.File.Sync(); err != nil {
				return fmt.Errorf("sync %s: %w", x.File.Name(), err)
			}
		}
	}
	for _, o := range x.Outputs {
		if err := o.Deliver(ctx, recs); err != nil {
			return err
		}
	}
	return nil
}

// tailIDs returns the finding ids of the last n lines of f (JSON or OCSF
// lines) and cuts a last line without its newline: a write the export was
// killed in, whose findings were not acknowledged and come again.
func tailIDs(f *os.File, n int) ([]string, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, nil
	}
	size := st.Size()
	const chunk = 64 << 10
	var tail []byte
	for off := size; off > 0 && bytes.Count(tail, []byte{'\n'}) <= n; {
		step := min(int64(chunk), off)
		off -= step
		buf := make([]byte, step)
		if _, err := f.ReadAt(buf, off); err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Name(), err)
		}
		tail = append(buf, tail...)
	}
	if i := bytes.LastIndexByte(tail, '\n'); i != len(tail)-1 && len(tail) > 0 {
		cut := size - int64(len(tail)-1-i)
		if err := f.Truncate(cut); err != nil {
			return nil, fmt.Errorf("%s ends in a partial line; cutting it: %w", f.Name(), err)
		}
		tail = tail[:i+1]
	}
	lines := bytes.Split(bytes.TrimRight(tail, "\n"), []byte{'\n'})
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var ids []string
	for _, l := range lines {
		var v struct {
			ID       string `json:"id"` // a finding as published
			Metadata struct {
				UID string `json:"uid"` // its OCSF form
			} `json:"metadata"`
		}
		if len(l) == 0 || json.Unmarshal(l, &v) != nil {
			continue
		}
		if v.ID != "" {
			ids = append(ids, v.ID)
		} else if v.Metadata.UID != "" {
			ids = append(ids, v.Metadata.UID)
		}
	}
	return ids, nil
}
