package main

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// The grid: Grafana's 24 columns, and its row unit of 30 px.
const (
	colW    = 64
	rowH    = 30
	gap     = 6
	headerH = 56 // the page title above the grid
	titleH  = 24 // a panel's title line
	legendH = 34 // two lines of legend under a graph
	axisW   = 56 // y axis labels
	axisH   = 16 // x axis labels
	plotTop = 8  // room for the top y label
)

// palette is Grafana's classic series colours.
var palette = []string{"#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0", "#508642", "#cca300"}

// Page is a rendered dashboard: self-contained HTML, and the size it needs.
type Page struct {
	HTML          []byte
	Width, Height int
}

// Render lays the panels out on the grid as one HTML page with no script
// and no external resource: rows as headers, time series as SVG lines,
// stats as numbers, tables as tables. source says where the data came from.
func Render(d *Dashboard, data []PanelData, w Window, source string) (Page, error) {
	v := pageView{Title: d.Title, Source: source,
		From: w.Start.UTC().Format("2006-01-02 15:04:05"), To: w.End.UTC().Format("15:04:05 UTC"),
		Width: 24 * colW}
	for _, pd := range data {
		p := pd.Panel
		box := panelView{ID: p.ID, Type: p.Type, Title: p.Title,
			Left: p.GridPos.X * colW, Top: headerH + p.GridPos.Y*rowH, Width: p.GridPos.W*colW - gap, Height: p.GridPos.H*rowH - gap}
		switch p.Type {
		case "row":
		case "timeseries":
			box.Graph = graph(pd, w, box.Width-2*gap, box.Height-titleH-legendH)
		case "stat":
			box.Stats = stats(pd)
		case "table":
			box.Table = table(pd)
		default:
			return Page{}, fmt.Errorf("panel %d %q: type %q is not drawn (timeseries, stat, table, row)", p.ID, p.Title, p.Type)
		}
		v.Panels = append(v.Panels, box)
		v.Height = max(v.Height, box.Top+box.Height+gap)
	}
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, v); err != nil {
		return Page{}, err
	}
	return Page{HTML: b.Bytes(), Width: v.Width, Height: v.Height}, nil
}

type pageView struct {
	Title, Source, From, To string
	Width, Height           int
	Panels                  []panelView
}

type panelView struct {
	ID                       int
	Type, Title              string
	Left, Top, Width, Height int
	Graph                    *graphView
	Stats                    []statView
	Table                    *tableView
}

type graphView struct {
	Width, Height int
	Lines         []lineView
	YTicks        []tickView
	XTicks        []tickView
	Empty         bool
}

type lineView struct{ Legend, Colour, Path string }

type tickView struct {
	X, Y, End int // End: where a y tick's grid line ends
	Label     string
	Anchor    string // an x tick's text-anchor: its label stays inside the graph
}

type statView struct {
	Legend, Value, Colour string
}

type tableView struct {
	Columns []string
	Rows    [][]string
}

// graph draws every series of a time series panel in a w x h SVG, the y
// axis from the lower of 0 and the least value to the greatest.
func graph(pd PanelData, win Window, w, h int) *graphView {
	g := &graphView{Width: w, Height: h}
	lo, hi := 0.0, math.Inf(-1)
	var all []Series
	for _, r := range pd.Results {
		all = append(all, r.Series...)
	}
	for _, s := range all {
		for _, p := range s.Points {
			if v := float64(p.Value); !math.IsNaN(v) && !math.IsInf(v, 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(hi, -1) {
		g.Empty = true
		return g
	}
	if hi <= lo {
		hi = lo + 1
	}
	plotW, plotH := float64(w-axisW), float64(h-axisH)
	t0, span := win.Start.UnixMilli(), float64(win.End.Sub(win.Start).Milliseconds())
	x := func(t model.Time) float64 { return float64(axisW) + plotW*float64(int64(t)-t0)/span }
	y := func(v float64) float64 { return plotH - (plotH-plotTop)*(v-lo)/(hi-lo) }
	for _, s := range all {
		if _, ok := s.Last(); !ok {
			continue // no number to draw
		}
		var path strings.Builder
		pen := "M"
		for _, p := range s.Points {
			v := float64(p.Value)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				pen = "M" // a gap: lift the pen
				continue
			}
			fmt.Fprintf(&path, "%s%.1f,%.1f ", pen, x(p.Timestamp), y(v))
			pen = "L"
		}
		g.Lines = append(g.Lines, lineView{Legend: s.Legend, Colour: palette[len(g.Lines)%len(palette)], Path: path.String()})
	}
	unit := pd.Panel.FieldConfig.Defaults.Unit
	for _, f := range []float64{0, 0.5, 1} {
		v := lo + f*(hi-lo)
		g.YTicks = append(g.YTicks, tickView{X: axisW - 4, Y: int(y(v)), End: w, Label: formatValue(v, unit)})
	}
	for i, f := range []float64{0, 0.5, 1} {
		t := win.Start.Add(time.Duration(f * float64(win.End.Sub(win.Start))))
		g.XTicks = append(g.XTicks, tickView{X: int(x(model.TimeFromUnixNano(t.UnixNano()))), Y: h - 2,
			Label: t.UTC().Format("15:04:05"), Anchor: []string{"start", "middle", "end"}[i]})
	}
	return g
}

// stats is a stat panel's numbers: each series' last value.
func stats(pd PanelData) []statView {
	var out []statView
	for _, r := range pd.Results {
		for _, s := range r.Series {
			sv := statView{Legend: s.Legend, Value: "no value", Colour: "#8e8e8e"}
			if v, ok := s.Last(); ok {
				sv.Value, sv.Colour = formatValue(v, pd.Panel.FieldConfig.Defaults.Unit), "#73bf69"
			}
			out = append(out, sv)
		}
	}
	return out
}

// table joins a table panel's instant results into one row per instance
// and job (Grafana's merge). A label several targets carry (state) is
// named for each one's metric (transport, host_state).
func table(pd PanelData) *tableView {
	owners := map[model.LabelName]map[model.LabelValue]bool{}
	for _, r := range pd.Results {
		for _, s := range r.Series {
			for l := range s.Labels {
				if owners[l] == nil {
					owners[l] = map[model.LabelValue]bool{}
				}
				owners[l][s.Labels[model.MetricNameLabel]] = true
			}
		}
	}
	t := &tableView{Columns: []string{"instance", "job"}}
	col := map[string]int{"instance": 0, "job": 1}
	rows := map[string][]string{}
	var keys []string
	for _, r := range pd.Results {
		for _, s := range r.Series {
			key := string(s.Labels["instance"]) + "\x00" + string(s.Labels["job"])
			if rows[key] == nil {
				keys = append(keys, key)
				rows[key] = []string{string(s.Labels["instance"]), string(s.Labels["job"])}
			}
			names := make([]string, 0, len(s.Labels))
			for l := range s.Labels {
				names = append(names, string(l))
			}
			sort.Strings(names)
			for _, l := range names {
				if l == "instance" || l == "job" || l == model.MetricNameLabel {
					continue
				}
				name := l
				if len(owners[model.LabelName(l)]) > 1 {
					metric := string(s.Labels[model.MetricNameLabel])
					name = metric[strings.Index(metric, "_")+1:]
				}
				i, ok := col[name]
				if !ok {
					i = len(t.Columns)
					col[name] = i
					t.Columns = append(t.Columns, name)
				}
				for len(rows[key]) <= i {
					rows[key] = append(rows[key], "")
				}
				rows[key][i] = string(s.Labels[model.LabelName(l)])
			}
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		row := rows[k]
		for len(row) < len(t.Columns) {
			row = append(row, "")
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// formatValue writes v in a Grafana unit: s, bytes, percentunit, ops, short.
func formatValue(v float64, unit string) string {
	switch unit {
	case "s":
		switch a := math.Abs(v); {
		case a == 0:
			return "0 s"
		case a < 1e-3:
			return fmt.Sprintf("%.3g µs", v*1e6)
		case a < 1:
			return fmt.Sprintf("%.3g ms", v*1e3)
		}
		return fmt.Sprintf("%.3g s", v)
	case "bytes":
		for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
			if math.Abs(v) < 1024 || u == "GiB" {
				return fmt.Sprintf("%.3g %s", v, u)
			}
			v /= 1024
		}
	case "percentunit":
		return fmt.Sprintf("%.3g%%", v*100)
	case "ops":
		return fmt.Sprintf("%.3g/s", v)
	}
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body { margin: 0; background: #111217; color: #ccccdc; font: 13px sans-serif; }
#grid { position: relative; width: {{.Width}}px; height: {{.Height}}px; }
header { position: absolute; left: 0; top: 0; height: 50px; width: 100%; }
header h1 { margin: 6px 8px 0; font-size: 18px; color: #fff; }
header p { margin: 2px 8px; font-size: 12px; color: #9fa7b3; }
.panel { position: absolute; box-sizing: border-box; background: #181b1f; border: 1px solid #2c3235; border-radius: 3px; overflow: hidden; }
.panel h2 { margin: 0; padding: 4px 8px; height: 16px; font-size: 13px; color: #fff; white-space: nowrap; }
.row { background: none; border: none; }
.row h2 { font-size: 15px; padding: 6px 2px; }
svg { display: block; margin: 0 6px; }
svg text { fill: #9fa7b3; font-size: 10px; }
.legend { padding: 2px 8px; font-size: 11px; height: 30px; overflow: hidden; }
.legend span { margin-right: 12px; white-space: nowrap; }
.legend i { display: inline-block; width: 12px; height: 3px; margin-right: 4px; vertical-align: middle; }
.stats { display: flex; flex-wrap: wrap; justify-content: space-around; align-items: center; height: calc(100% - 28px); }
.stat { text-align: center; margin: 0 8px; }
.stat b { display: block; font-size: 30px; }
.stat small { color: #9fa7b3; }
table { border-collapse: collapse; margin: 4px 8px; font-size: 12px; }
th, td { text-align: left; padding: 3px 12px 3px 0; border-bottom: 1px solid #2c3235; }
th { color: #6e9fff; }
.nodata { color: #8e8e8e; padding: 20px; }
</style></head>
<body><div id="grid">
<header><h1>{{.Title}}</h1><p>{{.From}} to {{.To}}. Every panel's queries, run on {{.Source}} and drawn by deploy/grafana/preview from the dashboard's JSON (grid, titles, queries, legends, units): not Grafana itself.</p></header>
{{range .Panels}}<div class="panel {{.Type}}" data-panel="{{.ID}}" style="left: {{.Left}}px; top: {{.Top}}px; width: {{.Width}}px; height: {{.Height}}px"><h2>{{.Title}}</h2>
{{- with .Graph}}{{if .Empty}}<div class="nodata">No data</div>{{else}}
<svg width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}">
{{- range .YTicks}}<text x="{{.X}}" y="{{.Y}}" text-anchor="end" dominant-baseline="middle">{{.Label}}</text><line x1="{{.X}}" x2="{{.End}}" y1="{{.Y}}" y2="{{.Y}}" stroke="#2c3235"/>{{end}}
{{- range .XTicks}}<text x="{{.X}}" y="{{.Y}}" text-anchor="{{.Anchor}}">{{.Label}}</text>{{end}}
{{- range .Lines}}<path d="{{.Path}}" fill="none" stroke="{{.Colour}}" stroke-width="1.5"/>{{end}}
</svg>
<div class="legend">{{range .Lines}}<span><i style="background: {{.Colour}}"></i>{{.Legend}}</span>{{end}}</div>{{end}}{{end}}
{{- if eq .Type "stat"}}<div class="stats">{{range .Stats}}<div class="stat"><b style="color: {{.Colour}}">{{.Value}}</b><small>{{.Legend}}</small></div>{{else}}<div class="nodata">No data</div>{{end}}</div>{{end}}
{{- with .Table}}{{if .Rows}}<table><tr>{{range .Columns}}<th>{{.}}</th>{{end}}</tr>{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}</table>{{else}}<div class="nodata">No data</div>{{end}}{{end}}
</div>
{{end}}</div></body></html>
`))
