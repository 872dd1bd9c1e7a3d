package publish

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/spool"
)

// The daemon's findings take the asynchronous path: Enqueue numbers and
// encodes them and puts them in a bounded memory queue, and returns without
// waiting on the server. The queue's findings are published with JetStream
// async publish, up to flightWindow at once, and leave the queue when their
// ack arrives. When the queue is full, or anything waits in the spool, a
// finding goes to the spool instead (spilled, without an fsync of its own),
// so the ring buffer's reader never waits on the network and nothing is left
// in the kernel for want of room; a finding is lost (and reported) only when
// the spool refuses it.
//
// Order: the queue's findings are always older than the spool's (a finding
// enters the queue only while the spool is empty, and the spool is drained
// only while the queue is empty), so sending the queue first, then the
// spool, keeps a host's order. After a failed send the queue's unacked
// findings go to the spool when it is empty (they then survive a killed
// sensor); otherwise they stay in the queue and are sent again, before the
// spool, once the server is back. A finding sent twice is dropped by the
// stream as a duplicate (Nats-Msg-Id).

// QueueLen bounds the findings held in memory, sent or not, until the
// server acks them: past it findings spill to the spool.
const QueueLen = 1 << 14

// flightWindow bounds the findings sent and not yet acked.
const flightWindow = 4096

// pumpBatch is how many findings one pass of the pump takes from the queue.
const pumpBatch = 256

// memQueue is a ring of numbered, encoded findings; guarded by p.mu. The
// positions only grow: items[i%QueueLen] is finding i; head <= sent <= tail.
type memQueue struct {
	items            []outgoing
	head, sent, tail uint64 // oldest unacked, next to send, next free
	gen              uint64 // bumped by a failure: flights of an older gen are ignored
}

func (q *memQueue) len() int              { return int(q.tail - q.head) }
func (q *memQueue) at(i uint64) *outgoing { return &q.items[i%QueueLen] }

// flight is one sent finding (JetStream: its ack future) or, on core NATS,
// n sent findings waiting for a flush.
type flight struct {
	fut   jetstream.PubAckFuture
	gen   uint64
	pos   uint64 // queue position of the first finding
	n     int
	start time.Time
}

// Enqueue numbers evs, encodes each once, and queues them to be published
// without waiting on the server (see above). It returns each finding's JSON
// in lines (appended to lines[:0]; nil for one that could not be encoded),
// for the daemon to print. The error joins the findings lost: not encodable,
// or refused by a full spool (counted, and reported as a finding).
func (p *Publisher) Enqueue(evs []*event.Event, lines [][]byte) ([][]byte, error) {
	lines = lines[:0]
	for i, ev := range evs {
		if kindIndex(ev.Kind) < 0 {
			for range evs {
				lines = append(lines, nil)
			}
			return lines, fmt.Errorf("publish: finding %d: kind %q (want file, exec, net or sensor)", i, ev.Kind)
		}
	}
	var errs []error
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		for range evs {
			lines = append(lines, nil)
		}
		return lines, ErrClosed
	}
	if p.lossPending() {
		p.reportLosses()
	}
	spill, spillSeq := p.spillBuf[:0], p.spillSeq[:0]
	for _, ev := range evs {
		o, err := p.number(ev, kindIndex(ev.Kind))
		lines = append(lines, o.data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(spill) == 0 && p.spool.Depth() == 0 && p.q.len() < QueueLen && p.usable() {
			*p.q.at(p.q.tail) = o
			p.q.tail++
			continue
		}
		spill, spillSeq = append(spill, encodeSpooled(o.subj, o.id, o.data)), append(spillSeq, o.seq)
	}
	if len(spill) > 0 {
		errs = append(errs, p.spill(spill, spillSeq))
		clear(spill)
		p.spillBuf, p.spillSeq = spill[:0], spillSeq[:0]
	}
	p.qLen.Store(int64(p.q.len()))
	p.mu.Unlock()
	// Send now on this goroutine when no pump runs: one handoff less for a
	// lone finding. Otherwise the running pump takes these too.
	if p.sendMu.TryLock() {
		p.pumpLocked()
		p.sendMu.Unlock()
	} else {
		p.kickPump()
	}
	return lines, errors.Join(errs...)
}

// spill appends records (findings seqs) to the spool in one write, without
// an fsync (the loop syncs). What the spool refuses is lost and counted, to
// be reported. Callers hold p.mu.
func (p *Publisher) spill(recs [][]byte, seqs []uint64) error {
	n, err := p.spool.AppendN(recs, false)
	p.spooled.Add(uint64(n))
	p.unsyncedSpool.Store(true)
	if !p.spooling && n > 0 {
		p.spooling = true
		p.log.Warn().Uint64("seq", seqs[0]).Msg("memory queue full or server unusable; spilling findings to the spool")
	}
	p.wake()
	if n == len(recs) {
		return nil
	}
	lost := uint64(len(recs) - n)
	p.overflow.Add(lost)
	if !errors.Is(err, spool.ErrFull) {
		p.log.Error().Err(err).Uint64("seq", seqs[n]).Uint64("lost", lost).Msg("findings lost: the spool refused them")
	}
	return fmt.Errorf("transport: findings seq %d..%d lost: %w", seqs[n], seqs[len(seqs)-1], err)
}

// usable says whether findings may be sent now: connected and probed.
func (p *Publisher) usable() bool {
	return mode(p.mode.Load()) != modeUnknown && p.nc.IsConnected()
}

func (p *Publisher) kickPump() {
	select {
	case p.pumpKick <- struct{}{}:
	default:
	}
}

// pumpLoop sends queued findings when the window opens again or the server
// comes back.
func (p *Publisher) pumpLoop() {
	defer p.wg.Done()
	for {
		select {
		case <-p.done:
			return
		case <-p.pumpKick:
		}
		p.sendMu.Lock()
		p.pumpLocked()
		p.sendMu.Unlock()
	}
}

// pumpLocked sends queued findings, in queue order, while the window has
// room. Callers hold p.sendMu, which keeps the sends in order.
func (p *Publisher) pumpLocked() {
	for {
		p.mu.Lock()
		room := flightWindow - int(p.q.sent-p.q.head)
		if !p.usable() || p.q.sent == p.q.tail || room <= 0 {
			p.mu.Unlock()
			return
		}
		n := min(int(p.q.tail-p.q.sent), room, pumpBatch)
		first, gen, js := p.q.sent, p.q.gen, mode(p.mode.Load()) == modeJetStream
		batch := p.pumpBuf[:0]
		for i := range uint64(n) {
			batch = append(batch, *p.q.at(first + i))
		}
		p.pumpBuf = batch
		p.q.sent += uint64(n)
		p.mu.Unlock()
		if err := p.sendAsync(batch, first, gen, js); err != nil {
			p.failQueue(gen, err)
			return
		}
	}
}

// sendAsync sends batch, the queue's findings from position first, and
// hands their acks (or, on core NATS, one flush) to the ack loop.
func (p *Publisher) sendAsync(batch []outgoing, first, gen uint64, js bool) error {
	start := time.Now()
	for i, o := range batch {
		msg := &nats.Msg{Subject: o.subj, Data: o.data, Header: nats.Header{jetstream.MsgIDHeader: []string{o.id}}}
		if !js {
			if err := p.nc.PublishMsg(msg); err != nil {
				return err
			}
			continue
		}
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithExpectStream(event.StreamName), jetstream.WithRetryAttempts(0))
		if err != nil {
			return err
		}
		p.flights <- flight{fut: f, gen: gen, pos: first + uint64(i), n: 1, start: start}
	}
	if !js {
		p.flights <- flight{gen: gen, pos: first, n: len(batch), start: start}
	}
	return nil
}

// ackLoop takes the acks in the order the findings were sent and removes
// the acked findings from the queue.
func (p *Publisher) ackLoop() {
	defer p.wg.Done()
	for {
		var f flight
		select {
		case <-p.done:
			return
		case f = <-p.flights:
		}
		if f.gen != p.qGen.Load() {
			continue // sent before a failure: moot
		}
		var streamSeq uint64
		var err error
		if f.fut == nil {
			err = p.nc.FlushTimeout(p.opts.AckTimeout)
		} else {
		wait:
			for {
				select {
				case ack := <-f.fut.Ok():
					streamSeq = ack.Sequence
					break wait
				case err = <-f.fut.Err():
					break wait
				case <-p.regen:
					if f.gen != p.qGen.Load() {
						break wait // a failure made this flight moot: do not wait for its timeout
					}
				case <-p.done:
					return
				}
			}
		}
		p.landed(f, streamSeq, err)
	}
}

// landed applies the outcome of a flight to the queue.
func (p *Publisher) landed(f flight, streamSeq uint64, err error) {
	p.mu.Lock()
	if f.gen != p.q.gen || f.pos != p.q.head {
		p.mu.Unlock()
		return // sent before a failure: the queue has moved on
	}
	if err != nil {
		p.failLocked(err)
		p.mu.Unlock()
		p.wake()
		return
	}
	first := p.q.at(f.pos).seq
	for i := range uint64(f.n) {
		*p.q.at(f.pos + i) = outgoing{} // let the JSON go
	}
	p.q.head += uint64(f.n)
	p.qLen.Store(int64(p.q.len()))
	empty := p.q.len() == 0
	p.mu.Unlock()
	d := time.Since(f.start)
	for range f.n {
		p.lat.observe(d)
	}
	p.published.Add(uint64(f.n))
	if streamSeq > 0 {
		p.stream.acked(first, first+uint64(f.n)-1, streamSeq)
	}
	p.kickPump()
	if empty && p.spool.Depth() > 0 {
		p.wake() // the spool's turn
	}
}

// failQueue is failLocked for a send of generation gen that failed.
func (p *Publisher) failQueue(gen uint64, err error) {
	p.mu.Lock()
	if gen == p.q.gen {
		p.failLocked(err)
	}
	p.mu.Unlock()
	p.wake()
}

// failLocked handles a failed send: every unacked finding of the queue is
// to be sent again. When the spool is empty they move there (in order, past
// its bounds: each may be in the stream already, and they were in memory
// anyway); otherwise they stay, ahead of the spool. Callers hold p.mu.
func (p *Publisher) failLocked(err error) {
	p.pubErrors.Add(1)
	p.sendFailed(err)
	p.q.gen++
	p.qGen.Store(p.q.gen)
	select {
	case p.regen <- struct{}{}:
	default:
	}
	p.q.sent = p.q.head
	n := p.q.len()
	if n > 0 && p.spool.Depth() == 0 {
		for ; p.q.head < p.q.tail; p.q.head++ {
			o := p.q.at(p.q.head)
			if p.toSpool(o.subj, o.id, o.seq, o.data, true, true) != nil {
				break // stays in the queue, sent again from there
			}
			*o = outgoing{}
		}
		p.q.sent = p.q.head
		p.qLen.Store(int64(p.q.len()))
		p.unsyncedSpool.Store(true)
	}
	p.log.Warn().Err(err).Int("queued", n).Int("still_queued", p.q.len()).Msg("publish failed; unacked findings are sent again once the server is usable")
}

// flushQueue waits, up to the ack timeout, for the queue's findings to be
// acked, and spools what is left (after whatever the spool holds: the one
// case where a host's order can change, a restart with both waiting).
// Close calls it once no more findings are enqueued.
func (p *Publisher) flushQueue() {
	deadline := time.Now().Add(p.opts.AckTimeout)
	for time.Now().Before(deadline) {
		if p.qLen.Load() == 0 {
			return
		}
		if !p.usable() {
			break
		}
		p.kickPump()
		time.Sleep(time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.q.gen++
	p.qGen.Store(p.q.gen)
	for ; p.q.head < p.q.tail; p.q.head++ {
		o := p.q.at(p.q.head)
		if p.spool.AppendBuffered(encodeSpooled(o.subj, o.id, o.data), true) != nil {
			p.overflow.Add(1)
			p.log.Error().Uint64("seq", o.seq).Msg("finding lost at close: the spool refused it")
		}
	}
	p.q.sent = p.q.head
	p.qLen.Store(0)
	if err := p.spool.Sync(); err != nil {
		p.log.Error().Err(err).Msg("syncing the spool at close")
	}
}

// queued is the number of findings in the memory queue; it takes no lock,
// for the heartbeat, which must not wait behind a send.
func (p *Publisher) queued() uint64 { return uint64(p.qLen.Load()) }
