// Command driftsensor watches a sealed host from inside the kernel and reports
// every mutation as a finding: JSON lines on stdout and, with NATS, events on
// drift.v1.<host>.<kind>.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/internal/version"
	"github.com/driftsensor/driftsensor/responder/gate"
	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/agent"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/creds"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "driftsensor:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("driftsensor", flag.ContinueOnError)
	fs.Usage = usage(fs)
	var (
		policyFile = fs.String("policy", "", "policy YAML file (default: the built-in policy: protect /, the usual writable exceptions)")
		seal       = fs.Bool("seal", false, "seal at start, for images that boot sealed (also: seal_on_start in the policy); later changes come from the control plane")
		host       = fs.String("host", "", "host name in findings and subjects (default: the system host name)")
		readyFile  = fs.String("ready-file", "", "write this file once the programs are attached and the initial state applied")
		ringBytes  = fs.Uint64("ring-bytes", 8<<20, "ring buffer size in bytes (a power of two, from the page size to 2 GiB)")
		backendArg = fs.String("backend", "auto", "kernel backend: auto (lsm when BPF-LSM is active, else tracepoint), lsm, tracepoint")
		enforce    = fs.Bool("enforce", false, "lsm backend: deny mutations with EPERM (and protect the sensor itself), not only report them")
		natsPort   = fs.Int("embedded-port", 4222, "loopback port of the embedded NATS server (0: any free port)")
		stateDir   = fs.String("state-dir", creds.DefaultStateDir, "where the spool, the record of the last heartbeat (for restart findings) and the embedded server's JetStream store and credentials live")
		heartbeat  = fs.Duration("heartbeat", time.Second, "heartbeat interval (100ms to 5m)")
		kernelChk  = fs.Duration("kernel-check", 5*time.Second, "while sealed, compare the security-relevant kernel state (LSMs, lockdown, module, kexec, io_uring and BPF restrictions, loaded modules, BPF programs and links) with the one recorded at the seal this often, and report each change (100ms to 1h; 0: off, for sensors sharing one kernel, as on test beds, where each sees the others' programs as changes)")
		metrics    = fs.String("metrics-addr", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9464); empty: off")
		stdout     = fs.Bool("stdout", true, "also print findings as JSON lines on stdout")
		logLevel   = fs.String("log-level", "info", "log level: debug, info, warn, error")
		gateOn     = fs.Bool("gate", false, "attach the cordon gate (tc) to every interface of the host's network namespace; the responder, a cordoned state or the reflex closes it")
		gateNetns  = fs.String("gate-netns", "", "network namespace the host's interfaces live in (a /run/netns path; default: the sensor's own)")
		drillDir   = fs.String("drill-dir", "", "live drills (driftctl drill --host) work in a directory of their own here; it must exist, in sealed protected space (e.g. /var/lib/driftsensor-drill); empty: drills refused")
		scopes     multi
		mgmt       multi
		format     event.Format
		conn       transport.Options
	)
	conn.RegisterFlags(fs, "", `NATS server URL(s), comma-separated; "" starts an embedded server on loopback; "off" prints findings only`)
	fs.BoolVar(seal, "seal-on-start", false, "same as --seal")
	showVersion := version.Flag(fs)
	fs.Var(&format, "format", "stdout format: json (driftsensor.event/v1) or ocsf (OCSF 1.3 classes, for SIEMs)")
	fs.Var(&mgmt, "mgmt-allow", "management peer that passes a cordon: CIDR[:port[,port]] (e.g. 192.0.2.250:4222, 10.0.0.0/8:22); repeatable")
	fs.Var(&scopes, "scope-cgroup", "watch only this cgroup v2 subtree (path inside the hierarchy, e.g. /drift/host1); repeatable; default: the policy's scope, else the whole host")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	if *showVersion {
		fmt.Println(version.String("driftsensor"))
		return nil
	}
	lvl, err := zerolog.ParseLevel(*logLevel)
	if err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	log := zerolog.New(os.Stderr).Level(lvl).With().Timestamp().Str("service", "driftsensor").Logger()

	pol := policy.Default()
	if *policyFile != "" {
		if pol, err = policy.Load(*policyFile); err != nil {
			return err
		}
	}
	if *host == "" {
		if *host, err = defaultHost(); err != nil {
			return err
		}
	}
	if err := checkFlags(sensorFlags{host: *host, ringBytes: *ringBytes, heartbeat: *heartbeat, natsURL: conn.URL,
		embeddedPort: *natsPort, metricsAddr: *metrics, kernelCheck: *kernelChk}); err != nil {
		return err
	}
	switch *backendArg {
	case "auto", "lsm", "tracepoint":
	default:
		return fmt.Errorf("--backend %q: want auto, lsm or tracepoint", *backendArg)
	}
	if err := preflight(); err != nil {
		return err
	}

	root, err := sysfs.CgroupRoot()
	if err != nil {
		return err
	}
	var scopeDirs []string
	for _, s := range append(append([]string(nil), pol.ScopeCgroups...), scopes...) {
		dir := filepath.Join(root, s)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("scope cgroup %s: %s is not a cgroup v2 directory (create it, or fix the policy's scope.cgroups)", s, dir)
		}
		scopeDirs = append(scopeDirs, dir)
	}
	if *drillDir != "" {
		if st, err := os.Stat(*drillDir); err != nil || !st.IsDir() || !filepath.IsAbs(*drillDir) {
			return fmt.Errorf("--drill-dir %s: want an existing directory, as an absolute path (create it before the host is sealed)", *drillDir)
		}
	}
	if _, err := sysfs.EnsureBPFFS(); err != nil {
		return err
	}
	if _, err := sysfs.EnsureTraceFS(); err != nil {
		log.Warn().Err(err).Msg("tracefs not mounted; tp_btf hooks do not need it")
	}

	var cordon func(bool) error
	var cordonState func() (bool, error)
	spoolDir := filepath.Join(*stateDir, "spool-"+*host)
	protect, err := sensorFiles(spoolDir, conn.CredsFile, conn.NKeySeedFile)
	if err != nil {
		return err
	}
	if conn.URL == "" { // the embedded server's seed for this sensor, made at its first start
		dir, err := creds.EmbeddedHostSeedDir(*stateDir)
		if err != nil {
			return fmt.Errorf("--state-dir: %w", err)
		}
		protect = append(protect, dir)
	}
	bopts := backend.Options{Scope: scopeDirs, CgroupRoot: root, RingBytes: uint32(*ringBytes), Protect: protect}
	if *gateOn {
		var allow []gate.Rule
		for _, m := range mgmt {
			r, err := gate.ParseRule(m)
			if err != nil {
				return fmt.Errorf("--mgmt-allow %q: %w", m, err)
			}
			allow = append(allow, r)
		}
		g, err := gate.Attach(*gateNetns, allow, gate.Options{PinDir: filepath.Join(gate.DefaultPinDir, *host)})
		if err != nil {
			return err
		}
		defer g.Close()
		cordon, cordonState = g.SetCordon, g.Cordoned
		bopts.CordonFlag = g.Flag()
		log.Info().Strs("interfaces", g.Interfaces()).Str("mode", string(g.Mode())).Str("pin", g.PinPath()).Strs("allow", mgmt).Msg("cordon gate attached")
	} else if pol.ReflexCordon {
		return fmt.Errorf("policy %s: reflex.cordon needs the cordon gate: start with --gate (and --mgmt-allow for the management peers)", pol.Source)
	}
	be, why, err := agent.OpenBackend(*backendArg, bopts)
	if err != nil {
		return err
	}
	defer be.Close()
	rules := sensor.RulesFor(pol)
	rules.Enforce = *enforce
	if *enforce && be.Name() != "lsm" {
		log.Warn().Msg("--enforce: the tracepoint backend cannot deny file mutations or exec; it reports them (binds are denied per the policy)")
	}
	if err := be.Apply(rules); err != nil {
		return fmt.Errorf("apply policy %s: %w", pol.Source, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var out io.Writer
	if *stdout {
		out = os.Stdout
	}
	if conn.URL == "" {
		// Authenticated like a fleet's server: the seeds are root's, in the state directory.
		emb, err := creds.StartEmbedded(*stateDir, *host, *natsPort)
		if err != nil {
			return fmt.Errorf("embedded NATS server: %w (pass --embedded-port 0 for any free port, or --nats URL)", err)
		}
		defer emb.Close()
		conn.URL, conn.InProcess = emb.URL, emb.Server
		if conn.CredsFile == "" && conn.NKeySeedFile == "" {
			conn.NKeySeedFile = emb.HostSeed
		}
		log.Info().Str("url", emb.URL).Str("creds", emb.Creds.Dir).Msg("embedded NATS server; driftctl on this host uses " + creds.EmbeddedAdminSeed(*stateDir))
	}
	if conn.URL == "off" {
		conn.URL = ""
	}
	d, err := agent.New(ctx, agent.Config{
		Host: *host, Policy: pol, Backend: be, BackendWhy: why, Out: out, Format: format, Cordon: cordon, CordonState: cordonState,
		Seal: *seal || pol.SealOnStart, Heartbeat: *heartbeat, KernelEvery: *kernelChk, Metrics: *metrics, Log: log,
		NATS: conn, SpoolDir: spoolDir,
		// Next to the spool and its sequence file: each host's own.
		LivenessFile: filepath.Join(spoolDir, "liveness.json"),
		DrillDir:     *drillDir, DrillCgroup: drillCgroup(scopeDirs),
		Ready: func() {
			// Loading the programs (the kernel's BTF, the objects) and
			// starting the server leave megabytes of garbage that the
			// runtime would hand back to the kernel only bit by bit: an idle
			// sensor's memory is what it keeps from here.
			debug.FreeOSMemory()
			if *readyFile != "" {
				if err := os.WriteFile(*readyFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
					log.Error().Err(err).Msg("--ready-file")
				}
			}
		},
	})
	if err != nil {
		return err
	}
	defer d.Close()

	log.Info().Str("host", *host).Str("backend", be.Name()).Str("why", why).Str("policy", pol.Source).Str("policy_hash", pol.Hash).
		Bool("seal", *seal || pol.SealOnStart).Strs("scope", scopeDirs).Msg("attached")
	err = d.Run(ctx)
	log.Info().Msg("detaching")
	return err
}

// drillCgroup is where a drill's process runs: in the scope the sensor
// watches (its first cgroup), or, watching the whole host, beside the sensor.
func drillCgroup(scopeDirs []string) string {
	if len(scopeDirs) == 0 {
		return ""
	}
	return scopeDirs[0]
}

// sensorFiles are the files another process must not open: the NATS
// credentials, the state directory and the spool directory in it (made here,
// root-only, so they exist when the backend records them).
func sensorFiles(spoolDir string, creds ...string) ([]string, error) {
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("--state-dir: create %s: %w", spoolDir, err)
	}
	files := []string{filepath.Dir(spoolDir), spoolDir}
	for _, c := range creds {
		if c != "" {
			files = append(files, c)
		}
	}
	return files, nil
}

func defaultHost() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("read host name: %w (pass --host)", err)
	}
	return strings.Map(func(r rune) rune {
		if r == '.' || r == ' ' {
			return '_'
		}
		return r
	}, h), nil
}

// preflight turns the usual reasons a load fails into a clear message.
func preflight() error {
	if runtime.GOARCH != "amd64" {
		return fmt.Errorf("this build is for %s, but driftsensor's eBPF programs read x86-64 registers and syscall numbers: run the amd64 build on an x86-64 host (README, Install on a fleet)", runtime.GOARCH)
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root (it loads eBPF programs and attaches cgroup hooks)")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return errors.New("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): driftsensor needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")
	}
	return nil
}
