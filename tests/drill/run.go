package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/internal/version"
	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
	"github.com/driftsensor/driftsensor/sensor/transport"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

// Config is one drill on the test bed.
type Config struct {
	Hosts      int         // test hosts at a time; each run gets a fresh one, destroyed at its end
	Runs       int         // runs of each technique
	Techniques []Technique // what to run (Select)
	// Actor is the binary re-executed as the actor inside hosts; it must call
	// ActorMainIfChild and testbed.ServeEchoIfChild first thing.
	// os.Executable() if empty.
	Actor string
	// Sensor is the driftsensor binary each host runs; if empty, the one
	// beside Actor, else the one on $PATH.
	Sensor string
	// Progress, when set, is told of each result as it comes.
	Progress func(done, total int, r Result)
}

// Waits. A technique's finding, or the marker after it, normally comes
// within milliseconds; these bound a broken chain.
const (
	findingWait = 15 * time.Second
	destroyWait = 30 * time.Second
)

// Stage names, in the order of the response.
const (
	StageKernel   = "kernel"   // the kernel's record of the mutation (bpf_ktime_get_ns)
	StageEmit     = "emit"     // the sensor handed the finding to its publisher (the finding's emit_ktime_ns)
	StageNATS     = "nats"     // the responder read it from the stream
	StageDecision = "decision" // the responder decided
	StageCordon   = "cordon"   // the responder's ctl cordon returned: the sensor closed the host's gate and said so
	StageVerified = "verified" // the responder's first probe that no longer passed was sent
	StageEvidence = "evidence" // evidence captured (when the responder records that stage)
	StageDestroy  = "destroy"  // the destroy actuator returned: processes killed, namespace gone
)

// Stages lists the stage names in order.
var Stages = []string{StageKernel, StageEmit, StageNATS, StageDecision, StageCordon, StageVerified, StageEvidence, StageDestroy}

// Result is one run of one technique.
type Result struct {
	ID      string `json:"id"`
	Attack  string `json:"attack,omitempty"`
	Tactic  string `json:"tactic"`
	Name    string `json:"name"`
	Control bool   `json:"control,omitempty"`
	Run     int    `json:"run"`
	Host    string `json:"host"`
	// Pass: a technique was detected with exactly its finding, or a control
	// stayed silent. Why says what went wrong otherwise.
	Pass    bool   `json:"pass"`
	Why     string `json:"why,omitempty"`
	Want    string `json:"want"`
	Errno   int    `json:"errno"`             // the technique's syscall result (0: it worked; -1: it did not return, an exec)
	Finding string `json:"finding,omitempty"` // the matching finding's id
	// StagesUS is each stage's time after the mutation, in microseconds;
	// a stage not reached is absent.
	StagesUS map[string]float64 `json:"stages_us,omitempty"`
}

// Meta says where a drill ran.
type Meta struct {
	Machine string    `json:"machine"`
	Kernel  string    `json:"kernel"`
	Backend string    `json:"backend"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Took    float64   `json:"took_s"`
	Hosts   int       `json:"hosts"`
	Runs    int       `json:"runs"`
	Command string    `json:"command,omitempty"`
}

// Report is a whole drill.
type Report struct {
	Meta    Meta         `json:"meta"`
	Results []Result     `json:"results"`
	Stages  []StageStats `json:"stages"`
}

// Failed counts the results that did not pass.
func (r *Report) Failed() int {
	n := 0
	for _, x := range r.Results {
		if !x.Pass {
			n++
		}
	}
	return n
}

// Run runs the drill: every technique Runs times, each on a fresh sealed
// test host, at most Hosts at a time, against an embedded NATS server and
// a responder that cordons (ctl gate, verified by a probe from a peer host)
// and destroys. It needs root and BPF; everything it makes is removed.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Hosts < 1 || cfg.Runs < 1 || len(cfg.Techniques) == 0 {
		return nil, fmt.Errorf("drill: need at least one host, one run and one technique (got %d, %d, %d)", cfg.Hosts, cfg.Runs, len(cfg.Techniques))
	}
	if cfg.Actor == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Actor = exe
	}
	actor, err := filepath.EvalSymlinks(cfg.Actor) // the policy's image file must be canonical
	if err != nil {
		return nil, fmt.Errorf("drill: actor binary: %w", err)
	}
	if cfg.Sensor == "" {
		cfg.Sensor = filepath.Join(filepath.Dir(actor), "driftsensor")
		if _, err := os.Stat(cfg.Sensor); err != nil {
			if cfg.Sensor, err = exec.LookPath("driftsensor"); err != nil {
				return nil, fmt.Errorf("drill: no driftsensor beside %s nor on $PATH (make build puts both in bin/)", actor)
			}
		}
	}
	rep := &Report{Meta: Meta{Version: version.String("driftsensor"), Started: time.Now(), Hosts: cfg.Hosts, Runs: cfg.Runs, Kernel: kernel()}}
	rep.Meta.Machine, _ = os.Hostname()

	top := &lifetime{}
	defer top.end()
	store, err := top.tempDir()
	if err != nil {
		return nil, err
	}
	srv, url, err := transport.StartEmbedded(filepath.Join(store, "nats"))
	if err != nil {
		return nil, err
	}
	top.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	rootBase, err := filepath.EvalSymlinks(store) // findings carry canonical paths
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, sensor: cfg.Sensor, url: url, rootBase: rootBase, actor: actor, hosts: map[string]*drillHost{}, audit: map[string][]decide.Record{}}
	r.auditCond = sync.NewCond(&r.auditMu)
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	top.Cleanup(nc.Close)
	sub, err := nc.Subscribe(decide.AuditPrefix+".>", r.onAudit)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return nil, err
	}
	if err := r.startResponder(top); err != nil {
		return nil, err
	}

	type job struct {
		t   Technique
		run int
	}
	jobs := make(chan job)
	go func() {
		defer close(jobs)
		for run := 1; run <= cfg.Runs; run++ {
			for _, t := range cfg.Techniques {
				select {
				case jobs <- job{t, run}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	total := cfg.Runs * len(cfg.Techniques)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i := 0; i < cfg.Hosts; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{r: r}
			defer func() {
				if err := w.retire(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
			for j := range jobs {
				res, err := w.run(j.t, j.run)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s run %d: %w", j.t.ID, j.run, err))
				} else {
					rep.Results = append(rep.Results, res)
				}
				n := len(rep.Results)
				mu.Unlock()
				if err == nil && cfg.Progress != nil {
					cfg.Progress(n, total, res)
				}
				if err != nil {
					return // this worker stops; the others go on
				}
			}
		}()
	}
	wg.Wait()
	rep.Meta.Backend = r.backend
	rep.Meta.Took = time.Since(rep.Meta.Started).Seconds()
	order := map[string]int{}
	for i, t := range cfg.Techniques {
		order[t.ID] = i
	}
	slices.SortStableFunc(rep.Results, func(a, b Result) int {
		if d := order[a.ID] - order[b.ID]; d != 0 {
			return d
		}
		return a.Run - b.Run
	})
	rep.Stages = stageStats(rep.Results)
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return rep, errors.Join(errs...)
	}
	return rep, nil
}

type runner struct {
	cfg      Config
	sensor   string
	url      string
	rootBase string
	actor    string

	mu      sync.Mutex
	hosts   map[string]*drillHost
	n       int // hosts made
	backend string

	auditMu   sync.Mutex
	auditCond *sync.Cond
	audit     map[string][]decide.Record // by host
}

func (r *runner) onAudit(m *nats.Msg) {
	var rec decide.Record
	if json.Unmarshal(m.Data, &rec) != nil {
		return
	}
	r.auditMu.Lock()
	r.audit[rec.Host] = append(r.audit[rec.Host], rec)
	r.auditMu.Unlock()
	r.auditCond.Broadcast()
}

// waitAudit waits for a record of host that ok accepts.
func (r *runner) waitAudit(host string, timeout time.Duration, ok func(decide.Record) bool) (decide.Record, bool) {
	r.auditMu.Lock()
	defer r.auditMu.Unlock()
	var got decide.Record
	found := waitUntil(r.auditCond, timeout, func() bool {
		for _, rec := range r.audit[host] {
			if ok(rec) {
				got = rec
				return true
			}
		}
		return false
	})
	return got, found
}

func (r *runner) lookup(host string) *drillHost {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hosts[host]
}

// startResponder runs the responder engine: every finding cordons its host
// through the sensor's gate, verified by a probe, then destroys it.
func (r *runner) startResponder(lt *lifetime) error {
	nc, err := nats.Connect(r.url)
	if err != nil {
		return err
	}
	lt.Cleanup(nc.Close)
	pol, err := decide.ParsePolicy("drill-responder.yaml", []byte("default: destroy\n"))
	if err != nil {
		return err
	}
	kill := &actuator.CgroupDestroy{Resolve: func(host string) (string, string, error) {
		d := r.lookup(host)
		if d == nil {
			return "", "", fmt.Errorf("unknown host %q", host)
		}
		return d.h.Cgroup, d.h.Netns, nil
	}}
	resp, err := decide.New(nc, decide.Config{Replica: "drill", Policy: pol, CtlCordon: true, Evidence: true, Destroyers: []actuator.Destroyer{kill},
		Prober: prober{r.lookup}, ProbeInterval: 5 * time.Millisecond, Log: zerolog.Nop()})
	if err != nil {
		return err
	}
	if err := resp.Start(context.Background()); err != nil {
		return err
	}
	lt.Cleanup(resp.Close)
	return nil
}

// worker runs techniques one after the other, each on a fresh host of its
// own bed (a bed has addresses for about 150 hosts: it is replaced then).
type worker struct {
	r    *runner
	lt   *lifetime
	bed  *testbed.Bed
	peer *testbed.Host
	used int
}

const hostsPerBed = 140

func (w *worker) retire() error {
	if w.lt == nil {
		return nil
	}
	err := w.lt.end()
	w.lt, w.bed, w.peer = nil, nil, nil
	return err
}

func (w *worker) freshHost() (*drillHost, error) {
	if w.bed == nil || w.used >= hostsPerBed {
		if err := w.retire(); err != nil {
			return nil, err
		}
		w.lt, w.used = &lifetime{}, 0
		if err := guard(func() { w.bed = testbed.New(w.lt); w.peer = w.bed.AddHost("peer") }); err != nil {
			return nil, err
		}
	}
	w.used++
	r := w.r
	r.mu.Lock()
	r.n++
	name := "h" + strconv.Itoa(r.n)
	r.mu.Unlock()
	d, err := newHost(w.lt, w.bed, w.peer, name, r.rootBase, r.actor, r.sensor, r.url)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.hosts[name] = d
	r.mu.Unlock()
	return d, nil
}

// run plays one technique on a fresh host and judges it.
func (w *worker) run(t Technique, run int) (Result, error) {
	res := Result{ID: t.ID, Attack: t.Attack, Tactic: t.Tactic, Name: t.Name, Control: t.Control, Run: run, Want: t.Want.String()}
	d, err := w.freshHost()
	if err != nil {
		return res, err
	}
	defer d.stop()
	res.Host = d.name
	job := actorJob{Act: d.rooted(t.Act)}
	for _, p := range t.Pre {
		job.Pre = append(job.Pre, d.rooted(p))
	}
	var out strings.Builder
	a, err := d.startActor(job, &out)
	if err != nil {
		return res, err
	}
	pid := a.cmd.Process.Pid
	t0, errno, err := a.wait()
	if err != nil || t0 == 0 {
		return res, fmt.Errorf("actor on %s: %v\n%s", d.name, err, out.String())
	}
	res.Errno = errno
	// The marker's finding comes after every finding of the technique.
	_, _ = d.marker.in.Write([]byte("\n"))
	marker := d.path(markerPath)
	isMarker := func(f event.Event) bool { return f.File != nil && f.File.Path == marker }
	want := d.rootedWant(t.Want)
	fs := d.waitFindings(findingWait, func(fs []event.Event) bool {
		for _, f := range fs {
			if isMarker(f) || (t.Control && len(fs) > 0) || (want != nil && want.matches(f, pid)) {
				return true
			}
		}
		return false
	})
	var hit *event.Event
	var seen []string
	for i, f := range fs {
		if isMarker(f) {
			break
		}
		if want != nil && hit == nil && want.matches(f, pid) {
			hit = &fs[i]
		}
		seen = append(seen, act.Describe(&f))
	}
	switch {
	case t.Control && len(seen) == 0 && len(fs) > 0:
		res.Pass = true
	case t.Control && len(seen) > 0:
		res.Why = "the control produced " + strings.Join(seen, "; ")
	case t.Control:
		res.Why = fmt.Sprintf("neither a finding nor the marker within %s", findingWait)
	case hit != nil:
		res.Pass, res.Finding = true, hit.ID
	case len(seen) > 0:
		res.Why = "missed: got " + strings.Join(seen, "; ")
	case len(fs) > 0:
		res.Why = "missed: no finding before the marker"
	default:
		res.Why = fmt.Sprintf("missed: neither a finding nor the marker within %s", findingWait)
	}
	// Every host ends destroyed: by the technique's finding, or the marker's.
	dest, ok := w.r.waitAudit(d.name, destroyWait, func(rec decide.Record) bool {
		return rec.Stage == decide.StageAction && rec.Action == decide.ActDestroy
	})
	if !ok {
		return res, fmt.Errorf("host %s not destroyed within %s", d.name, destroyWait)
	}
	if dest.Error != "" {
		return res, fmt.Errorf("destroy of %s: %s", d.name, dest.Error)
	}
	if hit != nil {
		res.StagesUS = w.r.stages(d, dest.Incident, t0, fs[0]) // the incident's first finding
	}
	return res, nil
}

// stages times one detected run from the mutation (t0, CLOCK_MONOTONIC);
// first is the host's first finding, which opened the incident (sed -i's
// temporary file comes before the rename the technique wants). The kernel
// and emit stages are on the host's CLOCK_MONOTONIC; the responder's are
// wall-clock times, set on the same clock through monoEpoch.
func (r *runner) stages(d *drillHost, incident string, t0 int64, first event.Event) map[string]float64 {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	epoch := monoEpoch()
	since := func(t time.Time) float64 { return us(t.Sub(epoch).Nanoseconds() - t0) }
	s := map[string]float64{StageKernel: us(int64(first.KTimeNS) - t0), StageEmit: us(int64(first.EmitKTimeNS) - t0)}
	d.mu.Lock()
	be := d.backend
	d.mu.Unlock()
	r.mu.Lock()
	r.backend = be
	r.mu.Unlock()
	r.auditMu.Lock()
	defer r.auditMu.Unlock()
	for _, rec := range r.audit[d.name] {
		if rec.Incident != incident {
			continue
		}
		switch {
		case rec.Stage == decide.StageDecision && slices.Contains(rec.Events, first.ID):
			if !rec.Stages.Received.IsZero() {
				s[StageNATS] = since(rec.Stages.Received)
			}
			if !rec.Stages.Decided.IsZero() {
				s[StageDecision] = since(rec.Stages.Decided)
			}
		case rec.Stage == decide.StageAction && rec.Action == decide.ActCordon && rec.Actuator == "ctl" && rec.Error == "" && !rec.Stages.Acted.IsZero():
			s[StageCordon] = since(rec.Stages.Acted)
		case rec.Stage == decide.StageVerify && rec.Error == "" && !rec.Stages.Verified.IsZero():
			s[StageVerified] = since(rec.Stages.Verified)
		case rec.Stage == decide.StageEvidence && rec.Error == "" && !rec.Stages.Evidence.IsZero():
			s[StageEvidence] = since(rec.Stages.Evidence)
		case rec.Stage == decide.StageAction && rec.Action == decide.ActDestroy && !rec.Stages.Acted.IsZero():
			s[StageDestroy] = since(rec.Stages.Acted)
		}
	}
	return s
}

// monoEpoch is the wall-clock time at CLOCK_MONOTONIC zero, from the
// tightest of a few monotonic reads bracketing a wall-clock read: a thread
// preempted between two reads only widens one bracket.
func monoEpoch() time.Time {
	var epoch time.Time
	best := int64(math.MaxInt64)
	for range 8 {
		a := int64(event.KTimeNow())
		w := time.Now().Round(0) // wall clock only: audit times carry no monotonic reading
		b := int64(event.KTimeNow())
		if b-a < best {
			best, epoch = b-a, w.Add(-time.Duration(a+(b-a)/2))
		}
	}
	return epoch
}

// rooted puts an actor operation's absolute paths inside the host's root.
func (d *drillHost) rooted(step []string) []string {
	out := slices.Clone(step)
	for i := 1; i < len(out); i++ {
		if strings.HasPrefix(out[i], "/") {
			out[i] = d.path(out[i])
		}
	}
	return out
}

func (d *drillHost) rootedWant(w *Want) *Want {
	if w == nil {
		return nil
	}
	c := *w
	for _, p := range []*string{&c.Path, &c.NewPath, &c.Target} {
		if strings.HasPrefix(*p, "/") && !strings.HasPrefix(*p, "/memfd:") {
			*p = d.path(*p)
		}
	}
	return &c
}

// matches says whether ev is exactly the wanted finding, made by pid.
func (w *Want) matches(ev event.Event, pid int) bool {
	if ev.Kind != w.Kind || ev.Action != w.Action || ev.Process == nil || int(ev.Process.PID) != pid {
		return false
	}
	switch w.Kind {
	case event.KindFile:
		f := ev.File
		return f != nil && f.Path == w.Path && f.NewPath == w.NewPath && (w.Target == "" || f.Target == w.Target)
	case event.KindExec:
		x := ev.Exec
		if x == nil || (w.Path != "" && x.Path != w.Path) {
			return false
		}
		return len(w.Reasons) == 0 || sameSet(x.Reasons, w.Reasons)
	case event.KindNet:
		return ev.Net != nil && ev.Net.Port == w.Port && ev.Net.Family == w.Family
	}
	return false
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
