package publish

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// Numberer gives a host's findings their identity and their one encoding:
// schema, host, a unique id, the host's next sequence number, the time when
// unset, then the JSON that goes on the wire, into the spool and to the
// daemon's stdout alike. Every finding a host makes is numbered here: by the
// Publisher (whose sequence survives restarts) or, without NATS, by
// NewNumberer's.
type Numberer struct {
	host string
	ids  *nuid.NUID
	seq  *seqFile
	enc  event.Encoder
	buf  []byte // scratch for one encoding
	slab []byte // the encodings handed out are cut from it, never written again
}

// slabSize is how much room for encodings one allocation makes: about a
// hundred findings, one allocation instead of one each (a slab lives as long
// as any finding cut from it).
const slabSize = 64 << 10

// NewNumberer numbers host's findings from 1, in memory: for a daemon
// without NATS, whose findings go to stdout only.
func NewNumberer(host string) *Numberer {
	return &Numberer{host: host, ids: nuid.New(), seq: &seqFile{v: new(atomic.Uint64)}}
}

// Number stamps ev and encodes it. Callers serialise calls, so numbers are
// handed out in the order findings are sent.
func (n *Numberer) Number(ev *event.Event) ([]byte, error) {
	return n.numberAt(ev, event.KTimeNow())
}

// numberAt is Number for a finding handed over at emit (KTimeNow): a batch
// handed over at once reads the clock once (a system call each).
func (n *Numberer) numberAt(ev *event.Event, emit uint64) ([]byte, error) {
	ev.Schema = event.Schema
	ev.Host = n.host
	ev.ID = n.ids.Next()
	ev.Seq = n.seq.next()
	ev.EmitKTimeNS = emit
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	var err error
	n.buf, err = n.enc.Append(n.buf[:0], ev)
	if err != nil {
		return nil, fmt.Errorf("finding seq %d: encode: %w", ev.Seq, err)
	}
	if len(n.buf) > cap(n.slab)-len(n.slab) {
		n.slab = make([]byte, 0, max(slabSize, len(n.buf)))
	}
	start := len(n.slab)
	n.slab = append(n.slab, n.buf...)
	return n.slab[start:len(n.slab):len(n.slab)], nil
}

// Last is the last sequence number handed out.
func (n *Numberer) Last() uint64 { return n.seq.last() }
