package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// TestMain lets the test binary run as driftctl itself, so tests can start
// and SIGKILL a real driftctl process.
func TestMain(m *testing.M) {
	if os.Getenv("DRIFTCTL_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// driftctlProcess starts driftctl as a process of its own.
func driftctlProcess(t *testing.T, stderr *syncBuf, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "DRIFTCTL_TEST_MAIN=1")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// exported reads the export file: the sequence numbers of its lines, in order.
func exported(t *testing.T, path, format string) []uint64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var v struct {
			Seq      uint64 `json:"seq"`
			Metadata struct {
				Sequence uint64 `json:"sequence"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(l, &v); err != nil {
			continue // a line being written; the caller reads again
		}
		if format == "ocsf" {
			v.Seq = v.Metadata.Sequence
		}
		seqs = append(seqs, v.Seq)
	}
	return seqs
}

// An export SIGKILLed twice while findings keep coming, and started again
// each time, has written every finding exactly once, in order: the durable
// consumer resumes after the last acknowledged batch, and the findings a
// killed export wrote but had not acknowledged are recognised in its file.
func TestExportResumesAfterKill(t *testing.T) {
	for _, format := range []string{"json", "ocsf"} {
		t.Run(format, func(t *testing.T) {
			url, nc := embedded(t)
			adminControl(t, nc)
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			const total = 6000
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			published := make(chan error, 1)
			go func() {
				// A steady stream: the exports are killed while it flows.
				tick := time.NewTicker(2 * time.Millisecond)
				defer tick.Stop()
				for seq := uint64(1); seq <= total; seq++ {
					ev := finding("web-1", event.KindFile, seq, fmt.Sprintf("/etc/f%d", seq))
					ev.ID = fmt.Sprintf("web-1-%d", seq)
					if _, err := js.PublishAsync(event.Subject("web-1", event.KindFile), mustJSON(t, ev)); err != nil {
						published <- err
						return
					}
					if seq%20 == 0 {
						select {
						case <-ctx.Done():
							published <- ctx.Err()
							return
						case <-tick.C:
						}
					}
				}
				select {
				case <-js.PublishAsyncComplete():
					published <- nil
				case <-time.After(guard):
					published <- fmt.Errorf("publishing did not complete")
				}
			}()
			out := filepath.Join(t.TempDir(), "findings."+format)
			args := []string{"--nats", url, "export", "--durable", "siem", "--format", format, "--out", out}
			for i, killAt := range []int{1000, 3000} {
				var stderr syncBuf
				cmd := driftctlProcess(t, &stderr, args...)
				testenv.Eventually(t, fmt.Sprintf("export %d has written %d findings", i+1, killAt), func() bool {
					return len(exported(t, out, format)) >= killAt
				})
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				t.Logf("export %d killed after %d lines; stderr: %s", i+1, len(exported(t, out, format)), stderr.String())
			}
			if err := <-published; err != nil {
				t.Fatal(err)
			}
			var stderr syncBuf
			cmd := driftctlProcess(t, &stderr, args...)
			testenv.Eventually(t, "the last export has written every finding", func() bool {
				return len(exported(t, out, format)) >= total
			})
			// Nothing comes after the last finding: a marker published now is
			// the next line, and nothing else is.
			marker := finding("web-1", event.KindFile, total+1, "/marker")
			marker.ID = "marker"
			if _, err := js.Publish(context.Background(), event.Subject("web-1", event.KindFile), mustJSON(t, marker)); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, "the marker is exported", func() bool {
				return len(exported(t, out, format)) >= total+1
			})
			cmd.Process.Signal(syscall.SIGINT)
			if err := cmd.Wait(); err != nil {
				t.Errorf("export after SIGINT: %v; stderr: %s", err, stderr.String())
			}
			seqs := exported(t, out, format)
			if len(seqs) != total+1 {
				t.Errorf("%d lines, want %d", len(seqs), total+1)
			}
			for i, s := range seqs {
				if s != uint64(i+1) {
					t.Fatalf("line %d has finding %d, want %d (a gap or a duplicate)", i+1, s, i+1)
				}
			}
			if !strings.Contains(stderr.String(), "exported ") {
				t.Errorf("the last export did not report its count: %s", stderr.String())
			}
		})
	}
}

// A durable name with a dot, an unknown format and a bad output are refused
// before anything connects, with exit status 2.
func TestExportUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"export"}, "--durable"},
		{[]string{"export", "--durable", "a.b"}, "--durable"},
		{[]string{"export", "--durable", "siem", "--format", "text"}, "want json or ocsf"},
		{[]string{"export", "--durable", "siem", "--to", "syslog+udp://127.0.0.1"}, "needs a port"},
		{[]string{"export", "--durable", "siem", "--kind", "disk"}, "--kind"},
	} {
		code, _, errs := driftctl(t, append([]string{"--nats", "nats://127.0.0.1:1"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("driftctl %v: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}

// The state a kill between the write and the acknowledgement leaves: lines
// in the file past the consumer's acknowledged floor, the last one cut in
// the middle. The next export cuts the partial line, does not write the
// complete ones again, and goes on from the first finding not in the file.
func TestExportSkipsUnacknowledgedLines(t *testing.T) {
	url, nc := embedded(t)
	adminControl(t, nc)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	for seq := uint64(1); seq <= 200; seq++ {
		ev := finding("db-1", event.KindExec, seq, fmt.Sprintf("/tmp/tool%d", seq))
		ev.ID = fmt.Sprintf("db-1-%d", seq)
		data := mustJSON(t, ev)
		if _, err := js.Publish(context.Background(), event.Subject("db-1", event.KindExec), data); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, data)
	}
	out := filepath.Join(t.TempDir(), "findings.json")
	if code, _, _ := driftctl(t, "--nats", url, "export", "--durable", "siem", "--out", out, "--count", "100"); code != exitOK {
		t.Fatalf("first export: exit %d", code)
	}
	// What a killed export wrote but never acknowledged: 101-150 whole, 151 in part.
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines[100:150] {
		f.Write(append(l, '\n'))
	}
	f.Write(lines[150][:40])
	f.Close()
	code, _, errs := driftctl(t, "--nats", url, "export", "--durable", "siem", "--out", out, "--count", "50")
	if code != exitOK || !strings.Contains(errs, "from stream sequence 101") || !strings.Contains(errs, "exported 50 findings") || !strings.Contains(errs, "(50 repeats not written again)") {
		t.Fatalf("second export: exit %d, stderr %q", code, errs)
	}
	seqs := exported(t, out, "json")
	if len(seqs) != 200 {
		t.Fatalf("%d lines, want 200", len(seqs))
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("line %d has finding %d, want %d", i+1, s, i+1)
		}
	}
}
