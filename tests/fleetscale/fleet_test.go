// Package fleetscale measures the responder against a synthetic fleet: no
// kernel, but a real nats-server configured from the credentials
// driftctl creds generates, one real sensor publisher (transport, spool
// included) per host logged in with its own nkey, and the real responder
// engine. The server and the fleet run in a child process, so the
// benchmark process's CPU and memory are the responder's.
package fleetscale

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/creds"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/publish"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

const childEnv = "DRIFT_FLEET_CHILD" // set: this process is the server and the fleet

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(fleetMain(dir, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

func hostName(i int) string { return fmt.Sprintf("host-%04d", i) }

// child drives the fleet process: one command a line, one answer a line.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func (c *child) do(tb testing.TB, format string, args ...any) string {
	tb.Helper()
	if _, err := fmt.Fprintf(c.in, format+"\n", args...); err != nil {
		tb.Fatal(err)
	}
	if !c.out.Scan() {
		tb.Fatalf("fleet process ended: %v", c.out.Err())
	}
	line := c.out.Text()
	if strings.HasPrefix(line, "error ") {
		tb.Fatalf("fleet: %s", line)
	}
	return line
}

// counter is a cordoner that counts per host (no network is cut here:
// the actuators have their own benchmarks).
type counter struct {
	mu    sync.Mutex
	hosts map[string]int
}

func (c *counter) Name() string { return "count" }
func (c *counter) Cordon(_ context.Context, t actuator.Target) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hosts[t.Host]++
	return nil
}
func (c *counter) get() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for h, n := range c.hosts {
		out[h] = n
	}
	return out
}

// records collects the audit records the responder publishes.
type records struct {
	mu   sync.Mutex
	recs []decide.Record
	at   []time.Time
}

func (r *records) find(f func(decide.Record) bool) (out []decide.Record, at []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.recs {
		if f(x) {
			out, at = append(out, x), append(at, r.at[i])
		}
	}
	return out, at
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time process pid used so far (utime + stime).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func rssMB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func pct(v []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkFleet: 1,000 hosts beating once a second; a burst of findings
// on every host; one host's sensor killed; a drift on 100 hosts at once.
// Run with -benchtime=1x: one run is the whole scenario.
func BenchmarkFleet(b *testing.B) {
	n := testenv.EnvCount(b, "DRIFT_FLEET_HOSTS", 1000)
	const burst, maxHosts = 10, 10
	drift := min(100, n/2) // hosts below the one killed (n/2)
	for i := 0; i < b.N; i++ {
		runFleet(b, n, burst, drift, maxHosts)
	}
}

func runFleet(b *testing.B, n, burst, drift, maxHosts int) {
	dir := b.TempDir()
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = hostName(i)
	}
	res, err := creds.Generate(hosts, filepath.Join(dir, "creds"), creds.Options{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, "DRIFT_FLEET_N="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	outPipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
	b.Cleanup(func() { _ = in.Close(); _ = cmd.Wait() })
	url := strings.TrimPrefix(c.do(b, "server"), "url ")

	connect := func(user string) *nats.Conn {
		u, _ := res.User(user)
		nk, err := nats.NkeyOptionFromSeed(u.SeedFile)
		if err != nil {
			b.Fatal(err)
		}
		nc, err := nats.Connect(url, nk, nats.MaxReconnects(-1))
		if err != nil {
			b.Fatalf("connect as %s: %v", user, err)
		}
		b.Cleanup(nc.Close)
		return nc
	}
	admin := connect(creds.RoleAdmin)
	ctl, err := control.New(admin, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	if err := ctl.Setup(context.Background()); err != nil { // driftctl init
		b.Fatal(err)
	}
	recs := &records{}
	sub, err := admin.Subscribe(decide.AuditPrefix+".>", func(m *nats.Msg) {
		var r decide.Record
		if json.Unmarshal(m.Data, &r) == nil {
			recs.mu.Lock()
			recs.recs, recs.at = append(recs.recs, r), append(recs.at, time.Now())
			recs.mu.Unlock()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)

	pol, err := decide.ParsePolicy("fleet.yaml", []byte("rules:\n  - kind: file\n    path_prefix: /etc\n    action: cordon\n"))
	if err != nil {
		b.Fatal(err)
	}
	cord := &counter{hosts: map[string]int{}}
	r, err := decide.New(connect(creds.RoleResponder), decide.Config{Replica: "bench", Policy: pol, Cordoners: []actuator.Cordoner{cord},
		HeartbeatInterval: time.Second, GapCheck: true, MaxHosts: maxHosts, Window: time.Hour, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)

	start := time.Now()
	c.do(b, "start")
	b.Logf("%d sensors connected in %s", n, time.Since(start).Round(time.Millisecond))
	testenv.EventuallyWithin(b, "every host heard twice", time.Minute, func() bool { return r.Stats().Heartbeats.Load() >= uint64(2*n) })

	// Idle: heartbeats only.
	cpu0, t0, hb0 := cpuTime(), time.Now(), r.Stats().Heartbeats.Load()
	time.Sleep(10 * time.Second) // a fixed span to measure over, not a wait for a result
	idleCPU := float64(cpuTime()-cpu0) / float64(time.Since(t0)) * 100
	beatsPerSec := float64(r.Stats().Heartbeats.Load()-hb0) / time.Since(t0).Seconds()
	idleRSS := rssMB()

	// A trickle: findings one at a time, spread over the fleet, while it
	// beats: the decision latency of a responder that is not queueing.
	const trickle = 200
	c.do(b, "trickle %d", trickle)
	var tlat []time.Duration
	testenv.EventuallyWithin(b, "the trickle's decision records", time.Minute, func() bool {
		d, _ := recs.find(func(x decide.Record) bool {
			return x.Stage == decide.StageDecision && strings.HasSuffix(x.Reason, "/trickle")
		})
		tlat = tlat[:0]
		for _, x := range d {
			tlat = append(tlat, x.Stages.Decided.Sub(x.Stages.Sensed))
		}
		return len(tlat) == trickle
	})

	// A burst: every host sends burst alert findings at once.
	dec0 := r.Stats().Decisions.Load()
	cpu0, t0 = cpuTime(), time.Now()
	fleetCPU0 := procCPU(cmd.Process.Pid)
	c.do(b, "burst %d", burst)
	published := time.Since(t0) // the fleet's sensors have every finding acknowledged by the stream
	want := dec0 + uint64(n*burst)
	testenv.EventuallyWithin(b, "the burst decided", 5*time.Minute, func() bool { return r.Stats().Decisions.Load() >= want })
	burstWall := time.Since(t0)
	burstCPU := float64(cpuTime()-cpu0) / float64(burstWall) * 100
	fleetCPU := float64(procCPU(cmd.Process.Pid)-fleetCPU0) / float64(burstWall) * 100
	burstRSS := rssMB()
	var lat []time.Duration
	testenv.EventuallyWithin(b, "the burst's decision records", time.Minute, func() bool {
		d, _ := recs.find(func(x decide.Record) bool {
			return x.Stage == decide.StageDecision && strings.HasSuffix(x.Reason, "/burst")
		})
		lat = lat[:0]
		for _, x := range d {
			lat = append(lat, x.Stages.Decided.Sub(x.Stages.Sensed))
		}
		return len(lat) == n*burst
	})

	// One sensor killed among n.
	dead := hostName(n / 2)
	c.do(b, "kill %s", dead)
	killed := time.Now()
	var dmAt []time.Time
	var dm []decide.Record
	testenv.EventuallyWithin(b, "the dead host flagged", time.Minute, func() bool {
		dm, dmAt = recs.find(func(x decide.Record) bool { return x.Stage == decide.StageDeadMan && x.Host == dead })
		return len(dmAt) > 0
	})
	flagged := dmAt[0].Sub(killed)
	// The silence the responder saw when it fired: from the host's last heartbeat.
	var silence time.Duration
	if _, rest, ok := strings.Cut(dm[0].Reason, "no heartbeat for "); ok {
		silence, _ = time.ParseDuration(strings.Fields(rest)[0])
	}
	testenv.EventuallyWithin(b, "the dead host cordoned", time.Minute, func() bool { return cord.get()[dead] == 1 })

	// A drift on drift hosts at once: the limiter lets maxHosts-1 more
	// through (the dead host took a slot) and holds the rest.
	held0 := r.Stats().Held.Load()
	t0 = time.Now()
	c.do(b, "drift %d", drift)
	testenv.EventuallyWithin(b, "the drift decided and held", time.Minute, func() bool {
		return r.Stats().Held.Load()-held0 == uint64(drift-(maxHosts-1))
	})
	driftWall := time.Since(t0)
	testenv.EventuallyWithin(b, "the cordons", time.Minute, func() bool { return len(cord.get()) == maxHosts })
	if got := cord.get(); len(got) != maxHosts {
		b.Errorf("cordoned %d hosts, want %d (the limit): %v", len(got), maxHosts, got)
	}
	if dm, _ := recs.find(func(x decide.Record) bool { return x.Stage == decide.StageDeadMan }); len(dm) != 1 {
		b.Errorf("%d dead man records, want 1 (%s): %+v", len(dm), dead, dm)
	}
	if g := r.Stats().Gaps.Load(); g != 0 {
		b.Errorf("%d gap alarms, want 0", g)
	}

	b.ReportMetric(float64(n), "hosts")
	b.ReportMetric(beatsPerSec, "heartbeats/s")
	b.ReportMetric(idleCPU, "idle-cpu-%")
	b.ReportMetric(idleRSS, "idle-rss-MB")
	b.ReportMetric(float64(n*burst)/burstWall.Seconds(), "burst-findings/s")
	b.ReportMetric(published.Seconds(), "burst-published-s")
	b.ReportMetric(burstWall.Seconds(), "burst-decided-s")
	b.ReportMetric(burstCPU, "burst-cpu-%")
	b.ReportMetric(fleetCPU, "burst-server+fleet-cpu-%")
	b.ReportMetric(burstRSS, "burst-rss-MB")
	b.ReportMetric(float64(pct(tlat, 0.5).Microseconds())/1000, "decision-p50-ms")
	b.ReportMetric(float64(pct(tlat, 0.99).Microseconds())/1000, "decision-p99-ms")
	b.ReportMetric(float64(pct(lat, 0.5).Microseconds())/1000, "burst-decision-p50-ms")
	b.ReportMetric(float64(pct(lat, 0.99).Microseconds())/1000, "burst-decision-p99-ms")
	b.ReportMetric(flagged.Seconds(), "dead-flagged-s")
	b.ReportMetric(silence.Seconds(), "dead-silence-at-flag-s")
	b.ReportMetric(float64(driftWall.Milliseconds()), "drift100-held-ms")
}

// fleetMain is the child: the server, then one publisher per host.
func fleetMain(dir string, in io.Reader, out io.Writer) int {
	n, _ := strconv.Atoi(os.Getenv("DRIFT_FLEET_N"))
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	sc := bufio.NewScanner(in)
	var url string
	pubs := map[string]*publish.Publisher{}
	var mu sync.Mutex
	each := func(names []string, f func(string, *publish.Publisher) error) error {
		var wg sync.WaitGroup
		errs := make(chan error, len(names))
		sem := make(chan struct{}, 64)
		for _, h := range names {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				mu.Lock()
				p := pubs[h]
				mu.Unlock()
				if err := f(h, p); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	names := make([]string, n)
	for i := range names {
		names[i] = hostName(i)
	}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var err error
		switch f[0] {
		case "server":
			var s interface{ ClientURL() string }
			s, err = startServer(filepath.Join(dir, "creds", creds.ServerConfigFile))
			if err == nil {
				url = s.ClientURL()
				say("url %s", url)
				continue
			}
		case "start":
			err = each(names, func(h string, _ *publish.Publisher) error {
				p, err := startSensor(dir, url, h)
				mu.Lock()
				pubs[h] = p
				mu.Unlock()
				return err
			})
		case "burst":
			k, _ := strconv.Atoi(f[1])
			err = each(names, func(h string, p *publish.Publisher) error {
				if p == nil {
					return nil
				}
				evs := make([]*event.Event, k)
				for i := range evs {
					evs[i] = &event.Event{Kind: event.KindFile, Action: "write", Backend: "synthetic", File: &event.File{Path: "/var/lib/app/burst"}}
				}
				_, err := p.PublishBatch(evs)
				return err
			})
		case "trickle":
			// k findings, 100 a second, each on the next host.
			k, _ := strconv.Atoi(f[1])
			tk := time.NewTicker(10 * time.Millisecond)
			for i := 0; i < k && err == nil; i++ {
				<-tk.C
				mu.Lock()
				p := pubs[names[i%len(names)]]
				mu.Unlock()
				if p != nil {
					err = p.Publish(&event.Event{Kind: event.KindFile, Action: "write", Backend: "synthetic", File: &event.File{Path: "/var/lib/app/trickle"}})
				}
			}
			tk.Stop()
		case "drift":
			k, _ := strconv.Atoi(f[1])
			err = each(names[:k], func(h string, p *publish.Publisher) error {
				if p == nil {
					return nil
				}
				return p.Publish(&event.Event{Kind: event.KindFile, Action: "write", Backend: "synthetic", File: &event.File{Path: "/etc/passwd"}})
			})
		case "kill":
			mu.Lock()
			p := pubs[f[1]]
			delete(pubs, f[1])
			mu.Unlock()
			if p != nil {
				err = p.Close()
			}
		}
		if err != nil {
			say("error %s: %v", f[0], err)
			continue
		}
		say("ok")
	}
	return 0
}

func startSensor(dir, url, host string) (*publish.Publisher, error) {
	sp, err := openSpool(filepath.Join(dir, "spool", host))
	if err != nil {
		return nil, err
	}
	seed := filepath.Join(dir, "creds", creds.HostSeedDir, host+".nk")
	p, err := publish.New(context.Background(), transport.Options{URL: url, NKeySeedFile: seed}, host, sp, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	started := time.Now()
	p.StartHeartbeat(time.Second, func() event.Heartbeat {
		return event.Heartbeat{Backend: "synthetic", IntervalMs: 1000, State: event.StateSealed,
			Liveness: event.Liveness{BootID: "synthetic", Instance: host + "-1", Started: started}}
	})
	return p, nil
}
