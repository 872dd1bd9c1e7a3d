package peers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/nats-io/nats.go"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// Monitor is one condition of the comparison: started before a round's
// workloads, stopped after them.
type Monitor interface {
	Name() string
	// Start starts the monitor and returns once it watches; what it reports
	// goes to c. After a failed Start, Stop undoes what was started.
	Start(c *Collector) error
	Stop() error
	// CPU is the CPU time the monitor's own processes used so far.
	CPU() (time.Duration, error)
	// Lost is what the monitor counted lost outside its output (auditd's
	// kernel counter); losses a monitor reports in its output come as Obs.Lost.
	Lost() (uint64, error)
	// Reports says whether the monitor reports anything (a marker can be
	// waited for).
	Reports() bool
}

// bound is how long starting or draining a monitor may take before the
// benchmark gives up on it.
const bound = 60 * time.Second

// procCPU reads user plus system time of pid from /proc (clock ticks of 10 ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count fields after it.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %v", pid, err)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// child is a monitor process whose stderr is kept for error messages.
type child struct {
	cmd    *exec.Cmd
	stderr lockedBuffer
	exited chan struct{}
}

// lockedBuffer is a child's stderr, written by exec's copying goroutine and
// read while the child runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startChild starts a monitor process whose stdout read reads to its end;
// exited is closed once it has, and the process is reaped (not before: Wait
// closes the pipe).
func startChild(read func(io.Reader), name string, args ...string) (*child, error) {
	c := &child{cmd: exec.Command(name, args...), exited: make(chan struct{})}
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %v", name, err)
	}
	go func() {
		read(out)
		c.cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// readLines reads out line by line as fast as the monitor writes it, each
// line stamped when read, and parses the lines on another goroutine: a pipe
// holds 64 KiB, so parsing where the pipe is read would slow a monitor's
// writes in a storm to the benchmark's parsing, and its losses would be the
// benchmark's. It returns once out has ended and every line is parsed.
func readLines(out io.Reader, parse func(line []byte, at int64)) {
	type stamped struct {
		line []byte
		at   int64
	}
	var (
		mu    sync.Mutex
		cond  = sync.NewCond(&mu)
		queue []stamped
		done  bool
	)
	parsed := make(chan struct{})
	go func() {
		defer close(parsed)
		for {
			mu.Lock()
			for len(queue) == 0 && !done {
				cond.Wait()
			}
			batch, end := queue, done
			queue = nil
			mu.Unlock()
			for _, s := range batch {
				parse(s.line, s.at)
			}
			if end && len(batch) == 0 {
				return
			}
		}
	}()
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		s := stamped{at: Now()}
		s.line = bytes.Clone(sc.Bytes())
		mu.Lock()
		queue = append(queue, s)
		mu.Unlock()
		cond.Signal()
	}
	mu.Lock()
	done = true
	mu.Unlock()
	cond.Signal()
	<-parsed
}

// waitReady polls ready until it holds, failing when the child exits or the bound passes.
func (c *child) waitReady(what string, ready func() bool) error {
	exited := false
	if !testenv.Within(bound, func() bool {
		if ready() {
			return true
		}
		select {
		case <-c.exited:
			exited = true
		default:
		}
		return exited
	}) {
		return fmt.Errorf("%s: not ready after %v (%s): %s", c.cmd.Path, bound, what, c.stderr.String())
	}
	if exited {
		return fmt.Errorf("%s exited before it was ready: %s", c.cmd.Path, c.stderr.String())
	}
	return nil
}

func (c *child) stop() error {
	if c == nil {
		return nil // never started
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(bound):
		c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("%s did not stop on SIGTERM within %v", c.cmd.Path, bound)
	}
	return nil
}

// Sensor runs bin/driftsensor sealed on one cgroup with the built-in policy:
// findings on stdout (--nats off), or through its embedded NATS server to a
// subscriber (the default mode).
type Sensor struct {
	Bin    string // the driftsensor binary
	Cgroup string // the scope, a path inside the cgroup hierarchy
	NATS   bool
	Port   int // the embedded server's loopback port, in NATS mode
	state  string
	c      *child
	nc     *nats.Conn
}

// Name says which mode.
func (s *Sensor) Name() string {
	if s.NATS {
		return "driftsensor (NATS)"
	}
	return "driftsensor --nats off"
}

// Reports is true.
func (s *Sensor) Reports() bool { return true }

// Lost is 0: the sensor reports its losses as findings.
func (s *Sensor) Lost() (uint64, error) { return 0, nil }

// CPU of the sensor process (the embedded server included).
func (s *Sensor) CPU() (time.Duration, error) { return procCPU(s.c.cmd.Process.Pid) }

// Start starts the sensor and, in NATS mode, subscribes to its findings.
func (s *Sensor) Start(col *Collector) error {
	var err error
	if s.state, err = os.MkdirTemp("", "driftpeers-state"); err != nil {
		return err
	}
	ready := filepath.Join(s.state, "ready")
	args := []string{"--scope-cgroup", s.Cgroup, "--seal", "--host", "peers", "--state-dir", s.state,
		"--ready-file", ready, "--log-level", "warn"}
	if s.NATS {
		args = append(args, "--stdout=false", "--embedded-port", strconv.Itoa(s.Port))
	} else {
		args = append(args, "--nats", "off")
	}
	read := func(out io.Reader) { io.Copy(io.Discard, out) } // NATS mode: findings come by NATS
	if !s.NATS {
		read = func(out io.Reader) {
			readLines(out, func(line []byte, at int64) {
				o, err := ParseFinding(line)
				if err != nil {
					return // counted as missing, like a NATS message the benchmark cannot read
				}
				o.At = at
				col.Add(o)
			})
		}
	}
	c, err := startChild(read, s.Bin, args...)
	if err != nil {
		return err
	}
	s.c = c
	if err := c.waitReady("the ready file "+ready, func() bool { _, err := os.Stat(ready); return err == nil }); err != nil {
		return err
	}
	if !s.NATS {
		return nil
	}
	nk, err := nats.NkeyOptionFromSeed(filepath.Join(s.state, "creds", "admin.nk"))
	if err != nil {
		return err
	}
	if s.nc, err = nats.Connect("nats://127.0.0.1:"+strconv.Itoa(s.Port), nk); err != nil {
		return fmt.Errorf("connect to the sensor's embedded server: %v", err)
	}
	for _, kind := range []string{"file", "exec", "net", "sensor"} {
		sub, err := s.nc.Subscribe("drift.v1.peers."+kind, func(m *nats.Msg) {
			at := Now()
			o, err := ParseFinding(m.Data)
			if err != nil {
				return // counted as missing: a finding the benchmark cannot read is not delivered
			}
			o.At = at
			col.Add(o)
		})
		if err != nil {
			return err
		}
		// A storm must not be dropped by the subscriber itself.
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			return err
		}
	}
	return s.nc.Flush()
}

// Stop stops the sensor and removes its state.
func (s *Sensor) Stop() error {
	if s.nc != nil {
		s.nc.Close()
		s.nc = nil
	}
	err := s.c.stop()
	os.RemoveAll(s.state)
	return err
}

// Inotify runs inotifywait -m -r on dirs, for every kind of change.
type Inotify struct {
	Dirs []string
	c    *child
}

// Name is the tool's.
func (m *Inotify) Name() string { return "inotifywait" }

// Reports is true.
func (m *Inotify) Reports() bool { return true }

// Lost is 0: an overflow comes in the output.
func (m *Inotify) Lost() (uint64, error) { return 0, nil }

// CPU of inotifywait.
func (m *Inotify) CPU() (time.Duration, error) { return procCPU(m.c.cmd.Process.Pid) }

// Start starts inotifywait and waits for its watches.
func (m *Inotify) Start(col *Collector) error {
	args := append([]string{"-m", "-r", "-e", "modify,attrib,create,delete,move", "--format", "%e %w%f"}, m.Dirs...)
	c, err := startChild(func(out io.Reader) {
		readLines(out, func(line []byte, at int64) {
			if o, err := ParseInotify(string(line)); err == nil {
				o.At = at
				col.Add(o)
			}
		})
	}, "inotifywait", args...)
	if err != nil {
		return err
	}
	m.c = c
	return c.waitReady("Watches established", func() bool { return strings.Contains(c.stderr.String(), "Watches established") })
}

// Stop stops inotifywait.
func (m *Inotify) Stop() error {
	return m.c.stop()
}

// Floor is the cost no syscall monitor on a tracepoint can avoid: an empty
// tp_btf/sys_enter program puts every syscall on the kernel's slow path.
type Floor struct {
	prog *ebpf.Program
	l    link.Link
}

// Name says what it is.
func (f *Floor) Name() string { return "empty sys_enter hook (floor)" }

// Reports is false.
func (f *Floor) Reports() bool { return false }

// Lost is 0.
func (f *Floor) Lost() (uint64, error) { return 0, nil }

// CPU is 0: no process.
func (f *Floor) CPU() (time.Duration, error) { return 0, nil }

// Start loads and attaches the empty program.
func (f *Floor) Start(*Collector) error {
	var err error
	f.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "sys_enter", License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return fmt.Errorf("load the empty sys_enter program: %v", err)
	}
	if f.l, err = link.AttachTracing(link.TracingOptions{Program: f.prog}); err != nil {
		f.prog.Close()
		return fmt.Errorf("attach the empty sys_enter program: %v", err)
	}
	return nil
}

// Stop detaches it.
func (f *Floor) Stop() error {
	if f.l == nil {
		return nil
	}
	f.l.Close()
	return f.prog.Close()
}

// None is the baseline: nothing watches.
type None struct{}

// Name is "none".
func (None) Name() string { return "none" }

// Reports is false.
func (None) Reports() bool { return false }

// Start does nothing.
func (None) Start(*Collector) error { return nil }

// Stop does nothing.
func (None) Stop() error { return nil }

// CPU is 0.
func (None) CPU() (time.Duration, error) { return 0, nil }

// Lost is 0.
func (None) Lost() (uint64, error) { return 0, nil }
