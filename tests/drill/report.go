package drill

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// StageStats are one stage's times over the detected runs, in microseconds
// after the mutation (nearest-rank percentiles).
type StageStats struct {
	Stage string    `json:"stage"`
	N     int       `json:"n"`
	P50   float64   `json:"p50_us"`
	P90   float64   `json:"p90_us"`
	P99   float64   `json:"p99_us"`
	Max   float64   `json:"max_us"`
	All   []float64 `json:"samples_us"`
}

func stageStats(results []Result) []StageStats {
	var out []StageStats
	for _, s := range Stages {
		st := StageStats{Stage: s}
		for _, r := range results {
			if v, ok := r.StagesUS[s]; ok {
				st.All = append(st.All, v)
			}
		}
		slices.Sort(st.All)
		if st.N = len(st.All); st.N > 0 {
			rank := func(p int) float64 { return st.All[(st.N*p+99)/100-1] }
			st.P50, st.P90, st.P99, st.Max = rank(50), rank(90), rank(99), st.All[st.N-1]
		}
		out = append(out, st)
	}
	return out
}

// human is a duration given in microseconds, short.
func human(us float64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%.0fus", us)
	case us < 1e6:
		return fmt.Sprintf("%.2fms", us/1e3)
	}
	return fmt.Sprintf("%.2fs", us/1e6)
}

// ProgressLine is the terminal's progress line for one result.
func ProgressLine(done, total int, r Result) string {
	verdict := "detected"
	switch {
	case r.Control && r.Pass:
		verdict = "silent"
	case !r.Pass:
		verdict = "FAILED"
	}
	extra := ""
	if v, ok := r.StagesUS[StageDestroy]; ok {
		extra = " destroy " + human(v)
	}
	return fmt.Sprintf("[%d/%d] %s %s%s", done, total, r.ID, verdict, extra)
}

// WriteTable writes the per-technique results and the stage table.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "TECHNIQUE\tATT&CK\tRUN\tRESULT\tKERNEL\tDECISION\tCORDON\tVERIFIED\tDESTROY\tDETAIL\n")
	for _, x := range r.Results {
		res := "detected"
		switch {
		case x.Control && x.Pass:
			res = "silent"
		case !x.Pass && x.Control:
			res = "NOISY"
		case !x.Pass:
			res = "MISSED"
		}
		detail := x.Want
		if x.Why != "" {
			detail = x.Why
		}
		cell := func(s string) string {
			if v, ok := x.StagesUS[s]; ok {
				return human(v)
			}
			return "-"
		}
		attack := x.Attack
		if x.Control {
			attack = "control"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.ID, attack, x.Run, res,
			cell(StageKernel), cell(StageDecision), cell(StageCordon), cell(StageVerified), cell(StageDestroy), detail)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "STAGE (after the mutation)\tN\tP50\tP90\tP99\tMAX\n")
	for _, s := range r.Stages {
		if s.N == 0 {
			fmt.Fprintf(tw, "%s\t0\t-\t-\t-\t-\n", s.Stage)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.Stage, s.N, human(s.P50), human(s.P90), human(s.P99), human(s.Max))
	}
	fmt.Fprintln(tw)
	var det, tech, silent, ctl int
	for _, x := range r.Results {
		if x.Control {
			ctl++
			if x.Pass {
				silent++
			}
		} else {
			tech++
			if x.Pass {
				det++
			}
		}
	}
	fmt.Fprintf(tw, "%d of %d technique runs detected exactly, %d of %d controls silent; %s, kernel %s, backend %s, %d hosts at a time, %.0fs\n",
		det, tech, silent, ctl, r.Meta.Version, r.Meta.Kernel, r.Meta.Backend, r.Meta.Hosts, r.Meta.Took)
	return tw.Flush()
}

// WriteJSON writes the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

//go:embed report.html.tmpl
var htmlFS embed.FS

var htmlTmpl = template.Must(template.New("report.html.tmpl").Funcs(template.FuncMap{"human": human}).ParseFS(htmlFS, "report.html.tmpl"))

// target is an industry response target set against the drill's stages.
type target struct {
	Name, Goal string
	Limit      time.Duration
	Within     string // Limit, as the targets say it
	Stage      string // the drill's stage that answers it
	Got        float64
	Ratio      string
	Met        bool
}

// targets: the 5/5/5 benchmark (detect in 5 s, triage in 5 min, respond in
// 5 min) and 1-10-60 (detect in 1 min, investigate in 10, contain in 60),
// each answered by the drill's p99.
func (r *Report) targets() []target {
	p99 := map[string]float64{}
	for _, s := range r.Stages {
		if s.N > 0 {
			p99[s.Stage] = s.P99
		}
	}
	ts := []target{
		{Name: "5/5/5", Goal: "detect", Limit: 5 * time.Second, Stage: StageNATS},
		{Name: "5/5/5", Goal: "triage", Limit: 5 * time.Minute, Stage: StageDecision},
		{Name: "5/5/5", Goal: "respond", Limit: 5 * time.Minute, Stage: StageDestroy},
		{Name: "1-10-60", Goal: "detect", Limit: time.Minute, Stage: StageNATS},
		{Name: "1-10-60", Goal: "investigate", Limit: 10 * time.Minute, Stage: StageDecision},
		{Name: "1-10-60", Goal: "contain", Limit: time.Hour, Stage: StageVerified},
	}
	for i := range ts {
		ts[i].Within = fmt.Sprintf("%.0f s", ts[i].Limit.Seconds())
		if ts[i].Limit >= time.Minute {
			ts[i].Within = fmt.Sprintf("%.0f min", ts[i].Limit.Minutes())
		}
		v, ok := p99[ts[i].Stage]
		if !ok {
			ts[i].Ratio = "not measured"
			continue
		}
		ts[i].Got, ts[i].Met = v, v <= float64(ts[i].Limit.Microseconds())
		ts[i].Ratio = fmt.Sprintf("%.0fx under", float64(ts[i].Limit.Microseconds())/math.Max(v, 1))
		if !ts[i].Met {
			ts[i].Ratio = "over"
		}
	}
	return ts
}

// bar is one histogram bar, in SVG coordinates.
type bar struct {
	X, Y, W, H float64
	Label      string
}

// histogram is one stage's histogram: log-spaced bins from the fastest to
// the slowest sample.
type histogram struct {
	StageStats
	Bars          []bar
	Lo, Hi        string
	Width, Height float64
}

const histBins = 24

func histogramOf(s StageStats) histogram {
	h := histogram{StageStats: s, Width: 480, Height: 120}
	if s.N == 0 {
		return h
	}
	lo, hi := math.Log10(math.Max(s.All[0], 1)), math.Log10(math.Max(s.All[s.N-1], 1))
	if hi-lo < 1e-9 {
		hi = lo + 1e-9
	}
	counts := make([]int, histBins)
	for _, v := range s.All {
		i := int((math.Log10(math.Max(v, 1)) - lo) / (hi - lo) * histBins)
		counts[min(max(i, 0), histBins-1)]++
	}
	most := slices.Max(counts)
	bw := h.Width / histBins
	for i, c := range counts {
		if c == 0 {
			continue
		}
		bh := float64(c) / float64(most) * (h.Height - 10)
		from := math.Pow(10, lo+(hi-lo)*float64(i)/histBins)
		to := math.Pow(10, lo+(hi-lo)*float64(i+1)/histBins)
		h.Bars = append(h.Bars, bar{X: float64(i) * bw, Y: h.Height - bh, W: bw - 2, H: bh,
			Label: fmt.Sprintf("%s-%s: %d", human(from), human(to), c)})
	}
	h.Lo, h.Hi = human(s.All[0]), human(s.All[s.N-1])
	return h
}

// WriteHTML writes one self-contained HTML page: no script, no external
// resource; histograms are inline SVG.
func (r *Report) WriteHTML(w io.Writer) error {
	var hs []histogram
	for _, s := range r.Stages {
		hs = append(hs, histogramOf(s))
	}
	return htmlTmpl.Execute(w, map[string]any{"R": r, "Hist": hs, "Targets": r.targets(), "Stages": Stages,
		"Passed": len(r.Results) - r.Failed()})
}

// stageCell is a result's time at a stage, for the template.
func (x Result) StageCell(stage string) string {
	if v, ok := x.StagesUS[stage]; ok {
		return human(v)
	}
	return "-"
}

// Verdict is a result in one word.
func (x Result) Verdict() string {
	switch {
	case x.Control && x.Pass:
		return "silent"
	case x.Control:
		return "NOISY"
	case x.Pass:
		return "detected"
	}
	return "MISSED"
}

// AttackURL is the technique's page on attack.mitre.org (a link; the report
// needs no network to display).
func (x Result) AttackURL() string {
	if x.Attack == "" {
		return ""
	}
	return "https://attack.mitre.org/techniques/" + strings.ReplaceAll(x.Attack, ".", "/") + "/"
}
