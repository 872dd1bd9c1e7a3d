package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/tests/drill"
)

// drill runs the technique catalog on sealed test-bed hosts made here;
// with --host it drills a live host instead (drillLive).
func (c *cli) drill(args []string) error {
	for _, a := range args {
		if a == "--host" || a == "-host" || strings.HasPrefix(a, "--host=") || strings.HasPrefix(a, "-host=") {
			return c.drillLive(args)
		}
	}
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	hosts := fs.Int("hosts", 5, "test hosts at a time (1-50); each run gets a fresh host, destroyed at its end")
	runs := fs.Int("runs", 1, "runs of each technique (1-1000)")
	pattern := fs.String("techniques", "*", "comma-separated patterns (*, ?) on technique ids, tactics or ATT&CK ids")
	asJSON := fs.Bool("json", false, "write the report as JSON on stdout instead of the table")
	htmlFile := fs.String("html", "", "also write a self-contained HTML report to `FILE`")
	list := fs.Bool("list", false, "print the catalog as a Markdown table and exit")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	if *list {
		return writeCatalog(c, drill.Catalog())
	}
	switch {
	case *hosts < 1 || *hosts > 50:
		return usagef("--hosts %d: want 1 to 50", *hosts)
	case *runs < 1 || *runs > 1000:
		return usagef("--runs %d: want 1 to 1000", *runs)
	}
	ts, err := drill.Select(drill.Catalog(), *pattern)
	if err != nil {
		return usageError{err.Error()}
	}
	if os.Geteuid() != 0 {
		return usagef("drill makes network namespaces, cgroups and BPF programs: run it as root")
	}
	var html *os.File
	if *htmlFile != "" {
		if html, err = os.Create(*htmlFile); err != nil {
			return usagef("--html: %v", err)
		}
		defer html.Close()
	}
	tty := false
	if f, ok := c.stderr.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		tty = err == nil
	}
	progress := func(done, total int, r drill.Result) {
		line := drill.ProgressLine(done, total, r)
		if tty {
			fmt.Fprintf(c.stderr, "\r\033[K%s", line)
			if done == total {
				fmt.Fprintln(c.stderr)
			}
		} else {
			fmt.Fprintln(c.stderr, line)
		}
	}
	rep, runErr := drill.Run(c.ctx, drill.Config{Hosts: *hosts, Runs: *runs, Techniques: ts, Progress: progress})
	if rep != nil {
		rep.Meta.Command = "driftctl " + c.cmd + " " + strings.Join(args, " ")
		if *asJSON {
			err = rep.WriteJSON(c.stdout)
		} else {
			err = rep.WriteTable(c.stdout)
		}
		if err == nil && html != nil {
			err = rep.WriteHTML(html)
		}
		if err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if n := rep.Failed(); n > 0 {
		return fmt.Errorf("%d of %d runs failed: a technique missed or a control not silent", n, len(rep.Results))
	}
	return nil
}

// writeCatalog prints the catalog as one Markdown table.
func writeCatalog(c *cli, cat []drill.Technique) error {
	fmt.Fprintln(c.stdout, "| id | ATT&CK | tactic | technique | action in the host | finding it must produce |")
	fmt.Fprintln(c.stdout, "|---|---|---|---|---|---|")
	for _, t := range cat {
		act := strings.Join(t.Act, " ")
		for i := len(t.Pre) - 1; i >= 0; i-- {
			act = strings.Join(t.Pre[i], " ") + "; " + act
		}
		attack, want := t.Attack, t.Want.String()
		if t.Control {
			attack, want = "control", "nothing"
		}
		fmt.Fprintf(c.stdout, "| %s | %s | %s | %s | `%s` | `%s` |\n", t.ID, attack, t.Tactic, t.Name, act, want)
	}
	return nil
}
