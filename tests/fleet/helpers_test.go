package fleet

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// binaries builds driftctl, driftsensor, driftresponder and nats-server (from
// the nats-server module this repository pins) into one directory, for the
// README's lines to find on $PATH (with coverage under make cover).
func binaries(t *testing.T) string {
	t.Helper()
	return testenv.BuildAll(t, "github.com/driftsensor/driftsensor/cmd/driftctl", "github.com/driftsensor/driftsensor/cmd/driftsensor",
		"github.com/driftsensor/driftsensor/cmd/driftresponder", "github.com/nats-io/nats-server/v2")
}

// TestMain unmounts what the tests mounted.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// readmeBlock returns the command lines of the README block after marker.
func readmeBlock(t *testing.T, marker string) []string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	f, err := os.Open(filepath.Join(filepath.Dir(file), "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	state := 0 // 0: before the marker, 1: before the fence, 2: in the block
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case state == 0 && strings.Contains(l, marker):
			state = 1
		case state == 1 && strings.HasPrefix(l, "```"):
			state = 2
		case state == 2 && strings.HasPrefix(l, "```"):
			return lines
		case state == 2 && strings.TrimSpace(l) != "":
			lines = append(lines, l)
		}
	}
	t.Fatalf("README.md has no complete block after %q", marker)
	return nil
}

// proc is a long-running command the test started; its output goes to a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (p *proc) output() string { b, _ := os.ReadFile(p.log); return string(b) }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start runs cmd in the background, stopped (SIGTERM, then SIGKILL) at cleanup.
func start(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		if !p.exited() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

// waitPort waits until something accepts connections on addr, or p exits.
func waitPort(t *testing.T, p *proc, addr string) {
	t.Helper()
	testenv.Eventually(t, p.name+" listening on "+addr, func() bool {
		if p.exited() {
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.output())
		}
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// waitFile waits until path exists, or p exits.
func waitFile(t *testing.T, p *proc, path string) {
	t.Helper()
	testenv.Eventually(t, p.name+" ready ("+path+")", func() bool {
		if p.exited() {
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.output())
		}
		_, err := os.Stat(path)
		return err == nil
	})
}

// run runs a command to its end and returns its exit status and output.
func run(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	t.Logf("%s -> %d\n%s", strings.Join(cmd.Args, " "), code, out.String())
	return code, out.String()
}

// fleetStatus is what the test reads of driftctl status --json.
type fleetStatus struct {
	Hosts []hostStatus `json:"hosts"`
}

type hostStatus struct {
	Host      string           `json:"host"`
	State     event.State      `json:"state"`
	Heartbeat *event.Heartbeat `json:"heartbeat"`
	Mismatch  string           `json:"mismatch"`
}

// status runs driftctl status --json with args and decodes it.
func status(t *testing.T, bin string, args ...string) fleetStatus {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "driftctl"), append(args, "status", "--json", "--wait", "1500ms")...)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil {
		t.Fatalf("driftctl status: %v\n%s", err, errs.String())
	}
	var st fleetStatus
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("driftctl status --json: %v\n%s", err, out.String())
	}
	return st
}

func hostIn(st fleetStatus, name string) (hostStatus, bool) {
	for _, h := range st.Hosts {
		if h.Host == name {
			return h, true
		}
	}
	return hostStatus{}, false
}
