package spool

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const helperEnv = "DRIFT_SPOOL_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(helperWriter(dir))
	}
	os.Exit(m.Run())
}

// helperWriter appends and consumes until killed, printing "A i" after record
// i is appended and "C n" after n records in all are consumed.
func helperWriter(dir string) int {
	s, _, err := Open(dir, Options{SegmentBytes: 4096})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	consumed := 0
	for i := 0; ; i++ {
		if err := s.Append(rec(i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Printf("A %d\n", i)
		if i%3 == 0 {
			if err := s.Ack(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			consumed++
			fmt.Printf("C %d\n", consumed)
		}
	}
}

// A writer killed with SIGKILL at an arbitrary point loses nothing it had
// appended, consumes nothing twice beyond the one ack in flight, and leaves at
// most a torn tail.
func TestSIGKILLAtAnyPoint(t *testing.T) {
	for round, after := range []int{1, 97, 800} {
		t.Run(fmt.Sprint("after", after), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+dir)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			appended, consumed := -1, 0
			read := func(stop func() bool) {
				for !stop() && sc.Scan() {
					f := strings.Fields(sc.Text())
					if len(f) != 2 {
						continue
					}
					n, _ := strconv.Atoi(f[1])
					switch f[0] {
					case "A":
						appended = n
					case "C":
						consumed = n
					}
				}
			}
			read(func() bool { return appended >= after })
			// Let it run on a little more, a different amount each round.
			time.Sleep(time.Duration(round) * time.Millisecond)
			cmd.Process.Signal(syscall.SIGKILL)
			read(func() bool { return false }) // what it printed before dying
			cmd.Wait()

			s, damage, err := Open(dir, Options{SegmentBytes: 4096})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if len(damage) > 1 {
				t.Fatalf("damage %v: a kill can only tear the tail", damage)
			}
			got := drain(t, s)
			if len(got) == 0 {
				t.Fatalf("nothing left; appended %d, consumed %d", appended+1, consumed)
			}
			var first int
			if _, err := fmt.Sscanf(string(got[0]), "record-%04d-", &first); err != nil {
				t.Fatalf("first record %q: %v", got[0], err)
			}
			// One more ack may have landed without being printed.
			if first < consumed || first > consumed+1 {
				t.Fatalf("first record left is %d; %d were consumed", first, consumed)
			}
			// Acks take the oldest, so what is left is one unbroken run.
			for k, p := range got {
				if want := rec(first + k); string(p) != string(want) {
					t.Fatalf("record %d after reopen = %q, want %q", k, p, want)
				}
			}
			if last := first + len(got) - 1; last < appended {
				t.Fatalf("last record left is %d; %d was appended (Append returned)", last, appended)
			}
			t.Logf("appended %d, consumed %d, kept %d..%d, damage %v", appended+1, consumed, first, first+len(got)-1, damage)
		})
	}
}
