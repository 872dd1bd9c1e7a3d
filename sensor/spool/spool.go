// Package spool is a bounded on-disk FIFO of byte records: findings wait here
// while the NATS server is unreachable and leave, in order, when it is back.
//
// A spool directory holds append-only segment files (<first seq>.seg) of
// checksummed records, numbered one by one, an ack log (acked) naming the
// last consumed record and a mark (mark) of the newest appended and consumed.
// It survives the process being killed at any instant: a record cut short by
// the kill is detected on the next Open, as is any other damage, and every
// good record around the damage is kept. Records missing from the numbering
// (a damaged, truncated or deleted segment) are counted exactly, and an ack
// log that names more than was consumed is refused.
package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Defaults for Options fields left zero.
const (
	// DefaultMaxBytes lets DefaultMaxRecords findings of up to 1 KiB wait:
	// a burst of a million is absorbed on disk, not lost.
	DefaultMaxBytes     = 1 << 30
	DefaultMaxRecords   = 1 << 20
	DefaultSegmentBytes = 8 << 20
)

// Errors returned by the spool.
var (
	ErrFull     = errors.New("spool full")
	ErrTooLarge = errors.New("record larger than spool.MaxRecord")
	ErrEmpty    = errors.New("spool empty")
	ErrClosed   = errors.New("spool closed")
)

// Options bound the spool and choose its durability.
type Options struct {
	MaxBytes     int64 // unconsumed bytes, headers included; default 1 GiB
	MaxRecords   int   // unconsumed records; default 1M
	SegmentBytes int64 // a new segment file starts past this size; default 8 MiB
	// SyncEvery batches fsync: 0 or 1 syncs every append before Append returns;
	// N > 1 syncs every N appends; < 0 syncs only in Sync and Close. Unsynced
	// records survive a killed process (they are in the page cache) but not a
	// power loss.
	SyncEvery int
}

// Damage describes bytes Open (or a later read) had to discard. The caller
// reports it as a finding: records were lost.
type Damage struct {
	File   string // segment file (or the ack log, or the spool directory)
	Offset int64  // first damaged byte
	Bytes  int64  // bytes discarded
	// Records lost, exactly: the unconsumed sequence numbers missing around
	// the damage (up to the newest appended, which the mark keeps), or the
	// one record being written when the process died. 0 when nothing
	// unconsumed was lost (e.g. a forged ack entry, refused).
	Records int
	Reason  string
	torn    bool // a record cut short at the end of a file
}

func (d Damage) String() string {
	return fmt.Sprintf("%s at offset %d: %s: %d bytes, %d records discarded", d.File, d.Offset, d.Reason, d.Bytes, d.Records)
}

type segment struct {
	path  string
	size  int64 // bytes in the file
	recs  int   // unconsumed records in it
	bytes int64 // unconsumed bytes in it
}

// Spool is a bounded on-disk FIFO. It is safe for concurrent use.
type Spool struct {
	dir   string
	opts  Options
	lock  *os.File
	mark  *mark
	holes holeList // ranges reported lost, kept so a later Open does not count them again

	mu       sync.Mutex
	closed   bool
	segs     []*segment // oldest first; the write segment, if any, is last
	w        *os.File   // write segment, nil until the next Append creates one
	rf       *os.File   // read handle on segs[0]
	roff     int64      // offset of the oldest unconsumed record in segs[0]
	nextSeq  uint64
	acked    uint64 // highest consumed seq
	ack      *os.File
	ackN     int // entries in the ack log
	depth    int
	bytes    int64
	overflow uint64
	unsynced int
	lastSeg  string // newest record: file and offset, for Last
	lastOff  int64
	damage   []Damage // found after Open, for TakeDamage
	buf      []byte
	rbuf     []byte // reads of the head segment (head)
}

// Open opens or creates the spool in dir. Damage found in its files is
// repaired (good records kept, the rest cut out) and returned: the spool is
// usable whenever err is nil. Only one process may have a spool open.
func Open(dir string, opts Options) (*Spool, []Damage, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("spool: %s is in use by another process (flock: %w)", dir, err)
	}
	s := &Spool{dir: dir, opts: opts, lock: lock}
	damage, err := s.load()
	if err != nil {
		s.closeFiles()
		return nil, nil, err
	}
	return s, damage, nil
}

// Ack log: fixed-size entries, the last valid one names the highest consumed seq.
const (
	ackMagic   = 0xACD51F00
	ackEntry   = 16
	ackCompact = 4096 // entries before the log is rewritten to one
)

func (s *Spool) load() ([]Damage, error) {
	logAcked, logFound, err := readAckLog(filepath.Join(s.dir, "acked"))
	if err != nil {
		return nil, err
	}
	m, markOK, err := openMark(s.dir)
	if err != nil {
		return nil, err
	}
	s.mark = m
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var files []named
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			os.Remove(filepath.Join(s.dir, name)) // an interrupted repair or compaction
			continue
		}
		base, ok := strings.CutSuffix(name, ".seg")
		if !ok {
			continue
		}
		first, err := strconv.ParseUint(base, 10, 64)
		if err != nil {
			continue
		}
		files = append(files, named{first, filepath.Join(s.dir, name)})
	}
	slices.SortFunc(files, func(a, b named) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})

	var firstSeg uint64
	if len(files) > 0 {
		firstSeg = files[0].first
	}
	holes, err := readHoles(s.dir)
	if err != nil {
		return nil, err
	}
	g := &gaps{pending: -1, holes: holes}
	defer func() { s.holes = g.holes }()
	s.acked, g.damage = s.chooseAcked(logAcked, logFound, markOK, firstSeg, len(files) > 0)
	g.seen = s.acked
	last, prev := s.acked, uint64(0)
	for _, f := range files {
		sc, err := s.loadSegment(f.path, prev, g)
		if err != nil {
			return nil, err
		}
		prev = max(prev, sc.lastSeq)
		if sc.lastSeq > last {
			last = sc.lastSeq
			s.lastSeg, s.lastOff = f.path, sc.lastOff
		}
		if sc.seg.recs == 0 {
			// Fully consumed; an empty spool starts a fresh segment on the next Append.
			if err := os.Remove(f.path); err != nil {
				return nil, fmt.Errorf("spool: remove consumed segment: %w", err)
			}
			continue
		}
		if len(s.segs) == 0 {
			s.roff = sc.firstUnacked
		}
		s.segs = append(s.segs, sc.seg)
		s.depth += sc.seg.recs
		s.bytes += sc.seg.bytes
	}
	if markOK {
		g.end(m.last.Load(), s.dir, files)
	}
	g.settleTorn()
	damage := g.damage
	s.nextSeq = max(last, g.seen) + 1 // never reuse the number of a lost record
	if s.depth == 0 {
		s.lastSeg = ""
	}
	m.set(s.nextSeq-1, s.acked)
	if err := m.sync(); err != nil {
		return nil, err
	}
	if err := g.saveHoles(s.dir, s.acked); err != nil {
		return nil, err
	}
	// Rewrite the ack log as one entry; that also drops a torn last entry.
	if err := s.rewriteAckLog(); err != nil {
		return nil, err
	}
	if len(s.segs) > 0 {
		if err := s.openReader(); err != nil {
			return nil, err
		}
		tail := s.segs[len(s.segs)-1]
		if tail.size < s.opts.SegmentBytes {
			w, err := os.OpenFile(tail.path, os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				return nil, fmt.Errorf("spool: %w", err)
			}
			s.w = w
		}
	}
	return damage, syncDir(s.dir)
}

type scanned struct {
	seg          *segment
	firstUnacked int64 // offset of the first record past the acked seq
	lastSeq      uint64
	lastOff      int64
}

var magicBytes = binary.LittleEndian.AppendUint32(nil, recMagic)

// loadSegment checks every record of one segment, rewrites the file without
// the damaged bytes if there are any, and counts the records past the acked seq.
func (s *Spool) loadSegment(path string, prev uint64, g *gaps) (scanned, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return scanned{}, fmt.Errorf("spool: %w", err)
	}
	sc := scanned{seg: &segment{path: path}, firstUnacked: -1}
	var kept []byte // the good records, only built once damage is seen
	var damaged bool
	off := 0
	for off < len(b) {
		rec, n, derr := Decode(b[off:])
		if derr == nil && rec.Seq <= prev {
			derr = fmt.Errorf("record seq %d does not follow %d", rec.Seq, prev)
		}
		if derr == nil {
			pos := int64(off)
			if damaged {
				pos = int64(len(kept))
				kept = append(kept, b[off:off+n]...)
			}
			g.record(rec.Seq, path, pos)
			prev, sc.lastSeq, sc.lastOff = rec.Seq, rec.Seq, pos
			if rec.Seq > s.acked {
				if sc.seg.recs == 0 {
					sc.firstUnacked = pos
				}
				sc.seg.recs++
				sc.seg.bytes += int64(n)
			}
			off += n
			continue
		}
		if !damaged {
			damaged = true
			kept = append([]byte(nil), b[:off]...)
		}
		// Resynchronise on the next record that decodes and keeps the order.
		next := len(b)
		for j := off + 1; j < len(b); {
			k := bytes.Index(b[j:], magicBytes)
			if k < 0 {
				break
			}
			j += k
			if r, _, e := Decode(b[j:]); e == nil && r.Seq > prev {
				next = j
				break
			}
			j++
		}
		g.damaged(Damage{
			File: path, Offset: int64(off), Bytes: int64(next - off),
			Reason: describe(derr, b[off:next], next == len(b)),
			torn:   errors.Is(derr, ErrShort) && next == len(b),
		})
		off = next
	}
	sc.seg.size = int64(len(b))
	if damaged {
		if err := replaceFile(path, kept); err != nil {
			return scanned{}, err
		}
		sc.seg.size = int64(len(kept))
	}
	return sc, nil
}

// describe says why bytes were discarded, in words an operator can act on.
func describe(err error, b []byte, atEnd bool) string {
	switch {
	case errors.Is(err, ErrShort) && atEnd:
		need := headerLen
		if len(b) >= 8 {
			need += int(binary.LittleEndian.Uint32(b[4:]))
		}
		return fmt.Sprintf("torn tail: record cut short (%d of %d bytes written; the process died mid-write)", len(b), need)
	case errors.Is(err, ErrMagic):
		return "no record header (overwritten or foreign bytes)"
	case errors.Is(err, ErrChecksum):
		return "record checksum mismatch (corrupted on disk)"
	default:
		return err.Error()
	}
}

// replaceFile atomically replaces path with data.
func replaceFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: rewrite %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync %s: %w", dir, err)
	}
	return nil
}

// readAckLog returns the highest consumed seq the log names; found is false
// when there is no log.
func readAckLog(path string) (acked uint64, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("spool: %w", err)
	}
	for off := 0; off+ackEntry <= len(b); off += ackEntry {
		e := b[off : off+ackEntry]
		if binary.LittleEndian.Uint32(e) != ackMagic {
			continue
		}
		if checksum(e[4:12], nil) != binary.LittleEndian.Uint32(e[12:]) {
			continue
		}
		acked = max(acked, binary.LittleEndian.Uint64(e[4:]))
	}
	return acked, true, nil
}

func ackBytes(seq uint64) []byte {
	e := make([]byte, ackEntry)
	binary.LittleEndian.PutUint32(e, ackMagic)
	binary.LittleEndian.PutUint64(e[4:], seq)
	binary.LittleEndian.PutUint32(e[12:], checksum(e[4:12], nil))
	return e
}

func (s *Spool) rewriteAckLog() error {
	path := filepath.Join(s.dir, "acked")
	if s.ack != nil {
		s.ack.Close()
		s.ack = nil
	}
	if err := replaceFile(path, ackBytes(s.acked)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.ack, s.ackN = f, 1
	return nil
}

func (s *Spool) openReader() error {
	if s.rf != nil {
		s.rf.Close()
		s.rf = nil
	}
	if len(s.segs) == 0 {
		return nil
	}
	f, err := os.Open(s.segs[0].path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.rf = f
	return nil
}

// Append adds a record at the tail. When the spool is full the record is
// refused with ErrFull and counted in Overflow. With the default SyncEvery the
// record is on stable storage when Append returns.
func (s *Spool) Append(payload []byte) error { return s.append(payload, false, false) }

// AppendOver is Append past MaxRecords and MaxBytes: for a record the caller
// may already have delivered (sent, not acknowledged), which must be neither
// dropped nor counted lost. The caller bounds how far it goes past.
func (s *Spool) AppendOver(payload []byte) error { return s.append(payload, true, false) }

// AppendBuffered is Append (or, with over, AppendOver) without waiting for
// stable storage, whatever SyncEvery says: the record survives a killed
// process (it is in the page cache) but not a power loss until the next Sync.
// It is for a burst spilled from memory, where an fsync per record would
// cost more than the burst.
func (s *Spool) AppendBuffered(payload []byte, over bool) error { return s.append(payload, over, true) }

func (s *Spool) append(payload []byte, over, buffered bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if len(payload) > MaxRecord {
		s.overflow++
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(payload))
	}
	n := int64(EncodedLen(len(payload)))
	if !over && (s.depth+1 > s.opts.MaxRecords || s.bytes+n > s.opts.MaxBytes) {
		s.overflow++
		return fmt.Errorf("%w: %d records, %d bytes (limits %d, %d)", ErrFull, s.depth, s.bytes, s.opts.MaxRecords, s.opts.MaxBytes)
	}
	tail := s.tail()
	if s.w == nil || (tail.size > 0 && tail.size+n > s.opts.SegmentBytes) {
		if err := s.rotate(); err != nil {
			return err
		}
		tail = s.tail()
	}
	s.buf = AppendRecord(s.buf[:0], s.nextSeq, payload)
	if _, err := s.w.Write(s.buf); err != nil {
		// Cut off whatever part of the record reached the file, so the next
		// record does not land behind a torn one.
		if terr := s.w.Truncate(tail.size); terr != nil {
			err = fmt.Errorf("%w (and truncating the partial record failed: %v)", err, terr)
		}
		return fmt.Errorf("spool: append to %s: %w", tail.path, err)
	}
	s.unsynced++
	if !buffered && s.opts.SyncEvery >= 0 && s.unsynced >= max(1, s.opts.SyncEvery) {
		if err := s.w.Sync(); err != nil {
			return fmt.Errorf("spool: fsync %s: %w", tail.path, err)
		}
		s.unsynced = 0
	}
	if s.depth == 0 && len(s.segs) == 1 {
		s.roff = tail.size
	}
	s.mark.set(s.nextSeq, s.acked)
	s.lastSeg, s.lastOff = tail.path, tail.size
	tail.size += n
	tail.recs++
	tail.bytes += n
	s.depth++
	s.bytes += n
	s.nextSeq++
	return nil
}

// AppendN appends payloads in order with one write per segment, and
// returns how many it appended: all of them, or those before the first the
// spool refused (full, too large: counted in Overflow, and the error says
// why). With durable set they are on stable storage when it returns;
// otherwise they are in the page cache, which a killed process does not
// lose, until the next Sync (a power loss can lose them). A publisher that
// logs every finding here before sending it uses durable=false while the
// server acknowledges within milliseconds.
func (s *Spool) AppendN(payloads [][]byte, durable bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	done := 0
	var refused error
	for done < len(payloads) && refused == nil {
		// One chunk: the records that fit in the current segment.
		tail := s.tail()
		if s.w == nil || (tail.size > 0 && tail.size+int64(EncodedLen(len(payloads[done]))) > s.opts.SegmentBytes) {
			if err := s.rotate(); err != nil {
				return done, err
			}
			tail = s.tail()
		}
		s.buf = s.buf[:0]
		depth, size, k := s.depth, s.bytes, done
		var offs []int64
		for ; k < len(payloads); k++ {
			p := payloads[k]
			if len(p) > MaxRecord {
				s.overflow++
				refused = fmt.Errorf("%w: %d bytes", ErrTooLarge, len(p))
				break
			}
			n := int64(EncodedLen(len(p)))
			if depth+1 > s.opts.MaxRecords || size+n > s.opts.MaxBytes {
				s.overflow++
				refused = fmt.Errorf("%w: %d records, %d bytes (limits %d, %d)", ErrFull, depth, size, s.opts.MaxRecords, s.opts.MaxBytes)
				break
			}
			if len(s.buf) > 0 && tail.size+int64(len(s.buf))+n > s.opts.SegmentBytes {
				break // the next chunk starts a segment
			}
			offs = append(offs, tail.size+int64(len(s.buf)))
			s.buf = AppendRecord(s.buf, s.nextSeq+uint64(k-done), p)
			depth++
			size += n
		}
		if k == done {
			break
		}
		if _, err := s.w.Write(s.buf); err != nil {
			if terr := s.w.Truncate(tail.size); terr != nil {
				err = fmt.Errorf("%w (and truncating the partial records failed: %v)", err, terr)
			}
			return done, fmt.Errorf("spool: append to %s: %w", tail.path, err)
		}
		if s.depth == 0 && len(s.segs) == 1 {
			s.roff = tail.size
		}
		n := int64(len(s.buf))
		s.nextSeq += uint64(k - done)
		s.mark.set(s.nextSeq-1, s.acked)
		s.lastSeg, s.lastOff = tail.path, offs[len(offs)-1]
		tail.size += n
		tail.recs += k - done
		tail.bytes += n
		s.depth += k - done
		s.bytes += n
		s.unsynced += k - done
		done = k
	}
	if durable && s.unsynced > 0 && s.w != nil {
		if err := s.w.Sync(); err != nil {
			return done, fmt.Errorf("spool: fsync: %w", err)
		}
		s.unsynced = 0
	}
	return done, refused
}

func (s *Spool) tail() *segment {
	if len(s.segs) == 0 {
		return nil
	}
	return s.segs[len(s.segs)-1]
}

// rotate starts a new write segment named after the next seq.
func (s *Spool) rotate() error {
	if s.w != nil {
		if err := s.w.Sync(); err != nil {
			return fmt.Errorf("spool: fsync: %w", err)
		}
		s.w.Close()
		s.w = nil
		s.unsynced = 0
	}
	path := filepath.Join(s.dir, fmt.Sprintf("%020d.seg", s.nextSeq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: new segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.w = f
	s.segs = append(s.segs, &segment{path: path})
	if len(s.segs) == 1 {
		s.roff = 0
		if err := s.openReader(); err != nil {
			return err
		}
	}
	if len(s.segs) > 1 && s.segs[0].recs == 0 {
		return s.dropHead() // consumed while it was still written to
	}
	return nil
}

// Peek returns a copy of the oldest record without consuming it, or ErrEmpty.
func (s *Spool) Peek() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, _, err := s.peek()
	if err != nil {
		return nil, err
	}
	return rec.Payload, nil
}

// peek reads the record at the read cursor. Damage found here (the file
// changed under the spool) discards the rest of that segment and is kept for
// TakeDamage; peek then moves on to the next segment.
func (s *Spool) peek() (Record, int, error) {
	for {
		if s.closed {
			return Record{}, 0, ErrClosed
		}
		if s.depth == 0 {
			return Record{}, 0, ErrEmpty
		}
		seg := s.segs[0]
		var h [headerLen]byte
		_, err := s.rf.ReadAt(h[:], s.roff)
		var rec Record
		var n int
		if err == nil {
			l := binary.LittleEndian.Uint32(h[4:])
			if l > MaxRecord || s.roff+int64(headerLen)+int64(l) > seg.size {
				err = ErrShort
			} else {
				buf := make([]byte, headerLen+int(l))
				if _, err = s.rf.ReadAt(buf, s.roff); err == nil {
					rec, n, err = Decode(buf)
				}
			}
		}
		if err == nil && rec.Seq <= s.acked {
			err = fmt.Errorf("record seq %d does not follow %d", rec.Seq, s.acked)
		}
		if err == nil {
			return rec, n, nil
		}
		if errors.Is(err, io.EOF) {
			err = ErrShort
		}
		s.damage = append(s.damage, Damage{File: seg.path, Offset: s.roff, Bytes: seg.size - s.roff,
			Records: seg.recs, Reason: "while reading: " + describe(err, nil, false)})
		// Reported now: the next Open must not count these records again.
		last := s.nextSeq - 1
		if len(s.segs) > 1 {
			last = segFirst(s.segs[1].path) - 1
		}
		if herr := s.holes.add(s.dir, s.acked+1, last); herr != nil {
			return Record{}, 0, herr
		}
		s.depth -= seg.recs
		s.bytes -= seg.bytes
		seg.recs, seg.bytes = 0, 0
		if err := s.dropHead(); err != nil {
			return Record{}, 0, err
		}
	}
}

// dropHead removes the oldest segment once nothing in it is left to read.
func (s *Spool) dropHead() error {
	seg := s.segs[0]
	if len(s.segs) == 1 && s.w != nil {
		s.w.Close()
		s.w = nil
		s.unsynced = 0
	}
	s.rf.Close()
	s.rf = nil
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: remove consumed segment: %w", err)
	}
	s.segs = s.segs[1:]
	s.roff = 0
	if s.lastSeg == seg.path {
		s.lastSeg = ""
	}
	return s.openReader()
}

// Ack consumes the oldest record (the one Peek returns).
func (s *Spool) Ack() error { return s.AckN(1) }

// maxChunk bounds one read of the head segment in PeekN and AckN.
const maxChunk = 4 << 20

// head decodes up to n records at the read cursor, all from the oldest
// segment, with one read. It returns at least one record unless the spool is
// empty or failing. The records alias s.rbuf until the next call.
func (s *Spool) head(n int) ([]Record, []int, error) {
	first, size, err := s.peek() // also clears damage at the cursor
	if err != nil {
		return nil, nil, err
	}
	recs, sizes := []Record{first}, []int{size}
	seg := s.segs[0]
	if n <= 1 || seg.recs <= 1 {
		return recs, sizes, nil
	}
	// Read about what n records of the segment's average size take (twice
	// that, for records larger than average): acking a few records must
	// not read the whole segment. Fewer decoded is fine: callers loop.
	chunk := min(seg.bytes, maxChunk, 2*int64(n)*(seg.bytes/int64(seg.recs)+1))
	if int64(size) >= chunk {
		return recs, sizes, nil
	}
	// Reused: the records returned alias it until the next call, and
	// PeekN copies their payloads out (AckN reads one read of a few
	// hundred kilobytes per call, once per 256 findings sent).
	if int64(cap(s.rbuf)) < chunk {
		s.rbuf = make([]byte, chunk)
	}
	buf := s.rbuf[:chunk]
	if _, err := s.rf.ReadAt(buf, s.roff); err != nil && !errors.Is(err, io.EOF) {
		return recs, sizes, nil
	}
	off, prev := size, first.Seq
	for len(recs) < n && len(recs) < seg.recs {
		r, k, err := Decode(buf[off:])
		if err != nil || r.Seq <= prev {
			break // cut by the chunk, or damage: a later peek reports it
		}
		recs, sizes = append(recs, r), append(sizes, k)
		off, prev = off+k, r.Seq
	}
	return recs, sizes, nil
}

// PeekN returns copies of up to n of the oldest records without consuming
// them (fewer when they span segments), or ErrEmpty.
func (s *Spool) PeekN(n int) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, _, err := s.head(n)
	if err != nil {
		return nil, err
	}
	// One copy for all of them: a finding's payload lives as long as its
	// batch, one allocation instead of one each.
	total := 0
	for _, r := range recs {
		total += len(r.Payload)
	}
	all := make([]byte, 0, total)
	out := make([][]byte, len(recs))
	for i, r := range recs {
		all = append(all, r.Payload...)
		out[i] = all[len(all)-len(r.Payload) : len(all) : len(all)]
	}
	return out, nil
}

// AckN consumes the n oldest records.
func (s *Spool) AckN(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n > 0 {
		recs, sizes, err := s.head(n)
		if err != nil {
			return err
		}
		last := recs[len(recs)-1].Seq
		// The mark moves first: a kill between the two leaves the log behind
		// it (records sent again, dropped as duplicates), never ahead of it,
		// which Open would refuse as a forged ack.
		s.mark.set(s.nextSeq-1, last)
		// One entry names the highest consumed seq: it covers the ones before.
		if _, err := s.ack.Write(ackBytes(last)); err != nil {
			return fmt.Errorf("spool: write ack log: %w", err)
		}
		s.ackN++
		s.acked = last
		var total int64
		for _, k := range sizes {
			total += int64(k)
		}
		seg := s.segs[0]
		seg.recs -= len(recs)
		seg.bytes -= total
		s.depth -= len(recs)
		s.bytes -= total
		s.roff += total
		n -= len(recs)
		// A consumed segment that is also the one written to stays, to be
		// written on: a new file (and a directory fsync) per emptied spool
		// would cost more than the finding. rotate drops it later.
		if seg.recs == 0 && len(s.segs) > 1 {
			if err := s.dropHead(); err != nil {
				return err
			}
		}
		if s.ackN >= ackCompact {
			if err := s.rewriteAckLog(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Last returns a copy of the newest unconsumed record, or ErrEmpty.
func (s *Spool) Last() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.depth == 0 || s.lastSeg == "" {
		return nil, ErrEmpty
	}
	f, err := os.Open(s.lastSeg)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	var h [headerLen]byte
	if _, err := f.ReadAt(h[:], s.lastOff); err != nil {
		return nil, fmt.Errorf("spool: read newest record: %w", err)
	}
	l := binary.LittleEndian.Uint32(h[4:])
	if l > MaxRecord {
		return nil, fmt.Errorf("spool: read newest record: %w", ErrLength)
	}
	buf := make([]byte, headerLen+int(l))
	if _, err := f.ReadAt(buf, s.lastOff); err != nil {
		return nil, fmt.Errorf("spool: read newest record: %w", err)
	}
	rec, _, err := Decode(buf)
	if err != nil {
		return nil, fmt.Errorf("spool: read newest record: %w", err)
	}
	return rec.Payload, nil
}

// Room reports whether a record of n payload bytes would be taken now.
func (s *Spool) Room(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.depth+1 <= s.opts.MaxRecords && s.bytes+int64(EncodedLen(n)) <= s.opts.MaxBytes
}

// Depth is the number of records waiting.
func (s *Spool) Depth() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.depth
}

// Bytes is the size of the records waiting, headers included.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Overflow counts records refused since Open because the spool was full or
// the record too large.
func (s *Spool) Overflow() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.overflow
}

// Dir is the spool directory; the publisher keeps its sequence file there.
func (s *Spool) Dir() string { return s.dir }

// Damaged reports whether damage found while reading waits for TakeDamage.
func (s *Spool) Damaged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.damage) > 0
}

// TakeDamage returns damage found after Open (while reading) and forgets it.
func (s *Spool) TakeDamage() []Damage {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.damage
	s.damage = nil
	return d
}

// Sync forces appended records and acks to stable storage.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.sync()
}

func (s *Spool) sync() error {
	if s.w != nil && s.unsynced > 0 {
		if err := s.w.Sync(); err != nil {
			return fmt.Errorf("spool: fsync: %w", err)
		}
		s.unsynced = 0
	}
	if s.ack != nil {
		if err := s.ack.Sync(); err != nil {
			return fmt.Errorf("spool: fsync ack log: %w", err)
		}
	}
	if s.mark != nil {
		return s.mark.sync()
	}
	return nil
}

// Close syncs and closes the spool and releases the directory.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	err := s.sync()
	s.closed = true
	s.closeFiles()
	return err
}

func (s *Spool) closeFiles() {
	for _, f := range []*os.File{s.w, s.rf, s.ack, s.lock} {
		if f != nil {
			f.Close()
		}
	}
	s.w, s.rf, s.ack, s.lock = nil, nil, nil, nil
	if s.mark != nil {
		s.mark.close()
		s.mark = nil
	}
}
