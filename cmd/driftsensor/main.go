// Command driftsensor watches a sealed host from inside the kernel and reports
// every mutation as a finding: JSON lines on stdout and, with NATS, events on
// drift.v1.<host>.<kind>.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "driftsensor:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("driftsensor", flag.ContinueOnError)
	var (
		policyFile = fs.String("policy", "", "policy YAML file (default: the built-in policy: protect /, the usual writable exceptions)")
		seal       = fs.Bool("seal", false, "seal at start (also: seal_on_start in the policy)")
		host       = fs.String("host", "", "host name in findings and subjects (default: the system host name)")
		readyFile  = fs.String("ready-file", "", "write this file once the programs are attached (and sealed, if asked)")
		ringBytes  = fs.Uint("ring-bytes", 8<<20, "ring buffer size in bytes (a power of two, multiple of the page size)")
		backendArg = fs.String("backend", "auto", "kernel backend: auto, tracepoint")
		logLevel   = fs.String("log-level", "info", "log level: debug, info, warn, error")
		scopes     multi
	)
	fs.Var(&scopes, "scope-cgroup", "watch only this cgroup v2 subtree (path inside the hierarchy, e.g. /drift/host1); repeatable; default: the policy's scope, else the whole host")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	lvl, err := zerolog.ParseLevel(*logLevel)
	if err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	log := zerolog.New(os.Stderr).Level(lvl).With().Timestamp().Str("component", "driftsensor").Logger()

	pol := policy.Default()
	if *policyFile != "" {
		if pol, err = policy.Load(*policyFile); err != nil {
			return err
		}
	}
	if *host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("read host name: %w (pass --host)", err)
		}
		*host = strings.Map(func(r rune) rune {
			if r == '.' || r == ' ' {
				return '_'
			}
			return r
		}, h)
	}
	if err := event.ValidHost(*host); err != nil {
		return fmt.Errorf("--host: %w", err)
	}
	if *backendArg != "auto" && *backendArg != tracepoint.Name {
		return fmt.Errorf("--backend %q: this build has auto and tracepoint", *backendArg)
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
	if _, err := sysfs.EnsureBPFFS(); err != nil {
		return err
	}
	if _, err := sysfs.EnsureTraceFS(); err != nil {
		log.Warn().Err(err).Msg("tracefs not mounted; tp_btf hooks do not need it")
	}

	be, err := tracepoint.Load(backend.Options{Scope: scopeDirs, CgroupRoot: root, RingBytes: uint32(*ringBytes)})
	if err != nil {
		return err
	}
	defer be.Close()
	if err := be.Apply(sensor.RulesFor(pol)); err != nil {
		return fmt.Errorf("apply policy %s: %w", pol.Source, err)
	}
	sealed := *seal || pol.SealOnStart
	if err := be.SetSealed(sealed); err != nil {
		return err
	}

	var outMu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	seq := uint64(0)
	s := sensor.New(sensor.Config{
		Host:    *host,
		Policy:  pol,
		Backend: be,
		Log:     log,
		Emit: func(ev *event.Event) {
			outMu.Lock()
			defer outMu.Unlock()
			seq++
			ev.Seq = seq
			if err := enc.Encode(ev); err != nil {
				log.Error().Err(err).Msg("write finding to stdout")
			}
		},
	})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info().Str("host", *host).Str("backend", be.Name()).Str("policy", pol.Source).Str("policy_hash", pol.Hash).
		Bool("sealed", sealed).Strs("scope", scopeDirs).Msg("attached")
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("--ready-file: %w", err)
		}
	}
	err = s.Run(ctx)
	log.Info().Msg("detaching")
	return err
}

// preflight turns the usual reasons a load fails into a clear message.
func preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (it loads eBPF programs and attaches cgroup hooks)")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return errors.New("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): driftsensor needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")
	}
	return nil
}
