package publish

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
// The spool drains through the same queue: when the queue is empty its
// oldest findings are read into it (loadSpool) and sent the same way; they
// leave the spool when their acks arrive, so the queue holds either new
// findings or spooled ones, never both.
//
// Order: the queue's findings are always older than the rest of the spool's
// (a new finding enters the queue only while the spool is empty, and the
// spool is read into the queue only while the queue is empty), so sending
// the queue first, then the spool, keeps a host's order. After a failed send
// the queue's unacked findings go to the spool when it is empty (they then
// survive a killed sensor); otherwise they stay in the queue and are sent
// again, before the spool, once the server is back. A finding sent twice is
// dropped by the stream as a duplicate (Nats-Msg-Id).

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
	items            []queued
	head, sent, tail uint64 // oldest unacked, next to send, next free
	gen              uint64 // bumped by a failure: acks and flights of an older gen are ignored
}

// queued is a finding in the memory queue.
type queued struct {
	outgoing
	sentAt  time.Time // of its last send
	acked   bool      // the server has it; it leaves once the ones before it have too
	spooled bool      // read from the spool, which keeps it until the server has it
}

func (q *memQueue) len() int            { return int(q.tail - q.head) }
func (q *memQueue) at(i uint64) *queued { return &q.items[i%QueueLen] }

// flight is, on core NATS, n sent findings waiting for a flush. (JetStream
// acks come back on the publisher's ack subscription, onAck.)
type flight struct {
	gen uint64
	pos uint64 // queue position of the first finding
	n   int
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
	emit := event.KTimeNow() // the whole batch is handed over now
	for _, ev := range evs {
		o, err := p.numberAt(ev, kindIndex(ev.Kind), emit)
		lines = append(lines, o.data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(spill) == 0 && p.spool.Depth() == 0 && p.q.len() < QueueLen && p.usable() {
			*p.q.at(p.q.tail) = queued{outgoing: o}
			p.q.tail++
			continue
		}
		// Encoded into one reused buffer: the spool copies the records
		// into its write.
		start := len(p.spillArena)
		p.spillArena = appendSpooled(p.spillArena, o.subj, o.id, o.data)
		spill, spillSeq = append(spill, p.spillArena[start:]), append(spillSeq, o.seq)
	}
	if len(spill) > 0 {
		// The arena may have moved while it grew: cut the records again.
		off := 0
		for i, r := range spill {
			spill[i] = p.spillArena[off : off+len(r)]
			off += len(r)
		}
		errs = append(errs, p.spill(spill, spillSeq))
		clear(spill)
		p.spillBuf, p.spillSeq, p.spillArena = spill[:0], spillSeq[:0], p.spillArena[:0]
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
		batch, now := p.pumpBuf[:0], time.Now()
		for i := range uint64(n) {
			it := p.q.at(first + i)
			it.sentAt, it.acked = now, false
			batch = append(batch, it.outgoing)
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

// sendAsync sends batch, the queue's findings from position first. On
// JetStream each finding's reply subject names its generation and queue
// position, so its ack (onAck) finds it without a table of futures; on core
// NATS the ack loop flushes once for the batch. Callers hold p.sendMu, which
// guards the reused message.
func (p *Publisher) sendAsync(batch []outgoing, first, gen uint64, js bool) error {
	m := &p.sendMsg
	for i, o := range batch {
		m.Subject, m.Data, m.Reply = o.subj, o.data, ""
		m.Header[jetstream.MsgIDHeader][0] = o.id
		if js {
			b := strconv.AppendUint(append(p.replyBuf[:0], p.ackPrefix...), gen, 10)
			p.replyBuf = strconv.AppendUint(append(b, '.'), first+uint64(i), 10)
			m.Reply = string(p.replyBuf)
		}
		// PublishMsg copies the message into the connection's buffer: m
		// is free again when it returns.
		if err := p.nc.PublishMsg(m); err != nil {
			return err
		}
	}
	if !js {
		p.flights <- flight{gen: gen, pos: first, n: len(batch)}
	}
	return nil
}

// subscribeAcks takes the stream's acks to the pump's sends, which come
// back on ackPrefix<gen>.<pos>.
func (p *Publisher) subscribeAcks() error {
	p.ackPrefix = p.nc.NewInbox() + ".acks."
	sub, err := p.nc.Subscribe(p.ackPrefix+"*.*", p.onAck)
	if err != nil {
		return fmt.Errorf("subscribe to the stream's acks: %w", err)
	}
	// The window bounds what can wait here; the default limits would
	// drop acks only far past it.
	return sub.SetPendingLimits(-1, -1)
}

// onAck takes the stream's reply to one finding the pump sent.
func (p *Publisher) onAck(m *nats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, p.ackPrefix)
	g, pos, ok2 := strings.Cut(rest, ".")
	gen, err1 := strconv.ParseUint(g, 10, 64)
	at, err2 := strconv.ParseUint(pos, 10, 64)
	if !ok || !ok2 || err1 != nil || err2 != nil {
		return // not a reply to us
	}
	streamSeq, err := parsePubAck(m)
	p.acked(gen, at, 1, streamSeq, err)
}

// usualAck is how the stream's usual ack starts.
var usualAck = []byte(`{"stream":"`)

// parsePubAck reads the stream sequence out of a JetStream publish ack, or
// the error the server answered instead. The usual ack,
// {"stream":"DRIFT","seq":N} with maybe a domain or a duplicate flag, is
// read without encoding/json: one per finding, it was 3 % of the CPU.
func parsePubAck(m *nats.Msg) (uint64, error) {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return 0, jetstream.ErrNoStreamResponse
	}
	if bytes.HasPrefix(m.Data, usualAck) && !bytes.Contains(m.Data, []byte(`"error"`)) {
		if seq, ok := seqField(m.Data); ok {
			return seq, nil
		}
	}
	var pa struct {
		Stream string              `json:"stream"`
		Seq    uint64              `json:"seq"`
		Error  *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &pa); err != nil {
		return 0, jetstream.ErrInvalidJSAck
	}
	if pa.Error != nil {
		return 0, pa.Error
	}
	if pa.Stream == "" {
		return 0, jetstream.ErrInvalidJSAck
	}
	return pa.Seq, nil
}

// ackLoop flushes core NATS batches, and fails the queue when the stream's
// ack for its oldest sent finding is later than the ack timeout.
func (p *Publisher) ackLoop() {
	defer p.wg.Done()
	t := time.NewTimer(p.opts.AckTimeout)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case f := <-p.flights:
			if f.gen != p.qGen.Load() {
				continue // sent before a failure: moot
			}
			p.acked(f.gen, f.pos, f.n, 0, p.nc.FlushTimeout(p.opts.AckTimeout))
		case <-t.C:
			t.Reset(p.checkAckTimeout())
		}
	}
}

// checkAckTimeout fails the queue when its oldest sent finding waited for
// its ack longer than the ack timeout; it returns when to look again.
func (p *Publisher) checkAckTimeout() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.q.sent == p.q.head || mode(p.mode.Load()) != modeJetStream {
		return p.opts.AckTimeout
	}
	wait := time.Since(p.q.at(p.q.head).sentAt)
	if wait < p.opts.AckTimeout {
		return p.opts.AckTimeout - wait
	}
	p.failLocked(fmt.Errorf("no ack from stream %s within %v: %w", event.StreamName, p.opts.AckTimeout, jetstream.ErrAsyncPublishTimeout))
	p.wake()
	return p.opts.AckTimeout
}

// acked applies the server's answer for the n findings from queue position
// pos, sent in generation gen: the acked ones leave the queue in order, an
// error fails the queue.
func (p *Publisher) acked(gen, pos uint64, n int, streamSeq uint64, err error) {
	p.mu.Lock()
	if gen != p.q.gen || pos < p.q.head || pos+uint64(n) > p.q.sent {
		p.mu.Unlock()
		return // sent before a failure, or acked already
	}
	if err != nil {
		p.failLocked(err)
		p.mu.Unlock()
		p.wake()
		return
	}
	for i := range uint64(n) {
		p.q.at(pos + i).acked = true
	}
	first, now := p.q.head, time.Now()
	var firstSeq, lastSeq uint64
	for ; p.q.head < p.q.sent && p.q.at(p.q.head).acked; p.q.head++ {
		it := p.q.at(p.q.head)
		if firstSeq == 0 {
			firstSeq = it.seq
		}
		lastSeq = it.seq
		if it.spooled {
			p.spoolAcks++
		}
		p.lat.observe(now.Sub(it.sentAt))
		*it = queued{} // let the JSON go
	}
	left := p.q.head - first
	p.qLen.Store(int64(p.q.len()))
	empty := p.q.len() == 0
	if p.spoolAcks >= spoolAckBatch || (empty && p.spoolAcks > 0) {
		p.ackSpooled()
	}
	if empty {
		p.qSpooled.Store(false)
	}
	p.mu.Unlock()
	if streamSeq > 0 {
		p.stream.acked(firstSeq, lastSeq, streamSeq) // firstSeq 0: none left the queue
	}
	if left == 0 {
		return // an ack ahead of an older one still awaited
	}
	p.published.Add(left)
	p.kickPump()
	if empty && p.spool.Depth() > 0 {
		p.wake() // the spool's turn
	}
}

// spoolAckBatch is how many findings from the spool the server acks before
// the spool is told (one write to its ack log): a kill in between sends them
// again at the next start, and the stream drops them as duplicates.
const spoolAckBatch = 256

// ackSpooled consumes from the spool the findings from it the server has.
// Callers hold p.mu.
func (p *Publisher) ackSpooled() {
	n := p.spoolAcks
	if n == 0 {
		return
	}
	p.spoolAcks = 0
	if err := p.spool.AckN(n); err != nil {
		// Sent but still spooled: they go again later and the stream drops the duplicates.
		p.log.Error().Err(err).Int("findings", n).Msg("acknowledging spooled findings")
		return
	}
	if p.lossPending() {
		p.reportLosses() // there is room again
	}
}

// loadSpool moves the spool's oldest findings into the empty memory queue,
// to be sent like the queue's own: asynchronously, up to flightWindow at
// once. They stay in the spool until the server acks them. While they are
// in the queue the spool is not empty, so new findings go to the spool,
// behind them: the queue holds either spooled findings or new ones, never
// both, and a host's order holds. Callers hold p.mu; false means nothing
// to load.
func (p *Publisher) loadSpool() bool {
	for {
		recs, err := p.spool.PeekN(QueueLen)
		if p.spool.Damaged() {
			p.reportLosses() // damage found while reading
		}
		if errors.Is(err, spool.ErrEmpty) {
			if p.spooling {
				p.spooling = false
				p.log.Info().Uint64("seq", p.num.Last()).Msg("spool drained; publishing directly again")
			}
			return false
		}
		if err != nil {
			p.log.Error().Err(err).Msg("reading the spool")
			return false
		}
		for _, b := range recs {
			subj, id, data, err := decodeSpooled(b)
			if err != nil {
				break
			}
			*p.q.at(p.q.tail) = queued{outgoing: outgoing{subj: subj, id: id, seq: jsonSeq(data), data: data}, spooled: true}
			p.q.tail++
		}
		if p.q.len() > 0 {
			p.qLen.Store(int64(p.q.len()))
			p.qSpooled.Store(true)
			return true
		}
		// The record passed its checksum but is not ours: nothing to resend.
		p.overflow.Add(1)
		p.log.Error().Msg("spooled record undecodable; dropped and counted as lost")
		if p.spool.Ack() != nil {
			return false
		}
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
	p.q.sent = p.q.head
	n := p.q.len()
	if n > 0 && p.spool.Depth() == 0 {
		for ; p.q.head < p.q.tail; p.q.head++ {
			o := p.q.at(p.q.head)
			if p.toSpool(o.subj, o.id, o.seq, o.data, true, true) != nil {
				break // stays in the queue, sent again from there
			}
			*o = queued{}
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
	p.ackSpooled()
	for ; p.q.head < p.q.tail; p.q.head++ {
		o := p.q.at(p.q.head)
		if o.spooled {
			continue // still in the spool
		}
		if p.spool.AppendBuffered(encodeSpooled(o.subj, o.id, o.data), true) != nil {
			p.overflow.Add(1)
			p.log.Error().Uint64("seq", o.seq).Msg("finding lost at close: the spool refused it")
		}
	}
	p.q.sent = p.q.head
	p.qLen.Store(0)
	p.qSpooled.Store(false)
	if err := p.spool.Sync(); err != nil {
		p.log.Error().Err(err).Msg("syncing the spool at close")
	}
}

// queued is the number of findings in the memory queue, those read from
// the spool left out (the spool's depth counts them); it takes no lock, for
// the heartbeat, which must not wait behind a send.
func (p *Publisher) queued() uint64 {
	if p.qSpooled.Load() {
		return 0
	}
	return uint64(p.qLen.Load())
}
