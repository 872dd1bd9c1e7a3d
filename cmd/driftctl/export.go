package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/driftsensor/driftsensor/cmd/driftctl/internal/findings"
	"github.com/driftsensor/driftsensor/internal/outputs"
	"github.com/driftsensor/driftsensor/sensor/event"
)

const exportHelp = "export --durable NAME [--format json|ocsf] [--out FILE] [--to URL]... [--host H] [--kind K] [--count N]"

func init() {
	commandDocs["export"] = struct{ desc, example string }{
		"Follow the findings stream through the durable consumer NAME into a file (appended; nothing written twice after\n" +
			"a crash), stdout and outputs (syslog, Splunk HEC, Elastic _bulk). Each batch is written and delivered before it\n" +
			"is acknowledged; started again, the export resumes after the last acknowledged batch.",
		"driftctl export --durable siem --format ocsf --out /var/log/drift/findings.ocsf --to syslog+tls://siem.example:6514",
	}
}

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// export follows the findings stream through a durable consumer into a
// file (or stdout) and outputs (syslog, HEC, _bulk), resuming after the
// last acknowledged finding when started again.
func (c *cli) export(args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	durable := fs.String("durable", "", "name of the durable consumer that keeps the export's place in the stream (required)")
	format := fs.String("format", findings.FormatJSON, "json (each finding as published) or ocsf")
	out := fs.String("out", "-", "append the lines to this file (- for stdout); a file is never written twice after a crash")
	var to listFlag
	fs.Var(&to, "to", "also deliver to this output, repeatable: syslog+udp|tcp|tls://HOST:PORT, hec+https://HOST:8088, bulk+https://HOST:9200/INDEX (README: Outputs)")
	host := fs.String("host", "", "only this host")
	kind := fs.String("kind", "", "only this kind: file, exec, net or sensor")
	count := fs.Int("count", 0, "stop after this many findings (0: follow until interrupted)")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	if *durable == "" || strings.ContainsAny(*durable, ".*> \t") {
		return usagef("--durable %q: want a consumer name without dots, spaces, * or >, e.g. siem", *durable)
	}
	if *format != findings.FormatJSON && *format != findings.FormatOCSF {
		return usagef("--format %q: want json or ocsf", *format)
	}
	if *count < 0 {
		return usagef("--count %d: must not be negative", *count)
	}
	x := &findings.Export{Durable: *durable, Format: *format, Count: *count, Warn: c.stderr}
	if *host != "" {
		if err := event.ValidHost(*host); err != nil {
			return usagef("--host: %v", err)
		}
		x.Filter.Host = *host
	}
	if x.Filter.Kind, err = findings.ParseKind(*kind); err != nil {
		return usagef("--kind: %v", err)
	}
	for _, dest := range to {
		o, err := outputs.Open(dest, outputs.Config{Warn: func(msg string, err error) {
			if err != nil {
				msg += ": " + err.Error()
			}
			fmt.Fprintf(c.stderr, "driftctl: %s\n", msg)
		}})
		if err != nil {
			return usagef("--to: %v", err)
		}
		defer o.Close(context.Background())
		x.Outputs = append(x.Outputs, o)
	}
	switch *out {
	case "-":
		x.Out = c.stdout
	default:
		f, err := os.OpenFile(*out, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return usagef("--out: %v", err)
		}
		defer f.Close()
		x.Out, x.File = f, f
	}
	nc, js, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	start := time.Now()
	n, err := x.Run(c.ctx, js, func(seq uint64) {
		fmt.Fprintf(c.stderr, "driftctl: exporting %s through durable consumer %s from stream sequence %d\n", strings.Join(x.Filter.Subjects(), " "), *durable, seq)
	})
	fmt.Fprintf(c.stderr, "driftctl: exported %d findings in %s (%d repeats not written again)\n", n, time.Since(start).Round(time.Millisecond), x.Repeats)
	for _, o := range x.Outputs {
		fmt.Fprintf(c.stderr, "driftctl: output %s: %d sent (%d acknowledged by the receiver), %d retried, %d refused\n", o.Name, o.Stats.Sent.Load(), o.Stats.Acked.Load(), o.Stats.Retried.Load(), o.Stats.Refused.Load())
	}
	if c.ctx.Err() != nil {
		return nil // interrupted: everything written was acknowledged
	}
	return err
}
