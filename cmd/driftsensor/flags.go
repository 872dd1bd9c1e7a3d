package main

import (
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"time"

	"github.com/driftsensor/driftsensor/cmd/internal/flagcheck"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// maxRingBytes is the largest ring the kernel takes: max_entries is a u32
// and must be a power of two.
const maxRingBytes = 1 << 31

// checkRingBytes: the kernel wants a power of two, a multiple of the page
// size, that fits its u32 max_entries. Checked as given (a uint64): a value
// past 2^32 is refused, not wrapped into a tiny ring.
func checkRingBytes(v uint64) error {
	page := uint64(os.Getpagesize())
	if v < page || v > maxRingBytes || bits.OnesCount64(v) != 1 {
		return &flagcheck.Error{Flag: "ring-bytes", Value: strconv.FormatUint(v, 10),
			Want: fmt.Sprintf("want a power of two from the page size (%d) to %d, e.g. %d (8 MiB)", page, uint64(maxRingBytes), 8<<20)}
	}
	return nil
}

// checkNATS: "" (the embedded server), "off", or a list of server URLs.
func checkNATS(v string) error {
	if v == "" || v == "off" {
		return nil
	}
	if err := flagcheck.URLs("nats", v); err != nil {
		e := err.(*flagcheck.Error)
		e.Want += `; or "off", or leave it out for the embedded server`
		return e
	}
	return nil
}

func checkHost(v string) error {
	if err := event.ValidHost(v); err != nil {
		return fmt.Errorf("--host: %w", err)
	}
	return nil
}

// sensorFlags are the values checkFlags looks at.
type sensorFlags struct {
	host         string
	ringBytes    uint64
	heartbeat    time.Duration
	natsURL      string
	embeddedPort int
	metricsAddr  string
	kernelCheck  time.Duration
}

// Bounds of --kernel-check: one comparison reads a few files and walks the
// BPF id lists (~0.2 ms), so even the shortest period costs little; past an
// hour a change would wait too long.
const (
	minKernelCheck = 100 * time.Millisecond
	maxKernelCheck = time.Hour
)

// checkFlags refuses the first bad value, before anything is started.
func checkFlags(f sensorFlags) error {
	return flagcheck.First(
		checkHost(f.host),
		checkRingBytes(f.ringBytes),
		flagcheck.Duration("heartbeat", f.heartbeat, event.MinHeartbeat, event.MaxHeartbeat, false),
		checkNATS(f.natsURL),
		flagcheck.Port("embedded-port", f.embeddedPort),
		flagcheck.ListenAddr("metrics-addr", f.metricsAddr),
		flagcheck.Duration("kernel-check", f.kernelCheck, minKernelCheck, maxKernelCheck, true),
	)
}
