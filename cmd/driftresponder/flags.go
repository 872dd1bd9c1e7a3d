package main

import (
	"time"

	"github.com/driftsensor/driftsensor/cmd/internal/flagcheck"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// responderFlags are the values checkFlags looks at.
type responderFlags struct {
	url        string
	hbEvery    time.Duration
	missed     int
	maxHosts   int
	maxPercent float64
	window     time.Duration
}

// Bounds of the responder's numeric flags.
const (
	maxMissedBeats = 1000
	maxHostsLimit  = 1 << 20
	minWindow      = time.Second
	maxWindow      = 7 * 24 * time.Hour
)

// checkFlags refuses the first bad value, before connecting.
func checkFlags(f responderFlags) error {
	return flagcheck.First(
		flagcheck.URLs("nats", f.url),
		flagcheck.Duration("heartbeat-interval", f.hbEvery, event.MinHeartbeat, event.MaxHeartbeat, true),
		flagcheck.Int("missed-beats", f.missed, 1, maxMissedBeats),
		flagcheck.Int("max-hosts", f.maxHosts, 0, maxHostsLimit),
		flagcheck.Float("max-percent", f.maxPercent, 0, 100),
		flagcheck.Duration("window", f.window, minWindow, maxWindow, false),
	)
}
