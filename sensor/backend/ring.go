package backend

import (
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// Ring is the ring buffer's reader with a fill that is safe to read while
// another goroutine closes it: ringbuf.Reader's AvailableBytes reads the
// mapping its Close unmaps (a fault, not an error), and the sensor's counters,
// heartbeat and metrics read the fill while its shutdown closes the ring.
type Ring struct {
	mu sync.RWMutex
	rd *ringbuf.Reader // nil once closed
}

// OpenRing starts reading the ring buffer m.
func OpenRing(m *ebpf.Map) (*Ring, error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return &Ring{rd: rd}, nil
}

// Reader is the reader records are read from; nil once closed.
func (r *Ring) Reader() *ringbuf.Reader {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.rd
}

// Fill is the fraction of the ring buffer holding unread records; 0 once
// closed.
func (r *Ring) Fill() float64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.rd == nil || r.rd.BufferSize() == 0 {
		return 0
	}
	return float64(r.rd.AvailableBytes()) / float64(r.rd.BufferSize())
}

// Close stops reading: a read in progress returns ringbuf.ErrClosed. Closing
// twice is harmless.
func (r *Ring) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rd == nil {
		return nil
	}
	err := r.rd.Close()
	r.rd = nil
	return err
}
