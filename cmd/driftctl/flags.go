package main

import (
	"time"

	"github.com/driftsensor/driftsensor/cmd/internal/flagcheck"
)

// Bounds of driftctl's durations.
const (
	minTimeout = 100 * time.Millisecond
	maxTimeout = 10 * time.Minute
	minWait    = 100 * time.Millisecond
	maxWait    = time.Hour
)

// checkGlobals refuses a bad connection flag before any command connects.
func checkGlobals(g globals) error {
	if err := flagcheck.First(
		flagcheck.URLs("nats", g.conn.URL),
		flagcheck.Duration("timeout", g.timeout, minTimeout, maxTimeout, false),
	); err != nil {
		return usageError{err.Error()}
	}
	return nil
}

// checkWait is status's --wait.
func checkWait(d time.Duration) error {
	if err := flagcheck.Duration("wait", d, minWait, maxWait, false); err != nil {
		return usageError{err.Error()}
	}
	return nil
}
