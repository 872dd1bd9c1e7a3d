package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/responder/gate"
	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

// Benchmarks of the response chain on the test bed. Each times many single
// drifts, one after the other, from CLOCK_MONOTONIC taken by the actor (a
// process in the host's sealed cgroup) immediately before its mutating
// syscall, and reports p50, p99 and max; -benchtime=Nx sets the number of
// samples (at least 50, or 10 for destroy, when more than one is asked for:
// the framework's first run with b.N = 1 takes one).

// samples is how many drifts a benchmark times.
func samples(b *testing.B, least int) int {
	if b.N == 1 {
		return 1
	}
	return max(b.N, least)
}

// nextFinding returns the next finding on sub made by process pid.
func nextFinding(b testing.TB, sub *nats.Subscription, pid int) event.Event {
	b.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			b.Fatalf("no finding from pid %d: %v", pid, err)
		}
		var ev event.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			b.Fatal(err)
		}
		if ev.Process != nil && int(ev.Process.PID) == pid {
			return ev
		}
	}
}

// report sorts d and reports its p50, p99 and max in microseconds.
func report(b *testing.B, name string, d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	p99 := (len(d)*99+99)/100 - 1 // nearest rank
	us := func(x time.Duration) float64 { return float64(x.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(d[len(d)/2]), name+"-p50-us")
	b.ReportMetric(us(d[p99]), name+"-p99-us")
	b.ReportMetric(us(d[len(d)-1]), name+"-max-us")
	b.Logf("%s: n=%d p50=%s p99=%s max=%s", name, len(d), d[len(d)/2], d[p99], d[len(d)-1])
}

// waitPass waits until a probe from from to to passes.
func waitPass(b testing.TB, from *testbed.Host, to netip.AddrPort) {
	b.Helper()
	for deadline := time.Now().Add(20 * time.Second); probeOnce(from, to) != nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%s cannot reach %s", from.Name, to)
		}
	}
}

// mustBlock confirms with a probe that traffic to to has stopped.
func mustBlock(b testing.TB, from *testbed.Host, to netip.AddrPort) {
	b.Helper()
	if err := probeOnce(from, to); err == nil {
		b.Fatalf("the gate is closed but %s still reaches %s", from.Name, to)
	}
}

// pollFlag spins on the gate's flag map until it reads set or stop closes,
// and returns CLOCK_MONOTONIC of the first read that saw it set. It spins
// on a thread of its own at real-time priority, so that what it measures is
// the flag, not its own turn on a CPU; the thread ends with it.
func pollFlag(g *gate.Gate, stop <-chan struct{}) int64 {
	runtime.LockOSThread() // never unlocked: the real-time thread exits with the goroutine
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}
	_ = unix.SchedSetAttr(0, &attr, 0) // best effort: without it, outliers are the poller's
	for i := 0; ; i++ {
		if on, err := g.Cordoned(); err == nil && on {
			return monoNow()
		}
		if i&63 == 0 {
			select {
			case <-stop:
				return 0
			default:
			}
		}
	}
}

// BenchmarkReflexCordon: the mutation syscall -> the gate's flag set by the
// detecting BPF program (reflex.cordon). Three views of one moment:
//   - flag: the test spinning on the flag map (gate.Gate.Cordoned) first sees it set;
//   - return: the actor's syscall returned, and the actor then read the flag
//     set, every time: the cordon is in place before the mutating process runs again;
//   - detect: the finding's kernel time, taken as the BPF program starts the
//     record, just before it sets the flag (a lower bound).
//
// Every tenth sample, a probe from a peer host confirms that traffic stopped.
func BenchmarkReflexCordon(b *testing.B) {
	s := newSite(b)
	sh := s.addSensorHost(b, "web", true)
	target := sh.h.AddrPort(echoPort)
	sub, err := s.nc.SubscribeSync(event.Subject("web", event.KindFile))
	if err != nil {
		b.Fatal(err)
	}
	s.nc.Flush()
	n := samples(b, 50)
	var flag, ret, detect []time.Duration
	b.ResetTimer()
	for i := 0; i < n; i++ {
		b.StopTimer()
		if err := sh.gate.SetCordon(false); err != nil {
			b.Fatal(err)
		}
		if i%10 == 0 {
			waitPass(b, s.peer, target)
		}
		b.StartTimer()
		stop, seen := make(chan struct{}), make(chan int64, 1)
		go func() { seen <- pollFlag(sh.gate, stop) }()
		cmd, out := startActor(b, sh, true)
		err := cmd.Wait()
		var t1 int64
		select {
		case t1 = <-seen:
		case <-time.After(5 * time.Second):
		}
		close(stop)
		b.StopTimer()
		if err != nil {
			b.Fatalf("actor: %v\n%s", err, out)
		}
		a := parseActor(b, cmd.Process.Pid, out.String())
		t0 := a.t0
		if a.flag != 1 {
			b.Fatalf("the actor's syscall returned with the flag at %d: the reflex did not cordon in the syscall", a.flag)
		}
		if t1 == 0 {
			b.Fatal("the reflex never set the gate's flag")
		}
		if t1 < t0 {
			b.Fatalf("the flag was set %s before the mutation: something else drifted", time.Duration(t0-t1))
		}
		ev := nextFinding(b, sub, cmd.Process.Pid)
		if len(ev.Reflex) != 1 || ev.Reflex[0] != "cordoned" {
			b.Fatalf("finding %+v: want reflex [cordoned]", ev)
		}
		flag = append(flag, time.Duration(t1-t0))
		ret = append(ret, time.Duration(a.t1-t0))
		detect = append(detect, time.Duration(int64(ev.KTimeNS)-t0))
		if i%10 == 0 {
			mustBlock(b, s.peer, target)
		}
		b.StartTimer()
	}
	b.StopTimer()
	report(b, "flag", flag)
	report(b, "return", ret)
	report(b, "detect", detect)
}

// startResponder runs the responder engine on its own connection until cleanup.
func startResponder(b testing.TB, url string, cfg decide.Config) *decide.Responder {
	b.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	cfg.Log = zerolog.Nop()
	r, err := decide.New(nc, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)
	return r
}

// prober probes a host's echo port from the site's peer host.
func (s *site) prober() *actuator.TCPProber {
	return &actuator.TCPProber{
		Addr: func(host string) (string, error) {
			if h := s.bed.Host(host); h != nil {
				return h.AddrPort(echoPort).String(), nil
			}
			return "", fmt.Errorf("unknown host %q", host)
		},
		Dial: s.peer.DialContext,
	}
}

// BenchmarkResponderCordon: the mutation syscall -> finding over NATS ->
// the responder's decision -> ctl cordon -> the sensor sets the gate's flag
// (flag), and -> the responder's first probe that no longer passed
// (verified); received and decided are when the responder read the finding
// and decided. Between samples the host is uncordoned the way driftctl does
// it (cordoned -> sealed), which closes the incident, so every sample is a
// new incident.
func BenchmarkResponderCordon(b *testing.B) {
	s := newSite(b)
	sh := s.addSensorHost(b, "web", false)
	target := sh.h.AddrPort(echoPort)
	audit := followAudit(b, s.nc, decide.AuditSubject("web"))
	pol, err := decide.ParsePolicy("r.yaml", []byte("default: cordon\n"))
	if err != nil {
		b.Fatal(err)
	}
	startResponder(b, s.url, decide.Config{Replica: "bench", Policy: pol, CtlCordon: true, Prober: s.prober(), ProbeInterval: 5 * time.Millisecond})
	ctl, err := control.New(s.nc, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	waitPass(b, s.peer, target)
	n := samples(b, 50)
	var flag, verified, received, decided []time.Duration
	seen := map[string]bool{}
	b.ResetTimer()
	for i := 0; i < n; i++ {
		b.StopTimer()
		sh.cordonedAt.Store(0)
		b.StartTimer()
		t0 := runActor(b, sh, false).t0
		for deadline := time.Now().Add(10 * time.Second); sh.cordonedAt.Load() == 0; time.Sleep(20 * time.Microsecond) {
			if time.Now().After(deadline) {
				b.Fatal("the responder never closed the gate")
			}
		}
		b.StopTimer()
		t1 := sh.cordonedAt.Load()
		v := audit.wait(b, "a verified cordon", func(r decide.Record) bool { return r.Stage == decide.StageVerify && !seen[r.Incident] })
		seen[v.Incident] = true
		if v.Error != "" {
			b.Fatalf("verify: %s", v.Error)
		}
		if t1 < t0 {
			b.Fatalf("the gate closed %s before the mutation", time.Duration(t0-t1))
		}
		flag = append(flag, time.Duration(t1-t0))
		w0 := monoToWall(t0)
		verified = append(verified, v.Stages.Verified.Sub(w0))
		received = append(received, v.Stages.Received.Sub(w0))
		decided = append(decided, v.Stages.Decided.Sub(w0))
		if i%10 == 0 {
			mustBlock(b, s.peer, target)
		}
		// driftctl uncordon web; the sensor opens the gate, the responder
		// closes the incident.
		audit.wait(b, "the state record", stageOf(v.Incident, decide.StageState))
		if _, err := ctl.SetState(context.Background(), "web", event.StateSealed, "bench"); err != nil {
			b.Fatal(err)
		}
		audit.wait(b, "the close record", stageOf(v.Incident, decide.StageClose))
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			if on, _ := sh.gate.Cordoned(); !on {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("uncordon did not open the gate")
			}
		}
		waitPass(b, s.peer, target)
		b.StartTimer()
	}
	b.StopTimer()
	report(b, "received", received)
	report(b, "decided", decided)
	report(b, "flag", flag)
	report(b, "verified", verified)
}

// BenchmarkDestroy: the mutation syscall -> finding -> the responder cordons
// (ctl, verified by a probe) and destroys the host with the test bed's
// destroy (cgroup.kill of every process, then its network namespace
// removed) -> the destroy actuator returned (destroyed). flag and verified
// are the cordon that comes first: the gate closed, and the first probe that
// no longer passed (a probe waits ProbeInterval, 5ms, for an answer). Each
// sample is a new host with its own sensor and a process to kill.
func BenchmarkDestroy(b *testing.B) {
	s := newSite(b)
	audit := followAudit(b, s.nc, decide.AuditPrefix+".>")
	var mu sync.Mutex
	hosts := map[string]*sensorHost{}
	kill := &actuator.CgroupDestroy{Resolve: func(host string) (string, string, error) {
		mu.Lock()
		defer mu.Unlock()
		sh := hosts[host]
		if sh == nil {
			return "", "", fmt.Errorf("unknown host %q", host)
		}
		return sh.h.Cgroup, sh.h.Netns, nil
	}}
	pol, err := decide.ParsePolicy("r.yaml", []byte("default: destroy\n"))
	if err != nil {
		b.Fatal(err)
	}
	startResponder(b, s.url, decide.Config{Replica: "bench", Policy: pol, CtlCordon: true, Destroyers: []actuator.Destroyer{kill},
		Prober: s.prober(), ProbeInterval: 5 * time.Millisecond})
	n := samples(b, 10)
	var destroyed, flag, verified []time.Duration
	b.ResetTimer()
	for i := 0; i < n; i++ {
		b.StopTimer()
		name := fmt.Sprintf("d%d", i)
		sh := s.addSensorHost(b, name, false)
		mu.Lock()
		hosts[name] = sh
		mu.Unlock()
		victim := exec.Command("sleep", "600")
		if err := sh.h.Start(victim); err != nil {
			b.Fatal(err)
		}
		waitPass(b, s.peer, sh.h.AddrPort(echoPort))
		b.StartTimer()
		actor, out := startActor(b, sh, false)
		aerr := actor.Wait() // the destroy may kill it once it has printed
		d := audit.wait(b, "the destroy", func(r decide.Record) bool {
			return r.Host == name && r.Stage == decide.StageAction && r.Action == decide.ActDestroy
		})
		b.StopTimer()
		t0 := parseActor(b, actor.Process.Pid, out.String()).t0
		if aerr != nil && !strings.Contains(aerr.Error(), "killed") {
			b.Fatalf("actor: %v\n%s", aerr, out)
		}
		if d.Error != "" {
			b.Fatalf("destroy: %s", d.Error)
		}
		if err := victim.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			b.Fatalf("the host's process ended with %v, want killed", err)
		}
		if _, err := os.Stat(sh.h.NetnsPath); !errors.Is(err, os.ErrNotExist) {
			b.Fatalf("namespace %s still there after the destroy", sh.h.NetnsPath)
		}
		w0 := monoToWall(t0)
		v := audit.wait(b, "the verified cordon", func(r decide.Record) bool { return r.Host == name && r.Stage == decide.StageVerify })
		destroyed = append(destroyed, d.Stages.Acted.Sub(w0))
		verified = append(verified, v.Stages.Verified.Sub(w0))
		flag = append(flag, time.Duration(sh.cordonedAt.Load()-t0))
		sh.stop()
		b.StartTimer()
	}
	b.StopTimer()
	report(b, "flag", flag)
	report(b, "verified", verified)
	report(b, "destroyed", destroyed)
}
