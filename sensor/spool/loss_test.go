package spool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seqsIn lists the seqs of the whole records at the start of b.
func seqsIn(b []byte) []uint64 {
	var out []uint64
	for len(b) > 0 {
		r, n, err := Decode(b)
		if err != nil {
			return out
		}
		out = append(out, r.Seq)
		b = b[n:]
	}
	return out
}

// TestTamperLossIsExact: whatever removes unconsumed records behind the
// spool's back (truncating a file, deleting a segment, a forged ack entry),
// the next Open reports exactly how many were lost, and what it keeps plus
// what it reports is every record that was waiting.
func TestTamperLossIsExact(t *testing.T) {
	const total, consumed = 200, 50
	cases := []struct {
		name    string
		segSize int64
		tamper  func(t *testing.T, dir string, segs []string) (lost int) // returns the records it removed, counted from the files
		reason  string
	}{
		{"one segment truncated at 60%", 1 << 20, func(t *testing.T, dir string, segs []string) int {
			return truncate(t, segs[0], 0.6, consumed)
		}, "missing at the end"},
		{"newest segment truncated at 60%", 1024, func(t *testing.T, dir string, segs []string) int {
			return truncate(t, segs[len(segs)-1], 0.6, consumed)
		}, "missing at the end"},
		{"middle segment truncated at 30%", 1024, func(t *testing.T, dir string, segs []string) int {
			return truncate(t, segs[len(segs)/2], 0.3, consumed)
		}, "cut short"},
		{"middle segment deleted", 1024, func(t *testing.T, dir string, segs []string) int {
			return remove(t, segs[len(segs)/2], consumed)
		}, "missing before this one"},
		{"oldest unconsumed segment deleted", 1024, func(t *testing.T, dir string, segs []string) int {
			return remove(t, segs[0], consumed)
		}, "missing before this one"},
		{"newest segment deleted", 1024, func(t *testing.T, dir string, segs []string) int {
			return remove(t, segs[len(segs)-1], consumed)
		}, "missing at the end"},
		{"every segment deleted", 1024, func(t *testing.T, dir string, segs []string) int {
			n := 0
			for _, s := range segs {
				n += remove(t, s, consumed)
			}
			return n
		}, "missing at the end"},
		{"forged ack entry", 1024, func(t *testing.T, dir string, segs []string) int {
			f, err := os.OpenFile(filepath.Join(dir, "acked"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.Write(ackBytes(total - 20)) // a well-formed entry claiming 130 more were sent
			return 0
		}, "forged or foreign ack entry, refused; records 51 to 180 are kept"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := mustOpen(t, dir, Options{SegmentBytes: c.segSize})
			appendN(t, s, 0, total)
			if err := s.AckN(consumed); err != nil {
				t.Fatal(err)
			}
			s.Close()
			lost := c.tamper(t, dir, segFiles(t, dir))

			s, damage := mustOpen(t, dir, Options{SegmentBytes: c.segSize})
			defer s.Close()
			reported := 0
			var why []string
			for _, d := range damage {
				reported += d.Records
				why = append(why, d.String())
			}
			if reported != lost {
				t.Fatalf("reported %d records lost, %d were removed; damage:\n%s", reported, lost, strings.Join(why, "\n"))
			}
			if !strings.Contains(strings.Join(why, "\n"), c.reason) {
				t.Errorf("damage %q does not say %q", why, c.reason)
			}
			kept := len(drain(t, s))
			if kept+reported != total-consumed {
				t.Fatalf("kept %d + reported lost %d != %d waiting", kept, reported, total-consumed)
			}
			// Reported once: the repaired spool opens clean, and new records
			// never reuse a lost record's number.
			appendN(t, s, total, total+1)
			s.Close()
			s, damage = mustOpen(t, dir, Options{SegmentBytes: c.segSize})
			defer s.Close()
			if len(damage) != 0 {
				t.Fatalf("damage reported again: %v", damage)
			}
			wantRecords(t, drain(t, s), total)
			t.Logf("lost %d: %s", lost, strings.Join(why, "; "))
		})
	}
}

// truncate cuts path to frac of its size and returns the unconsumed records
// (seq > consumed) that were whole before and are not after.
func truncate(t *testing.T, path string, frac float64, consumed uint64) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := int(float64(len(b)) * frac)
	if err := os.Truncate(path, int64(cut)); err != nil {
		t.Fatal(err)
	}
	return unconsumed(seqsIn(b), consumed) - unconsumed(seqsIn(b[:cut]), consumed)
}

func remove(t *testing.T, path string, consumed uint64) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	return unconsumed(seqsIn(b), consumed)
}

func unconsumed(seqs []uint64, consumed uint64) int {
	n := 0
	for _, s := range seqs {
		if s > consumed {
			n++
		}
	}
	return n
}

// TestDamageWhileReadingReportedOnce: records lost to damage found while
// reading are reported then, exactly, and not again by the next Open, even
// though the records after them are still waiting.
func TestDamageWhileReadingReportedOnce(t *testing.T) {
	dir := t.TempDir()
	s, _ := mustOpen(t, dir, Options{SegmentBytes: 200})
	appendN(t, s, 0, 12)
	files := segFiles(t, dir)
	b0, _ := os.ReadFile(files[0])
	first := len(seqsIn(b0))
	b, _ := os.ReadFile(files[1])
	lost := len(seqsIn(b))
	b[headerLen+1] ^= 1 // behind the spool's back, while it is open
	os.WriteFile(files[1], b, 0o600)
	if err := s.AckN(first); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Peek(); err != nil { // finds the damage, moves on to the third segment
		t.Fatal(err)
	}
	d := s.TakeDamage()
	if len(d) != 1 || d[0].Records != lost {
		t.Fatalf("damage %v; want %d lost in %s", d, lost, files[1])
	}
	s.Close()
	s, damage := mustOpen(t, dir, Options{SegmentBytes: 200})
	defer s.Close()
	if len(damage) != 0 {
		t.Fatalf("reported again at the next Open: %v", damage)
	}
	wantRecords(t, drain(t, s), seq(first+lost, 12)...)
}

// TestAppendOver: a record that may be delivered already passes the bounds
// and is neither refused nor counted in Overflow.
func TestAppendOver(t *testing.T) {
	s, _ := mustOpen(t, t.TempDir(), Options{MaxRecords: 2})
	defer s.Close()
	appendN(t, s, 0, 2)
	if err := s.Append(rec(2)); err == nil {
		t.Fatal("Append past MaxRecords succeeded")
	}
	if err := s.AppendOver(rec(3)); err != nil || s.Overflow() != 1 || s.Depth() != 3 {
		t.Fatalf("AppendOver: %v; overflow %d, depth %d; want nil, 1, 3", err, s.Overflow(), s.Depth())
	}
	wantRecords(t, drain(t, s), 0, 1, 3)
}
