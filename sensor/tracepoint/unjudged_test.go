package tracepoint

import (
	"testing"
	"time"
)

// TestSettledHidesTransients: a raw count of unjudged syscalls that goes
// away within settleFor (a second copy's run still to come) is never
// reported; one that holds is, once it held for settleFor; what was reported
// never goes down.
func TestSettledHidesTransients(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var s settled
	steps := []struct {
		ms        int
		raw, want uint64
	}{
		{0, 0, 0},
		{100, 1, 0},  // a skipped first run, its second not yet counted
		{400, 0, 0},  // counted: gone
		{1100, 3, 0}, // real, or not: not yet held for a second
		{1500, 1, 0}, // two of them were transients
		{2000, 1, 0},
		{2400, 1, 1}, // every read since 1100, over a whole window, was at least 1
		{2600, 1, 1},
		{2700, 0, 1}, // a low read (runs judged after the skipped ones were read): never less
		{3800, 5, 1},
		{4000, 5, 1},
		{4900, 5, 5},
	}
	for _, st := range steps {
		if got := s.next(st.raw, at(st.ms)); got != st.want {
			t.Fatalf("at %d ms, raw %d: reported %d, want %d", st.ms, st.raw, got, st.want)
		}
	}
	// reads faster than expected: the window shrinks to the last maxReads
	for i := 0; i < 3*maxReads; i++ {
		s.next(7, at(5000+i))
	}
	if got := s.next(7, at(5000+3*maxReads)); got != 5 {
		t.Errorf("after %d reads within %d ms: reported %d, want 5 (a window shorter than settleFor is not whole)", 3*maxReads, 3*maxReads, got)
	}
}

// TestUnjudgedCount: skipped and unmarked first runs less the second's
// counted runs, never below zero.
func TestUnjudgedCount(t *testing.T) {
	for _, c := range []struct{ skipped, unmarked, recovered, want uint64 }{
		{0, 0, 0, 0},
		{10, 0, 10, 0},
		{10, 2, 11, 1},
		{3, 0, 5, 0},
	} {
		if got := unjudged(c.skipped, c.unmarked, c.recovered); got != c.want {
			t.Errorf("unjudged(%d, %d, %d) = %d, want %d", c.skipped, c.unmarked, c.recovered, got, c.want)
		}
	}
}
