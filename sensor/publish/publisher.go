// Package publish is a host's side of NATS: it numbers, encodes and
// publishes the host's findings and heartbeats, follows the host's state in
// the control plane and answers ctl commands. Findings are durable once Publish returns: acknowledged by the
// JetStream stream (or flushed to a server without JetStream), or written to
// the on-disk spool, from which they go out in order when the server is back.
package publish

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/spool"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// ErrClosed is returned by a Publisher after Close.
var ErrClosed = errors.New("transport: publisher closed")

type mode int32

const (
	modeUnknown mode = iota // not probed since the last (re)connect
	modeJetStream
	modeCore
)

var kinds = [...]event.Kind{event.KindFile, event.KindExec, event.KindNet, event.KindSensor}

func kindIndex(k event.Kind) int {
	for i, kk := range kinds {
		if k == kk {
			return i
		}
	}
	return -1
}

// Counters are a Publisher's running totals since New.
type Counters struct {
	Published     uint64 // findings the server accepted, spool drains included
	Spooled       uint64 // findings written to the spool
	SpoolOverflow uint64 // findings the spool refused (full, too large) or failed to write: lost
	PublishErrors uint64 // failed publish attempts; each finding went to the spool
	Rejected      uint64 // ctl messages and state values rejected
	SpoolDepth    uint64 // findings waiting in the spool now
	Queued        uint64 // findings waiting in the memory queue now (Enqueue), sent or not; those read back from the spool count in SpoolDepth
	Seq           uint64 // last sequence number assigned
	Transport     string // event.TransportJetStream, event.TransportCore or event.TransportOffline
}

// Publisher sends one host's findings. It is safe for concurrent use; Publish
// calls are numbered and sent in the order they take the publisher's lock.
type Publisher struct {
	host  string
	opts  transport.Options
	log   zerolog.Logger
	nc    *nats.Conn
	js    jetstream.JetStream
	spool *spool.Spool
	num   *Numberer // guarded by mu
	start time.Time

	mu       sync.Mutex // orders numbering, sending and spooling
	closed   bool
	spooling bool // logged "spooling" and not yet "drained"

	mode    atomic.Int32
	kick    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Once
	ctlSub  *nats.Subscription
	lastErr atomic.Value // string: last probe error logged, to log changes only

	// authErr is the server's refusal of the credentials (or of a JetStream
	// call they need) since the last successful probe; nil when none.
	authErr atomic.Pointer[error]
	reconn  chan struct{} // a (re)connect happened: the state watch starts over
	watch   atomic.Pointer[string]
	stream  streamTrack

	published, spooled, overflow, pubErrors, rejected atomic.Uint64
	findings                                          [len(kinds)]atomic.Uint64
	lat                                               latency
	loss                                              lossLedger    // guarded by mu
	stateRev                                          atomic.Uint64 // KV revision of the state last watched

	// The memory queue of Enqueue (queue.go).
	q             memQueue      // guarded by mu
	qGen          atomic.Uint64 // q.gen, for the ack loop
	qLen          atomic.Int64  // q.len(), for the counters
	qSpooled      atomic.Bool   // the queue holds findings read from the spool
	sendMu        sync.Mutex    // one pump at a time: sends leave in queue order
	pumpKick      chan struct{}
	pumpBuf       []outgoing // guarded by sendMu
	sendMsg       nats.Msg   // guarded by sendMu: one message, reused for every send
	replyBuf      []byte     // guarded by sendMu
	ackPrefix     string     // of the subjects the pump's acks come back on
	spoolAcks     int        // guarded by mu: findings from the spool acked by the server, not yet by the spool
	spillBuf      [][]byte   // guarded by mu
	spillSeq      []uint64   // guarded by mu
	spillArena    []byte     // guarded by mu: the records of spillBuf
	flights       chan flight
	unsyncedSpool atomic.Bool // spilled records wait for the loop's Sync
}

// New connects to the server named by opts.URL and returns a Publisher for
// host that spools to sp when the server is unreachable. It does not fail when
// the server is down: findings spool until it comes up. ctx bounds the setup;
// Close stops the publisher (sp stays open: it belongs to the caller).
func New(ctx context.Context, opts transport.Options, host string, sp *spool.Spool, log zerolog.Logger) (*Publisher, error) {
	if err := event.ValidHost(host); err != nil {
		return nil, err
	}
	if sp == nil {
		return nil, errors.New("transport: a spool is required (findings must survive an unreachable server)")
	}
	if opts.URL == "" {
		return nil, errors.New("transport: no NATS URL (start a server with StartEmbedded, or pass --nats)")
	}
	opts.SetDefaults()
	if opts.Name == "" {
		opts.Name = "driftsensor/" + host
	}
	if opts.InboxPrefix == "" {
		opts.InboxPrefix = transport.InboxPrefix(host)
	}
	seq, err := openSeqFile(sp.Dir())
	if err != nil {
		return nil, err
	}
	p := &Publisher{
		host: host, opts: opts, log: log.With().Str("component", "transport").Logger(),
		spool: sp, num: &Numberer{host: host, ids: nuid.New(), seq: seq}, start: time.Now(),
		kick: make(chan struct{}, 1), done: make(chan struct{}), reconn: make(chan struct{}, 1),
		q: memQueue{items: make([]queued, QueueLen)}, pumpKick: make(chan struct{}, 1),
		flights: make(chan flight, 2*(flightWindow+pumpBatch)),
		sendMsg: nats.Msg{Header: nats.Header{
			jetstream.MsgIDHeader:          []string{""},
			jetstream.ExpectedStreamHeader: []string{event.StreamName},
		}},
	}
	if err := p.stream.open(sp.Dir()); err != nil {
		seq.close()
		return nil, err
	}
	nopts, err := opts.NATSOptions()
	if err != nil {
		seq.close()
		return nil, err
	}
	nopts = append(nopts,
		nats.Timeout(opts.AckTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(opts.ReconnectWait),
		// Keep trying a refused login: the server's configuration may be
		// fixed (driftctl creds, a reload) while the sensor spools.
		nats.IgnoreAuthErrorAbort(),
		// No client-side buffering while disconnected: a finding is either
		// acknowledged by the server or in the spool, never in a RAM buffer.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(nc *nats.Conn) {
			p.log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("connected to NATS")
			p.authErr.Store(nil) // the login passed
			// The first connection: a watch waiting for it starts now.
			if w := p.StateWatch(); w != "" && w != WatchOK {
				p.signalWatch()
			}
			p.wake()
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			p.mode.Store(int32(modeUnknown))
			if nc.IsClosed() {
				return // Close, not an outage
			}
			p.mu.Lock()
			if p.q.len() > 0 {
				p.failLocked(fmt.Errorf("disconnected: %w", err))
			}
			p.mu.Unlock()
			p.log.Warn().Err(err).Msg("disconnected from NATS; findings go to the spool")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			p.log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("reconnected to NATS")
			p.connected()
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if transport.IsAuthError(err) {
				p.refused(err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if transport.IsAuthError(err) || errors.Is(err, nats.ErrPermissionViolation) {
				p.refused(err)
				return
			}
			ev := p.log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS error")
		}),
	)
	if err := opts.CheckLogin(); err != nil {
		seq.close()
		return nil, err
	}
	// The first attempt says whether the server takes these credentials: a
	// refusal stops the start (exit status 2). An unreachable server is an
	// outage like any other: the connection keeps trying and findings spool.
	nc, err := nats.Connect(opts.URL, append(nopts, nats.RetryOnFailedConnect(false))...)
	if err != nil && !transport.IsAuthError(err) {
		p.log.Warn().Err(err).Str("url", transport.RedactURLs(opts.URL)).Msg("NATS server unreachable at start; findings spool until it is up")
		nc, err = nats.Connect(opts.URL, append(nopts, nats.RetryOnFailedConnect(true))...)
	}
	if err != nil {
		seq.close()
		return nil, opts.ConnectError(err)
	}
	p.nc = nc
	if p.js, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(opts.AckTimeout), jetstream.WithPublishAsyncMaxPending(4*flightWindow)); err != nil {
		nc.Close()
		seq.close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := p.subscribeAcks(); err != nil {
		nc.Close()
		seq.close()
		return nil, err
	}
	if p.ctlSub, err = nc.Subscribe(event.CtlSubject(host), p.onCtl); err != nil {
		nc.Close()
		seq.close()
		return nil, fmt.Errorf("subscribe %s: %w", event.CtlSubject(host), err)
	}

	// Continue the sequence where the last run left it: the sequence file has
	// every number assigned unless the machine lost power; the spool and the
	// stream hold the findings that were durable.
	if last, err := sp.Last(); err == nil {
		if s, ok := seqOf(last); ok {
			seq.raise(s)
		}
	}
	if nc.IsConnected() {
		if err := p.probe(ctx); err != nil {
			p.logProbe(err)
		} else if p.mode.Load() == int32(modeJetStream) && p.mayCreate() {
			// Per-host credentials deny direct gets on the stream (they
			// would let a host replay a forged finding on another host's
			// subject): then the sequence file alone carries the sequence.
			seq.raise(p.streamLastSeq(ctx))
		}
	}
	p.log.Info().Str("host", host).Uint64("seq", seq.last()).Int("spooled", sp.Depth()).
		Str("transport", p.Transport()).Msg("publisher ready")

	p.wg.Add(3)
	go p.loop()
	go p.pumpLoop()
	go p.ackLoop()
	p.wake()
	return p, nil
}

// Conn is the publisher's NATS connection, for wiring more subscriptions.
func (p *Publisher) Conn() *nats.Conn { return p.nc }

// Host is the host name the publisher publishes as.
func (p *Publisher) Host() string { return p.host }

// Transport says how findings leave now: event.TransportJetStream, event.TransportCore,
// event.TransportOffline or event.TransportUnauthorized.
func (p *Publisher) Transport() string {
	m := mode(p.mode.Load())
	if p.nc.IsConnected() && m == modeJetStream {
		return event.TransportJetStream
	}
	if p.nc.IsConnected() && m == modeCore {
		return event.TransportCore
	}
	if p.authErr.Load() != nil {
		return event.TransportUnauthorized
	}
	return event.TransportOffline
}

// mayCreate says whether this sensor may set the control plane up itself:
// only without credentials (the embedded server, one machine). Per-host
// credentials may not, and wait for driftctl init.
func (p *Publisher) mayCreate() bool { return p.opts.CredsFile == "" && p.opts.NKeySeedFile == "" }

// connected runs on every reconnect: probe again, watch again.
func (p *Publisher) connected() {
	p.mode.Store(int32(modeUnknown))
	p.authErr.Store(nil) // the login passed
	p.signalWatch()
	p.wake()
}

func (p *Publisher) signalWatch() {
	select {
	case p.reconn <- struct{}{}:
	default:
	}
}

// refused records and logs, once per distinct reason, the server refusing
// the credentials or a permission they need. It stays until a probe passes.
func (p *Publisher) refused(err error) {
	prev := p.authErr.Swap(&err)
	if prev != nil && (*prev).Error() == err.Error() {
		return
	}
	p.log.Error().Err(err).Str("credential", p.opts.Credential()).Str("url", transport.RedactURLs(p.opts.URL)).
		Msg("the NATS server refused this sensor's credentials or their permissions: findings spool and heartbeats say transport=unauthorized until the server's configuration lets it in (driftctl creds)")
}

func (p *Publisher) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// probe finds out whether the server keeps findings (JetStream) and makes
// sure the stream exists.
func (p *Publisher) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.AckTimeout)
	defer cancel()
	_, err := p.js.AccountInfo(ctx)
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		if mode(p.mode.Swap(int32(modeCore))) != modeCore {
			p.log.Warn().Err(err).Msg("the NATS server has no JetStream: findings go out on core NATS, flushed but not kept; heartbeats say transport=core")
		}
		p.authErr.Store(nil)
		return nil
	}
	if err != nil {
		return fmt.Errorf("JetStream account info: %w", err)
	}
	info, err := transport.EnsureStream(ctx, p.js, p.log, p.mayCreate())
	if err != nil {
		return err
	}
	p.checkStream(info)
	p.authErr.Store(nil)
	p.mode.Store(int32(modeJetStream))
	return nil
}

func (p *Publisher) logProbe(err error) {
	if s := err.Error(); p.lastErr.Swap(s) != s {
		p.log.Error().Err(err).Msg("cannot use the server's JetStream yet; findings spool and the probe is retried")
	}
}

// streamLastSeq is the highest seq this host has in the stream.
func (p *Publisher) streamLastSeq(ctx context.Context) uint64 {
	ctx, cancel := context.WithTimeout(ctx, p.opts.AckTimeout)
	defer cancel()
	s, err := p.js.Stream(ctx, event.StreamName)
	if err != nil {
		return 0
	}
	var last uint64
	for _, k := range kinds {
		m, err := s.GetLastMsgForSubject(ctx, event.Subject(p.host, k))
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgNotFound) {
				p.log.Debug().Err(err).Msg("reading the last finding from the stream")
			}
			continue
		}
		var v struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(m.Data, &v) == nil {
			last = max(last, v.Seq)
		}
	}
	return last
}

// Publish numbers ev and sends it. It sets ev.Schema, Host, ID and Seq, and
// Time when it is zero. A nil error means the finding is durable: the stream
// acknowledged it (or a server without JetStream took it), or it is in the
// spool. An error means it was lost, and is counted (SpoolOverflow): the
// caller reports that as a finding.
func (p *Publisher) Publish(ev *event.Event) error {
	ki := kindIndex(ev.Kind)
	if ki < 0 {
		return fmt.Errorf("transport: finding kind %q (want file, exec, net or sensor)", ev.Kind)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.lossPending() {
		p.reportLosses() // a loss is reported before the findings after it
	}
	out, err := p.number(ev, ki)
	if err != nil {
		return err
	}
	// While anything waits in the spool, new findings queue behind it: the
	// order of a host's findings is never changed.
	if p.direct() {
		start := time.Now()
		err := p.send(out.subj, out.id, out.seq, out.data)
		if err == nil {
			p.lat.observe(time.Since(start))
			p.published.Add(1)
			return nil
		}
		p.pubErrors.Add(1)
		p.sendFailed(err)
		return p.toSpool(out.subj, out.id, out.seq, out.data, true, false)
	}
	return p.toSpool(out.subj, out.id, out.seq, out.data, false, false)
}

// maxBatch bounds the findings in flight at once in PublishBatch.
const maxBatch = 1024

// PublishBatch publishes evs in order with the guarantee of Publish for each
// one, but pipelines the sends: one wait for the whole batch instead of one
// round trip per finding. It is for a reader that drains a burst from the ring
// buffer. If a send fails, that finding and all after it go to the spool, in
// order; a later one the server did take is sent again and dropped by the
// stream as a duplicate. The error joins the findings lost. It returns each
// finding's JSON, its one encoding (nil for one that could not be encoded),
// for the daemon to print.
func (p *Publisher) PublishBatch(evs []*event.Event) ([][]byte, error) {
	kis := make([]int, len(evs))
	for i, ev := range evs {
		if kis[i] = kindIndex(ev.Kind); kis[i] < 0 {
			return nil, fmt.Errorf("publish: finding %d: kind %q (want file, exec, net or sensor)", i, ev.Kind)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	lines := make([][]byte, 0, len(evs))
	var errs []error
	for len(evs) > 0 {
		if p.lossPending() {
			p.reportLosses()
		}
		n := min(len(evs), maxBatch)
		out := make([]outgoing, 0, n)
		for i, ev := range evs[:n] {
			o, err := p.number(ev, kis[i])
			lines = append(lines, o.data)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, o)
		}
		evs, kis = evs[n:], kis[n:]
		sent, tried := 0, false
		if p.direct() {
			tried = true
			start := time.Now()
			var err error
			sent, err = p.sendBatch(out)
			if sent > 0 {
				d := time.Since(start) / time.Duration(sent) // the batch's cost per finding
				for range sent {
					p.lat.observe(d)
				}
				p.published.Add(uint64(sent))
			}
			if err != nil {
				p.pubErrors.Add(1)
				p.sendFailed(err)
			}
		}
		for _, o := range out[sent:] {
			if err := p.toSpool(o.subj, o.id, o.seq, o.data, tried, false); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return lines, errors.Join(errs...)
}

// outgoing is a numbered, encoded finding.
type outgoing struct {
	subj, id string
	seq      uint64
	data     []byte
}

// number assigns the finding its identity and encodes it. Callers hold p.mu.
func (p *Publisher) number(ev *event.Event, ki int) (outgoing, error) {
	return p.numberAt(ev, ki, event.KTimeNow())
}

// numberAt is number for a finding handed over at emit (event.KTimeNow).
func (p *Publisher) numberAt(ev *event.Event, ki int, emit uint64) (outgoing, error) {
	data, err := p.num.numberAt(ev, emit)
	if err != nil {
		p.overflow.Add(1)
		return outgoing{}, fmt.Errorf("publish: %w: lost", err)
	}
	p.findings[ki].Add(1)
	return outgoing{subj: event.Subject(p.host, ev.Kind), id: ev.ID, seq: ev.Seq, data: data}, nil
}

// direct reports whether findings may go straight to the server: it is
// connected and probed, and nothing waits in the memory queue or the spool.
// Callers hold p.mu.
func (p *Publisher) direct() bool {
	return p.usable() && p.q.len() == 0 && p.spool.Depth() == 0
}

// toSpool spools a finding. One that was sent and not acknowledged (sent)
// may be in the stream already: it is spooled even past the spool's bounds
// (by one batch at most: nothing is sent directly again until the spool is
// empty), never counted lost, and its resend is dropped as a duplicate. Only
// a finding that never left can be lost, so a loss report is exact.
// buffered skips the fsync (the caller has the loop sync the spool).
func (p *Publisher) toSpool(subj, id string, seq uint64, data []byte, sent, buffered bool) error {
	add := p.spool.Append
	switch {
	case buffered:
		add = func(b []byte) error { return p.spool.AppendBuffered(b, sent) }
	case sent:
		add = p.spool.AppendOver
	}
	if err := add(encodeSpooled(subj, id, data)); err != nil {
		p.overflow.Add(1)
		if !p.spooling || !errors.Is(err, spool.ErrFull) {
			p.log.Error().Err(err).Uint64("seq", seq).Msg("finding lost: the spool refused it")
		}
		return fmt.Errorf("transport: finding seq %d lost: %w", seq, err)
	}
	p.spooled.Add(1)
	if !p.spooling {
		p.spooling = true
		p.log.Warn().Uint64("seq", seq).Msg("server unreachable or not acknowledging, or the memory queue full; spooling findings")
	}
	p.wake()
	return nil
}

// send publishes one finding and waits until the server has it.
func (p *Publisher) send(subj, id string, seq uint64, data []byte) error {
	msg := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{id}}}
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.AckTimeout)
	defer cancel()
	if mode(p.mode.Load()) == modeJetStream {
		// The Nats-Msg-Id lets the stream drop a resend of a finding it already
		// has (an ack lost to a disconnect, a kill between ack and spool ack).
		ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(event.StreamName), jetstream.WithRetryAttempts(0))
		if err == nil {
			p.stream.acked(seq, seq, ack.Sequence)
		}
		return err
	}
	if err := p.nc.PublishMsg(msg); err != nil {
		return err
	}
	return p.nc.FlushWithContext(ctx)
}

// sendBatch publishes findings without waiting in between, then waits for
// the server to have them. It returns how many, from the first, it has.
func (p *Publisher) sendBatch(out []outgoing) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.AckTimeout)
	defer cancel()
	if mode(p.mode.Load()) == modeJetStream {
		futs := make([]jetstream.PubAckFuture, 0, len(out))
		var err error
		for _, o := range out {
			msg := &nats.Msg{Subject: o.subj, Data: o.data, Header: nats.Header{jetstream.MsgIDHeader: []string{o.id}}}
			var f jetstream.PubAckFuture
			if f, err = p.js.PublishMsgAsync(msg, jetstream.WithExpectStream(event.StreamName), jetstream.WithRetryAttempts(0)); err != nil {
				break
			}
			futs = append(futs, f)
		}
		var top uint64
		for i, f := range futs {
			select {
			case ack := <-f.Ok():
				top = max(top, ack.Sequence)
			case ferr := <-f.Err():
				p.ackedBatch(out[:i], top)
				return i, ferr
			case <-ctx.Done():
				p.ackedBatch(out[:i], top)
				return i, fmt.Errorf("waiting for the stream's ack: %w", ctx.Err())
			}
		}
		p.ackedBatch(out[:len(futs)], top)
		return len(futs), err
	}
	for i, o := range out {
		if err := p.nc.PublishMsg(&nats.Msg{Subject: o.subj, Data: o.data, Header: nats.Header{jetstream.MsgIDHeader: []string{o.id}}}); err != nil {
			if ferr := p.nc.FlushWithContext(ctx); ferr != nil {
				return 0, ferr
			}
			return i, err
		}
	}
	if err := p.nc.FlushWithContext(ctx); err != nil {
		return 0, err
	}
	return len(out), nil
}

// ackedBatch notes the findings of a batch the stream acked.
func (p *Publisher) ackedBatch(out []outgoing, streamSeq uint64) {
	if len(out) == 0 {
		return
	}
	first, last := out[0].seq, out[len(out)-1].seq
	if first == 0 { // from the spool: read the numbers back
		first, last = jsonSeq(out[0].data), jsonSeq(out[len(out)-1].data)
	}
	p.stream.acked(first, last, streamSeq)
}

// sendFailed makes the loop probe the server again when the failure says the
// stream is gone (deleted, or a server restarted without JetStream).
func (p *Publisher) sendFailed(err error) {
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound) {
		p.mode.Store(int32(modeUnknown))
	}
}

// idleEvery is the loop's period while nothing waits: no spool, no queue,
// the server probed. Whatever gives it work wakes it (a spill, a reconnect),
// and it then ticks every ReconnectWait again; an idle sensor's wakeups are
// what an idle host pays for it.
const idleEvery = 5 * time.Second

// loop drains the spool whenever the server is reachable, and re-probes the
// server after each reconnect.
func (p *Publisher) loop() {
	defer p.wg.Done()
	t := time.NewTicker(p.opts.ReconnectWait)
	defer t.Stop()
	slow := false
	pace := func(idle bool) { // the period for an idle loop or a busy one
		if idle == slow {
			return
		}
		d := p.opts.ReconnectWait
		if idle {
			d = idleEvery
		}
		t.Reset(d)
		slow = idle
	}
	for {
		select {
		case <-p.done:
			return
		case <-p.kick:
			pace(false)
		case <-t.C:
			p.syncSpilled()
			p.mu.Lock()
			if p.lossPending() {
				p.reportLosses()
			}
			p.mu.Unlock()
			idle := p.spool.Depth() == 0 && p.qLen.Load() == 0 && mode(p.mode.Load()) != modeUnknown
			pace(idle)
			if idle {
				continue
			}
		}
		if !p.nc.IsConnected() {
			// Until a first connection, nats.go reports a refused login only
			// as the connection's last error.
			if err := p.nc.LastError(); transport.IsAuthError(err) {
				p.refused(err)
			}
			continue
		}
		if mode(p.mode.Load()) == modeUnknown {
			if err := p.probe(context.Background()); err != nil {
				p.logProbe(err)
				continue
			}
			p.lastErr.Store("")
		}
		// Findings kept in the memory queue by a failure go again first;
		// the spool drains once they are acked.
		p.kickPump()
		p.drain()
	}
}

// syncSpilled puts findings spilled without an fsync on stable storage.
func (p *Publisher) syncSpilled() {
	if p.unsyncedSpool.Swap(false) {
		if err := p.spool.Sync(); err != nil {
			p.log.Error().Err(err).Msg("syncing the spool")
		}
	}
}

// drain moves the spool's oldest findings into the memory queue when it is
// empty; the pump sends them and the acks consume them from the spool. The
// loop is woken again when the queue is empty.
func (p *Publisher) drain() {
	p.mu.Lock()
	// The memory queue's findings are older than the spool's: they go first.
	loaded := !p.closed && p.usable() && p.q.len() == 0 && p.loadSpool()
	p.mu.Unlock()
	if loaded {
		p.kickPump()
	}
}

// Spooled record: uvarint subject length, subject, uvarint id length, id, JSON.
func encodeSpooled(subj, id string, data []byte) []byte {
	return appendSpooled(make([]byte, 0, 2*binary.MaxVarintLen16+len(subj)+len(id)+len(data)), subj, id, data)
}

// appendSpooled appends the spooled record of a finding to b.
func appendSpooled(b []byte, subj, id string, data []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(subj)))
	b = append(b, subj...)
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	return append(b, data...)
}

func decodeSpooled(b []byte) (subj, id string, data []byte, err error) {
	field := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) || n > 1024 {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	var ok1, ok2 bool
	subj, ok1 = field()
	id, ok2 = field()
	if !ok1 || !ok2 || subj == "" || id == "" {
		return "", "", nil, errors.New("spooled record: bad subject or id framing")
	}
	return subj, id, b, nil
}

// seqOf reads the seq of a spooled finding.
func seqOf(rec []byte) (uint64, bool) {
	_, _, data, err := decodeSpooled(rec)
	if err != nil {
		return 0, false
	}
	var v struct {
		Seq uint64 `json:"seq"`
	}
	if json.Unmarshal(data, &v) != nil {
		return 0, false
	}
	return v.Seq, true
}

// Counters returns the running totals.
func (p *Publisher) Counters() Counters {
	return Counters{
		Published:     p.published.Load(),
		Spooled:       p.spooled.Load(),
		SpoolOverflow: p.overflow.Load(),
		PublishErrors: p.pubErrors.Load(),
		Rejected:      p.rejected.Load(),
		SpoolDepth:    uint64(p.spool.Depth()),
		Queued:        p.queued(),
		Seq:           p.num.Last(),
		Transport:     p.Transport(),
	}
}

// Metrics returns the transport's part of the sensor metrics; the sensor
// fills LostRecords and RingFill.
func (p *Publisher) Metrics() Metrics {
	c := p.Counters()
	m := Metrics{
		Findings:       make(map[event.Kind]uint64, len(kinds)),
		SpoolDepth:     c.SpoolDepth,
		SpoolLost:      c.SpoolOverflow,
		Published:      c.Published,
		Spooled:        c.Spooled,
		PublishErrors:  c.PublishErrors,
		Rejected:       c.Rejected,
		PublishLatency: p.lat.snapshot(),
		Transport:      c.Transport,
	}
	for i, k := range kinds {
		m.Findings[k] = p.findings[i].Load()
	}
	return m
}

// Close stops the background work, flushes and closes the connection and
// syncs the sequence file. The spool stays open.
func (p *Publisher) Close() error {
	var err error
	p.closeMu.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.flushQueue()
		close(p.done)
		p.wg.Wait()
		p.syncSpilled()
		if p.nc.IsConnected() {
			_ = p.nc.FlushTimeout(p.opts.AckTimeout)
		}
		p.nc.Close()
		err = p.num.seq.close()
	})
	return err
}
