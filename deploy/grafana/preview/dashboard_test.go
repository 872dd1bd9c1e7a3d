package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVariables: the shipped dashboard's variables take their All value or
// the one given, $__rate_interval is Grafana's, and a variable the
// dashboard lacks, or one left without a value, is refused by name.
func TestVariables(t *testing.T) {
	d, err := LoadDashboard("../driftsensor.json")
	if err != nil {
		t.Fatal(err)
	}
	vars, err := d.Vars(nil, 15*time.Second, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Expand(`rate(x{instance=~"$instance"}[$__rate_interval]) + ${instance}`, vars)
	if want := `rate(x{instance=~".*"}[60s]) + .*`; err != nil || got != want {
		t.Errorf("Expand = %q, %v; want %q", got, err, want)
	}
	if vars, _ = d.Vars(map[string]string{"instance": "web"}, 2*time.Minute, 15*time.Second); vars["instance"] != "web" || vars["__rate_interval"] != "135s" {
		t.Errorf("vars %v: want instance web, $__rate_interval 135s (step + scrape interval)", vars)
	}
	if _, err := d.Vars(map[string]string{"host": "web"}, time.Second, time.Second); err == nil || !strings.Contains(err.Error(), `--var host: the dashboard has no variable "host"`) {
		t.Errorf("an unknown --var: %v", err)
	}
	if _, err := Expand("up{job=\"$job\"}", vars); err == nil || !strings.Contains(err.Error(), "unknown variable $job") {
		t.Errorf("a variable without a value: %v", err)
	}
	d.Templating.List[1].IncludeAll = false
	if _, err := d.Vars(nil, time.Second, time.Second); err == nil || !strings.Contains(err.Error(), "pass --var instance=VALUE") {
		t.Errorf("a variable with no All value and none given: %v", err)
	}
}

// TestBadDashboard: a file that is not a dashboard, or a panel without a
// place or a query, is refused naming the file and the panel; the program
// exits with status 2 (run returns the error).
func TestBadDashboard(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]struct{ body, want string }{
		"json":    {`{"panels": [`, "bad.json: unexpected end of JSON input"},
		"grid":    {`{"panels": [{"id": 3, "type": "stat", "title": "Up", "targets": [{"expr": "up"}]}]}`, `bad.json: panel 3 "Up" has no gridPos width or height`},
		"targets": {`{"panels": [{"id": 4, "type": "timeseries", "title": "CPU", "gridPos": {"w": 4, "h": 4}}]}`, `bad.json: panel 4 "CPU" has no targets`},
	} {
		path := filepath.Join(dir, "bad.json")
		os.WriteFile(path, []byte(c.body), 0o644)
		if err := run([]string{"--dashboard", path, "--out", filepath.Join(dir, "x.html")}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.html")); err == nil {
		t.Error("a page was written from a bad dashboard")
	}
}

// TestFormatValue: values in the dashboard's units.
func TestFormatValue(t *testing.T) {
	for _, c := range []struct {
		v          float64
		unit, want string
	}{{0.00042, "s", "420 µs"}, {0.0125, "s", "12.5 ms"}, {46137344, "bytes", "44 MiB"}, {0.25, "percentunit", "25%"},
		{0.5, "ops", "0.5/s"}, {1500, "short", "1.5k"}, {2, "", "2"}} {
		if got := formatValue(c.v, c.unit); got != c.want {
			t.Errorf("formatValue(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
}
