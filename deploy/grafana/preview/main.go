// Command preview draws a Grafana dashboard without Grafana (which this
// project cannot install: not in Debian, its Go module AGPL): it reads the
// dashboard's JSON, runs every panel's queries on a Prometheus server over
// the time range, and writes one self-contained HTML page (no script, no
// external resource) laying the panels out by their gridPos: time series as
// SVG lines, stats as numbers, tables as tables. --screenshot also takes a
// PNG of the page with headless Chromium. docs/dashboard.png is
// deploy/grafana/driftsensor.json drawn this way against a live test bed
// (make dashboard-shot).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "preview:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("preview", flag.ContinueOnError)
	dashFile := fs.String("dashboard", "deploy/grafana/driftsensor.json", "the Grafana dashboard JSON")
	prom := fs.String("prometheus", "http://127.0.0.1:9090", "the Prometheus server to query")
	since := fs.Duration("range", time.Hour, "the time range drawn, ending now")
	step := fs.Duration("step", 0, "query resolution ($__interval); 0: the range over 240 points")
	scrape := fs.Duration("scrape-interval", 15*time.Second, "the server's scrape interval, for $__rate_interval")
	out := fs.String("out", "dashboard.html", "the HTML page to write")
	shot := fs.String("screenshot", "", "also write a PNG of the page here (headless chromium)")
	vars := map[string]string{}
	fs.Func("var", "a dashboard variable's value, name=value (repeatable); unset: its All value", func(s string) error {
		name, val, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return fmt.Errorf("want name=value")
		}
		vars[name] = val
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *since <= 0 || *step < 0 || *scrape <= 0 {
		return errors.New("--range and --scrape-interval must be positive, --step not negative")
	}
	d, err := LoadDashboard(*dashFile)
	if err != nil {
		return err
	}
	end := time.Now()
	w := Window{Start: end.Add(-*since), End: end, Step: *step}
	if w.Step == 0 {
		w.Step = max(*since/240, time.Second)
	}
	if w.Vars, err = d.Vars(vars, w.Step, *scrape); err != nil {
		return err
	}
	data, err := Fetch(context.Background(), *prom, d, w)
	if err != nil {
		return err
	}
	page, err := Render(d, data, w, *prom)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, page.HTML, 0o644); err != nil {
		return err
	}
	if *shot != "" {
		return Screenshot(*out, *shot, page)
	}
	return nil
}

// Screenshot has headless Chromium, offline, take a PNG of the HTML file
// html, the page's full size.
func Screenshot(html, png string, p Page) error {
	_, err := Chromium("--screenshot="+png, fmt.Sprintf("--window-size=%d,%d", p.Width, p.Height), "file://"+html)
	return err
}

// Chromium runs Debian's chromium headless with args and no network, in a
// profile of its own, and returns its output.
func Chromium(args ...string) ([]byte, error) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		return nil, errors.New("chromium is not installed (scripts/setup.sh installs it)")
	}
	profile, err := os.MkdirTemp("", "preview-chromium")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(profile)
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--hide-scrollbars", "--user-data-dir=" + profile}
	cmd := exec.Command(bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out, nil
}
