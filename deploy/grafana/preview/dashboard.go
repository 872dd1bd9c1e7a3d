package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Dashboard is the part of a Grafana dashboard model the preview draws.
type Dashboard struct {
	Title      string
	Templating struct{ List []Variable }
	Panels     []Panel
}

// Variable is a dashboard template variable ($instance).
type Variable struct {
	Name, Type string
	IncludeAll bool
	AllValue   string
}

// Panel is one panel: a row header, a time series, a stat or a table.
type Panel struct {
	ID          int
	Type, Title string
	GridPos     struct{ X, Y, W, H int }
	Targets     []Target
	FieldConfig struct{ Defaults struct{ Unit string } }
}

// Target is one query of a panel.
type Target struct {
	Expr, RefID, LegendFormat string
	Instant                   bool
}

// LoadDashboard reads a dashboard JSON file; every panel but a row must
// have a place on the grid and at least one query.
func LoadDashboard(path string) (*Dashboard, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, p := range d.Panels {
		switch {
		case p.Type == "row":
		case p.GridPos.W <= 0 || p.GridPos.H <= 0:
			return nil, fmt.Errorf("%s: panel %d %q has no gridPos width or height", path, p.ID, p.Title)
		case len(p.Targets) == 0:
			return nil, fmt.Errorf("%s: panel %d %q has no targets", path, p.ID, p.Title)
		}
	}
	return &d, nil
}

// Vars gives every template variable its value: the one set (name=value),
// else its "All" value. $__interval is the step; $__rate_interval is
// Grafana's max($__interval + scrape interval, 4 x scrape interval), the
// shortest window a rate() is sure to find two samples in.
func (d *Dashboard) Vars(set map[string]string, step, scrape time.Duration) (map[string]string, error) {
	vars := map[string]string{
		"__interval":      promDuration(step),
		"__rate_interval": promDuration(max(step+scrape, 4*scrape)),
	}
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			continue // names the data source, never in a query
		}
		switch val, ok := set[v.Name]; {
		case ok:
			vars[v.Name] = val
		case v.IncludeAll && v.AllValue != "":
			vars[v.Name] = v.AllValue
		default:
			return nil, fmt.Errorf("dashboard variable $%s has no value: pass --var %s=VALUE", v.Name, v.Name)
		}
	}
	for name := range set {
		if _, ok := vars[name]; !ok {
			return nil, fmt.Errorf("--var %s: the dashboard has no variable %q", name, name)
		}
	}
	return vars, nil
}

var varRef = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// Expand puts the variables' values into expr; a variable without one is an error.
func Expand(expr string, vars map[string]string) (string, error) {
	var missing []string
	out := varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		name := strings.Trim(ref, "${}")
		v, ok := vars[name]
		if !ok {
			missing = append(missing, ref)
		}
		return v
	})
	if len(missing) > 0 {
		sort.Strings(missing)
		return "", fmt.Errorf("%s: unknown variable %s", expr, strings.Join(missing, ", "))
	}
	return out, nil
}

// promDuration is d in PromQL's notation, in whole seconds (at least 1s).
func promDuration(d time.Duration) string {
	return fmt.Sprintf("%ds", max(int64(d/time.Second), 1))
}
