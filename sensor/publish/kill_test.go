package publish

import (
	"bufio"
	"context"
	"fmt"
	"github.com/driftsensor/driftsensor/sensor/transport"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor/spool"
)

// The SIGKILL test re-executes the test binary as a publisher process; these
// variables tell TestMain to run the helper instead of the tests.
const (
	helperEnv      = "DRIFT_TRANSPORT_HELPER"
	helperURLEnv   = "DRIFT_TRANSPORT_HELPER_URL"
	helperSpoolEnv = "DRIFT_TRANSPORT_HELPER_SPOOL"
	helperHost     = "h7"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperPublisher())
	}
	os.Exit(m.Run())
}

// helperPublisher publishes until it is killed, printing each finding the
// publisher accepted (Publish returned nil) as "ACCEPTED <seq> <id>".
func helperPublisher() int {
	sp, _, err := spool.Open(os.Getenv(helperSpoolEnv), spool.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	p, err := New(context.Background(), transport.Options{URL: os.Getenv(helperURLEnv), AckTimeout: time.Second, ReconnectWait: 20 * time.Millisecond},
		helperHost, sp, zerolog.New(os.Stderr).Level(zerolog.WarnLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for i := 0; ; i++ {
		ev := finding(i)
		if err := p.Publish(ev); err != nil {
			fmt.Fprintln(os.Stderr, err)
			continue
		}
		fmt.Fprintf(os.Stdout, "ACCEPTED %d %s\n", ev.Seq, ev.ID)
	}
}

func TestSIGKILLWhileSpooling(t *testing.T) {
	ts := startTestServer(t, true)
	spoolDir := t.TempDir()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperURLEnv+"="+ts.url, helperSpoolEnv+"="+spoolDir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	type acc struct {
		seq uint64
		id  string
	}
	lines := make(chan acc, 1<<16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "ACCEPTED" {
				continue
			}
			seq, _ := strconv.ParseUint(f[1], 10, 64)
			lines <- acc{seq, f[2]}
		}
	}()
	var accepted []string
	var maxSeq uint64
	read := func(n int) {
		t.Helper()
		for range n {
			select {
			case a, ok := <-lines:
				if !ok {
					t.Fatalf("helper exited after %d accepted findings", len(accepted))
				}
				accepted = append(accepted, a.id)
				maxSeq = max(maxSeq, a.seq)
			case <-time.After(guard):
				t.Fatalf("helper stalled after %d accepted findings", len(accepted))
			}
		}
	}

	read(100) // published directly
	ts.stop()
	read(200) // spooled: the server is down
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	cmd.Wait()
	for a := range lines { // accepted before the kill, still in the pipe
		accepted = append(accepted, a.id)
		maxSeq = max(maxSeq, a.seq)
	}
	t.Logf("helper accepted %d findings (max seq %d) before SIGKILL", len(accepted), maxSeq)

	ts.restart(t)
	sp := openSpool(t, spoolDir, spool.Options{})
	if sp.Depth() == 0 {
		t.Fatal("the killed publisher left nothing in the spool; the test did not kill it while spooling")
	}
	t.Logf("spool holds %d findings after the kill", sp.Depth())
	p, err := New(context.Background(), transport.Options{URL: ts.url, ReconnectWait: 20 * time.Millisecond}, helperHost, sp, testLog())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	eventually(t, "spool drained", func() bool { return sp.Depth() == 0 })
	ev := finding(0)
	if err := p.Publish(ev); err != nil {
		t.Fatal(err)
	}
	if ev.Seq <= maxSeq {
		t.Fatalf("restarted publisher assigned seq %d; the killed one had reached %d", ev.Seq, maxSeq)
	}
	accepted = append(accepted, ev.ID)

	got := streamFindings(t, connect(t, ts.url), helperHost)
	checkExactlyOnceInOrder(t, got, accepted)
	t.Logf("stream holds %d findings for %s", len(got), helperHost)
}
