package decide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// A host numbers its findings. A hole in the numbers this responder has read
// is not yet a loss: the missing findings may be behind in the consumer,
// read by another replica, or still in the sensor's spool. It becomes an
// alarm only when, GapWait after the hole was first seen, the findings
// stream itself lacks those numbers.

// maxGapScan bounds the stream messages read for one host's gap check.
const maxGapScan = 100000

// seqTrack follows one host's finding sequence; guarded by Responder.mu.
type seqTrack struct {
	known    bool
	contig   uint64            // every seq <= contig was read, found in the stream, or judged missing
	contigAt uint64            // stream sequence at or before which the host's seq contig lies
	above    map[uint64]uint64 // seqs read beyond contig+1 -> their stream sequence
	want     uint64            // the highest seq the host says the stream has (findings read, heartbeats)
	since    time.Time         // when the current hole was first seen; zero: none
}

// saw records finding seq read at stream sequence streamSeq.
func (s *seqTrack) saw(seq, streamSeq uint64, now time.Time) {
	if !s.known {
		// What came before this responder first heard of the host was
		// decided (and acknowledged) before: the sequence starts here.
		s.known, s.contig, s.contigAt = true, seq-1, streamSeq
	}
	s.want = max(s.want, seq)
	if seq <= s.contig {
		return
	}
	if s.above == nil {
		s.above = map[uint64]uint64{}
	}
	s.above[seq] = streamSeq
	s.advance(now)
}

// claim notes that the host says the stream holds every seq up to upto.
func (s *seqTrack) claim(upto uint64, now time.Time) {
	if !s.known {
		s.known, s.contig = true, upto
		return
	}
	s.want = max(s.want, upto)
	s.advance(now)
}

func (s *seqTrack) advance(now time.Time) {
	for {
		at, ok := s.above[s.contig+1]
		if !ok {
			break
		}
		delete(s.above, s.contig+1)
		s.contig++
		if at > 0 {
			s.contigAt = at
		}
	}
	switch {
	case s.want <= s.contig:
		s.since = time.Time{}
	case s.since.IsZero():
		s.since = now
	}
}

// missing lists the holes: seqs in (contig, want] not read.
func (s *seqTrack) missing() []uint64 {
	var out []uint64
	for q := s.contig + 1; q <= s.want && len(out) < maxGapScan; q++ {
		if _, ok := s.above[q]; !ok {
			out = append(out, q)
		}
	}
	return out
}

// reset forgets the sequence (the sensor started a new one).
func (s *seqTrack) reset() { *s = seqTrack{} }

// checkGaps looks in the stream for the holes that are older than GapWait
// and fires the dead man's switch for those it lacks.
func (r *Responder) checkGaps(now time.Time) {
	r.mu.Lock()
	stream := r.stream
	r.mu.Unlock()
	if !r.cfg.GapCheck || stream == nil {
		return
	}
	type job struct {
		host    string
		from    uint64
		missing []uint64
	}
	var jobs []job
	r.mu.Lock()
	for h, hs := range r.hosts {
		if hs.seq.since.IsZero() || now.Sub(hs.seq.since) < r.cfg.GapWait {
			continue
		}
		if m := hs.seq.missing(); len(m) > 0 {
			jobs = append(jobs, job{h, hs.seq.contigAt, m})
		}
	}
	r.mu.Unlock()
	for _, j := range jobs {
		found, err := r.inStream(stream, j.host, j.from, j.missing)
		if err != nil {
			r.log.Warn().Err(err).Str("host", j.host).Msg("gap check: reading the findings stream; retrying")
			continue
		}
		var lacks []uint64
		r.mu.Lock()
		hs := r.hosts[j.host]
		for _, q := range j.missing {
			at, ok := found[q]
			if !ok {
				lacks = append(lacks, q)
			}
			if q > hs.seq.contig {
				if hs.seq.above == nil {
					hs.seq.above = map[uint64]uint64{}
				}
				hs.seq.above[q] = at // judged: in the stream (read elsewhere or soon), or missing
			}
		}
		hs.seq.since = time.Time{}
		hs.seq.advance(now)
		r.mu.Unlock()
		if len(lacks) > 0 {
			r.stats.Gaps.Add(1)
			r.deadMan(j.host, fmt.Sprintf("findings %s of %s are not in the stream %s (checked %s after the hole was seen)",
				ranges(lacks), j.host, event.StreamName, r.cfg.GapWait), nil, Stages{Received: now})
		}
	}
}

// inStream reads the host's findings in the stream from stream sequence
// from on, and returns which of want it holds, with their stream sequence.
func (r *Responder) inStream(stream jetstream.Stream, host string, from uint64, want []uint64) (map[uint64]uint64, error) {
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	need := map[uint64]bool{}
	for _, q := range want {
		need[q] = true
	}
	found := map[uint64]uint64{}
	filter := event.SubjectRoot + "." + host + ".*"
	state := event.StateSubject(host)
	next := max(from, 1)
	for i := 0; i < maxGapScan && len(found) < len(need); i++ {
		m, err := stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		next = m.Sequence + 1
		if m.Subject == state || m.Subject == event.HeartbeatSubject(host) {
			continue
		}
		var v struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(m.Data, &v) == nil && need[v.Seq] {
			found[v.Seq] = m.Sequence
		}
	}
	return found, nil
}

// ranges writes sorted seqs as "3-5, 9".
func ranges(seqs []uint64) string {
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	out := ""
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		if out != "" {
			out += ", "
		}
		if i == j {
			out += fmt.Sprint(seqs[i])
		} else {
			out += fmt.Sprintf("%d-%d", seqs[i], seqs[j])
		}
		i = j + 1
	}
	return out
}
