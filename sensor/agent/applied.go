package agent

import (
	"fmt"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// enqueue hands a record the daemon makes itself (not the kernel) to the
// publisher and stdout, unless the daemon has stopped.
func (d *Daemon) enqueue(ev *event.Event) {
	d.qMu.Lock()
	defer d.qMu.Unlock()
	if !d.qClosed {
		d.queue <- ev
	}
}

// stateApplied is the record of a state the sensor applied.
func (d *Daemon) stateApplied(from, to event.State, rev uint64, by string) *event.Event {
	detail := fmt.Sprintf("host state %s applied (was %s), set by %s", to, orNone(from), by)
	if by == "" {
		detail = fmt.Sprintf("host state %s applied (was %s) from the control plane at revision %d; the audit record with that revision on %s.%s.state names who made it, and none means the change bypassed driftctl and the responder",
			to, orNone(from), rev, event.SubjectRoot, d.cfg.Host)
	}
	return &event.Event{Schema: event.Schema, Host: d.cfg.Host, Time: time.Now().UTC(), Kind: event.KindSensor,
		Action: event.ActionStateApplied, Backend: d.cfg.Backend.Name(),
		Health: &event.Health{Detail: detail, Applied: &event.StateApplied{From: from, To: to, Revision: rev, By: by}}}
}

func orNone(s event.State) string {
	if s == event.StateNone {
		return "none"
	}
	return string(s)
}
