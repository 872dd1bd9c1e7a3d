package backend_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// TestRingFillWhileClosing: the fill is read by the sensor's counters,
// heartbeat and metrics while its shutdown closes the ring; ringbuf.Reader
// alone faults there (its AvailableBytes reads the mapping Close unmaps: a
// streak round's VM died so). Readers running through the close, and after
// it, read 0, and a read blocked on the ring returns ErrClosed.
func TestRingFillWhileClosing(t *testing.T) {
	testenv.RequireBPF(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := backend.OpenRing(m)
	if err != nil {
		t.Fatal(err)
	}
	rd := r.Reader()
	readErr := make(chan error, 1)
	go func() {
		var rec ringbuf.Record
		readErr <- rd.ReadInto(&rec)
	}()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if f := r.Fill(); f != 0 {
					t.Errorf("fill of an empty ring: %v", f)
					return
				}
			}
		}()
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; !errors.Is(err, ringbuf.ErrClosed) {
		t.Errorf("a read blocked on the ring returned %v at its close, want ringbuf.ErrClosed", err)
	}
	close(stop)
	wg.Wait()
	if f := r.Fill(); f != 0 {
		t.Errorf("fill after close: %v, want 0", f)
	}
	if r.Reader() != nil {
		t.Error("Reader after close: want nil")
	}
	if err := r.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}
