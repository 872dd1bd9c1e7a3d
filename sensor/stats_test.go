package sensor_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/bpftest"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// countersBackend is a real ring buffer with kernel counters the test sets:
// the sensor's pace of reading them is what is under test, not the hooks.
type countersBackend struct {
	ring *ebpf.Map
	rd   *backend.Ring
	lost atomic.Uint64
	// unfound: executable mprotects whose mapping was not found
	unfound atomic.Uint64
}

func newCountersBackend(t *testing.T) *countersBackend {
	testenv.RequireBPF(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := backend.OpenRing(m)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	b := &countersBackend{ring: m, rd: rd}
	t.Cleanup(func() { b.Close() })
	return b
}

func (b *countersBackend) Name() string              { return "counters" }
func (b *countersBackend) Apply(backend.Rules) error { return nil }
func (b *countersBackend) SetSealed(bool) error      { return nil }
func (b *countersBackend) Reader() *ringbuf.Reader   { return b.rd.Reader() }
func (b *countersBackend) RingFill() float64         { return b.rd.Fill() }
func (b *countersBackend) CloseRing()                { b.rd.Close() }
func (b *countersBackend) Verify() []string          { return nil }
func (b *countersBackend) Stats() (backend.Stats, error) {
	return backend.Stats{Lost: b.lost.Load(), MapUnfound: b.unfound.Load()}, nil
}
func (b *countersBackend) SelfObject(uint64) (uint32, backend.Object, bool) {
	return 0, backend.Object{}, false
}
func (b *countersBackend) Close() error { b.rd.Close(); return b.ring.Close() }

// put queues one 8-byte record in the ring; the sensor reads it as a
// record it cannot decode, which is a finding all the same.
func (b *countersBackend) put(t *testing.T) {
	t.Helper()
	if err := bpftest.OutputRing(b.ring, 0); err != nil {
		t.Fatal(err)
	}
}

// pacedSensor runs a sensor on b reading the counters every 5ms while
// findings come and every idle at idle; it returns the findings seen so far
// and a channel of the pace changes.
func pacedSensor(t *testing.T, b *countersBackend, idle time.Duration) (func() []*event.Event, <-chan bool) {
	var mu sync.Mutex
	var got []*event.Event
	pace := make(chan bool, 16)
	s := sensor.New(sensor.Config{Host: "t", Policy: policy.Default(), Backend: b, Log: zerolog.Nop(),
		StatsEvery: 5 * time.Millisecond, IdleStatsEvery: idle,
		OnStatsPace: func(idle bool) { pace <- idle },
		Emit: func(ev *event.Event) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, ev)
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return func() []*event.Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]*event.Event(nil), got...)
	}, pace
}

// nextPace is the sensor's next change of pace.
func nextPace(t *testing.T, pace <-chan bool) (idle bool) {
	t.Helper()
	select {
	case idle = <-pace:
	case <-time.After(testenv.WaitBound):
		t.Fatalf("no change of pace in %v", testenv.WaitBound)
	}
	return idle
}

// lostReported is the number of records the lost_records findings among
// evs count.
func lostReported(evs []*event.Event) uint64 {
	var n uint64
	for _, ev := range evs {
		if ev.Kind == event.KindSensor && ev.Action == "lost_records" {
			n += ev.Health.LostRecords
		}
	}
	return n
}

// TestStatsIdlePaceStillReports: with nothing arriving the sensor reads the
// kernel counters at the idle period, and loss counted then is still
// reported, exactly.
func TestStatsIdlePaceStillReports(t *testing.T) {
	b := newCountersBackend(t)
	findings, pace := pacedSensor(t, b, 20*time.Millisecond)
	if idle := nextPace(t, pace); !idle {
		t.Fatal("the first change of pace of a sensor with nothing to read is not to idle")
	}
	b.lost.Store(7)
	testenv.Eventually(t, "the 7 lost records reported at the idle pace", func() bool { return lostReported(findings()) == 7 })
}

// TestMappingUnfoundReported: mprotects the kernel could not judge, its
// lookup of their mapping failing, are reported exactly, as a finding.
func TestMappingUnfoundReported(t *testing.T) {
	b := newCountersBackend(t)
	findings, _ := pacedSensor(t, b, 20*time.Millisecond)
	b.unfound.Store(3)
	testenv.Eventually(t, "the 3 unjudged mprotects reported", func() bool {
		var n uint64
		for _, ev := range findings() {
			if ev.Kind == event.KindSensor && ev.Action == "mapping_unfound" {
				n += ev.Health.LostRecords
			}
		}
		return n == 3
	})
}

// TestStatsPaceWakesOnFindings: the first finding after a quiet spell brings
// the short period back at once. The idle period here is an hour, so only the
// short one can report the loss counted after the record.
func TestStatsPaceWakesOnFindings(t *testing.T) {
	b := newCountersBackend(t)
	findings, pace := pacedSensor(t, b, time.Hour)
	if idle := nextPace(t, pace); !idle {
		t.Fatal("the first change of pace of a sensor with nothing to read is not to idle")
	}
	b.put(t)
	if idle := nextPace(t, pace); idle {
		t.Fatal("a record while idle did not bring the short period back")
	}
	b.lost.Store(3)
	testenv.Eventually(t, "the 3 lost records reported at the short period", func() bool { return lostReported(findings()) == 3 })
	if evs := findings(); len(evs) == 0 || evs[0].Action != "decode_error" {
		t.Fatalf("the record's finding is missing: %v", evs)
	}
}
