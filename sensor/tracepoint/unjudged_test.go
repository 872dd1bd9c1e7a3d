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
	// Reads far faster than maxReads a second: a count that held for
	// settleFor is reported all the same (a window cut to the last maxReads
	// reads, shorter than settleFor, never settled: a real loss went
	// unreported for as long as something polled fast), and a transient
	// among them is still not.
	for i := 0; i < 1000; i++ { // 1 ms apart
		raw := uint64(7)
		if i == 500 {
			raw = 6 // a transient low read: the 7 has not held since it
		}
		if got := s.next(raw, at(5000+i)); got != 5 {
			t.Fatalf("read %d: reported %d, want 5 (7 has not held for settleFor)", i, got)
		}
	}
	if got := s.next(7, at(6500)); got != 6 {
		t.Errorf("a second after the low read: reported %d, want 6 (the lowest read of the window)", got)
	}
	for i := 0; i < 2000; i++ {
		s.next(7, at(6501+i))
	}
	if got := s.next(7, at(8600)); got != 7 || len(s.reads) > maxReads {
		t.Errorf("7 held for over a second of fast reads: reported %d with %d reads kept, want 7 within %d", got, len(s.reads), maxReads)
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
