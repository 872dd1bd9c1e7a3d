package decide

import (
	"errors"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// waitBeats waits until every beater sent n more heartbeats: the beaters'
// own ticks are the clock, never a fixed sleep.
func waitBeats(t *testing.T, n uint64, bs ...*beater) {
	t.Helper()
	start := make([]uint64, len(bs))
	for i, b := range bs {
		start[i] = b.beats.Load()
	}
	eventually(t, fmt.Sprintf("%d more heartbeats from each host", n), func() bool {
		for i, b := range bs {
			if b.beats.Load() < start[i]+n {
				return false
			}
		}
		return true
	})
}

func infraRecords(recs []Record) []Record {
	var out []Record
	for _, r := range recs {
		if r.Stage == StageInfra {
			out = append(out, r)
		}
	}
	return out
}

// TestServerOutageCordonsNobody: the server stopped for 3s and started again
// on its port and store is one infrastructure incident and no cordon; then
// one host's heartbeats stop, and that host is cordoned.
func TestServerOutageCordonsNobody(t *testing.T) {
	ts := startTestServer(t)
	rec := newRecorder()
	// Intervals long enough that a loaded test machine does not stall a
	// beat past a deadline (4 intervals).
	iv := 200 * time.Millisecond
	r := startResponderOn(t, fastConnect(t, ts.url), Config{Cordoners: []actuator.Cordoner{rec}, HeartbeatInterval: time.Second})
	var bs []*beater
	for i := 0; i < 3; i++ {
		bs = append(bs, startBeater(t, ts.url, fmt.Sprintf("h%d", i), iv))
	}
	waitBeats(t, 5, bs...)
	eventually(t, "three hosts heard", func() bool { return r.Stats().Heartbeats.Load() >= 3 })

	ts.stop()
	time.Sleep(3 * time.Second) // the fault under test: a 3s outage, not a wait for a result
	ts.start()
	eventually(t, "the responder's outage recorded", func() bool { return r.Stats().Infra.Load() == 1 })
	// Well past every host's deadline (3 intervals + 1 window) after the reconnect.
	waitBeats(t, 10, bs...)
	if n := rec.total(); n != 0 {
		t.Fatalf("%d cordons after a 3s server outage, want 0: %v", n, rec.hosts())
	}
	if n := r.Stats().Infra.Load(); n != 1 {
		t.Errorf("%d infrastructure incidents, want 1", n)
	}
	nc := connect(t, ts.url)
	inf := infraRecords(streamRecords(t, nc))
	if len(inf) != 1 || inf[0].Host != FleetHost || inf[0].Action != ActAlert || !contains(inf[0].Reason, "lost its NATS connection") {
		t.Errorf("infrastructure records %+v, want one alert about the lost connection", inf)
	}

	bs[1].stop() // h1's sensor dies
	eventually(t, "h1 cordoned", func() bool { return rec.hosts()["h1"] == 1 })
	waitBeats(t, 5, bs[0], bs[2])
	if got := rec.hosts(); len(got) != 1 {
		t.Errorf("cordoned %v, want h1 only", got)
	}
	var dm []Record
	eventually(t, "h1's dead man record", func() bool {
		dm = nil
		for _, x := range streamRecords(t, nc) {
			if x.Stage == StageDeadMan && x.Host == "h1" {
				dm = append(dm, x)
			}
		}
		return len(dm) == 1
	})
	if want := "deadline 800ms from its interval"; !contains(dm[0].Reason, want) {
		t.Errorf("dead man reason %q, want %q (3 x 200ms + one 200ms window)", dm[0].Reason, want)
	}
}

// TestManySilentIsOneIncident: hosts falling silent together while the
// responder stays connected (their server hung, a partition) are one
// infrastructure incident; nobody is cordoned.
func TestManySilentIsOneIncident(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	rec := newRecorder()
	r := startResponder(t, url, Config{Cordoners: []actuator.Cordoner{rec}, MassHosts: 2, MassPercent: -1})
	var bs []*beater
	for i := 0; i < 4; i++ {
		bs = append(bs, startBeater(t, url, fmt.Sprintf("h%d", i), 100*time.Millisecond))
	}
	waitBeats(t, 3, bs...)
	for _, b := range bs[:3] { // three of four: more than MassHosts=2
		b.stop()
	}
	eventually(t, "the infrastructure incident", func() bool { return r.Stats().Infra.Load() == 1 })
	waitBeats(t, 10, bs[3])
	if n := rec.total(); n != 0 {
		t.Fatalf("%d cordons for a mass silence, want 0: %v", n, rec.hosts())
	}
	eventually(t, "the record", func() bool { return len(infraRecords(streamRecords(t, nc))) == 1 })
	if inf := infraRecords(streamRecords(t, nc)); !contains(inf[0].Reason, "3 of 4 hosts silent at once") {
		t.Errorf("infrastructure record %q", inf[0].Reason)
	}
	// The hosts of that incident do not make the next silence one too:
	// the last host dying alone is cordoned.
	bs[3].stop()
	eventually(t, "h3 cordoned", func() bool { return rec.hosts()["h3"] == 1 })
	if got := rec.hosts(); len(got) != 1 || r.Stats().Infra.Load() != 1 {
		t.Errorf("cordoned %v with %d infrastructure incidents, want h3 only and 1", got, r.Stats().Infra.Load())
	}
}

// TestDeadWhileResponderWasDown: a host the control plane knows that never
// beats again is flagged by a responder that starts after it died; a live
// host is not.
func TestDeadWhileResponderWasDown(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	ctl := newControl(t, nc)
	setState(t, ctl, "dead-1", event.StateSealed, "test")
	setState(t, ctl, "live-1", event.StateSealed, "test")
	setState(t, ctl, "gone-1", event.StateDestroyed, "test") // replaced: not watched
	live := startBeater(t, url, "live-1", 100*time.Millisecond)
	rec := newRecorder()
	r := startResponder(t, url, Config{Cordoners: []actuator.Cordoner{rec}, HeartbeatInterval: 100 * time.Millisecond})
	eventually(t, "dead-1 cordoned", func() bool { return rec.hosts()["dead-1"] == 1 })
	waitBeats(t, 10, live)
	if got := rec.hosts(); len(got) != 1 {
		t.Errorf("cordoned %v, want dead-1 only", got)
	}
	_ = r
	eventually(t, "the dead man record", func() bool {
		for _, x := range streamRecords(t, nc) {
			if x.Stage == StageDeadMan && x.Host == "dead-1" && contains(x.Reason, "never heard since this responder started") {
				return true
			}
		}
		return false
	})
}

// TestSensorRestartIsAFinding: a new sensor instance is a finding with how
// long the sensor was gone; its kernel counter going back within one
// instance is tampering.
func TestSensorRestartIsAFinding(t *testing.T) {
	url := natsServer(t)
	nc := connect(t, url)
	rec := newRecorder()
	r := startResponder(t, url, Config{Cordoners: []actuator.Cordoner{rec}})
	s := newSensor(t, nc, "h1")
	base := time.Now().Add(-time.Minute)
	beat := func(instance string, started time.Time, counter uint64) {
		s.publish(event.HeartbeatSubject("h1"), event.Heartbeat{Schema: event.HeartbeatSchema, Host: "h1", Time: time.Now(), IntervalMs: 1000,
			Liveness: event.Liveness{BootID: "b1", Instance: instance, Started: started, KernelCounter: counter}})
	}
	beat("one", base, 10)
	beat("one", base, 12)
	restarted := time.Now().Add(time.Hour) // the new run started an hour after the last beat: gone ~1h
	beat("two", restarted, 1)
	eventually(t, "the restart", func() bool { return r.Stats().Restarts.Load() == 1 })
	var rs []Record
	eventually(t, "the restart record", func() bool {
		rs = nil
		for _, x := range streamRecords(t, nc) {
			if x.Stage == StageRestart {
				rs = append(rs, x)
			}
		}
		return len(rs) == 1
	})
	// Gone is the new run's start less the last heartbeat's arrival, which
	// the test cannot know to the millisecond (its publish is asynchronous):
	// the reason must name both, and gone must be their difference.
	m := regexp.MustCompile(`^sensor restarted: gone (\S+) \(last heartbeat (\S+), new run started (\S+)\), instance one -> two$`).FindStringSubmatch(rs[0].Reason)
	if m == nil || rs[0].Action != ActAlert {
		t.Fatalf("restart record %+v", rs[0])
	}
	gone, err1 := time.ParseDuration(m[1])
	last, err2 := time.Parse(time.RFC3339Nano, m[2])
	started, err3 := time.Parse(time.RFC3339Nano, m[3])
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatalf("restart reason %q: %v", rs[0].Reason, err)
	}
	if !started.Equal(restarted) || gone != started.Sub(last).Round(time.Millisecond) || (gone-time.Hour).Abs() > time.Minute {
		t.Errorf("restart reason %q: want the new run started at %s, gone its start less the last heartbeat, about an hour",
			rs[0].Reason, restarted.UTC().Format(time.RFC3339Nano))
	}
	if rec.total() != 0 {
		t.Fatalf("a restart cordoned (the default policy alerts)")
	}
	beat("two", restarted, 5)
	beat("two", restarted, 3) // back within instance two
	eventually(t, "the tamper cordon", func() bool { return rec.total() == 1 })
	eventually(t, "the tamper record", func() bool {
		for _, x := range streamRecords(t, nc) {
			if x.Stage == StageDeadMan && contains(x.Reason, "kernel liveness counter went back from 5 to 3 within sensor instance two") {
				return true
			}
		}
		return false
	})
	if r.Stats().Restarts.Load() != 1 {
		t.Errorf("%d restarts, want 1", r.Stats().Restarts.Load())
	}
}
