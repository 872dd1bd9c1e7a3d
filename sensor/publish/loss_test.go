package publish

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/spool"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// lossBook reads a host's findings in the stream: the distinct seqs
// delivered and the sum of the loss reports' counts.
type lossBook struct {
	delivered map[uint64]bool
	reported  uint64 // sum of LostRecords of the delivered loss reports
	lastTotal uint64 // LostTotal of the last one
	reports   int
}

func readLossBook(t *testing.T, url, host string) lossBook {
	t.Helper()
	b := lossBook{delivered: map[uint64]bool{}}
	for _, ev := range streamFindings(t, connect(t, url), host) {
		if b.delivered[ev.Seq] {
			continue // a resend the stream kept: counted once
		}
		b.delivered[ev.Seq] = true
		if ev.Kind == event.KindSensor && (ev.Action == ActionSpoolOverflow || ev.Action == ActionSpoolDamage) {
			b.reported += ev.Health.LostRecords
			b.lastTotal = ev.Health.LostTotal
			b.reports++
		}
	}
	return b
}

// TestLossAddsUp is a property test: storms of findings into a tiny spool
// while the server stops and comes back, at random points. Whatever was
// refused, every finding numbered is either in the stream or counted in a
// loss report that is: made = delivered + reported lost, exactly.
func TestLossAddsUp(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4, 5, 6} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 13))
			ts := startTestServer(t, true)
			sp := openSpool(t, t.TempDir(), spool.Options{MaxRecords: 8 + rng.IntN(24)})
			p, err := New(context.Background(), transport.Options{URL: ts.url, AckTimeout: 300 * time.Millisecond, ReconnectWait: 10 * time.Millisecond}, "storm", sp, testLog())
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			p.SetBackend("tracepoint")

			var wg sync.WaitGroup
			stop := make(chan struct{})
			made := 0
			wg.Add(1)
			go func() { // the storm: single findings and bursts (acked, or queued: the daemon's path), without pause
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if i%3 != 2 {
						evs := make([]*event.Event, 1+i%50)
						for k := range evs {
							evs[k] = finding(made + k)
						}
						if i%3 == 0 {
							p.PublishBatch(evs)
						} else {
							p.Enqueue(evs, nil)
						}
						made += len(evs)
					} else {
						p.Publish(finding(made))
						made++
					}
				}
			}()
			for range 5 {
				// Up for a while: the spool drains, findings go straight out.
				pub := p.Counters().Published + uint64(100+rng.IntN(2000))
				testenv.EventuallyWithin(t, "findings published with the server up", guard, func() bool { return p.Counters().Published > pub })
				// Down while findings keep coming: the spool fills and refuses.
				ts.stop()
				before := p.Counters().SpoolOverflow
				testenv.EventuallyWithin(t, "the spool to overflow", guard, func() bool { return p.Counters().SpoolOverflow > before+uint64(rng.IntN(200)) })
				ts.restart(t)
				testenv.EventuallyWithin(t, "the publisher to be back", guard, func() bool { return p.Transport() == event.TransportJetStream })
			}
			close(stop)
			wg.Wait()
			// One more finding after the storm: it follows the last report.
			if err := p.Publish(finding(made)); err != nil {
				t.Logf("last finding: %v", err)
			}
			made++
			testenv.EventuallyWithin(t, "the spool to drain and every loss to be reported", guard, func() bool {
				c := p.Counters()
				return c.SpoolDepth == 0 && c.Queued == 0 && p.LostReported() == c.SpoolOverflow
			})

			c := p.Counters()
			b := readLossBook(t, ts.url, "storm")
			t.Logf("made %d findings + %d loss reports = seq %d; delivered %d, reported lost %d in %d reports (overflow counter %d)",
				made, c.Seq-uint64(made), c.Seq, len(b.delivered), b.reported, b.reports, c.SpoolOverflow)
			if c.SpoolOverflow == 0 || b.reports == 0 {
				t.Fatalf("no finding was lost (%d) or reported (%d): the storm did not test anything", c.SpoolOverflow, b.reports)
			}
			if uint64(len(b.delivered))+b.reported != c.Seq {
				t.Fatalf("made %d != delivered %d + reported lost %d", c.Seq, len(b.delivered), b.reported)
			}
			if b.reported != c.SpoolOverflow || b.lastTotal != b.reported {
				t.Fatalf("reports add up to %d (last total %d); the publisher lost %d", b.reported, b.lastTotal, c.SpoolOverflow)
			}
			if !b.delivered[c.Seq] {
				t.Fatalf("the last finding (seq %d), made with the server up, is not in the stream", c.Seq)
			}
		})
	}
}

// TestSpoolDamageReportedExactly: a spool cut short while the sensor was
// down is reported at the next start with the exact count, and the
// findings that survived plus the count are what was waiting.
func TestSpoolDamageReportedExactly(t *testing.T) {
	ts := startTestServer(t, true)
	dir := t.TempDir()
	ts.stop()
	sp, _, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(context.Background(), transport.Options{URL: ts.url, ReconnectWait: 10 * time.Millisecond}, "cut", sp, testLog())
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		if err := p.Publish(finding(i)); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	sp.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	st, _ := os.Stat(segs[0])
	os.Truncate(segs[0], st.Size()*6/10) // the 60 %

	sp, damage, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	kept := sp.Depth()
	ts.restart(t)
	p, err = New(context.Background(), transport.Options{URL: ts.url, ReconnectWait: 10 * time.Millisecond}, "cut", sp, testLog())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.ReportSpoolDamage(damage)
	testenv.EventuallyWithin(t, "the spool to drain", guard, func() bool { return p.Counters().SpoolDepth == 0 && p.LostReported() == n-uint64(kept) })
	b := readLossBook(t, ts.url, "cut")
	if b.reports != 1 || b.reported != n-uint64(kept) || len(b.delivered) != kept+1 {
		t.Fatalf("%d reports of %d lost, %d delivered; want 1 report of %d lost and %d findings + the report", b.reports, b.reported, len(b.delivered), n-kept, kept)
	}
	t.Logf("kept %d of %d; reported %d lost", kept, n, b.reported)
}
