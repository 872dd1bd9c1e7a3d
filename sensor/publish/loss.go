package publish

import (
	"fmt"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/spool"
)

// Loss reports: findings the publisher numbered but could not make durable
// (the spool full or failing) and spooled findings lost to damage are each
// reported as a sensor finding carrying the exact count. A report is itself
// a finding: it waits for room in the spool rather than being made only to
// be refused, and if it is lost anyway it is counted in the next one. So the
// LostRecords of the reports that reach the stream add up to every finding
// lost, and made = delivered + reported lost.

// Sensor finding actions of the loss reports.
const (
	ActionSpoolOverflow = "spool_overflow"
	ActionSpoolDamage   = "spool_damage"
)

// reportRoom is the spool room a loss report is sure to fit in.
const reportRoom = 4 << 10

// lossLedger is what the publisher has lost and reported; guarded by p.mu.
type lossLedger struct {
	overflowReported uint64         // of p.overflow, the findings durable reports cover
	total            uint64         // findings lost and reported, all causes, since New
	damage           []spool.Damage // damage not yet reported
	backend          string         // for the reports' backend field
	hook             func(*event.Event, []byte)
}

// OnLoss sets a function told each loss report, and its JSON, once it is
// durable (the daemon prints it with the other findings). It runs under the publisher's
// lock: it must not call the publisher.
func (p *Publisher) OnLoss(f func(ev *event.Event, data []byte)) {
	p.mu.Lock()
	p.loss.hook = f
	p.mu.Unlock()
}

// SetBackend names the kernel backend in the loss reports the publisher makes.
func (p *Publisher) SetBackend(name string) {
	p.mu.Lock()
	p.loss.backend = name
	p.mu.Unlock()
}

// ReportSpoolDamage queues spool damage (from spool.Open) to be reported,
// with its exact count, as soon as a report can be made durable.
func (p *Publisher) ReportSpoolDamage(ds []spool.Damage) {
	if len(ds) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loss.damage = append(p.loss.damage, ds...)
	p.reportLosses()
}

// LostReported is the number of lost findings covered by durable loss reports.
func (p *Publisher) LostReported() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loss.total
}

// lossPending says whether a loss waits to be reported. Callers hold p.mu.
func (p *Publisher) lossPending() bool {
	return len(p.loss.damage) > 0 || p.overflow.Load() > p.loss.overflowReported
}

// reportLosses makes the reports that can be made durable now: damage
// first, then one report of every finding lost since the last one. Callers
// hold p.mu.
func (p *Publisher) reportLosses() {
	if p.closed {
		return
	}
	p.loss.damage = append(p.loss.damage, p.spool.TakeDamage()...)
	for len(p.loss.damage) > 0 {
		d := p.loss.damage[0]
		ev := p.lossEvent(ActionSpoolDamage, uint64(d.Records),
			fmt.Sprintf("spool damage: %s at offset %d: %d bytes discarded (%s); %d findings lost", d.File, d.Offset, d.Bytes, d.Reason, d.Records))
		if !p.deliverReport(ev) {
			return
		}
		p.loss.damage = p.loss.damage[1:]
	}
	lost := p.overflow.Load()
	if n := lost - p.loss.overflowReported; n > 0 {
		ev := p.lossEvent(ActionSpoolOverflow, n, fmt.Sprintf(
			"%d findings lost (%d since start): the NATS server was unreachable and the spool refused them (full or failing); their sequence numbers are missing from the stream",
			n, lost))
		if p.deliverReport(ev) {
			p.loss.overflowReported = lost
		}
	}
}

func (p *Publisher) lossEvent(action string, n uint64, detail string) *event.Event {
	backend := p.loss.backend
	if backend == "" {
		backend = p.opts.Backend
	}
	return &event.Event{Kind: event.KindSensor, Action: action, Backend: backend, Time: time.Now().UTC(),
		Health: &event.Health{LostRecords: n, LostTotal: p.loss.total + n, Detail: detail}}
}

// deliverReport sends or spools a loss report. It makes none (and so loses
// none) while it could only be refused. Callers hold p.mu.
func (p *Publisher) deliverReport(ev *event.Event) bool {
	if !p.direct() && !p.spool.Room(reportRoom) {
		return false
	}
	out, err := p.number(ev, kindIndex(event.KindSensor))
	if err != nil {
		return false // counted as lost by number: the next report covers it
	}
	sent := false
	if p.direct() {
		err := p.send(out.subj, out.id, out.seq, out.data)
		if err == nil {
			p.published.Add(1)
			p.reported(ev, out.data)
			return true
		}
		p.pubErrors.Add(1)
		p.sendFailed(err)
		sent = true
	}
	if p.toSpool(out.subj, out.id, out.seq, out.data, sent, false) != nil {
		return false // counted in p.overflow: the next report covers it too
	}
	p.reported(ev, out.data)
	return true
}

func (p *Publisher) reported(ev *event.Event, data []byte) {
	p.loss.total += ev.Health.LostRecords
	if p.loss.hook != nil {
		p.loss.hook(ev, data)
	}
}
