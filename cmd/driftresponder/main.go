// Command driftresponder reads every host's findings from the findings
// stream (a durable consumer) and its heartbeats, and cordons or destroys
// drifting hosts by policy. Flags and wiring only:
// the logic lives in responder/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/internal/metrics"
	"github.com/driftsensor/driftsensor/internal/version"
	"github.com/driftsensor/driftsensor/responder/actuator"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/responder/inns"
	"github.com/driftsensor/driftsensor/sensor/creds"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

type rules []decide.Rule

func (r *rules) String() string { return fmt.Sprint(len(*r), " rules") }
func (r *rules) Set(s string) error {
	x, err := decide.ParseRuleFlag(s)
	if err != nil {
		return err
	}
	*r = append(*r, x)
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		stop()
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "driftresponder:", err)
		if errors.As(err, new(badInput)) || errors.Is(err, transport.ErrUnauthorized) {
			os.Exit(2) // a refused credential is bad input too
		}
		os.Exit(1)
	}
}

// badInput marks an error in the command line or a file it names: exit
// status 2, like driftsensor and driftctl. Other failures exit 1.
type badInput struct{ error }

func (b badInput) Unwrap() error { return b.error }

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("driftresponder", flag.ContinueOnError)
	fs.Usage = usage(fs)
	var (
		replica    = fs.String("replica", "", "this replica's name in the audit trail (default: the machine's host name)")
		policyFile = fs.String("policy", "", "policy YAML file (default: alert on findings, cordon on a failing sensor)")
		dryRun     = fs.Bool("dry-run", false, "decide and audit, never act")
		ctlCordon  = fs.Bool("ctl-cordon", true, "cordon through the host's ctl subject (its tc gate)")
		evidence   = fs.Bool("evidence", true, "keep each cordoned or destroyed incident's evidence (findings, ancestry, files as the sensor reads them) in the drift_evidence object store, before any destroy")
		drillKey   = fs.String("drill-key", "", "operator public nkeys (U..., comma-separated) trusted to sign live drill markers (driftctl drill --host); none: every drill's findings are real incidents")
		stateSync  = fs.Bool("state-sync", true, "write cordoned/destroyed to the host state bucket, and close a host's incident when it leaves cordoned (driftctl uncordon)")
		linkTmpl   = fs.String("link", "", "cordon from outside too: template of the host's link name here, e.g. 'tap-{{.Host}}'")
		linkNetns  = fs.String("link-netns", "", "network namespace path holding those links (default: this one)")
		linkMode   = fs.String("link-mode", "both", "external cordon: down, detach or both")
		bridge     = fs.String("bridge", "", "bridge an uncordoned link is re-attached to")
		destroyCmd = fs.String("destroy-cmd", "", "destroy hook: a command line run without a shell, templated, e.g. 'virsh destroy {{.Host}}'")
		webhook    = fs.String("destroy-webhook", "", "destroy hook: URL to POST the incident to")
		probeTmpl  = fs.String("probe", "", "verify cordons: template of a host:port that must stop answering, e.g. '{{.Host}}.fleet:22'")
		probeNetns = fs.String("probe-netns", "", "network namespace path to probe from (a test bed peer); default: this one")
		hbEvery    = fs.Duration("heartbeat-interval", time.Second, "heartbeat interval assumed for sensors whose heartbeats do not carry theirs, and for hosts known only from the control plane (0: judge only those that carry it)")
		missed     = fs.Int("missed-beats", 3, "silent intervals of its own before a host is a suspect")
		gapCheck   = fs.Bool("gap-check", true, "a hole in a host's finding sequence that the findings stream lacks fires the dead man's switch")
		gapWait    = fs.Duration("gap-wait", 5*time.Second, "how long a hole may stay open before the stream is checked")
		consumer   = fs.String("consumer", decide.Consumer, "durable consumer on the findings stream; replicas sharing it share the work")
		silWindow  = fs.Duration("silence-window", 0, "a suspect waits this long for others to fall silent before it is judged alone (0: one of its intervals)")
		massHosts  = fs.Int("mass-hosts", 5, "more than this many hosts silent at once is an infrastructure incident, never a cordon (-1: off)")
		massPct    = fs.Float64("mass-percent", 10, "or more than this share of the fleet, at least two hosts (-1: off)")
		maxHosts   = fs.Int("max-hosts", 0, "blast-radius limit: hosts acted on per window without approval (0: none)")
		maxPercent = fs.Float64("max-percent", 0, "blast-radius limit: share of the known fleet per window (0: none)")
		window     = fs.Duration("window", 10*time.Minute, "blast-radius window")
		readyFile  = fs.String("ready-file", "", "write this file once subscribed")
		metricsOn  = fs.String("metrics-addr", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9465); empty: off")
		verbose    = fs.Bool("v", false, "debug logging")
	)
	var conn transport.Options
	conn.RegisterFlags(fs, nats.DefaultURL, "NATS server URL(s), comma-separated")
	var extra rules
	var alertTo destinations
	fs.Var(&alertTo, "alert-to", "send every audit record (alerts, decisions, actions) to this output too, repeatable: syslog+udp|tcp|tls://HOST:PORT, hec+https://HOST:8088, bulk+https://HOST:9200/INDEX (README: Outputs)")
	fs.Var(&extra, "rule", "policy rule appended after the file's, e.g. 'kind=file,path=/etc,action=cordon' (repeatable)")
	showVersion := version.Flag(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return badInput{err}
	}
	if err := checkFlags(responderFlags{url: conn.URL, hbEvery: *hbEvery, missed: *missed, maxHosts: *maxHosts,
		maxPercent: *maxPercent, window: *window, drillKeys: *drillKey}); err != nil {
		return badInput{err}
	}
	if *showVersion {
		fmt.Println(version.String("driftresponder"))
		return nil
	}

	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	if !*verbose {
		log = log.Level(zerolog.InfoLevel)
	}
	policy := decide.DefaultPolicy()
	if *policyFile != "" {
		data, err := os.ReadFile(*policyFile)
		if err != nil {
			return badInput{err}
		}
		if policy, err = decide.ParsePolicy(*policyFile, data); err != nil {
			return badInput{err}
		}
	}
	for _, r := range extra {
		if err := policy.Add(r); err != nil {
			return badInput{fmt.Errorf("-rule: %w", err)}
		}
	}
	if *replica == "" {
		*replica, _ = os.Hostname()
	}
	cfg := decide.Config{
		Replica: *replica, Policy: policy, DryRun: *dryRun, CtlCordon: *ctlCordon, NoStateSync: !*stateSync,
		HeartbeatInterval: *hbEvery, MissedBeats: *missed, GapCheck: *gapCheck, GapWait: *gapWait, Consumer: *consumer,
		SilenceWindow: *silWindow, MassHosts: *massHosts, MassPercent: *massPct,
		MaxHosts: *maxHosts, MaxPercent: *maxPercent, Window: *window, Log: log, Evidence: *evidence,
		DrillKeys: drillKeys(*drillKey),
	}
	if *linkTmpl != "" {
		name, err := hostTemplate("-link", *linkTmpl)
		if err != nil {
			return badInput{err}
		}
		lc := &actuator.LinkCordon{Link: name, Netns: *linkNetns, Bridge: *bridge}
		switch *linkMode {
		case "down":
			lc.Down = true
		case "detach":
			lc.Detach = true
		case "both":
		default:
			return badInput{fmt.Errorf("-link-mode %q: want down, detach or both", *linkMode)}
		}
		cfg.Cordoners = append(cfg.Cordoners, lc)
	}
	if *destroyCmd != "" {
		c, err := actuator.NewCommand(strings.Fields(*destroyCmd))
		if err != nil {
			return badInput{fmt.Errorf("-destroy-cmd: %w", err)}
		}
		cfg.Destroyers = append(cfg.Destroyers, c)
	}
	if *webhook != "" {
		cfg.Destroyers = append(cfg.Destroyers, &actuator.Webhook{URL: *webhook})
	}
	if *probeTmpl != "" {
		addr, err := hostTemplate("-probe", *probeTmpl)
		if err != nil {
			return badInput{err}
		}
		sample, _ := addr("example-host") // hostTemplate rendered it once already
		if _, _, err := net.SplitHostPort(sample); err != nil {
			return badInput{fmt.Errorf("-probe %q renders %q for host example-host: %w (want host:port, e.g. '{{.Host}}.fleet:22')", *probeTmpl, sample, err)}
		}
		p := &actuator.TCPProber{Addr: addr}
		if ns := *probeNetns; ns != "" {
			p.Dial = func(ctx context.Context, network, address string) (c net.Conn, err error) {
				err = inns.Do(ns, func() error {
					var d net.Dialer
					c, err = d.DialContext(ctx, network, address)
					return err
				})
				return c, err
			}
		}
		cfg.Prober = p
	}
	outs, err := alertOutputs(alertTo, log)
	if err != nil {
		return badInput{err}
	}
	defer closeOutputs(outs)
	if len(outs) > 0 {
		cfg.OnRecord = notify(outs)
	}
	if !cfg.CtlCordon && len(cfg.Cordoners) == 0 && !cfg.DryRun {
		log.Warn().Msg("no cordon mechanism: -ctl-cordon=false and no -link; cordon decisions will only be audited")
	}

	// The metrics address is taken before connecting, so a bad one is bad input.
	var reg *prometheus.Registry
	if *metricsOn != "" {
		reg = metrics.NewRegistry("driftresponder")
		addr, err := metrics.Serve(ctx, "-metrics-addr", *metricsOn, reg)
		if err != nil {
			return badInput{err}
		}
		log.Info().Str("addr", addr.String()).Msg("metrics on /metrics")
	}
	conn.Name = "driftresponder " + *replica
	if conn.CredsFile == "" && conn.NKeySeedFile == "" {
		// The authenticated embedded server of a sensor on this host.
		conn.NKeySeedFile = creds.LocalSeed(creds.ResponderSeed)
	}
	nc, err := transport.Connect(conn, nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	r, err := decide.New(nc, cfg)
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.Start(startCtx); err != nil {
		return err
	}
	defer r.Close()
	if reg != nil {
		reg.MustRegister(r.Collectors()...)
		reg.MustRegister(outputCollectors(outs)...)
	}
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte("ready\n"), 0o644); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// hostTemplate turns a template over {{.Host}} into a per-host lookup.
func hostTemplate(flagName, s string) (func(string) (string, error), error) {
	tp, err := template.New(flagName).Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", flagName, s, err)
	}
	render := func(host string) (string, error) {
		var b strings.Builder
		if err := tp.Execute(&b, struct{ Host string }{host}); err != nil {
			return "", err
		}
		if b.Len() == 0 {
			return "", errors.New(flagName + " rendered empty for " + host)
		}
		return b.String(), nil
	}
	// Render it once now: a template naming another field than .Host stops
	// the responder at start, not during an incident.
	if _, err := render("example-host"); err != nil {
		return nil, fmt.Errorf("%s %q: %w (the only field is .Host)", flagName, s, err)
	}
	return render, nil
}
