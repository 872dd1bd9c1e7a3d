package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func rec(i int) []byte { return fmt.Appendf(nil, "record-%04d-%s", i, bytes.Repeat([]byte{'x'}, i%37)) }

func mustOpen(t *testing.T, dir string, opts Options) (*Spool, []Damage) {
	t.Helper()
	s, d, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s, d
}

func appendN(t *testing.T, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
	}
}

// drain consumes everything and returns it in the order read.
func drain(t *testing.T, s *Spool) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		p, err := s.Peek()
		if errors.Is(err, ErrEmpty) {
			return out
		}
		if err != nil {
			t.Fatalf("Peek: %v", err)
		}
		if err := s.Ack(); err != nil {
			t.Fatalf("Ack: %v", err)
		}
		out = append(out, p)
	}
}

func wantRecords(t *testing.T, got [][]byte, idx ...int) {
	t.Helper()
	if len(got) != len(idx) {
		t.Fatalf("got %d records, want %d", len(got), len(idx))
	}
	for k, i := range idx {
		if !bytes.Equal(got[k], rec(i)) {
			t.Fatalf("record %d = %q, want %q", k, got[k], rec(i))
		}
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestOrderAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, Options{SegmentBytes: 256})
	defer s.Close()
	appendN(t, s, 0, 100)
	if n := len(segFiles(t, dir)); n < 5 {
		t.Fatalf("%d segment files, want several with SegmentBytes=256", n)
	}
	if s.Depth() != 100 {
		t.Fatalf("Depth = %d, want 100", s.Depth())
	}
	last, err := s.Last()
	if err != nil || !bytes.Equal(last, rec(99)) {
		t.Fatalf("Last = %q, %v; want %q", last, err, rec(99))
	}
	wantRecords(t, drain(t, s), seq(0, 100)...)
	if s.Depth() != 0 || s.Bytes() != 0 {
		t.Fatalf("after drain: Depth %d, Bytes %d; want 0, 0", s.Depth(), s.Bytes())
	}
	// The segment being written stays, consumed, to be written on; every
	// other consumed one is gone.
	if f := segFiles(t, dir); len(f) != 1 {
		t.Fatalf("segments on disk after a full drain: %v, want only the one written to", f)
	}
	// Appending after a full drain keeps going, and the next segment
	// replaces the consumed one.
	appendN(t, s, 100, 103)
	wantRecords(t, drain(t, s), 100, 101, 102)
	appendN(t, s, 103, 110)
	wantRecords(t, drain(t, s), seq(103, 110)...)
	if f := segFiles(t, dir); len(f) != 1 {
		t.Fatalf("segments on disk: %v, want only the one written to", f)
	}
	s.Close()
	s, _ = mustOpen(t, dir, Options{SegmentBytes: 256})
	defer s.Close()
	if s.Depth() != 0 || len(segFiles(t, dir)) != 0 {
		t.Fatalf("reopened a drained spool: depth %d, segments %v; want 0 and none", s.Depth(), segFiles(t, dir))
	}
}

func TestReopenKeepsUnackedOnly(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, Options{SegmentBytes: 300})
	appendN(t, s, 0, 50)
	for range 20 {
		if _, err := s.Peek(); err != nil {
			t.Fatal(err)
		}
		if err := s.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, d := mustOpen(t, dir, Options{SegmentBytes: 300})
	if len(d) != 0 {
		t.Fatalf("clean reopen reported damage: %v", d)
	}
	if s.Depth() != 30 {
		t.Fatalf("Depth after reopen = %d, want 30", s.Depth())
	}
	appendN(t, s, 50, 60)
	s.Close()

	s, _ = mustOpen(t, dir, Options{SegmentBytes: 300})
	defer s.Close()
	wantRecords(t, drain(t, s), seq(20, 60)...)
}

func TestSecondOpenRefused(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, Options{})
	defer s.Close()
	if _, _, err := Open(dir, Options{}); err == nil {
		t.Fatal("second Open of the same directory succeeded; two writers would interleave records")
	}
}

func TestTornTail(t *testing.T) {
	for _, cut := range []int{1, headerLen - 3, headerLen, headerLen + 5} {
		t.Run(fmt.Sprint("cut", cut), func(t *testing.T) {
			dir := t.TempDir()
			s, _ := mustOpen(t, dir, Options{})
			appendN(t, s, 0, 10)
			s.Close()
			// A kill mid-write leaves the start of the next record.
			f := segFiles(t, dir)[0]
			torn := AppendRecord(nil, 11, rec(10))[:cut]
			fh, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			fh.Write(torn)
			fh.Close()

			s, d := mustOpen(t, dir, Options{})
			if len(d) != 1 || d[0].Bytes != int64(cut) || d[0].Records != 1 {
				t.Fatalf("damage = %v, want one torn record of %d bytes", d, cut)
			}
			// The repaired file takes new records after the good ones.
			appendN(t, s, 10, 12)
			s.Close()
			s, d = mustOpen(t, dir, Options{})
			defer s.Close()
			if len(d) != 0 {
				t.Fatalf("damage reported again after repair: %v", d)
			}
			wantRecords(t, drain(t, s), seq(0, 12)...)
		})
	}
}

func TestFlippedByteInTheMiddle(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, Options{})
	appendN(t, s, 0, 20)
	s.Close()
	f := segFiles(t, dir)[0]
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	// Flip one payload byte of record 7.
	off := 0
	for i := range 7 {
		off += EncodedLen(len(rec(i)))
	}
	b[off+headerLen+3] ^= 0x40
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}

	s, d := mustOpen(t, dir, Options{})
	defer s.Close()
	if len(d) != 1 {
		t.Fatalf("damage = %v, want one report", d)
	}
	if d[0].Offset != int64(off) || d[0].Records != 1 || d[0].Bytes != int64(EncodedLen(len(rec(7)))) {
		t.Fatalf("damage = %+v, want record 7 at offset %d", d[0], off)
	}
	t.Logf("reported: %v", d[0])
	want := append(seq(0, 7), seq(8, 20)...)
	wantRecords(t, drain(t, s), want...)
}

func TestGarbageHeaderKeepsRecordsBefore(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, Options{})
	appendN(t, s, 0, 5)
	s.Close()
	f := segFiles(t, dir)[0]
	fh, _ := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0)
	fh.Write(bytes.Repeat([]byte{0xEE}, 100))
	fh.Close()
	s, d := mustOpen(t, dir, Options{})
	defer s.Close()
	if len(d) != 1 || d[0].Bytes != 100 {
		t.Fatalf("damage = %v, want 100 bytes", d)
	}
	wantRecords(t, drain(t, s), seq(0, 5)...)
}

func TestOverflow(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, Options{MaxRecords: 5})
	defer s.Close()
	appendN(t, s, 0, 5)
	for i := 5; i < 8; i++ {
		if err := s.Append(rec(i)); !errors.Is(err, ErrFull) {
			t.Fatalf("Append past MaxRecords: err = %v, want ErrFull", err)
		}
	}
	if s.Overflow() != 3 || s.Depth() != 5 {
		t.Fatalf("Overflow %d, Depth %d; want 3, 5", s.Overflow(), s.Depth())
	}
	// Consuming makes room again; refused records stay refused.
	s.Peek()
	s.Ack()
	appendN(t, s, 8, 9)
	wantRecords(t, drain(t, s), 1, 2, 3, 4, 8)

	s2, _ := mustOpen(t, t.TempDir(), Options{MaxBytes: int64(3 * EncodedLen(100))})
	defer s2.Close()
	p := bytes.Repeat([]byte{1}, 100)
	for range 3 {
		if err := s2.Append(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s2.Append(p); !errors.Is(err, ErrFull) || s2.Overflow() != 1 {
		t.Fatalf("Append past MaxBytes: err %v, Overflow %d; want ErrFull, 1", err, s2.Overflow())
	}
}

func TestBatchedSync(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, Options{SyncEvery: 64})
	appendN(t, s, 0, 100)
	// Close without Sync's help is what a kill looks like to the file: the
	// records are in the page cache and must read back.
	s.closeFiles()
	s, _ = mustOpen(t, dir, Options{SyncEvery: -1})
	defer s.Close()
	wantRecords(t, drain(t, s), seq(0, 100)...)
}

func TestDecodeRoundTrip(t *testing.T) {
	b := AppendRecord(nil, 42, []byte("hello"))
	r, n, err := Decode(b)
	if err != nil || n != len(b) || r.Seq != 42 || string(r.Payload) != "hello" {
		t.Fatalf("Decode = %+v, %d, %v", r, n, err)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 1
		if _, _, err := Decode(c); err == nil {
			t.Fatalf("flipping bit 0 of byte %d went unnoticed", i)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(AppendRecord(nil, 1, []byte("a finding")))
	f.Add(AppendRecord(nil, 1<<60, nil))
	f.Add(AppendRecord(AppendRecord(nil, 1, []byte("x")), 2, []byte("y"))[:30])
	f.Add([]byte{0x5c, 0x7a, 0x1f, 0xd5, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := Decode(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with size %d", err, n)
			}
			return
		}
		if n < headerLen || n > len(b) || len(r.Payload) != n-headerLen {
			t.Fatalf("size %d, payload %d, input %d", n, len(r.Payload), len(b))
		}
		if again := AppendRecord(nil, r.Seq, r.Payload); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
		// A record cut short is refused, never read as a shorter one.
		if _, m, err := Decode(b[:n-1]); err == nil {
			t.Fatalf("a %d-byte record cut to %d bytes decoded as %d bytes", n, n-1, m)
		}
	})
}

// Every single-byte corruption loses exactly the record it hits, is reported,
// and leaves the records around it readable in order.
func TestEveryFlippedByteLosesOnlyItsRecord(t *testing.T) {
	base := t.TempDir()
	s, _ := mustOpen(t, base, Options{})
	appendN(t, s, 0, 6)
	s.Close()
	orig, err := os.ReadFile(segFiles(t, base)[0])
	if err != nil {
		t.Fatal(err)
	}
	var starts []int
	for i, off := 0, 0; i < 6; i++ {
		starts = append(starts, off)
		off += EncodedLen(len(rec(i)))
	}
	for pos := range orig {
		hit := 0
		for i, st := range starts {
			if pos >= st {
				hit = i
			}
		}
		dir := t.TempDir()
		b := bytes.Clone(orig)
		b[pos] ^= 0x81
		os.WriteFile(filepath.Join(dir, filepath.Base(segFiles(t, base)[0])), b, 0o600)
		s, d := mustOpen(t, dir, Options{})
		if len(d) == 0 {
			t.Fatalf("byte %d flipped: no damage reported", pos)
		}
		var want []int
		for i := range 6 {
			if i != hit {
				want = append(want, i)
			}
		}
		got := drain(t, s)
		s.Close()
		// A corrupted length field can hide the records the bogus length
		// spans only if they fail to resynchronise; they must not.
		if len(got) != len(want) {
			t.Fatalf("byte %d (record %d) flipped: kept %d records, want %d; damage %v", pos, hit, len(got), len(want), d)
		}
		wantRecords(t, got, want...)
	}
}

func TestDamageFoundWhileReading(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, Options{SegmentBytes: 200})
	defer s.Close()
	appendN(t, s, 0, 12)
	files := segFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("want at least 3 segments, got %d", len(files))
	}
	// Corrupt the second segment behind the spool's back.
	b, _ := os.ReadFile(files[1])
	b[headerLen+1] ^= 1
	os.WriteFile(files[1], b, 0o600)

	got := drain(t, s)
	d := s.TakeDamage()
	if len(d) != 1 || d[0].File != files[1] {
		t.Fatalf("damage = %v, want one report on %s", d, files[1])
	}
	if len(got)+d[0].Records != 12 {
		t.Fatalf("read %d + lost %d records, want 12 in all", len(got), d[0].Records)
	}
	if s.Depth() != 0 {
		t.Fatalf("Depth = %d after drain", s.Depth())
	}
}

func TestPeekNAckN(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, Options{SegmentBytes: 400})
	appendN(t, s, 0, 40)
	var got [][]byte
	for s.Depth() > 0 {
		batch, err := s.PeekN(7)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 || len(batch) > 7 {
			t.Fatalf("PeekN(7) returned %d records", len(batch))
		}
		// Consume only part of the batch: the rest must come again.
		k := (len(batch) + 1) / 2
		if err := s.AckN(k); err != nil {
			t.Fatal(err)
		}
		got = append(got, batch[:k]...)
	}
	wantRecords(t, got, seq(0, 40)...)
	if _, err := s.PeekN(3); !errors.Is(err, ErrEmpty) {
		t.Fatalf("PeekN on empty: %v", err)
	}

	// Acks survive a reopen.
	appendN(t, s, 40, 60)
	if err := s.AckN(12); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, _ = mustOpen(t, dir, Options{SegmentBytes: 400})
	defer s.Close()
	wantRecords(t, drain(t, s), seq(52, 60)...)
}

// AppendN writes a batch across segment boundaries in order, stops at the
// first record the spool refuses and counts exactly that one, and what it
// wrote without fsync survives a reopen (the page cache outlives the process).
func TestAppendNBatches(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, Options{SegmentBytes: 512, MaxRecords: 50})
	var batch [][]byte
	for i := range 40 {
		batch = append(batch, rec(i))
	}
	if n, err := s.AppendN(batch, false); n != 40 || err != nil {
		t.Fatalf("AppendN(40) = %d, %v", n, err)
	}
	batch = batch[:0]
	for i := 40; i < 60; i++ {
		batch = append(batch, rec(i))
	}
	n, err := s.AppendN(batch, true)
	if n != 10 || !errors.Is(err, ErrFull) || s.Overflow() != 1 || s.Depth() != 50 {
		t.Fatalf("AppendN past MaxRecords = %d, %v (overflow %d, depth %d), want 10, ErrFull, 1, 50", n, err, s.Overflow(), s.Depth())
	}
	if last, err := s.Last(); err != nil || !bytes.Equal(last, rec(49)) {
		t.Fatalf("Last = %q, %v; want %q", last, err, rec(49))
	}
	s.Close()
	s, _ = mustOpen(t, dir, Options{SegmentBytes: 512, MaxRecords: 50})
	defer s.Close()
	got := drain(t, s)
	if len(got) != 50 {
		t.Fatalf("read back %d records, want 50", len(got))
	}
	for i, g := range got {
		if !bytes.Equal(g, rec(i)) {
			t.Fatalf("record %d = %q, want %q", i, g, rec(i))
		}
	}
}

// TestPeekNCopies: PeekN's records are the caller's: a later read of the
// spool (which reuses its read buffer) does not change them, and appending
// to one does not write into the next.
func TestPeekNCopies(t *testing.T) {
	s, _ := mustOpen(t, t.TempDir(), Options{})
	defer s.Close()
	appendN(t, s, 0, 20)
	first, err := s.PeekN(10)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(first[0], "overwrite"...)
	if err := s.AckN(5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PeekN(10); err != nil {
		t.Fatal(err)
	}
	wantRecords(t, first, seq(0, 10)...)
}
