// Package agent runs a host's sensor as a daemon: findings flow from the
// kernel backend through the sensor to stdout and the NATS publisher, the
// host's state follows the control plane, and heartbeats say the sensor lives.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/internal/metrics"
	"github.com/driftsensor/driftsensor/internal/version"
	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/publish"
	"github.com/driftsensor/driftsensor/sensor/spool"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// Config wires a daemon.
type Config struct {
	Host       string
	Policy     *policy.Policy
	Backend    backend.Backend
	BackendWhy string // why this backend and not the other
	// NATS says where findings, heartbeats and the host's state go; with no
	// URL findings go to Out only. New sets Answer and Backend itself.
	NATS transport.Options
	// SpoolDir holds the spool, where findings wait while the server is
	// unreachable, and the sequence file; required with NATS.
	SpoolDir  string
	Spool     spool.Options
	Out       io.Writer     // JSON lines of findings; nil: none
	Format    event.Format  // of the lines on Out: json (default) or ocsf
	Seal      bool          // seal at start (an image that boots sealed)
	Heartbeat time.Duration // default 1s
	// KernelEvery is how often the kernel state is compared with the seal's
	// (sensor.Config.KernelEvery); 0: never.
	KernelEvery time.Duration
	Metrics     string // listen address for Prometheus metrics; "" = off
	// Cordon sets or clears the host's cordon gate; nil when no gate is attached.
	Cordon func(on bool) error
	// CordonState reads the gate's flag (the reflex may set it in the kernel); nil when no gate is attached.
	CordonState func() (bool, error)
	Log         zerolog.Logger
	// OnState, when set, is told each state the daemon applied to the kernel.
	OnState func(event.State)
	// Ready, when set, is called once everything is attached and the initial state applied.
	Ready func()
	// LivenessFile, when set, is where each heartbeat is recorded, so the
	// next start reports the restart and how long the host went unwatched.
	LivenessFile string
	// DrillDir is where drills (ctl drill) work, each in a directory of its
	// own; "" refuses drills. It must exist and be in sealed, protected space.
	DrillDir string
	// DrillCgroup is the cgroup v2 directory a drill's process runs in (the
	// sensor's scope); "" runs it in the sensor's own cgroup.
	DrillCgroup string
}

// Daemon is a running agent.
type Daemon struct {
	cfg     Config
	sensor  *sensor.Sensor
	pub     *publish.Publisher // nil without NATS
	spool   *spool.Spool       // the publisher's
	local   *publish.Numberer  // numbers findings without NATS
	queue   chan *event.Event
	state   atomic.Value // event.State
	start   time.Time
	outMu   sync.Mutex
	outBuf  []byte         // the lines of a batch being written; guarded by outMu
	lines   [][]byte       // reused by send
	live    event.Liveness // this run: boot, instance, start
	beatErr bool           // the last liveness record failed (logged once)
	qMu     sync.Mutex     // guards queue sends from outside the sensor against its close
	qClosed bool
	// reported are the paths of recent findings: evidence is read only of them.
	reported *reportedPaths
}

// queueLen bounds findings between the ring buffer reader and the goroutine
// that numbers and encodes them. The publisher never makes that goroutine
// wait on the server (publish.Publisher.Enqueue queues in memory or spills
// to the spool), so this fills only while encoding falls behind the kernel;
// when it is full the reader waits, the kernel ring fills and the kernel
// counts what it could not queue, which the sensor reports. Nothing is
// dropped silently in user space.
const queueLen = 1 << 16

// Run assembles a daemon for cfg, runs it until ctx ends and closes it.
func Run(ctx context.Context, cfg Config) error {
	d, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Run(ctx)
}

// New assembles a host daemon: the sensor on cfg.Backend and, with a NATS
// URL, the spool in cfg.SpoolDir and the publisher, which hands the daemon
// the host's ctl commands. Spool damage found on opening is logged and
// reported as findings with its exact count. ctx bounds the connection's
// setup; a server that is down is not an error (findings spool). Run starts
// the daemon; Close releases what New opened.
func New(ctx context.Context, cfg Config) (*Daemon, error) {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	d := &Daemon{cfg: cfg, queue: make(chan *event.Event, queueLen), start: time.Now(), reported: newReportedPaths(reportedLimit)}
	d.live = newLiveness(d.start)
	d.sensor = sensor.New(sensor.Config{
		Host: cfg.Host, Policy: cfg.Policy, Backend: cfg.Backend, Log: cfg.Log, KernelEvery: cfg.KernelEvery,
		Emit: func(ev *event.Event) { d.queue <- ev },
	})
	if cfg.NATS.URL == "" {
		d.local = publish.NewNumberer(cfg.Host)
		return d, nil
	}
	if cfg.SpoolDir == "" {
		return nil, errors.New("agent: NATS needs a spool directory (Config.SpoolDir)")
	}
	sp, damage, err := spool.Open(cfg.SpoolDir, cfg.Spool)
	if err != nil {
		return nil, fmt.Errorf("spool in %s: %w", cfg.SpoolDir, err)
	}
	for _, dm := range damage {
		cfg.Log.Error().Str("file", dm.File).Int64("offset", dm.Offset).Int64("bytes", dm.Bytes).Int("records", dm.Records).Str("reason", dm.Reason).Msg("spool damage: records discarded")
	}
	conn := cfg.NATS
	conn.Answer, conn.Backend = d.Answer, cfg.Backend.Name()
	pub, err := publish.New(ctx, conn, cfg.Host, sp, cfg.Log)
	if err != nil {
		sp.Close()
		return nil, err
	}
	pub.ReportSpoolDamage(damage) // each with its exact count, as soon as it can be made durable
	d.pub, d.spool = pub, sp
	return d, nil
}

// Publisher is the daemon's publisher; nil without NATS.
func (d *Daemon) Publisher() *publish.Publisher { return d.pub }

// Close stops the publisher and closes the spool; call it after Run returns.
func (d *Daemon) Close() error {
	if d.pub == nil {
		return nil
	}
	err := d.pub.Close()
	if cerr := d.spool.Close(); err == nil {
		err = cerr
	}
	return err
}

// Run runs until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	cfg := d.cfg
	initial, by := event.StateMutable, "driftsensor at start (not sealed: no --seal, no seal_on_start)"
	if cfg.Seal {
		initial, by = event.StateSealed, "driftsensor at start (--seal or the policy's seal_on_start)"
	}
	if err := d.apply(initial, 0, by); err != nil {
		return err
	}
	if p := d.pub; p != nil {
		p.SetBackend(cfg.Backend.Name()) // for the loss reports it makes itself
		p.OnLoss(func(ev *event.Event, data []byte) { d.print([]*event.Event{ev}, [][]byte{data}) })
		if err := p.WatchState(ctx, d.onState); err != nil {
			cfg.Log.Warn().Err(err).Msg("no control plane to watch: the host state stays as set at start")
		}
		p.StartHeartbeat(cfg.Heartbeat, d.heartbeat)
	}
	if cfg.Metrics != "" {
		if err := d.serveMetrics(ctx); err != nil {
			return err
		}
	}

	// The previous run's record is read before this run's first beat
	// replaces it.
	if ev := d.previousRun(); ev != nil {
		d.queue <- ev
	}
	var wg sync.WaitGroup
	stopBeats := make(chan struct{})
	wg.Add(2)
	go func() { defer wg.Done(); d.forward(ctx) }()
	go func() { defer wg.Done(); d.recordBeats(stopBeats) }()
	if cfg.Ready != nil {
		cfg.Ready()
	}
	err := d.sensor.Run(ctx)
	d.qMu.Lock()
	d.qClosed = true
	close(d.queue)
	d.qMu.Unlock()
	close(stopBeats)
	wg.Wait()
	return err
}

// onState applies a state the control plane decided.
func (d *Daemon) onState(st event.State) {
	if st == event.StateNone { // nothing decided yet: keep what we booted with
		return
	}
	var rev uint64
	if p := d.pub; p != nil {
		rev = p.StateRevision()
	}
	if err := d.apply(st, rev, ""); err != nil {
		d.cfg.Log.Error().Err(err).Str("state", string(st)).Msg("apply host state")
	}
}

// apply sets st in the kernel (and the cordon gate); a change is recorded
// in the stream, with the KV revision it came from (0: set at start) and
// who made it when known.
func (d *Daemon) apply(st event.State, rev uint64, by string) error {
	sealed := st != event.StateMutable
	if err := d.sensor.SetSealed(sealed); err != nil {
		return err
	}
	prev, _ := d.state.Load().(event.State)
	// The cordon is set by a cordoned state (or a ctl command, or the reflex)
	// and cleared only by the control plane moving the host out of it: a
	// restart or a state the host had anyway never lifts a cordon.
	if d.cfg.Cordon != nil {
		switch {
		case st == event.StateCordoned:
			if err := d.cfg.Cordon(true); err != nil {
				return err
			}
		case prev == event.StateCordoned:
			if err := d.cfg.Cordon(false); err != nil {
				return err
			}
		}
	}
	d.state.Store(st)
	if prev != st {
		d.cfg.Log.Info().Str("state", string(st)).Str("was", string(prev)).Bool("sealed", sealed).Uint64("revision", rev).Msg("host state applied")
		d.enqueue(d.stateApplied(prev, st, rev, by))
	}
	if d.cfg.OnState != nil {
		d.cfg.OnState(st)
	}
	return nil
}

// Command handles a ctl command (the publisher passes them on). The responder
// cordons through it; every other state change goes through the control
// plane's state bucket, where it is audited and a host cannot make it itself.
func (d *Daemon) Command(c event.CtlCommand) error {
	switch c.Cmd {
	case "cordon":
		if d.cfg.Cordon == nil {
			return errors.New("no cordon gate on this host (start driftsensor with --gate)")
		}
		if err := d.cfg.Cordon(true); err != nil {
			return err
		}
		d.cfg.Log.Warn().Str("id", c.ID).Msg("cordoned by command")
		return nil
	case "seal", "unseal", "uncordon":
		return fmt.Errorf("%s: only through the control plane (driftctl %s), which audits it", c.Cmd, c.Cmd)
	}
	return fmt.Errorf("unknown command %q", c.Cmd)
}

// Answer handles a ctl command whose reply carries data (transport.Options.Answer):
// evidence of a reported file, a drill; the others go to Command.
func (d *Daemon) Answer(c event.CtlCommand, r *event.CtlReply) error {
	var err error
	switch c.Cmd {
	case event.CmdEvidence:
		r.File, err = d.Evidence(c.Arg)
	case event.CmdDrill:
		r.Drill, err = d.Drill(c.ID, c.Arg)
	default:
		err = d.Command(c)
	}
	return err
}

// forward moves findings to stdout and the publisher in batches, as fast
// as the reader makes them: the publisher queues them without waiting.
func (d *Daemon) forward(ctx context.Context) {
	batch := make([]*event.Event, 0, 256)
	for ev := range d.queue {
		batch = append(batch[:0], ev)
	fill:
		for len(batch) < cap(batch) {
			select {
			case ev, ok := <-d.queue:
				if !ok {
					break fill
				}
				batch = append(batch, ev)
			default:
				break fill
			}
		}
		d.send(batch)
	}
}

func (d *Daemon) send(batch []*event.Event) {
	for _, ev := range batch {
		d.reported.add(ev)
	}
	// The publisher (or, without NATS, the local numberer) numbers each
	// finding and encodes it once; stdout prints that encoding.
	var lines [][]byte
	if p := d.pub; p != nil {
		// Enqueue queues the findings in memory or spills them to the
		// spool; an error means some could not even be spooled, and the
		// publisher has counted them as spool overflow (and reports them).
		var err error
		if lines, err = p.Enqueue(batch, d.lines); err != nil {
			d.cfg.Log.Error().Err(err).Int("findings", len(batch)).Msg("publish")
		}
	} else {
		lines = d.lines[:0]
		for _, ev := range batch {
			data, err := d.local.Number(ev)
			if err != nil {
				d.cfg.Log.Error().Err(err).Msg("finding")
			}
			lines = append(lines, data)
		}
	}
	d.lines = lines
	d.print(batch, lines)
}

// print writes findings on Out: lines[i] is evs[i] in JSON, already encoded
// (nil when it could not be). The batch's lines go out in one write: a write
// per finding cost a system call and a wakeup of the reader at the pipe's
// other end each, and in a storm the ring buffer filled behind them.
func (d *Daemon) print(evs []*event.Event, lines [][]byte) {
	if d.cfg.Out == nil {
		return
	}
	d.outMu.Lock()
	defer d.outMu.Unlock()
	buf, n := d.outBuf[:0], 0
	for i, ev := range evs {
		line := lines[i]
		var err error
		if d.cfg.Format != "" && d.cfg.Format != event.FormatJSON {
			line, err = d.cfg.Format.Marshal(ev)
		}
		if err == nil && line == nil {
			err = errors.New("not encoded")
		}
		if err != nil {
			d.cfg.Log.Error().Err(err).Str("format", d.cfg.Format.String()).Msg("write finding")
			continue
		}
		buf = append(append(buf, line...), '\n')
		n++
	}
	d.outBuf = buf
	if n == 0 {
		return
	}
	if _, err := d.cfg.Out.Write(buf); err != nil {
		d.cfg.Log.Error().Err(err).Int("findings", n).Msg("write findings")
	}
}

func (d *Daemon) heartbeat() event.Heartbeat {
	d.verify()
	findings, lost := d.sensor.Counters()
	st, _ := d.state.Load().(event.State)
	hb := event.Heartbeat{
		Backend:    d.cfg.Backend.Name(),
		BackendWhy: d.cfg.BackendWhy,
		PolicyHash: d.cfg.Policy.Hash,
		Version:    version.Version,
		Commit:     version.Commit,
		UptimeSec:  time.Since(d.start).Seconds(),
		State:      st,
		IntervalMs: d.cfg.Heartbeat.Milliseconds(),
		Liveness:   d.live,
		Counters: event.Counters{
			Findings:    findings,
			LostRecords: lost,
			RingFill:    d.cfg.Backend.RingFill(),
		},
	}
	hb.Liveness.KernelCounter = d.kernelCounter()
	return hb
}

func (d *Daemon) serveMetrics(ctx context.Context) error {
	reg := metrics.NewRegistry("driftsensor")
	reg.MustRegister(publish.NewCollector(d.metrics))
	addr, err := metrics.Serve(ctx, "--metrics-addr", d.cfg.Metrics, reg)
	if err != nil {
		return err
	}
	d.cfg.Log.Info().Str("addr", addr.String()).Msg("metrics on /metrics")
	return nil
}

// metrics is the snapshot a scrape reads.
func (d *Daemon) metrics() publish.Metrics {
	var m publish.Metrics
	m.Transport = event.TransportOffline
	if p := d.pub; p != nil {
		m = p.Metrics()
		m.Transport = p.Transport()
	}
	_, lost := d.sensor.Counters()
	m.Findings = d.sensor.ByKind()
	m.LostRecords = lost
	m.RingFill = d.cfg.Backend.RingFill()
	m.State, _ = d.state.Load().(event.State)
	m.Backend = d.cfg.Backend.Name()
	m.Gate = publish.GateNone
	if d.cfg.CordonState != nil {
		switch closed, err := d.cfg.CordonState(); {
		case err != nil:
			m.Gate = publish.GateUnknown
		case closed:
			m.Gate = publish.GateClosed
		default:
			m.Gate = publish.GateOpen
		}
	}
	return m
}
