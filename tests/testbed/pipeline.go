package testbed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/driftsensor/driftsensor/sensor/creds"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
)

// PipelineConfig says what Up runs on the bed besides the hosts.
type PipelineConfig struct {
	Sensor        string   // driftsensor binary
	Responder     string   // driftresponder binary; "" runs no responder
	Policy        string   // every sensor's policy file; "" the built-in policy
	Seal          bool     // sensors seal their host at start
	SensorArgs    []string // more flags for every sensor
	ResponderArgs []string // more flags for the responder (rules, probes...)
}

// Pipeline is a bed made by Create with the whole chain on it: a NATS
// server on loopback (in this process) with a credential per host, one
// driftsensor per host scoped to the host's cgroup with its cordon gate in
// the host's namespace, and a driftresponder. The daemons run in a cgroup of
// the bed's own, outside every host's scope, so Down kills them too.
type Pipeline struct {
	*Bed
	Dir           string // WorkDir: credentials, JetStream, sensor state, logs
	URL           string // the NATS server, on loopback
	CredsDir      string // driftctl creds output: hosts/<sensor>.nk, responder.nk, admin.nk, server.conf
	AdminSeed     string // for driftctl --nats-nkey
	ResponderSeed string
	ResponderLog  string // the responder's log (JSON lines; audit records among them); "" without one
	Sensors       map[string]*Sensor
}

// Sensor is the driftsensor of one host.
type Sensor struct {
	Host     string // the identity it publishes under: the host's namespace name, unique on the machine
	Seed     string // its own nkey seed
	StateDir string
	Findings string // its stdout: one finding per line (JSON)
	Log      string // its stderr
	proc     *daemon
}

// Subject is where the sensor publishes findings of kind.
func (s *Sensor) Subject(kind event.Kind) string { return event.Subject(s.Host, kind) }

// CtlSubject is where the sensor takes commands.
func (s *Sensor) CtlSubject() string { return event.CtlSubject(s.Host) }

// daemonsCgroup holds the sensors and the responder; the dot keeps it apart
// from host names.
const daemonsCgroup = "pipeline.d"

// Up creates the bed called name (see Create) with hosts and starts the
// pipeline on it; it returns once every sensor has sealed or watched its
// host and the responder has subscribed. Close stops and removes it all.
func Up(name string, hosts []string, cfg PipelineConfig) (*Pipeline, error) {
	b, err := Create(name)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{Bed: b, Dir: WorkDir(b.Prefix), Sensors: map[string]*Sensor{}}
	if err := p.start(hosts, cfg); err != nil {
		return nil, errors.Join(err, p.Close())
	}
	return p, nil
}

func (p *Pipeline) start(hosts []string, cfg PipelineConfig) error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return err
	}
	p.onCleanup(func() error { return os.RemoveAll(p.Dir) })
	var ids []string
	for _, name := range hosts {
		h, err := p.Add(name)
		if err != nil {
			return fmt.Errorf("add host %q: %w", name, err)
		}
		ids = append(ids, h.Netns)
	}
	daemons := filepath.Join(p.Cgroup, daemonsCgroup)
	if err := os.Mkdir(daemons, 0o755); err != nil {
		return fmt.Errorf("create cgroup %s: %w", daemons, err)
	}
	p.onCleanup(func() error { return sysfs.RemoveCgroup(daemons) })

	p.CredsDir = filepath.Join(p.Dir, "creds")
	srv, err := creds.StartServer(ids, p.CredsDir, creds.Options{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(p.Dir, "jetstream")})
	if err != nil {
		return err
	}
	p.onCleanup(func() error { srv.Close(); return nil })
	res := srv.Creds
	p.URL = srv.URL
	admin, _ := res.User(creds.RoleAdmin)
	responder, _ := res.User(creds.RoleResponder)
	p.AdminSeed, p.ResponderSeed = admin.SeedFile, responder.SeedFile

	root, err := sysfs.CgroupRoot()
	if err != nil {
		return err
	}
	var ready []string
	var procs []*daemon
	for _, name := range hosts {
		h := p.Host(name)
		u, _ := res.User(h.Netns)
		dir := filepath.Join(p.Dir, name)
		s := &Sensor{Host: h.Netns, Seed: u.SeedFile, StateDir: filepath.Join(dir, "state"),
			Findings: filepath.Join(dir, "findings.jsonl"), Log: filepath.Join(dir, "sensor.log")}
		args := []string{"--host", s.Host, "--nats", p.URL, "--nats-nkey", s.Seed,
			"--scope-cgroup", strings.TrimPrefix(h.Cgroup, root), "--gate", "--gate-netns", h.NetnsPath,
			"--state-dir", s.StateDir, "--heartbeat", "1s", "--ready-file", filepath.Join(dir, "ready"),
			// The bed's hosts share one kernel: each sensor would report the
			// others' BPF programs as kernel state drift.
			"--kernel-check", "0"}
		if cfg.Policy != "" {
			args = append(args, "--policy", cfg.Policy)
		}
		if cfg.Seal {
			args = append(args, "--seal")
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		s.proc, err = p.startDaemon(daemons, cfg.Sensor, append(args, cfg.SensorArgs...), s.Findings, s.Log)
		if err != nil {
			return err
		}
		p.Sensors[name] = s
		ready, procs = append(ready, filepath.Join(dir, "ready")), append(procs, s.proc)
	}
	if err := waitReady(ready, procs); err != nil {
		return err
	}
	if cfg.Responder == "" {
		return nil
	}
	return p.StartResponder(cfg.Responder, cfg.ResponderArgs...)
}

// StartResponder starts driftresponder bin with the responder's credential
// and args, and returns once it has subscribed. Up starts it when
// PipelineConfig.Responder is set; start it here instead when its flags
// name what only exists once the hosts do (a probe of a host's address).
func (p *Pipeline) StartResponder(bin string, args ...string) error {
	if p.ResponderLog != "" {
		return errors.New("testbed: the pipeline runs a responder already")
	}
	p.ResponderLog = filepath.Join(p.Dir, "responder.log")
	ready := filepath.Join(p.Dir, "responder.ready")
	args = append([]string{"--nats", p.URL, "--nats-nkey", p.ResponderSeed, "--replica", p.Prefix,
		"--heartbeat-interval", "1s", "--ready-file", ready}, args...)
	d, err := p.startDaemon(filepath.Join(p.Cgroup, daemonsCgroup), bin, args, os.DevNull, p.ResponderLog)
	if err != nil {
		return err
	}
	return waitReady([]string{ready}, []*daemon{d})
}

// daemon is a process the pipeline started.
type daemon struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it exited
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// startDaemon starts bin in cgroup dir with stdout and stderr to files; at
// Close it gets SIGTERM, then SIGKILL after 10 s.
func (p *Pipeline) startDaemon(dir, bin string, args []string, stdout, stderr string) (*daemon, error) {
	fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	defer syscall.Close(fd)
	out, err := os.Create(stdout)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	errf, err := os.Create(stderr)
	if err != nil {
		return nil, err
	}
	defer errf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, errf
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	d := &daemon{cmd: cmd, log: stderr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	p.onCleanup(func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-d.done
		}
		return nil
	})
	return d, nil
}

// readyBound is how long a daemon may take to load and attach on a loaded machine.
const readyBound = 60 * time.Second

// waitReady waits for every ready file, failing with the log of a daemon
// that exited first.
func waitReady(files []string, procs []*daemon) error {
	deadline := time.Now().Add(readyBound)
	for i, f := range files {
		for {
			if _, err := os.Stat(f); err == nil {
				break
			}
			if procs[i].exited() || time.Now().After(deadline) {
				log, _ := os.ReadFile(procs[i].log)
				return fmt.Errorf("%s did not get ready (%s): %s", procs[i].cmd.Path, f, strings.TrimSpace(string(log)))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
