package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// gaps counts, while Open walks the segments in order, the unconsumed
// records that are missing from the numbering: each record is one more than
// the one before, so a hole is exactly the records lost in it, whatever made
// it (damaged bytes, a truncated file, a deleted segment).
type gaps struct {
	seen    uint64 // highest seq accounted for: consumed, present or counted lost
	damage  []Damage
	pending int      // index in damage of damaged bytes not yet followed by a good record; -1: none
	holes   holeList // ranges reported lost by an earlier Open: not reported again
	added   bool     // holes changed
}

// hole is a range of seqs reported lost, first to last.
type hole struct{ first, last uint64 }

// holeList is the ranges reported lost and not yet below the consumed seq.
type holeList []hole

// add records that first..last were reported lost (found while reading).
func (h *holeList) add(dir string, first, last uint64) error {
	if last < first {
		return nil
	}
	*h = append(*h, hole{first, last})
	return writeHoles(dir, *h, first-1)
}

// segFirst is the seq a segment file's name says it starts at.
func segFirst(path string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".seg"), 10, 64)
	return n
}

// unreported counts the seqs from a to b that no earlier Open reported, and
// remembers the range as reported.
func (g *gaps) unreported(a, b uint64) uint64 {
	n := b - a + 1
	for _, h := range g.holes {
		if lo, hi := max(a, h.first), min(b, h.last); lo <= hi {
			n -= hi - lo + 1
		}
	}
	if n > 0 {
		g.holes = append(g.holes, hole{a, b})
		g.added = true
	}
	return n
}

// record accounts for a good record: the hole before it, if any, is charged
// to the damaged bytes before it or reported as missing records.
func (g *gaps) record(seq uint64, file string, off int64) {
	if seq > g.seen+1 {
		if n := g.unreported(g.seen+1, seq-1); n > 0 {
			g.lost(n, Damage{File: file, Offset: off,
				Reason: fmt.Sprintf("records %d to %d missing before this one (a segment deleted or cut short)", g.seen+1, seq-1)})
		}
	}
	g.seen = max(g.seen, seq)
	g.pending = -1
}

// damaged notes discarded bytes; the next good record (or the end) says
// how many records they held.
func (g *gaps) damaged(d Damage) {
	if g.pending >= 0 && g.damage[g.pending].File == d.File {
		p := &g.damage[g.pending] // consecutive damage in one file: one report
		p.Bytes = d.Offset + d.Bytes - p.Offset
		p.torn = d.torn
		return
	}
	g.damage = append(g.damage, d)
	g.pending = len(g.damage) - 1
}

func (g *gaps) lost(n uint64, d Damage) {
	if g.pending >= 0 {
		p := &g.damage[g.pending]
		p.Records += int(n)
		if p.torn { // not a write the process died in: more is missing after it
			p.Reason = "file cut short inside a record"
			p.torn = false
		}
		p.Reason += "; " + d.Reason
		return
	}
	d.Records = int(n)
	g.damage = append(g.damage, d)
}

// end accounts for records missing after the last good one, up to the
// newest appended.
func (g *gaps) end(last uint64, dir string, files []named) {
	if last <= g.seen {
		return
	}
	file := dir
	if len(files) > 0 {
		file = files[len(files)-1].path
	}
	if n := g.unreported(g.seen+1, last); n > 0 {
		g.lost(n, Damage{File: file,
			Reason: fmt.Sprintf("records %d to %d missing at the end (the newest segment deleted or cut short)", g.seen+1, last)})
	}
	g.seen = last
}

// The holes file lists the ranges already reported lost, 16 bytes each.
const holesFile = "holes"

func readHoles(dir string) (holeList, error) {
	b, err := os.ReadFile(filepath.Join(dir, holesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var hs holeList
	for ; len(b) >= 16; b = b[16:] {
		hs = append(hs, hole{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])})
	}
	return hs, nil
}

// saveHoles keeps the holes not yet below the consumed seq.
func (g *gaps) saveHoles(dir string, acked uint64) error {
	kept := 0
	for _, h := range g.holes {
		if h.last > acked {
			kept++
		}
	}
	if !g.added && kept == len(g.holes) {
		return nil
	}
	return writeHoles(dir, g.holes, acked)
}

func writeHoles(dir string, hs holeList, acked uint64) error {
	var b []byte
	for _, h := range hs {
		if h.last > acked {
			b = binary.LittleEndian.AppendUint64(b, h.first)
			b = binary.LittleEndian.AppendUint64(b, h.last)
		}
	}
	return replaceFile(filepath.Join(dir, holesFile), b)
}

// settleTorn charges a record cut short at the very end, with no hole
// after it, as the one record being written when the process died.
func (g *gaps) settleTorn() {
	if g.pending >= 0 && g.damage[g.pending].torn && g.damage[g.pending].Records == 0 {
		g.damage[g.pending].Records = 1
	}
}

// named is a segment file and the seq its name says it starts at.
type named struct {
	first uint64
	path  string
}

// chooseAcked decides which records were consumed, from the ack log and the
// mark. The ack log may not name more than the mark saw consumed: an entry
// past it was not written by this spool (forged, or replayed from elsewhere),
// and trusting it would drop records unsent without a trace.
func (s *Spool) chooseAcked(logAcked uint64, logFound, markOK bool, firstSeg uint64, haveSegs bool) (uint64, []Damage) {
	ackPath := filepath.Join(s.dir, "acked")
	m := s.mark
	switch {
	case logFound && markOK:
		if logAcked > m.acked.Load() {
			a := m.acked.Load()
			return a, []Damage{{File: ackPath, Reason: fmt.Sprintf(
				"the ack log names record %d consumed but only %d was: a forged or foreign ack entry, refused; records %d to %d are kept and sent",
				logAcked, a, a+1, min(logAcked, m.last.Load()))}}
		}
		return logAcked, nil
	case markOK:
		if m.acked.Load() > 0 || haveSegs {
			return m.acked.Load(), []Damage{{File: ackPath, Reason: fmt.Sprintf("ack log missing; the mark says records up to %d were consumed", m.acked.Load())}}
		}
		return 0, nil
	case logFound:
		if haveSegs {
			return logAcked, []Damage{{File: filepath.Join(s.dir, "mark"), Reason: "mark missing or damaged: records cut from the end of the spool cannot be counted"}}
		}
		return logAcked, nil
	case haveSegs:
		a := firstSeg - min(firstSeg, 1)
		return a, []Damage{{File: s.dir, Reason: fmt.Sprintf("ack log and mark missing: records before %d, and any cut from the end, cannot be counted", firstSeg)}}
	}
	return 0, nil
}
