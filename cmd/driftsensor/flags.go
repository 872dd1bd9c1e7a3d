package main

import (
	"fmt"
	"math/bits"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// Bounds of the numeric flags. Each is checked before anything starts: a
// value the kernel or the wire format would silently change (a ring size
// wrapped at 2^32, a heartbeat that burns a core) is refused instead.
const (
	// maxRingBytes is the largest ring the kernel takes: max_entries is a
	// u32 and must be a power of two.
	maxRingBytes = 1 << 31
	minHeartbeat = 100 * time.Millisecond
	// maxHeartbeat keeps the responder's dead man's switch meaningful: a
	// host is judged silent after a few intervals.
	maxHeartbeat = 5 * time.Minute
)

// flagError names the flag, the value given and what would be right.
func flagError(name string, value any, want string) error {
	return fmt.Errorf("--%s %v: %s", name, value, want)
}

// checkRingBytes: the kernel wants a power of two, a multiple of the page
// size, that fits its u32 max_entries.
func checkRingBytes(v uint64) error {
	page := uint64(os.Getpagesize())
	if v < page || v > maxRingBytes || bits.OnesCount64(v) != 1 {
		return flagError("ring-bytes", v, fmt.Sprintf("want a power of two from the page size (%d) to %d, e.g. %d (8 MiB)", page, uint64(maxRingBytes), 8<<20))
	}
	return nil
}

func checkHeartbeat(d time.Duration) error {
	if d < minHeartbeat || d > maxHeartbeat {
		return flagError("heartbeat", d, fmt.Sprintf("want from %v to %v (e.g. 1s)", minHeartbeat, maxHeartbeat))
	}
	return nil
}

// checkPort: 0 means any free port.
func checkPort(name string, v int) error {
	if v < 0 || v > 65535 {
		return flagError(name, v, "want a TCP port, 1-65535, or 0 for any free port")
	}
	return nil
}

// checkNATS: "" (the embedded server), "off", or a list of server URLs.
func checkNATS(v string) error {
	if v == "" || v == "off" {
		return nil
	}
	if err := transport.CheckURLs(v); err != nil {
		return flagError("nats", strconv.Quote(v), err.Error()+`; or "off", or leave it out for the embedded server`)
	}
	return nil
}

// checkListenAddr: "" is off, else host:port.
func checkListenAddr(name, v string) error {
	if v == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if err == nil {
		var n int
		if n, err = strconv.Atoi(port); err == nil && (n < 0 || n > 65535) {
			err = fmt.Errorf("port %d out of range", n)
		}
	}
	if err != nil {
		return flagError(name, strconv.Quote(v), "want host:port, e.g. 127.0.0.1:9464 ("+err.Error()+")")
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
}

// checkFlags refuses the first bad value, before anything is started.
func checkFlags(f sensorFlags) error {
	for _, err := range []error{
		checkHost(f.host),
		checkRingBytes(f.ringBytes),
		checkHeartbeat(f.heartbeat),
		checkNATS(f.natsURL),
		checkPort("embedded-port", f.embeddedPort),
		checkListenAddr("metrics-addr", f.metricsAddr),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}
