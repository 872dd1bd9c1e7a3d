package drill

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/gate"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

// echoPort is where each host answers the responder's cordon probe.
const echoPort = 7070

// markerPath is the marker's file in a host's root: its finding, made
// after the technique, proves every finding before it has arrived.
const markerPath = "/etc/drill-marker"

// hostPolicy protects the host's root and its audit log directory, with the
// usual writable directories, exec from its /usr (and the actor binary), and
// port 8080 allowed; binds are reported, not refused, so a listener is seen
// listening.
const hostPolicy = `version: 1
protect: [%[1]s, %[1]s/var/log/audit]
exceptions: [%[1]s/tmp, %[1]s/dev, %[1]s/run, %[1]s/var/tmp, %[1]s/var/log]
exec:
  image_paths: [%[1]s/usr]
  image_files: [%[2]s]
net:
  allowed_ports: [8080]
  deny_binds: false
`

// rootFiles are the files of every host's root, made by the drill (outside
// the sealed scope) before the sensor starts; a trailing slash makes a
// directory. Binaries are act.TrueELF.
var rootFiles = []string{
	"etc/passwd", "etc/shadow", "etc/group", "etc/sudoers", "etc/crontab", "etc/hosts",
	"etc/pam.d/common-auth", "etc/ssh/sshd_config", "etc/ssl/certs/ca-certificates.crt",
	"etc/systemd/system/timers.target.wants/", "etc/cron.d/", "etc/sudoers.d/", "etc/profile.d/",
	"etc/modules-load.d/", "root/.ssh/authorized_keys", "home/admin/.ssh/", "var/spool/cron/crontabs/",
	"var/log/audit/audit.log", "var/log/app.log", "var/tmp/", "tmp/", "dev/shm/", "run/",
	"usr/bin/sudo*", "usr/bin/sshd*", "usr/bin/find*", "usr/bin/python3*", "usr/bin/true*", "usr/sbin/",
	"usr/local/share/ca-certificates/", "usr/lib/x86_64-linux-gnu/security/",
}

// makeRoot builds a host's root tree at dir.
func makeRoot(dir string) error {
	for _, f := range rootFiles {
		p := filepath.Join(dir, strings.TrimRight(f, "/*"))
		if strings.HasSuffix(f, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		data, mode := []byte("drill seed\n"), os.FileMode(0o644)
		if strings.HasSuffix(f, "*") {
			data, mode = act.TrueELF(), 0o755
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			return err
		}
	}
	return nil
}

// drillHost is one test host with its own root, its own sealed sensor (a
// driftsensor process scoped to the host's cgroup, its cordon gate in the
// host's namespace) and a marker process waiting in its scope.
type drillHost struct {
	name    string
	h       *testbed.Host
	peer    *testbed.Host
	root    string
	actor   string // the binary re-executed as actor
	backend string

	mu       sync.Mutex
	cond     *sync.Cond
	findings []event.Event

	marker *actorProc // waits to make the marker
	stop   func()
}

// read takes the sensor's findings, JSON lines on its stdout, each written
// once the stream acknowledged it.
func (d *drillHost) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev event.Event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue // not a finding: the judgement below names what is missing
		}
		d.mu.Lock()
		d.findings = append(d.findings, ev)
		if d.backend == "" {
			d.backend = ev.Backend
		}
		d.mu.Unlock()
		d.cond.Broadcast()
	}
}

// waitFindings waits until done says yes to the host's drift findings
// (file, exec, net) or until timeout; it returns them either way.
func (d *drillHost) waitFindings(timeout time.Duration, done func([]event.Event) bool) []event.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	var drift []event.Event
	waitUntil(d.cond, timeout, func() bool {
		drift = drift[:0]
		for _, f := range d.findings {
			if f.Kind != event.KindSensor {
				drift = append(drift, f)
			}
		}
		return done(drift)
	})
	return drift
}

// waitUntil waits on c, whose lock the caller holds, until ok says yes
// (true) or timeout passes (false).
func waitUntil(c *sync.Cond, timeout time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(timeout)
	// The timer broadcasts holding the lock: a broadcast between the check
	// below and c.Wait would be lost, and the caller wait forever (seen under
	// load). It fires after the deadline, so the check it wakes sees it passed.
	t := time.AfterFunc(timeout, func() {
		c.L.Lock()
		defer c.L.Unlock()
		c.Broadcast()
	})
	defer t.Stop()
	for !ok() {
		if !time.Now().Before(deadline) {
			return false
		}
		c.Wait()
	}
	return true
}

// sensorReady bounds a sensor's start: loading its programs takes a second
// or two on a busy machine.
const sensorReady = 60 * time.Second

// newHost adds a host to bed and starts its sensor (the driftsensor binary
// at sensorBin), sealed, publishing to url.
func newHost(lt *lifetime, bed *testbed.Bed, peer *testbed.Host, name, rootBase, actor, sensorBin, url string) (*drillHost, error) {
	d := &drillHost{name: name, peer: peer, actor: actor, root: filepath.Join(rootBase, name)}
	d.cond = sync.NewCond(&d.mu)
	if err := guard(func() { d.h = bed.AddHost(name) }); err != nil {
		return nil, err
	}
	// The echo server starts before the seal: its exec is not drift.
	if _, err := d.h.StartEcho(echoPort); err != nil {
		return nil, err
	}
	if err := makeRoot(d.root); err != nil {
		return nil, fmt.Errorf("host root %s: %w", d.root, err)
	}
	state := d.root + ".sensor"
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	pol := filepath.Join(state, "policy.yaml")
	if err := os.WriteFile(pol, []byte(fmt.Sprintf(hostPolicy, d.root, actor)), 0o600); err != nil {
		return nil, err
	}
	root, err := sysfs.CgroupRoot()
	if err != nil {
		return nil, err
	}
	ready := filepath.Join(state, "ready")
	logFile, err := os.Create(filepath.Join(state, "sensor.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the sensor holds its own descriptor
	log := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	cmd := exec.Command(sensorBin, "--host", name, "--policy", pol, "--scope-cgroup", strings.TrimPrefix(d.h.Cgroup, root),
		"--seal", "--gate", "--gate-netns", d.h.NetnsPath, "--nats", url, "--state-dir", filepath.Join(state, "state"),
		"--heartbeat", "5m", "--ready-file", ready, // the longest: the drill judges findings, not silence
		"--kernel-check", "0") // the bed's hosts share one kernel: each would see the others' programs as drift
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sensor of %s: %w", name, err)
	}
	exited := make(chan struct{})
	go func() { d.read(stdout); cmd.Wait(); close(exited) }()
	var once sync.Once
	d.stop = func() {
		once.Do(func() {
			if d.marker != nil {
				d.marker.cmd.Process.Kill()
				d.marker.wait()
			}
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
			os.RemoveAll(filepath.Join(gate.DefaultPinDir, name))
			os.RemoveAll(state)
			os.RemoveAll(d.root)
		})
	}
	lt.Cleanup(d.stop)
	for deadline := time.Now().Add(sensorReady); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("sensor of %s exited before it was ready: %s", name, log())
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sensor of %s not ready within %s: %s", name, sensorReady, log())
		}
	}
	// The marker waits in the sealed scope; its exec is of the actor binary,
	// an image file.
	if d.marker, err = d.startActor(actorJob{Act: []string{"create", d.path(markerPath)}, Wait: true}, nil); err != nil {
		return nil, err
	}
	return d, nil
}

// path is p (absolute, as on a real host) inside the host's root.
func (d *drillHost) path(p string) string { return filepath.Join(d.root, p) }

// actorProc is a running actor.
type actorProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser // its stdin, for a job that waits
	clock *os.File       // the clock page
}

// startActor starts the actor binary with job in the host's network
// namespace and a mount namespace of its own (mounts a technique makes never
// reach the machine's); it joins the host's cgroup itself. Its descriptor 3
// is the clock page, an unlinked file of the drill's.
func (d *drillHost) startActor(job actorJob, out io.Writer) (*actorProc, error) {
	job.Cgroup = d.h.Cgroup
	raw, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	clock, err := os.CreateTemp("", "driftdrill-clock-")
	if err != nil {
		return nil, err
	}
	os.Remove(clock.Name())
	if err := clock.Truncate(clockSize); err != nil {
		clock.Close()
		return nil, err
	}
	a := &actorProc{cmd: exec.Command(d.actor), clock: clock}
	a.cmd.Env = append(os.Environ(), actorEnv+"="+string(raw))
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	a.cmd.ExtraFiles = []*os.File{clock}
	a.cmd.Stdout, a.cmd.Stderr = out, out
	if job.Wait {
		if a.in, err = a.cmd.StdinPipe(); err != nil {
			clock.Close()
			return nil, err
		}
	}
	if err := d.h.Do(a.cmd.Start); err != nil {
		clock.Close()
		return nil, fmt.Errorf("start the actor on %s: %w", d.name, err)
	}
	return a, nil
}

// wait waits for the actor's end and reads its clock page: t0 (0 if the
// actor never reached its timed call) and the call's errno (-1 if it did
// not return: an exec that worked, or the actor killed).
func (a *actorProc) wait() (t0 int64, errno int, err error) {
	defer a.clock.Close()
	err = a.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok && !ee.Exited() {
		err = nil // killed by the destroy, once the technique was detected
	}
	var page [16]byte
	if _, rerr := a.clock.ReadAt(page[:], 0); rerr != nil {
		return 0, 0, errors.Join(err, rerr)
	}
	t0 = int64(binary.NativeEndian.Uint64(page[offT0:]))
	errno = int(int64(binary.NativeEndian.Uint64(page[offErrno:]))) - 1
	return t0, errno, err
}

// prober probes hosts' echo ports from their bed's peer host.
type prober struct{ lookup func(host string) *drillHost }

func (p prober) Probe(ctx context.Context, host string) error {
	d := p.lookup(host)
	if d == nil {
		return fmt.Errorf("probe: unknown host %q", host)
	}
	tp := actuator.TCPProber{Addr: func(string) (string, error) { return d.h.AddrPort(echoPort).String(), nil }, Dial: d.peer.DialContext}
	return tp.Probe(ctx, host)
}
