// Command driftctl is the operator's tool for a driftsensor fleet: it
// generates per-host NATS credentials, seals and unseals hosts through the
// control plane, shows the fleet, and prints findings live or from the stream.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"os/user"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/cmd/driftctl/internal/findings"
	"github.com/driftsensor/driftsensor/cmd/driftctl/internal/fleet"
	"github.com/driftsensor/driftsensor/cmd/driftctl/internal/incidents"
	"github.com/driftsensor/driftsensor/internal/version"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/creds"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
	"github.com/driftsensor/driftsensor/tests/drill"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

func main() {
	drill.ActorMainIfChild() // driftctl drill re-executes itself as the actor and echo server of its test hosts
	testbed.ServeEchoIfChild()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed: server unreachable, refused change, ...
	exitUsage   = 2 // the command line is wrong
)

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

const usage = `usage: driftctl [global flags] COMMAND [flags] [args]

commands:
  creds --hosts a,b --out DIR   generate a nats-server configuration and per-host nkey credentials
  init [--replicas N] [--max-age D] [--max-bytes B] [--dedup-window D]
                                create or resize the findings and audit streams and the host state bucket
  seal HOST                     seal a host (mutable -> sealed), audited
  unseal HOST                   unseal a host (sealed -> mutable), audited
  cordon HOST                   cordon a host (state only: the responder or the sensor acts on it)
  uncordon HOST                 return a cordoned host to sealed, audited
  status [--json]               fleet table: state, backend, last heartbeat, findings, lost records
  watch [--host H] [--kind K]   live findings, one line each
  replay --since T [--until T]  findings kept in the stream for a time range
  export --durable NAME [--format json|ocsf] [--out FILE] [--to URL]...
                                follow the stream through a durable consumer into a file, stdout, syslog,
                                Splunk HEC or Elastic _bulk; resumes where it stopped, nothing lost or doubled
  incidents [--host H] [--since T] [--json]
                                the responder's incidents from the audit stream: stages and their times,
                                action, actuators, when the cordon was verified, errors
  approve INCIDENT [--by WHO]   release an action the blast-radius limiter holds, audited
  drill [--hosts N] [--techniques PATTERN] [--runs R] [--json] [--html FILE] [--list]
                                chaos drill: attacker techniques on sealed test-bed hosts made here (root),
                                each checked for its exact finding and timed to cordon and destroy
  drill --host H [--mode record|cordon] [--techniques file,exec]
                                drill a live host behind a marker signed with your nkey; times every stage
  evidence INCIDENT [--out DIR] what the responder kept of an incident before acting: its findings with
                                their process ancestry, the files (hash, size, first 4 KiB), recent findings
  testbed up --hosts N | down   test hosts on this machine (netns + cgroup each) with their sensors, NATS and a
                                responder; up prints how to reach them and runs until interrupted (root)

global flags (also accepted after the command):
`

// globals are the connection flags every command shares.
type globals struct {
	conn    transport.Options
	timeout time.Duration
}

func (g *globals) register(fs *flag.FlagSet) {
	def := os.Getenv("NATS_URL")
	if def == "" {
		def = "nats://127.0.0.1:4222"
	}
	g.conn.RegisterFlags(fs, def, "NATS server URL(s), comma-separated; $NATS_URL sets the default")
	fs.DurationVar(&g.timeout, "timeout", 5*time.Second, "bound on each request to the server")
}

func (g *globals) options() transport.Options {
	o := g.conn
	o.Name, o.AckTimeout = "driftctl", g.timeout
	if o.NKeySeedFile == "" && o.CredsFile == "" {
		o.NKeySeedFile = creds.LocalSeed(creds.AdminSeed) // the embedded server of a sensor on this host
	}
	return o
}

type cli struct {
	cmd            string // the command running
	stdout, stderr io.Writer
	g              globals
	ctx            context.Context
}

type command struct {
	run  func(c *cli, args []string) error
	help string
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"creds":     {(*cli).creds, "creds --hosts a,b --out DIR [--nats-listen ADDR] [--jetstream-dir DIR] [--rotate]"},
		"init":      {(*cli).initCmd, "init [--replicas N] [--max-age D] [--max-bytes B] [--dedup-window D]"},
		"seal":      {stateCmd(event.StateSealed), "seal HOST [--by WHO]"},
		"unseal":    {stateCmd(event.StateMutable), "unseal HOST [--by WHO]"},
		"cordon":    {stateCmd(event.StateCordoned), "cordon HOST [--by WHO]"},
		"uncordon":  {stateCmd(event.StateSealed), "uncordon HOST [--by WHO]"},
		"status":    {(*cli).status, "status [--json] [--wait 2s]"},
		"watch":     {(*cli).watch, "watch [--host H] [--kind file|exec|net|sensor] [--json|--format text|json|ocsf] [--count N]"},
		"replay":    {(*cli).replay, "replay --since T [--until T] [--host H] [--kind K] [--json|--format text|json|ocsf]"},
		"incidents": {(*cli).incidents, "incidents [--host H] [--since T] [--json]"},
		"approve":   {(*cli).approve, "approve INCIDENT [--by WHO]"},
		"export":    {(*cli).export, exportHelp},
		"evidence":  {(*cli).evidence, "evidence INCIDENT [--out DIR]"},
		"drill":     {(*cli).drill, "drill [--hosts N] [--techniques PATTERN] [--runs R] [--json] [--html FILE] [--list] | drill --host H [--mode record|cordon] [--techniques file,exec] [--ttl 2m] [--wait 30s] [--sign-nkey SEED] [--json]"},
		"testbed":   {(*cli).testbed, testbedHelp},
	}
}

// run is driftctl: it returns the exit status and never panics on bad input.
func run(args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("driftctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.g.register(fs)
	showVersion := version.Flag(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.String("driftctl"))
		return exitOK
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	name := fs.Arg(0)
	cmd, ok := commands[name]
	if !ok {
		if name == "help" {
			fs.Usage()
			return exitOK
		}
		fmt.Fprintf(stderr, "driftctl: unknown command %q (want one of: %s)\n", name, strings.Join(slices.Sorted(maps.Keys(commands)), ", "))
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c.ctx, c.cmd = ctx, name
	err := cmd.run(c, fs.Args()[1:])
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, transport.ErrUnauthorized):
		fmt.Fprintf(stderr, "driftctl %s: %v\n", name, err)
		return exitUsage // a bad credential is bad input
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "driftctl %s: %v\nusage: driftctl %s\n", name, err, cmd.help)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "driftctl %s: %v\n", name, err)
		return exitFailure
	}
}

// parse parses a command's flags, which may come before, between or after
// its arguments, and returns the arguments. The global flags are accepted too.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(c.stderr)
	c.usageFor(fs)
	// Registering the globals again resets them to their defaults: restore
	// what the command line said before the command.
	saved := c.g
	c.g.register(fs)
	c.g = saved
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, checkGlobals(c.g)
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), checkGlobals(c.g)
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (c *cli) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := transport.Connect(c.g.options())
	if err != nil {
		if errors.Is(err, transport.ErrUnauthorized) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w (is the server up? --nats URL, --nats-nkey or --nats-creds for credentials)", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

func (c *cli) control() (*control.Client, *nats.Conn, error) {
	nc, _, err := c.connect()
	if err != nil {
		return nil, nil, err
	}
	ctl, err := control.New(nc, c.g.timeout)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return ctl, nc, nil
}

func (c *cli) creds(args []string) error {
	fs := flag.NewFlagSet("creds", flag.ContinueOnError)
	hosts := fs.String("hosts", "", "comma-separated host names")
	out := fs.String("out", "", "output directory (created, mode 0700)")
	listen := fs.String("nats-listen", creds.DefaultListen, "address the generated server listens on")
	jsDir := fs.String("jetstream-dir", "", "JetStream store of the generated server (default: OUT/jetstream)")
	rotate := fs.Bool("rotate", false, "replace existing seeds (default: keep them, so adding a host does not re-key the fleet)")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	if *hosts == "" || *out == "" {
		return usagef("--hosts and --out are required")
	}
	var list []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			list = append(list, h)
		}
	}
	for _, h := range list {
		if err := event.ValidHost(h); err != nil {
			return usagef("--hosts: %v", err)
		}
	}
	res, err := creds.Generate(list, *out, creds.Options{Listen: *listen, StoreDir: *jsDir, Rotate: *rotate})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "server configuration: %s (includes %s)\n", res.ServerConfig, res.AuthConfig)
	for _, u := range res.Users {
		what := "kept"
		if u.Created {
			what = "new"
		}
		fmt.Fprintf(c.stdout, "%-9s %-20s %s  %s (%s)\n", u.Role, u.Name, u.PublicKey, u.SeedFile, what)
	}
	admin, _ := res.User("admin")
	responder, _ := res.User("responder")
	fmt.Fprintf(c.stdout, "\nnext:\n  nats-server -c %s\n  driftctl --nats nats://%s --nats-nkey %s init\n  driftsensor --nats nats://%s --nats-nkey %s --host %s ...   (on each host, its own seed)\n  driftresponder --nats nats://%s --nats-nkey %s ...\n",
		res.ServerConfig, *listen, admin.SeedFile, *listen, res.Users[0].SeedFile, res.Users[0].Name, *listen, responder.SeedFile)
	return nil
}

func (c *cli) initCmd(args []string) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	var set transport.Settings
	fs.IntVar(&set.Replicas, "replicas", 1, "copies of the streams and the state bucket (3 on a three-node cluster)")
	fs.DurationVar(&set.MaxAge, "max-age", 0, "drop findings and audit records older than this, e.g. 2160h (0: keep all)")
	fs.Int64Var(&set.MaxBytes, "max-bytes", 0, "size limit of each stream and the bucket in bytes; the oldest go first (0: none)")
	fs.DurationVar(&set.Dedup, "dedup-window", transport.DedupWindow, "how long the findings stream drops a finding sent again (see README: the spool's longest wait)")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	if err := set.Check(); err != nil {
		return usageError{err.Error()}
	}
	ctl, nc, err := c.control()
	if err != nil {
		return err
	}
	defer nc.Close()
	done, err := ctl.Init(c.ctx, set)
	for _, line := range done {
		fmt.Fprintln(c.stdout, line)
	}
	return err
}

// stateCmd is seal, unseal, cordon and uncordon: one host, one audited change.
func stateCmd(to event.State) func(c *cli, args []string) error {
	return func(c *cli, args []string) error {
		fs := flag.NewFlagSet(c.cmd, flag.ContinueOnError)
		by := fs.String("by", "", "who asks, for the audit record (default: $USER@hostname)")
		rest, err := c.parse(fs, args)
		if err != nil {
			return err
		}
		if len(rest) != 1 {
			return usagef("want exactly one host, got %d arguments", len(rest))
		}
		host := rest[0]
		if err := event.ValidHost(host); err != nil {
			return usageError{err.Error()}
		}
		who := *by
		if who == "" {
			who = defaultBy()
		}
		ctl, nc, err := c.control()
		if err != nil {
			return err
		}
		defer nc.Close()
		cur, _, err := ctl.State(c.ctx, host)
		if err != nil {
			return err
		}
		// seal and uncordon both end in sealed; saying which one is meant keeps
		// a cordoned host from being released by a routine seal.
		uncordon := c.cmd == "uncordon"
		switch {
		case uncordon && cur != event.StateCordoned:
			return fmt.Errorf("%s is %s, not cordoned: nothing to uncordon", host, cur)
		case !uncordon && to == event.StateSealed && cur == event.StateCordoned:
			return fmt.Errorf("%s is cordoned: use driftctl uncordon %s to return it to sealed", host, host)
		}
		ch, err := ctl.SetState(c.ctx, host, to, who)
		if err != nil {
			return err
		}
		if ch.From == ch.To {
			fmt.Fprintf(c.stdout, "%s is already %s\n", host, ch.To)
			return nil
		}
		fmt.Fprintf(c.stdout, "%s: %s -> %s (revision %d, by %s; audit record on %s)\n", host, ch.From, ch.To, ch.Revision, who, event.StateSubject(host))
		return nil
	}
}

func defaultBy() string {
	name := os.Getenv("USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "unknown"
	}
	hn, err := os.Hostname()
	if err != nil || hn == "" {
		hn = "unknown"
	}
	return name + "@" + hn
}

func (c *cli) status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	wait := fs.Duration("wait", 2*time.Second, "how long to listen for heartbeats (two heartbeat intervals)")
	rest, err := c.parse(fs, args)
	if err == nil {
		err = checkWait(*wait)
	}
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	if *wait < 0 {
		return usagef("--wait %v: must not be negative", *wait)
	}
	nc, js, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := fleet.Collect(c.ctx, nc, js, *wait)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return st.WriteTable(c.stdout)
}

// outputFlags are the flags watch and replay share.
type outputFlags struct {
	host, kind, format string
	json               bool
}

func (o *outputFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&o.host, "host", "", "only this host")
	fs.StringVar(&o.kind, "kind", "", "only this kind: file, exec, net or sensor")
	fs.StringVar(&o.format, "format", "", "text, json or ocsf (default: text on a terminal, json otherwise)")
	fs.BoolVar(&o.json, "json", false, "JSON lines (same as --format json)")
}

func (o *outputFlags) printer(c *cli) (findings.Filter, *findings.Printer, error) {
	var f findings.Filter
	if o.host != "" {
		if err := event.ValidHost(o.host); err != nil {
			return f, nil, usagef("--host: %v", err)
		}
		f.Host = o.host
	}
	k, err := findings.ParseKind(o.kind)
	if err != nil {
		return f, nil, usagef("--kind: %v", err)
	}
	f.Kind = k
	tty := isTerminal(c.stdout)
	format := o.format
	switch {
	case o.json && format != "" && format != findings.FormatJSON:
		return f, nil, usagef("--json and --format %s disagree", format)
	case o.json:
		format = findings.FormatJSON
	case format == "" && tty:
		format = findings.FormatText
	case format == "":
		format = findings.FormatJSON
	}
	if format, err = findings.ParseFormat(format); err != nil {
		return f, nil, usagef("--format: %v", err)
	}
	color := tty && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	return f, &findings.Printer{Out: c.stdout, Warn: c.stderr, Format: format, Color: color}, nil
}

func (c *cli) watch(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	var o outputFlags
	o.register(fs)
	count := fs.Int("count", 0, "stop after this many findings (0: until interrupted)")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	if *count < 0 {
		return usagef("--count %d: must not be negative", *count)
	}
	f, p, err := o.printer(c)
	if err != nil {
		return err
	}
	nc, _, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	return findings.Watch(c.ctx, nc, f, p, *count, func() {
		fmt.Fprintf(c.stderr, "driftctl: watching %s\n", strings.Join(f.Subjects(), " "))
	})
}

func (c *cli) replay(args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var o outputFlags
	o.register(fs)
	sinceArg := fs.String("since", "", `start: RFC 3339 time, a date (2026-03-01), or a duration ago (90m, 24h)`)
	untilArg := fs.String("until", "", `end (default: now); same forms as --since, or "now"`)
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	if *sinceArg == "" {
		return usagef("--since is required")
	}
	now := time.Now()
	since, err := parseTime(*sinceArg, now)
	if err != nil {
		return usagef("--since: %v", err)
	}
	var until time.Time
	if *untilArg != "" {
		if until, err = parseTime(*untilArg, now); err != nil {
			return usagef("--until: %v", err)
		}
		if until.Before(since) {
			return usagef("--until %s is before --since %s", until.Format(time.RFC3339), since.Format(time.RFC3339))
		}
	}
	f, p, err := o.printer(c)
	if err != nil {
		return err
	}
	nc, js, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	n, err := findings.Replay(c.ctx, js, f, since, until, p)
	if err != nil {
		return err
	}
	if isTerminal(c.stdout) {
		fmt.Fprintf(c.stderr, "driftctl: %d findings\n", n)
	}
	return nil
}

// parseTime reads an absolute time (RFC 3339, or a local date and time), a
// duration before now ("90m", "-90m"), or "now".
func parseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2026-03-01T12:00:00Z), a date (2026-03-01), a duration ago (90m, 24h) or now", s)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (c *cli) incidents(args []string) error {
	fs := flag.NewFlagSet("incidents", flag.ContinueOnError)
	host := fs.String("host", "", "only this host")
	sinceArg := fs.String("since", "", "only records from then on: RFC 3339 time, a date, or a duration ago (90m, 24h); default: all")
	asJSON := fs.Bool("json", false, "one JSON object per incident per line")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	var f incidents.Filter
	if *host != "" {
		if err := event.ValidHost(*host); err != nil {
			return usagef("--host: %v", err)
		}
		f.Host = *host
	}
	if *sinceArg != "" {
		if f.Since, err = parseTime(*sinceArg, time.Now()); err != nil {
			return usagef("--since: %v", err)
		}
	}
	nc, js, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(c.ctx, max(c.g.timeout, 30*time.Second))
	defer cancel()
	list, skipped, err := incidents.Collect(ctx, js, f)
	if err != nil {
		return err
	}
	if skipped > 0 {
		fmt.Fprintf(c.stderr, "driftctl: %d records in %s are not %s records; skipped\n", skipped, event.AuditStream, decide.AuditSchema)
	}
	if *asJSON {
		return incidents.WriteJSON(c.stdout, list)
	}
	if err := incidents.WriteText(c.stdout, list); err != nil {
		return err
	}
	if isTerminal(c.stdout) {
		fmt.Fprintf(c.stderr, "driftctl: %d incidents\n", len(list))
	}
	return nil
}

// approve releases an action the responder's blast-radius limiter holds.
// The replica holding the incident answers and audits the approval with the
// name given; no answer means no replica holds it.
func (c *cli) approve(args []string) error {
	fs := flag.NewFlagSet("approve", flag.ContinueOnError)
	by := fs.String("by", "", "who approves, for the audit record (default: $USER@hostname)")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("want exactly one incident id (driftctl incidents lists held ones), got %d arguments", len(rest))
	}
	id := rest[0]
	if id == "" || len(id) > 64 || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '"' }) {
		return usagef("incident id %q: want the id from driftctl incidents, e.g. inc-...", id)
	}
	who := *by
	if who == "" {
		who = defaultBy()
	}
	nc, _, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	data, _ := json.Marshal(decide.Approval{Incident: id, By: who})
	ctx, cancel := context.WithTimeout(c.ctx, c.g.timeout)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, decide.ApproveSubject, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("approve %s: no driftresponder listens on %s", id, decide.ApproveSubject)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("approve %s: no responder holds it for approval within %s: it was never held, is already approved or closed, or the id is wrong (driftctl incidents shows held incidents)", id, c.g.timeout)
	case err != nil:
		return fmt.Errorf("approve %s: %w", id, err)
	}
	var rep struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return fmt.Errorf("approve %s: unreadable reply %q", id, m.Data)
	}
	if !rep.OK {
		return fmt.Errorf("approve %s: refused: %s", id, rep.Error)
	}
	fmt.Fprintf(c.stdout, "approved %s (by %s); the responder acts now and audits it: driftctl incidents\n", id, who)
	return nil
}
