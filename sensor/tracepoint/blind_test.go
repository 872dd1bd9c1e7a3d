package tracepoint

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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
	"github.com/driftsensor/driftsensor/sensor/record"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// blindBed is a sealed tracepoint backend on a cgroup and an image tree of
// the test's own, read by a sensor.Sensor that collects its findings.
type blindBed struct {
	b   *Backend
	cg  *testenv.Cgroup
	img string
	pol *policy.Policy
	mu  sync.Mutex
	evs []*event.Event
}

func newBlindBed(t *testing.T) *blindBed {
	testenv.RequireBPF(t)
	root, err := sysfs.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	bb := &blindBed{cg: testenv.NewCgroup(t), img: filepath.Join(t.TempDir(), "img")}
	if err := os.MkdirAll(bb.img, 0o755); err != nil {
		t.Fatal(err)
	}
	if bb.pol, err = policy.Parse("p.yaml", []byte("version: 1\nprotect: ["+bb.img+"]\n")); err != nil {
		t.Fatal(err)
	}
	if bb.b, err = Load(backend.Options{Scope: []string{bb.cg.Path}, CgroupRoot: root}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.b.Close() })
	if err := bb.b.Apply(sensor.RulesFor(bb.pol)); err != nil {
		t.Fatal(err)
	}
	if err := bb.b.SetSealed(true); err != nil {
		t.Fatal(err)
	}
	return bb
}

// run starts a sensor over be (bb.b, or a wrapper of it) until the test ends.
func (bb *blindBed) run(t *testing.T, be backend.Backend) {
	s := sensor.New(sensor.Config{Host: "t", Policy: bb.pol, Backend: be, Log: zerolog.Nop(), StatsEvery: 20 * time.Millisecond,
		Emit: func(ev *event.Event) {
			bb.mu.Lock()
			bb.evs = append(bb.evs, ev)
			bb.mu.Unlock()
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// wait returns the first finding of kind and action, failing after a bound.
func (bb *blindBed) wait(t *testing.T, kind event.Kind, action string) *event.Event {
	t.Helper()
	var got *event.Event
	testenv.Eventually(t, "a "+string(kind)+"/"+action+" finding", func() bool {
		bb.mu.Lock()
		defer bb.mu.Unlock()
		for _, ev := range bb.evs {
			if ev.Kind == kind && ev.Action == action {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

// count returns how many findings of kind and action arrived.
func (bb *blindBed) count(kind event.Kind, action string) int {
	bb.mu.Lock()
	defer bb.mu.Unlock()
	n := 0
	for _, ev := range bb.evs {
		if ev.Kind == kind && ev.Action == action {
			n++
		}
	}
	return n
}

// write creates name under the image from inside the scope and returns the pid.
func (bb *blindBed) write(t *testing.T, name string) int {
	t.Helper()
	return bb.cg.Run(t, "sh", "-c", "echo x > "+filepath.Join(bb.img, name))
}

// TestTaintFullIsAFinding: with the taint set full, a file written after
// sealing cannot be tainted, so executing it would go unjudged; the sensor
// says so with a taint_full finding counting exactly that one file, next to
// the write's own finding.
func TestTaintFullIsAFinding(t *testing.T) {
	bb := newBlindBed(t)
	// Fill the taint set with identities no file has (device 0).
	max := int(bb.b.objs.Taint.MaxEntries())
	const chunk = 8192
	keys, vals := make([]tpFileId, chunk), make([]uint64, chunk)
	for done := 0; done < max; done += chunk {
		n := min(chunk, max-done)
		for i := 0; i < n; i++ {
			keys[i] = tpFileId{Dev: 0, Ino: uint64(done + i + 1)}
		}
		if _, err := bb.b.objs.Taint.BatchUpdate(keys[:n], vals[:n], nil); err != nil {
			t.Fatalf("fill the taint set (%d of %d): %v", done, max, err)
		}
	}
	bb.run(t, bb.b)
	pid := bb.write(t, "dropped")
	w := bb.wait(t, event.KindFile, "open_write")
	if w.File == nil || w.File.Path != filepath.Join(bb.img, "dropped") || w.Process.PID != uint32(pid) {
		t.Fatalf("write finding %+v, want open_write of %s by %d", w, filepath.Join(bb.img, "dropped"), pid)
	}
	tf := bb.wait(t, event.KindSensor, "taint_full")
	if tf.Health == nil || tf.Health.LostRecords != 1 {
		t.Fatalf("taint_full finding %+v, want 1 file not tainted", tf.Health)
	}
	st, err := bb.b.Stats()
	if err != nil || st.TaintFull != 1 {
		t.Fatalf("kernel counter taint_full %d (%v), want 1", st.TaintFull, err)
	}
	if n := bb.count(event.KindSensor, "taint_full"); n != 1 {
		t.Fatalf("%d taint_full findings, want 1", n)
	}
}

// junkRing is the backend with its ring buffer replaced by one a test
// program writes malformed records into.
type junkRing struct {
	*Backend
	rd *backend.Ring
}

func (j junkRing) Reader() *ringbuf.Reader { return j.rd.Reader() }
func (j junkRing) RingFill() float64       { return j.rd.Fill() }
func (j junkRing) CloseRing()              { j.rd.Close() }

// TestDecodeErrorIsAFinding: a record the decoder refuses is not dropped:
// it becomes a decode_error finding saying why, and reading goes on.
func TestDecodeErrorIsAFinding(t *testing.T) {
	bb := newBlindBed(t)
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	rd, err := backend.OpenRing(ring)
	if err != nil {
		t.Fatal(err)
	}
	bb.run(t, junkRing{bb.b, rd})
	// 16 bytes, shorter than any record's header
	if err := bpftest.OutputRing(ring, 0x0123456789abcdef, 0x0123456789abcdef); err != nil {
		t.Fatal(err)
	}
	ev := bb.wait(t, event.KindSensor, "decode_error")
	want := fmt.Sprintf("record of 16 bytes is shorter than its %d-byte header", record.HdrSize)
	if ev.Health == nil || ev.Health.Detail != want || ev.Host != "t" || ev.Backend != Name {
		t.Fatalf("decode_error finding %+v %+v, want detail %q", ev, ev.Health, want)
	}
	// Reading goes on: a second junk record is a second finding.
	if err := bpftest.OutputRing(ring, 0x0123456789abcdef, 0x0123456789abcdef); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "a second decode_error finding", func() bool { return bb.count(event.KindSensor, "decode_error") == 2 })
}
