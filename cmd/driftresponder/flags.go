package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

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
	drillKeys  string
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
		checkDrillKeys(f.drillKeys),
	)
}

// drillKeys splits --drill-key: operator public nkeys, comma-separated.
func drillKeys(v string) []string {
	var out []string
	for _, k := range strings.Split(v, ",") {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}

func checkDrillKeys(v string) error {
	for _, k := range drillKeys(v) {
		if !nkeys.IsValidPublicUserKey(k) {
			return &flagcheck.Error{Flag: "drill-key", Value: strconv.Quote(k),
				Want: "want an operator's public user nkey (U..., 56 characters; driftctl creds prints the admin's), not a seed"}
		}
	}
	return nil
}
