// Package peers measures driftsensor side by side with the monitors people
// already run for the same job, on one machine in one run: auditd (Debian's
// package, watches equivalent to the default policy) and inotifywait. The
// benchmark is BenchmarkPeers (make bench-peers); this package holds the
// monitors, the parsers of their output and the report.
package peers

import (
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Obs is one thing a monitor reported, reduced to what the benchmark matches
// on: the path (when the monitor names one) and the pid (when it names one),
// and when the benchmark read it (CLOCK_MONOTONIC, the clock the workloads
// stamp their mutations with).
type Obs struct {
	Path string
	PID  int
	At   int64
	Lost uint64 // a monitor's own report of what it could not deliver
	Exec bool   // about an exec: the test binary's own starts are execs too
}

// Now is CLOCK_MONOTONIC in nanoseconds: comparable across processes, unlike
// Go's monotonic readings.
func Now() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Collector gathers a monitor's observations for one workload at a time.
type Collector struct {
	mu  sync.Mutex
	obs []Obs
}

// Add records o.
func (c *Collector) Add(o Obs) {
	c.mu.Lock()
	c.obs = append(c.obs, o)
	c.mu.Unlock()
}

// Seen reports whether an observation names path.
func (c *Collector) Seen(path string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.obs) - 1; i >= 0; i-- {
		if c.obs[i].Path == path {
			return true
		}
	}
	return false
}

// Peek returns a copy of what was gathered since the last Take.
func (c *Collector) Peek() Batch {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(Batch(c.obs))
}

// Take returns what was gathered since the last Take and starts afresh.
func (c *Collector) Take() Batch {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := Batch(c.obs)
	c.obs = nil
	return b
}

// Batch is what a monitor reported during one workload.
type Batch []Obs

// Under counts the observations of paths under dir (a storm's file is
// created, then chmodded: two observations) and returns the time of the
// last one.
func (b Batch) Under(dir string) (obs int, last int64) {
	for _, o := range b {
		if strings.HasPrefix(o.Path, dir+"/") {
			obs++
			last = max(last, o.At)
		}
	}
	return obs, last
}

// First maps each path to the time it was first reported.
func (b Batch) First() map[string]int64 {
	m := make(map[string]int64, len(b))
	for _, o := range b {
		if _, ok := m[o.Path]; !ok && o.Path != "" {
			m[o.Path] = o.At
		}
	}
	return m
}

// Lost adds up the monitor's own reports of loss.
func (b Batch) Lost() uint64 {
	var n uint64
	for _, o := range b {
		n += o.Lost
	}
	return n
}

// HasPID reports whether anything but an exec was reported about process pid.
func (b Batch) HasPID(pid int) bool {
	for _, o := range b {
		if o.PID == pid && pid != 0 && !o.Exec {
			return true
		}
	}
	return false
}

// HasPath reports whether anything was reported about path.
func (b Batch) HasPath(path string) bool {
	for _, o := range b {
		if o.Path == path {
			return true
		}
	}
	return false
}
