package publish

import (
	"encoding/json"
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
}

// NewNumberer numbers host's findings from 1, in memory: for a daemon
// without NATS, whose findings go to stdout only.
func NewNumberer(host string) *Numberer {
	return &Numberer{host: host, ids: nuid.New(), seq: &seqFile{v: new(atomic.Uint64)}}
}

// Number stamps ev and encodes it. Callers serialise calls, so numbers are
// handed out in the order findings are sent.
func (n *Numberer) Number(ev *event.Event) ([]byte, error) {
	ev.Schema = event.Schema
	ev.Host = n.host
	ev.ID = n.ids.Next()
	ev.Seq = n.seq.next()
	ev.EmitKTimeNS = event.KTimeNow()
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("finding seq %d: encode: %w", ev.Seq, err)
	}
	return data, nil
}

// Last is the last sequence number handed out.
func (n *Numberer) Last() uint64 { return n.seq.last() }
