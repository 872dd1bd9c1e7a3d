package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/lsm"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

func build(t *testing.T) string {
	t.Helper()
	return testenv.Build(t, "github.com/driftsensor/driftsensor/cmd/driftsensor")
}

// lines delivers r's lines on a channel, closed at EOF, so a test reads the
// sensor's output with a deadline instead of blocking in Scan.
func lines(r io.Reader) <-chan string {
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// nextLine returns the next line, failing when the sensor exits or says
// nothing within the bound.
func nextLine(t *testing.T, ch <-chan string, what string) string {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatalf("the sensor's output ended before %s", what)
		}
		return l
	case <-time.After(testenv.WaitBound):
		t.Fatalf("no output line for %s within %v", what, testenv.WaitBound)
	}
	return ""
}

// waitReady waits, with a bound, for the sensor's ready file.
func waitReady(t *testing.T, ready string) {
	t.Helper()
	testenv.Eventually(t, "the sensor's ready file "+ready, func() bool {
		_, err := os.Stat(ready)
		return err == nil
	})
}

// TestBadInput: every refusal is a clear message and exit status 2, never a panic.
func TestBadInput(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "policy.yaml")
	os.WriteFile(bad, []byte("version: 1\nreflex:\n  kill: maybe\n"), 0o644)
	moved := filepath.Join(dir, "actions.yaml")
	os.WriteFile(moved, []byte("version: 1\nactions:\n  file: cordon\n"), 0o644)
	cases := []struct {
		name string
		args []string
		uid  int
		want string
	}{
		{"unknown flag", []string{"--sael"}, 0, "flag provided but not defined: -sael"},
		{"stray argument", []string{"seal"}, 0, `unexpected argument "seal"`},
		{"policy typo", []string{"--policy", bad}, 0, bad + `:3:9: wrong type for reflex.kill: got the string "maybe" (want true or false)`},
		{"actions in the sensor policy", []string{"--policy", moved}, 0, moved + `:2:1: actions are no longer set in the sensor policy: the responder's policy decides them (move this section to the driftresponder -policy file, see responder/decide/example.yaml)`},
		{"missing policy", []string{"--policy", filepath.Join(dir, "nope.yaml")}, 0, "nope.yaml"},
		{"bad host name", []string{"--host", "a.b c"}, 0, `host name "a.b c"`},
		{"bad log level", []string{"--log-level", "loud"}, 0, `--log-level "loud"`},
		{"unknown backend", []string{"--backend", "kprobe"}, 0, `--backend "kprobe"`},
		{"not root", []string{"--host", "x"}, 65534, "must run as root"},
		{"scope that is not a cgroup", []string{"--host", "x", "--scope-cgroup", "/no/such/cgroup"}, 0, "scope cgroup /no/such/cgroup"},
		// Every numeric flag is range-checked: no wrap-around, nothing started.
		{"ring that wraps at 2^32", []string{"--host", "x", "--ring-bytes", "4294971392"}, 65534, "--ring-bytes 4294971392: want a power of two from the page size (4096) to 2147483648"},
		{"ring not a power of two", []string{"--host", "x", "--ring-bytes", "12288"}, 65534, "--ring-bytes 12288: want a power of two"},
		{"ring under a page", []string{"--host", "x", "--ring-bytes", "2048"}, 65534, "--ring-bytes 2048: want a power of two"},
		{"ring zero", []string{"--host", "x", "--ring-bytes", "0"}, 65534, "--ring-bytes 0: want a power of two"},
		{"ring past uint64", []string{"--host", "x", "--ring-bytes", "18446744073709551616"}, 65534, `invalid value "18446744073709551616" for flag -ring-bytes`},
		{"ring negative", []string{"--host", "x", "--ring-bytes", "-4096"}, 65534, `invalid value "-4096" for flag -ring-bytes`},
		{"heartbeat of 1ns", []string{"--host", "x", "--heartbeat", "1ns"}, 65534, "--heartbeat 1ns: want from 100ms to 5m0s"},
		{"heartbeat of 99ms", []string{"--host", "x", "--heartbeat", "99ms"}, 65534, "--heartbeat 99ms: want from 100ms to 5m0s"},
		{"heartbeat of a day", []string{"--host", "x", "--heartbeat", "24h"}, 65534, "--heartbeat 24h0m0s: want from 100ms to 5m0s"},
		{"negative heartbeat", []string{"--host", "x", "--heartbeat", "-1s"}, 65534, "--heartbeat -1s: want from 100ms to 5m0s"},
		{"kernel check of 1ms", []string{"--host", "x", "--kernel-check", "1ms"}, 65534, "--kernel-check 1ms: want from 100ms to 1h0m0s, or 0 for none"},
		{"kernel check of a day", []string{"--host", "x", "--kernel-check", "24h"}, 65534, "--kernel-check 24h0m0s: want from 100ms to 1h0m0s, or 0 for none"},
		{"negative kernel check", []string{"--host", "x", "--kernel-check", "-5s"}, 65534, "--kernel-check -5s: want from 100ms to 1h0m0s, or 0 for none"},
		{"embedded port past 65535", []string{"--host", "x", "--embedded-port", "65536"}, 65534, "--embedded-port 65536: want a TCP port, 1-65535, or 0"},
		{"embedded port negative", []string{"--host", "x", "--embedded-port", "-1"}, 65534, "--embedded-port -1: want a TCP port"},
		{"metrics address without port", []string{"--host", "x", "--metrics-addr", "127.0.0.1"}, 65534, `--metrics-addr "127.0.0.1": want host:port`},
		{"reserved host ctl", []string{"--host", "ctl"}, 65534, `--host: host name "ctl" is reserved`},
		{"reserved host heartbeat", []string{"--host", "heartbeat"}, 65534, `--host: host name "heartbeat" is reserved`},
		{"reserved host HEARTBEAT", []string{"--host", "HEARTBEAT"}, 65534, `--host: host name "HEARTBEAT" is reserved`},
		{"reserved host state", []string{"--host", "state"}, 65534, `--host: host name "state" is reserved`},
		{"reserved host file", []string{"--host", "file"}, 65534, `--host: host name "file" is reserved`},
		{"wildcard host *", []string{"--host", "*"}, 65534, `--host: host name "*": use 1-63 letters`},
		{"wildcard host >", []string{"--host", ">"}, 65534, `--host: host name ">": use 1-63 letters`},
		{"host with a dot", []string{"--host", "web.1"}, 65534, `--host: host name "web.1": use 1-63 letters`},
		{"nats URL that does not parse", []string{"--host", "x", "--nats", "nats://[::1"}, 65534, `--nats "nats://[::1": "nats://[::1": not a URL`},
		{"nats URL with a bad scheme", []string{"--host", "x", "--nats", "http://127.0.0.1:4222"}, 65534, `"http://127.0.0.1:4222": scheme "http": want one of nats, tls, ws, wss`},
		{"nats URL with a bad port", []string{"--host", "x", "--nats", "nats://127.0.0.1:99999"}, 65534, `"nats://127.0.0.1:99999": port "99999": want 1-65535`},
		{"nats URL without host", []string{"--host", "x", "--nats", "nats://:4222"}, 65534, `"nats://:4222": no host`},
		{"bad second URL of a list", []string{"--host", "x", "--nats", "nats://a:4222,ftp://b:4222"}, 65534, `"ftp://b:4222": scheme "ftp"`},
		{"empty URL in a list", []string{"--host", "x", "--nats", "nats://a:4222,"}, 65534, `empty URL in the list`},
		{"nats URL with spaces", []string{"--host", "x", "--nats", "nats://a b:4222"}, 65534, `--nats "nats://a b:4222"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// uid 65534: as an unprivileged user, so a refusal also proves
			// the value is checked before anything privileged starts.
			if c.uid != 0 && os.Geteuid() != 0 {
				c.uid = 0 // unprivileged already
			}
			cmd := exec.Command(bin, c.args...)
			if c.uid != 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.uid)}}
			}
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want status 2; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), c.want) || strings.Contains(string(out), "panic") {
				t.Errorf("output %q does not say %q", out, c.want)
			}
		})
	}
}

// loadedPrograms lists the ids of every loaded BPF program. It only walks
// the ids (BPF_PROG_GET_NEXT_ID): opening a program by its id
// (BPF_PROG_GET_FD_BY_ID) is tampering to every sensor running on the
// machine, which reports it, so a test never opens programs it does not own.
func loadedPrograms() map[ebpf.ProgramID]bool {
	ids := map[ebpf.ProgramID]bool{}
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return ids
		}
		ids[next], id = true, next
	}
}

// heldPrograms lists the programs the processes pids (all processes when
// none is given) hold a descriptor of, directly or through a link, from
// /proc/PID/fdinfo: no bpf(2) call, so no sensor sees it as tampering.
func heldPrograms(pids ...int) map[ebpf.ProgramID]bool {
	dirs := []string{}
	for _, pid := range pids {
		dirs = append(dirs, fmt.Sprintf("/proc/%d/fdinfo", pid))
	}
	if len(pids) == 0 {
		dirs, _ = filepath.Glob("/proc/[0-9]*/fdinfo")
	}
	ids := map[ebpf.ProgramID]bool{}
	for _, dir := range dirs {
		fds, _ := os.ReadDir(dir) // a process may exit meanwhile
		for _, fd := range fds {
			b, _ := os.ReadFile(filepath.Join(dir, fd.Name()))
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "prog_id:"); ok {
					if id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
						ids[ebpf.ProgramID(id)] = true
					}
				}
			}
		}
	}
	return ids
}

// TestLSMUnavailable: --backend lsm on a kernel without BPF-LSM is refused
// before anything is loaded, with exit status 2 and the fix: the kernel
// command line that turns it on, or the other backend.
func TestLSMUnavailable(t *testing.T) {
	testenv.RequireBPF(t)
	ok, why := lsm.Available()
	if ok {
		t.Skip("BPF-LSM works on this kernel: there is nothing to refuse (the VMs of make vmtest have it on)")
	}
	// Where bpf is not in the LSM list the fix is the kernel command line;
	// where it is but the kernel refuses the programs (this development
	// machine), the other backend.
	if strings.HasPrefix(why, "BPF-LSM is not active") && !strings.Contains(why, ",bpf on the kernel command line") {
		t.Errorf("reason %q does not name the kernel command line", why)
	}
	bin := build(t)
	cg := testenv.NewCgroup(t)
	before := loadedPrograms()
	out, err := exec.Command(bin, "--backend", "lsm", "--scope-cgroup", cg.Rel, "--host", "t1", "--nats", "off", "--state-dir", t.TempDir()).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want status 2; output:\n%s", err, out)
	}
	for _, want := range []string{"--backend lsm: BPF-LSM is not usable here: " + why, "--backend tracepoint"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output %q does not say %q", out, want)
		}
	}
	// What the refused start could have left: programs loaded since that no
	// process holds (pinned, or attached for good). Programs of tests
	// running at the same time are held by their sensors. The kernel frees
	// a program after an RCU grace period, hence the wait.
	testenv.Eventually(t, "no program left loaded by the refused start", func() bool {
		held := heldPrograms()
		for id := range loadedPrograms() {
			if !before[id] && !held[id] {
				return false
			}
		}
		return true
	})
}

// TestRunSealedScope: start with --ready-file, make drift in the scope, read
// the JSON line, stop with SIGTERM: exit 0 and nothing left attached.
func TestRunSealedScope(t *testing.T) {
	testenv.RequireBPF(t)
	bin := build(t)
	cg := testenv.NewCgroup(t)
	img := filepath.Join(t.TempDir(), "img")
	os.MkdirAll(filepath.Join(img, "etc"), 0o755)
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nprotect: ["+img+"]\n"), 0o644)

	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(bin, "--policy", pol, "--scope-cgroup", cg.Rel, "--seal", "--host", "t1", "--ready-file", ready,
		"--embedded-port", "0", "--state-dir", t.TempDir())
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := lines(stdout)
	waitReady(t, ready)
	// The sensor's programs: those it holds (other tests running at the
	// same time may load their own).
	mine := heldPrograms(cmd.Process.Pid)
	if len(mine) < 5 {
		t.Fatalf("the sensor holds %d programs, want at least 5", len(mine))
	}

	target := filepath.Join(img, "etc", "shadow")
	actor, closeFD, err := cg.Command("sh", "-c", "echo x > "+target)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD()
	if out, err := actor.CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
	var ev event.Event
	for {
		l := nextLine(t, out, "the finding")
		ev = event.Event{}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if ev.Kind == event.KindFile && ev.Process != nil && ev.Process.PID == uint32(actor.Process.Pid) {
			break
		}
	}
	if ev.Schema != event.Schema || ev.Host != "t1" || ev.Action != "open_write" || ev.File == nil || ev.File.Path != target || ev.Seq == 0 {
		t.Fatalf("finding %+v", ev)
	}
	// Listing programs as the tests here do is no tampering to a running
	// sensor (this one stands for those of other packages' tests): none
	// reports it before the marker's finding, which comes after in the
	// sensor's ring.
	loadedPrograms()
	heldPrograms()
	marker := filepath.Join(img, "marker")
	markerPID := touchInScope(t, cg, marker)
	for {
		l := nextLine(t, out, "the marker's finding")
		var ev event.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if ev.Kind == event.KindSensor && ev.Action == "tamper" {
			t.Errorf("listing programs is tampering to the sensor: %s", l)
		}
		if ev.Kind == event.KindFile && ev.Process != nil && ev.Process.PID == uint32(markerPID) && ev.File != nil && ev.File.Path == marker {
			break
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	for range out { // drain, so the sensor never blocks writing
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	// The kernel frees programs after an RCU grace period: wait for it.
	testenv.Eventually(t, "the stopped sensor's programs to be freed", func() bool {
		now := loadedPrograms()
		for id := range mine {
			if now[id] {
				return false
			}
		}
		return true
	})
}

// TestOCSFOutput: --format ocsf prints OCSF File System Activity for a file finding.
func TestOCSFOutput(t *testing.T) {
	testenv.RequireBPF(t)
	bin := build(t)
	cg := testenv.NewCgroup(t)
	img := filepath.Join(t.TempDir(), "img")
	os.MkdirAll(img, 0o755)
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nprotect: ["+img+"]\n"), 0o644)
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(bin, "--policy", pol, "--scope-cgroup", cg.Rel, "--seal", "--host", "t2", "--ready-file", ready,
		"--nats", "off", "--format", "ocsf", "--state-dir", t.TempDir())
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := lines(stdout)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		for range out {
		}
		cmd.Wait()
	}()
	waitReady(t, ready)
	target := filepath.Join(img, "f")
	pid := touchInScope(t, cg, target)
	var o struct {
		ClassUID int `json:"class_uid"`
		File     struct {
			Path string `json:"path"`
		} `json:"file"`
		Actor struct {
			Process struct {
				PID int `json:"pid"`
			} `json:"process"`
		} `json:"actor"`
	}
	for { // the sensor's own records (the state it applied at start) come first
		line := nextLine(t, out, "the OCSF line")
		o.ClassUID = 0
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if o.ClassUID != 2004 {
			break
		}
	}
	if o.ClassUID != 1001 || o.File.Path != target || o.Actor.Process.PID != pid {
		t.Fatalf("OCSF output: class %d, file %s, pid %d; want class 1001, file %s, pid %d", o.ClassUID, o.File.Path, o.Actor.Process.PID, target, pid)
	}
}

// runSensor starts the binary, waits for its ready file and returns it with
// its stdout lines (read with nextLine, under a bound).
func runSensor(t *testing.T, bin string, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(bin, append(args, "--ready-file", ready)...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitReady(t, ready)
	return cmd, lines(stdout)
}

// runRecord is the liveness file a run leaves (sensor/agent).
type runRecord struct {
	Liveness event.Liveness `json:"liveness"`
	LastBeat time.Time      `json:"last_beat"`
	Clean    bool           `json:"clean"`
}

func readRun(t *testing.T, path string) runRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r runRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

// nextRestart reads stdout until the sensor_restart finding.
func nextRestart(t *testing.T, out <-chan string) event.Event {
	t.Helper()
	for {
		var ev event.Event
		if json.Unmarshal([]byte(nextLine(t, out, "a sensor_restart finding")), &ev) == nil && ev.Kind == event.KindSensor && ev.Action == "sensor_restart" {
			return ev
		}
	}
}

// TestRestartIsAFinding: a sensor killed with SIGKILL and started again
// reports the restart, naming the run that died, its last heartbeat and that
// it did not stop cleanly; after a SIGTERM the next start says it did.
func TestRestartIsAFinding(t *testing.T) {
	testenv.RequireBPF(t)
	bin := build(t)
	cg := testenv.NewCgroup(t)
	img := t.TempDir()
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nprotect: ["+img+"]\n"), 0o644)
	state := t.TempDir()
	args := []string{"--policy", pol, "--scope-cgroup", cg.Rel, "--seal", "--host", "t3", "--nats", "off",
		"--state-dir", state, "--heartbeat", "100ms"}
	runFile := filepath.Join(state, "spool-t3", "liveness.json")
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}

	first, out := runSensor(t, bin, args...)
	// A first start on an empty state directory is no restart.
	testenv.Eventually(t, "the first heartbeat recorded", func() bool { _, err := os.Stat(runFile); return err == nil })
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	for l := range out { // closed at the killed sensor's EOF
		if strings.Contains(l, "sensor_restart") {
			t.Fatalf("a first start reported a restart: %s", l)
		}
	}
	died := readRun(t, runFile)
	if died.Clean || died.Liveness.BootID != strings.TrimSpace(string(boot)) || died.Liveness.Instance == "" {
		t.Fatalf("record of the killed run %+v", died)
	}

	second, out := runSensor(t, bin, args...)
	ev := nextRestart(t, out)
	r := ev.Health.Restart
	if r == nil || r.Previous != died.Liveness || !r.LastBeat.Equal(died.LastBeat) || r.Clean || r.Reboot || r.DownMs < 0 ||
		ev.Seq == 0 || ev.Host != "t3" || ev.Backend == "" || !strings.Contains(ev.Health.Detail, "was killed or crashed") {
		t.Fatalf("restart finding %+v (restart %+v), want the killed run %+v", ev, r, died)
	}
	second.Process.Signal(syscall.SIGTERM)
	if err := second.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	stopped := readRun(t, runFile)
	if !stopped.Clean || stopped.Liveness.Instance == died.Liveness.Instance {
		t.Fatalf("record of the stopped run %+v", stopped)
	}

	_, out = runSensor(t, bin, args...)
	ev = nextRestart(t, out)
	if r := ev.Health.Restart; r == nil || r.Previous != stopped.Liveness || !r.LastBeat.Equal(stopped.LastBeat) || !r.Clean ||
		!strings.Contains(ev.Health.Detail, "stopped cleanly") {
		t.Fatalf("restart finding %+v, want the stopped run %+v", ev.Health, stopped)
	}
	t.Logf("%s", ev.Health.Detail)
}

// TestUnprivilegedUserCannotUnseal is the attack on the default
// server: a local user who is not root (uid 65534, outside the scope) tries
// to read the sensor's credentials and files, to connect, to write mutable
// into the host's state key and to have a forged finding kept. Each is
// refused, and the host stays sealed: the next mutation is a finding.
func TestUnprivilegedUserCannotUnseal(t *testing.T) {
	testenv.RequireBPF(t)
	bin := build(t)
	cg := testenv.NewCgroup(t)
	img := t.TempDir()
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nprotect: ["+img+"]\n"), 0o644)
	// World-readable: only the sensor's own modes may protect its files.
	state, err := os.MkdirTemp("", "driftsensor-state")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	os.Chmod(state, 0o755)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	sensor, out := runSensor(t, bin, "--policy", pol, "--scope-cgroup", cg.Rel, "--seal", "--host", "t5",
		"--embedded-port", strconv.Itoa(port), "--state-dir", state)
	defer func() { sensor.Process.Signal(syscall.SIGTERM); sensor.Wait() }()
	url := "nats://127.0.0.1:" + strconv.Itoa(port)

	files := []string{
		filepath.Join(state, "creds", "admin.nk"), filepath.Join(state, "creds", "responder.nk"),
		filepath.Join(state, "creds", "hosts", "t5.nk"), filepath.Join(state, "creds"),
		filepath.Join(state, "spool-t5"), filepath.Join(state, "spool-t5", "seq"), filepath.Join(state, "jetstream"),
	}
	probe := testenv.AsUser(t, 65534, "intruder", append([]string{url, "t5"}, files...)...)
	var want []string
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.IsDir() {
			want = append(want, "list "+f+": open "+f+": permission denied")
		} else {
			want = append(want, "read "+f+": open "+f+": permission denied")
		}
	}
	want = append(want, "connect: nats: Authorization Violation", "connect with its own nkey: nats: Authorization Violation")
	if got := strings.TrimSpace(probe); got != strings.Join(want, "\n") {
		t.Fatalf("the unprivileged user:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}

	// Still sealed: a mutation in the scope is a finding.
	target := filepath.Join(img, "after-intruder")
	pid := touchInScope(t, cg, target)
	for {
		var ev event.Event
		if json.Unmarshal([]byte(nextLine(t, out, "the finding of the mutation after the intruder (is the host still sealed?)")), &ev) == nil &&
			ev.Kind == event.KindFile && ev.Process.PID == uint32(pid) {
			if ev.File.Path != target {
				t.Fatalf("finding %+v, want %s", ev, target)
			}
			return
		}
	}
}

// TestKernelCheck: with --kernel-check the daemon compares the kernel state
// with the one it recorded at the seal and reports each change exactly: a
// BPF program the test loads once the sensor is ready (sealed), by id, once,
// then its unload. The unload's report is the barrier: the kernel_state
// findings before it are exactly those two, so nothing was reported
// without a change.
func TestKernelCheck(t *testing.T) {
	testenv.RequireBPF(t)
	bin := build(t)
	cg := testenv.NewCgroup(t)
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nprotect: ["+t.TempDir()+"]\n"), 0o644)
	sensor, out := runSensor(t, bin, "--policy", pol, "--scope-cgroup", cg.Rel, "--seal", "--host", "t6", "--nats", "off",
		"--state-dir", t.TempDir(), "--kernel-check", "100ms")
	defer func() { sensor.Process.Signal(syscall.SIGTERM); sensor.Wait() }()

	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	var got []string
	until := func(want string) {
		t.Helper()
		for {
			var ev event.Event
			if json.Unmarshal([]byte(nextLine(t, out, want)), &ev) == nil && ev.Kind == event.KindSensor && ev.Action == "kernel_state" {
				got = append(got, ev.Health.Detail)
				if ev.Health.Detail == want {
					return
				}
			}
		}
	}
	loaded := fmt.Sprintf("kernel state changed since the seal: BPF program loaded: id %d", id)
	unloaded := fmt.Sprintf("kernel state changed since the seal: BPF program unloaded: id %d", id)
	until(loaded)
	p.Close()
	until(unloaded)
	if want := []string{loaded, unloaded}; !slices.Equal(got, want) {
		t.Fatalf("kernel_state findings:\n got %q\nwant %q", got, want)
	}
}

// touchInScope touches target from a process in cg and returns its pid.
func touchInScope(t *testing.T, cg *testenv.Cgroup, target string) int {
	t.Helper()
	actor, closeFD, err := cg.Command("touch", target)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD()
	if out, err := actor.CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
	return actor.Process.Pid
}
