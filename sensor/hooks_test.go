package sensor_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
)

// tracepointRunner runs the shared hook table (sensor/hooktest) on the
// tracepoint backend through sensor.Sensor. It has one mode: detect.
type tracepointRunner struct{}

func (tracepointRunner) Backend() string        { return tracepoint.Name }
func (tracepointRunner) Modes() []hooktest.Mode { return []hooktest.Mode{hooktest.Detect} }

func (tracepointRunner) Start(t *testing.T) hooktest.Scope {
	return hooktest.NewBed(t, hooktest.BedConfig{
		Load: func(opts backend.Options) (backend.Backend, error) {
			root, err := sysfs.CgroupRoot()
			if err != nil {
				return nil, err
			}
			opts.CgroupRoot = root
			return tracepoint.Load(opts)
		},
		Check: checkTracepoint,
		ProgID: func(b backend.Backend) uint32 {
			info, err := b.(*tracepoint.Backend).SysExitProgram().Info()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := info.ID()
			return uint32(id)
		},
	})
}

// checkTracepoint: records come from the thread that made the syscall, but
// an exec record is written after the exec, when the process is one thread
// whose id is the pid.
func checkTracepoint(t testing.TB, w hooktest.Want, ev *event.Event, res hooktest.Result) {
	t.Helper()
	if ev.Backend != tracepoint.Name {
		t.Errorf("finding from backend %q: %s", ev.Backend, hooktest.Describe(ev))
	}
	if ev.Denied != w.Denied || (ev.Kind == event.KindFile && ev.Denied) {
		t.Errorf("finding denied=%v: %s", ev.Denied, hooktest.Describe(ev))
	}
	wantTID := res.TID
	if ev.Action == hooktest.ActExec {
		wantTID = res.PID
	}
	if !w.AnyThread && wantTID != 0 && int(ev.Process.TID) != wantTID {
		t.Errorf("finding from thread %d, want %d: %s", ev.Process.TID, wantTID, hooktest.Describe(ev))
	}
}

// TestHooks runs every case of the shared table: each mutation, exec,
// privileged operation and bind on a sealed scope is one finding with the
// exact canonical path and the actor's pid; benign actions are none.
func TestHooks(t *testing.T) {
	hooktest.Run(t, tracepointRunner{})
}

func touch(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("seed"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestLostRecordsAreFindings: with a one-page ring buffer and a burst of
// findings, the kernel drops records; every one is either delivered or
// counted, and the count arrives as a sensor finding of its own.
func TestLostRecordsAreFindings(t *testing.T) {
	testenv.RequireBPF(t)
	root, _ := sysfs.CgroupRoot()
	cg := testenv.NewCgroup(t)
	img := filepath.Join(t.TempDir(), "img")
	os.MkdirAll(img, 0o755)
	target := filepath.Join(img, "f")
	touch(t, target)
	pol, err := policy.Parse("p.yaml", []byte("version: 1\nprotect: ["+img+"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	be, err := tracepoint.Load(backend.Options{Scope: []string{cg.Path}, CgroupRoot: root, RingBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if err := be.Apply(sensor.RulesFor(pol)); err != nil {
		t.Fatal(err)
	}
	be.SetSealed(true)
	var mu sync.Mutex
	delivered, lost, lostFindings := 0, uint64(0), 0
	s := sensor.New(sensor.Config{Host: "t", Policy: pol, Backend: be, Log: zerolog.Nop(), StatsEvery: 20 * time.Millisecond,
		Emit: func(ev *event.Event) {
			mu.Lock()
			defer mu.Unlock()
			if delivered < 50 { // a slow consumer: the one-page ring must overflow
				time.Sleep(2 * time.Millisecond)
			}
			switch {
			case ev.Kind == event.KindSensor && ev.Action == "lost_records":
				lost += ev.Health.LostRecords
				lostFindings++
			case ev.Action == "chmod":
				delivered++
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	const n = 2000
	cmd, closeFD, err := cg.Command("sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do chmod 600 %s; i=$((i+1)); done", n, target))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
	for i := 0; i < 500; i++ {
		mu.Lock()
		done := uint64(delivered)+lost == n
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if uint64(delivered)+lost != n {
		t.Fatalf("%d chmods: %d delivered + %d counted lost; %d unaccounted for", n, delivered, lost, n-uint64(delivered)-lost)
	}
	if lost == 0 || lostFindings == 0 {
		t.Fatalf("a one-page ring buffer lost nothing under a burst of %d (delivered %d): the test proves nothing", n, delivered)
	}
}
