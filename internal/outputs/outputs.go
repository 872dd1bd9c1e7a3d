// Package outputs delivers findings and the responder's alerts to the
// systems SOC teams already run: syslog (RFC 5424 over UDP, TCP or TLS) and
// HTTP collectors (Splunk HEC, Elastic _bulk). One Output per destination
// retries what the destination could not take and, in queue mode, holds
// records in a bounded queue whose overflow is counted, never hidden.
package outputs

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Record is one document to deliver.
type Record struct {
	ID       string    // unique: the Elastic _id, the syslog MSGID's structured data; receivers drop repeats by it
	Time     time.Time // when it happened
	Host     string    // the host it is about
	Source   string    // what it is: "finding" or "alert" (HEC sourcetype, syslog APP-NAME suffix)
	Severity int       // syslog severity, 0 (emergency) to 7 (debug)
	Doc      []byte    // the JSON document: a finding as published, its OCSF form, or an audit record
}

// Sink sends records to one destination, once.
type Sink interface {
	// Send tries to deliver recs. It returns the records worth trying again
	// (the destination was unreachable, busy or failed), how many it refused
	// for good (a 4xx on the item: trying again would not help), and an error
	// describing the last failure, if any.
	Send(ctx context.Context, recs []Record) (retry []Record, refused int, err error)
	Close() error
}

// acknowledger is a Sink whose receiver answers for each record it took (an
// HTTP collector's status and per-item result). Syslog has no such answer
// (RFC 5424, 5426, 6587, 5425): what it sends is written, never acknowledged.
type acknowledger interface{ acknowledges() }

// Stats count what happened to records handed to an Output.
type Stats struct {
	Sent    atomic.Uint64 // delivered: written to the destination (syslog: into the socket) or acknowledged by it (HTTP)
	Acked   atomic.Uint64 // of Sent, those the receiver acknowledged (HTTP collectors; never syslog, which has no acknowledgement)
	Retried atomic.Uint64 // deliveries tried again (per record)
	Refused atomic.Uint64 // refused by the destination for good
	Failed  atomic.Uint64 // given up on after the last attempt
	Dropped atomic.Uint64 // not queued: the queue was full
}

// Config tunes an Output; zero values take the defaults.
type Config struct {
	Queue    int           // queue mode: records waiting at most; 10000 if 0
	Batch    int           // records per send; 500 if 0
	Attempts int           // queue mode: sends of one batch before it is given up (Failed); 8 if 0
	Backoff  time.Duration // first wait before a retry, doubled each time; 250ms if 0
	MaxWait  time.Duration // longest wait between retries; 30s if 0
	// Warn is told about failures and overflow (rate-limited by the caller's logger, not here).
	Warn func(msg string, err error)
}

func (c Config) withDefaults() Config {
	if c.Queue <= 0 {
		c.Queue = 10000
	}
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.Attempts <= 0 {
		c.Attempts = 8
	}
	if c.Backoff <= 0 {
		c.Backoff = 250 * time.Millisecond
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 30 * time.Second
	}
	if c.Warn == nil {
		c.Warn = func(string, error) {}
	}
	return c
}

// Output is one destination with its retries and, in queue mode, its queue.
type Output struct {
	Name  string // the destination as given (secrets left out)
	Stats Stats

	sink Sink
	cfg  Config
	acks bool // the sink's receiver acknowledges what it took

	mu       sync.RWMutex // Close holds it to close q; Enqueue to send on it
	q        chan Record
	closed   bool
	done     chan struct{}
	overflow atomic.Bool // set while dropping, so the warning comes once per overflow
	stop     context.CancelFunc
	once     sync.Once
}

// New returns an Output on sink. Call Start for queue mode, or Deliver.
func New(name string, sink Sink, cfg Config) *Output {
	cfg = cfg.withDefaults()
	_, acks := sink.(acknowledger)
	return &Output{Name: name, sink: sink, cfg: cfg, acks: acks}
}

// Deliver sends recs synchronously, retrying what the destination did not
// take until it is delivered or ctx ends: the caller's own store (the
// JetStream stream, for export) is the queue, so nothing is given up on.
// Records refused for good are counted and reported, not retried.
func (o *Output) Deliver(ctx context.Context, recs []Record) error {
	for len(recs) > 0 {
		n := min(len(recs), o.cfg.Batch)
		if err := o.send(ctx, recs[:n], 0); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}

// send delivers one batch, retrying; attempts 0 means until ctx ends.
func (o *Output) send(ctx context.Context, batch []Record, attempts int) error {
	wait := o.cfg.Backoff
	var cause error // the last failure not caused by ctx ending
	for try := 1; ; try++ {
		retry, refused, err := o.sink.Send(ctx, batch)
		if err != nil && ctx.Err() == nil {
			// A dial bounded by ctx's deadline can fail a moment before ctx
			// says it ended: that failure is ctx's, not the destination's.
			if dl, ok := ctx.Deadline(); !ok || time.Now().Before(dl) {
				cause = err
			}
		}
		o.Stats.Sent.Add(uint64(len(batch) - len(retry) - refused))
		if o.acks {
			o.Stats.Acked.Add(uint64(len(batch) - len(retry) - refused))
		}
		if refused > 0 {
			o.Stats.Refused.Add(uint64(refused))
			o.cfg.Warn(fmt.Sprintf("output %s refused %d records", o.Name, refused), err)
		}
		if len(retry) == 0 {
			return nil
		}
		if attempts > 0 && try >= attempts {
			o.Stats.Failed.Add(uint64(len(retry)))
			o.cfg.Warn(fmt.Sprintf("output %s: gave up on %d records after %d attempts", o.Name, len(retry), try), err)
			return nil
		}
		if try == 1 {
			o.cfg.Warn(fmt.Sprintf("output %s: %d records to try again", o.Name, len(retry)), err)
		}
		o.Stats.Retried.Add(uint64(len(retry)))
		batch = retry
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if attempts > 0 {
				o.Stats.Failed.Add(uint64(len(retry)))
			}
			return fmt.Errorf("output %s: %d records not delivered: %w (last error: %v)", o.Name, len(retry), ctx.Err(), cause)
		case <-t.C:
		}
		wait = min(2*wait, o.cfg.MaxWait)
	}
}

// Start runs the queue: records given to Enqueue are sent in batches,
// each batch tried Attempts times. Close stops it.
func (o *Output) Start() {
	o.q = make(chan Record, o.cfg.Queue)
	o.done = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	o.stop = cancel
	go o.loop(ctx)
}

func (o *Output) loop(ctx context.Context) {
	defer close(o.done)
	batch := make([]Record, 0, o.cfg.Batch)
	for {
		rec, ok := <-o.q
		if !ok {
			return
		}
		batch = append(batch[:0], rec)
	fill:
		for len(batch) < o.cfg.Batch {
			select {
			case rec, ok := <-o.q:
				if !ok {
					break fill
				}
				batch = append(batch, rec)
			default:
				break fill
			}
		}
		o.send(ctx, batch, o.cfg.Attempts)
		if ctx.Err() != nil {
			o.Stats.Failed.Add(uint64(len(o.q)))
			return
		}
	}
}

// Enqueue queues rec without waiting; a full queue drops it, counts it in
// Stats.Dropped, and warns once per overflow.
func (o *Output) Enqueue(rec Record) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		o.Stats.Dropped.Add(1)
		return false
	}
	select {
	case o.q <- rec:
		if o.overflow.CompareAndSwap(true, false) {
			o.cfg.Warn(fmt.Sprintf("output %s: queue has room again; %d records dropped in all", o.Name, o.Stats.Dropped.Load()), nil)
		}
		return true
	default:
		o.Stats.Dropped.Add(1)
		if o.overflow.CompareAndSwap(false, true) {
			o.cfg.Warn(fmt.Sprintf("output %s: queue full (%d records): dropping records, counted", o.Name, o.cfg.Queue), nil)
		}
		return false
	}
}

// Close stops the queue after sending what it holds, waiting at most until
// ctx ends (then what is left counts as Failed), and closes the sink.
func (o *Output) Close(ctx context.Context) error {
	o.once.Do(func() {
		if o.q == nil {
			return
		}
		o.mu.Lock()
		o.closed = true
		close(o.q)
		o.mu.Unlock()
		select {
		case <-o.done:
		case <-ctx.Done():
			o.stop()
			<-o.done
		}
		o.stop()
	})
	return o.sink.Close()
}

// Open returns the Output for a destination URL:
//
//	syslog+udp://HOST:PORT   syslog+tcp://HOST:PORT   syslog+tls://HOST:PORT
//	hec+https://HOST:8088    hec+http://...            (Splunk HTTP Event Collector; token in $DRIFT_HEC_TOKEN)
//	bulk+https://HOST:9200/INDEX   bulk+http://...     (Elastic _bulk; optional user:password@)
//
// Query parameters: ca=FILE (roots to trust), cert=FILE and key=FILE (a
// client certificate) for syslog+tls and https; token-file=FILE for hec.
func Open(dest string, cfg Config) (*Output, error) {
	u, err := url.Parse(dest)
	if err != nil {
		return nil, fmt.Errorf("output %q: %w", dest, err)
	}
	scheme, transport, _ := strings.Cut(u.Scheme, "+")
	if u.Host == "" || transport == "" {
		return nil, fmt.Errorf("output %q: want syslog+udp|tcp|tls://HOST:PORT, hec+http(s)://HOST:PORT or bulk+http(s)://HOST:PORT/INDEX", dest)
	}
	name := u.Redacted()
	q := u.Query()
	u.RawQuery = ""
	tls, err := tlsConfig(q.Get("ca"), q.Get("cert"), q.Get("key"))
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", name, err)
	}
	var sink Sink
	switch scheme {
	case "syslog":
		sink, err = newSyslog(u, transport, tls)
	case "hec":
		sink, err = newHEC(u, transport, tls, q.Get("token-file"))
	case "bulk":
		sink, err = newBulk(u, transport, tls)
	default:
		err = fmt.Errorf("unknown output %q (want syslog, hec or bulk)", scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", name, err)
	}
	return New(name, sink, cfg), nil
}
