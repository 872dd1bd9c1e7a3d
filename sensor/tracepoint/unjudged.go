package tracepoint

import (
	"sync"
	"time"
)

// settleFor is how long a count of unjudged syscalls must hold before it is
// reported (see settled).
const settleFor = time.Second

// settled turns the raw count of syscalls no sys_exit copy judged (the first
// copy's skipped runs, plus its unmarked runs, less the second's counted
// runs: a bound from above, bpf/tracepoint.c exit_role) into the count the
// sensor reports.
//
// The skipped runs are read before the counted ones, so a syscall whose first
// run was skipped and whose second has yet to run (its task preempted between
// the two) counts as unjudged until the second runs: a count that goes away
// by a later read. A skipped_runs finding goes to the responder's dead_man
// rule, so a transient must not reach it. A syscall really unjudged stays
// counted: the count reported is the lowest raw count of every read over the
// last settleFor (and the last read before them), never less than what was
// reported before.
type settled struct {
	mu    sync.Mutex
	reads []rawRead // oldest first
	shown uint64
}

type rawRead struct {
	at  time.Time
	raw uint64
}

// maxReads bounds the history when reads come fast (the sensor's own
// reads, its metrics, a test polling): a read that comes within
// 2*settleFor/maxReads of the one before the last replaces the last, keeping
// the lower count of the two, so the window still spans settleFor whatever
// the rate of reads (a low read is kept that much longer, never dropped).
const maxReads = 64

func (s *settled) next(raw uint64, now time.Time) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.reads); n >= 2 && now.Sub(s.reads[n-2].at) < 2*settleFor/maxReads {
		raw = min(raw, s.reads[n-1].raw)
		s.reads = s.reads[:n-1]
	}
	s.reads = append(s.reads, rawRead{now, raw})
	// keep one read at or before now-settleFor, and every later one
	cut := 0
	for i := 1; i < len(s.reads) && !s.reads[i].at.After(now.Add(-settleFor)); i++ {
		cut = i
	}
	s.reads = s.reads[cut:]
	if now.Sub(s.reads[0].at) < settleFor {
		return s.shown // not yet a whole window
	}
	low := raw
	for _, r := range s.reads {
		low = min(low, r.raw)
	}
	s.shown = max(s.shown, low)
	return s.shown
}

// unjudged is the raw count: runs of the first copy skipped or unmarked,
// less those the second judged and counted (never below 0: runs skipped
// after the skipped runs were read may be judged before the counters are).
func unjudged(skipped, unmarked, recovered uint64) uint64 {
	if skipped+unmarked < recovered {
		return 0
	}
	return skipped + unmarked - recovered
}
