package peers

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The workloads, in the order they run and are shown.
const (
	WSyscalls = "syscall loop"
	WChurn    = "file churn"
	WTar      = "tar x + rm"
	WStorm    = "drift storm"
	WLatency  = "latency"
)

// Workloads lists them.
var Workloads = []string{WSyscalls, WChurn, WTar, WStorm, WLatency}

// The attacker's actions of the coverage table.
const (
	CovWrite  = "overwrite a protected file (open O_TRUNC, write)"
	CovUring  = "open a protected file for writing through io_uring (no open syscall)"
	CovChattr = "chattr +i on a protected file"
	CovExec   = "exec of a binary dropped in /tmp"
	CovListen = "listen on a new port"
)

// The monitors the targets are judged on (their names).
const (
	nameNone   = "none"
	nameFloor  = "empty sys_enter hook (floor)"
	nameSensor = "driftsensor (NATS)"
	nameStdout = "driftsensor --nats off"
)

// Sample is one workload's run under one monitor in one round.
type Sample struct {
	Round      int
	Time       time.Duration // per iteration (syscall loop, churn) or in all
	WriterSys  time.Duration // the storm writer's kernel CPU
	MonitorCPU time.Duration
	Expected   int // what a monitor should report (storm, latency)
	Delivered  int
	Lost       int           // what the monitor said it lost
	LastAfter  time.Duration // storm: its last report after the writer's end
	Rate       float64       // storm: reports per second, writer start to last report
	Latency    []time.Duration
}

func (s Sample) String() string {
	return fmt.Sprintf("time %v writer-sys %v monitor-cpu %v delivered %d/%d lost %d last-after %v rate %.0f/s latencies %d",
		s.Time, s.WriterSys, s.MonitorCPU, s.Delivered, s.Expected, s.Lost, s.LastAfter, s.Rate, len(s.Latency))
}

// Results are a run's samples and coverage.
type Results struct {
	Monitors []string // in the order shown
	Sizes    string
	samples  map[string]map[string][]Sample
	cover    map[string]map[string]bool
	actions  []string
}

// NewResults makes empty results.
func NewResults() *Results {
	return &Results{samples: map[string]map[string][]Sample{}, cover: map[string]map[string]bool{}}
}

// Add records a sample.
func (r *Results) Add(monitor, workload string, s Sample) {
	if r.samples[monitor] == nil {
		r.samples[monitor] = map[string][]Sample{}
	}
	r.samples[monitor][workload] = append(r.samples[monitor][workload], s)
}

// Cover records whether monitor reported action.
func (r *Results) Cover(action, monitor string, seen bool) {
	if r.cover[action] == nil {
		r.cover[action] = map[string]bool{}
		r.actions = append(r.actions, action)
	}
	r.cover[action][monitor] = seen
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile of durations, nearest rank.
func percentile(v []time.Duration, p float64) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p+0.5)]
}

// perRound applies f to each round's sample of monitor and the same round's
// baseline sample, and returns the median.
func (r *Results) perRound(monitor, workload string, f func(s, base Sample) float64) (float64, bool) {
	base := map[int]Sample{}
	for _, s := range r.samples[nameNone][workload] {
		base[s.Round] = s
	}
	var v []float64
	for _, s := range r.samples[monitor][workload] {
		if b, ok := base[s.Round]; ok {
			v = append(v, f(s, b))
		}
	}
	return median(v), len(v) > 0
}

// Overhead is the median over rounds of the workload's time under monitor
// against the same round without one, in percent.
func (r *Results) Overhead(monitor, workload string) (float64, bool) {
	return r.perRound(monitor, workload, func(s, b Sample) float64 { return 100 * (float64(s.Time)/float64(b.Time) - 1) })
}

func (r *Results) medianOf(monitor, workload string, f func(Sample) float64) float64 {
	var v []float64
	for _, s := range r.samples[monitor][workload] {
		v = append(v, f(s))
	}
	return median(v)
}

// worst returns the sample with the fewest reports delivered.
func (r *Results) worst(monitor, workload string) (Sample, bool) {
	ss := r.samples[monitor][workload]
	if len(ss) == 0 {
		return Sample{}, false
	}
	return slices.MinFunc(ss, func(a, b Sample) int { return a.Delivered - b.Delivered }), true
}

// latencies pools the latency samples of monitor over rounds.
func (r *Results) latencies(monitor string) (all []time.Duration, delivered, expected int) {
	for _, s := range r.samples[monitor][WLatency] {
		all = append(all, s.Latency...)
		delivered += s.Delivered
		expected += s.Expected
	}
	return all, delivered, expected
}

func us(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f µs", float64(d)/1e3)
}

// round1 rounds to the precision shown, so a target is judged on the number printed.
func round1(v float64) float64 { return math.Round(v*10) / 10 }

func pct(v float64) string { return fmt.Sprintf("%+.1f %%", v) }

// watching are the monitors that report (neither the baseline nor the floor).
func (r *Results) watching() []string {
	var w []string
	for _, m := range r.Monitors {
		if m != nameNone && m != nameFloor {
			w = append(w, m)
		}
	}
	return w
}

// Markdown renders the tables of BENCHMARKS.md's peer section.
func (r *Results) Markdown() string {
	var b strings.Builder
	row := func(cells ...string) { b.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	sep := func(n int) { row(slices.Repeat([]string{"---"}, n)...) }
	fmt.Fprintf(&b, "\nSizes: %s.\n\n", r.Sizes)

	b.WriteString("Time of the workload against the same round with no monitor (median over rounds):\n\n")
	row(append([]string{"workload", "no monitor"}, r.Monitors[1:]...)...)
	sep(len(r.Monitors) + 1)
	for _, wl := range []string{WSyscalls, WChurn, WTar, WStorm} {
		base := time.Duration(r.medianOf(nameNone, wl, func(s Sample) float64 { return float64(s.Time) }))
		unit := us(base)
		if wl == WSyscalls || wl == WChurn {
			unit = fmt.Sprintf("%.2f µs/iteration", float64(base)/1e3)
		}
		cells := []string{wl, unit}
		for _, m := range r.Monitors[1:] {
			if v, ok := r.Overhead(m, wl); ok {
				cells = append(cells, pct(v))
			} else {
				cells = append(cells, "-")
			}
		}
		row(cells...)
	}

	b.WriteString("\nThe monitor's own CPU during the workload and until its last report (median; auditd: the daemon and the kernel's kauditd thread; driftsensor: its process, the embedded NATS server included):\n\n")
	row(append([]string{"workload"}, r.watching()...)...)
	sep(len(r.watching()) + 1)
	for _, wl := range Workloads {
		cells := []string{wl}
		for _, m := range r.watching() {
			cells = append(cells, us(time.Duration(r.medianOf(m, wl, func(s Sample) float64 { return float64(s.MonitorCPU) }))))
		}
		row(cells...)
	}

	b.WriteString("\nDrift storm: what each monitor delivered (worst round) and what it cost:\n\n")
	row("monitor", "writer slowed", "writer's extra kernel CPU per mutation", "monitor CPU per report", "delivered", "lost (reported by the monitor)", "missing (neither)", "last report after the storm", "reports/s")
	sep(9)
	for _, m := range r.watching() {
		w, ok := r.worst(m, WStorm)
		if !ok {
			continue
		}
		slow, _ := r.perRound(m, WStorm, func(s, b Sample) float64 { return float64(s.Time) / float64(b.Time) })
		kcpu, _ := r.perRound(m, WStorm, func(s, b Sample) float64 { return float64(s.WriterSys-b.WriterSys) / float64(s.Expected) })
		mcpu := r.medianOf(m, WStorm, func(s Sample) float64 { return float64(s.MonitorCPU) / float64(max(s.Delivered, 1)) })
		last := time.Duration(r.medianOf(m, WStorm, func(s Sample) float64 { return float64(s.LastAfter) }))
		rate := r.medianOf(m, WStorm, func(s Sample) float64 { return s.Rate })
		row(m, fmt.Sprintf("×%.2f", slow), fmt.Sprintf("%.2f µs", kcpu/1e3), fmt.Sprintf("%.2f µs", mcpu/1e3),
			fmt.Sprintf("%d of %d", w.Delivered, w.Expected), fmt.Sprint(w.Lost), fmt.Sprint(w.Expected-w.Delivered-w.Lost), us(last), fmt.Sprintf("%.0f", rate))
	}

	b.WriteString("\nLatency, one mutation every 5 ms: from just before the chmod to the benchmark reading the monitor's report (driftsensor --nats off: its stdout; driftsensor: a NATS subscriber; auditd: its log; inotifywait: its stdout), all rounds pooled:\n\n")
	row("monitor", "p50", "p90", "p99", "max", "delivered")
	sep(6)
	for _, m := range r.watching() {
		all, d, e := r.latencies(m)
		row(m, us(percentile(all, 0.5)), us(percentile(all, 0.9)), us(percentile(all, 0.99)), us(percentile(all, 1)), fmt.Sprintf("%d of %d", d, e))
	}

	b.WriteString("\nCoverage: the same attacker actions, from the scope, under each monitor (reported or not):\n\n")
	row(append([]string{"action"}, r.watching()...)...)
	sep(len(r.watching()) + 1)
	for _, a := range r.actions {
		cells := []string{a}
		for _, m := range r.watching() {
			seen, ok := r.cover[a][m]
			switch {
			case !ok:
				cells = append(cells, "-")
			case seen:
				cells = append(cells, "yes")
			default:
				cells = append(cells, "**no**")
			}
		}
		row(cells...)
	}
	b.WriteString(r.targets())
	return b.String()
}

// targets renders the targets, each met or not with its value,
// judged on the default (embedded NATS) mode unless said otherwise.
func (r *Results) targets() string {
	var b strings.Builder
	b.WriteString("\nTargets (driftsensor in its default mode, embedded NATS, unless the row says otherwise):\n\n| target | measured | |\n|---|---|---|\n")
	judge := func(target string, ok bool, measured string, met bool) {
		verdict := "met"
		switch {
		case !ok:
			verdict, measured = "not measured", "-"
		case !met:
			verdict = "**not met**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", target, measured, verdict)
	}
	for _, m := range []string{nameSensor, nameStdout} {
		v, ok := r.Overhead(m, WChurn)
		judge("file churn <= 4 % ("+m+")", ok, pct(v), round1(v) <= 4)
	}
	for _, m := range []string{nameSensor, nameStdout} {
		sens, ok1 := r.perRound(m, WSyscalls, func(s, b Sample) float64 { return float64(s.Time) / float64(b.Time) })
		floor, ok2 := r.perRound(nameFloor, WSyscalls, func(s, b Sample) float64 { return float64(s.Time) / float64(b.Time) })
		pts := 100 * (sens - floor)
		judge("syscall loop within 3 points of the empty hook ("+m+")", ok1 && ok2,
			fmt.Sprintf("%+.1f points (sensor %s, floor %s)", pts, pct(100*(sens-1)), pct(100*(floor-1))), round1(pts) <= 3)
	}
	kcpu, ok := r.perRound(nameSensor, WStorm, func(s, b Sample) float64 { return float64(s.WriterSys-b.WriterSys) / float64(s.Expected) })
	judge("storm: kernel CPU <= 2 µs per finding (the writer's extra system time)", ok, fmt.Sprintf("%.2f µs", kcpu/1e3), kcpu <= 2000)
	slow, ok := r.perRound(nameSensor, WStorm, func(s, b Sample) float64 { return float64(s.Time) / float64(b.Time) })
	judge("storm: writer slowed <= ×1.3", ok, fmt.Sprintf("×%.2f", slow), slow <= 1.3)
	w, ok := r.worst(nameSensor, WStorm)
	judge("storm: 0 lost (worst round)", ok, fmt.Sprintf("%d of %d delivered, %d reported lost", w.Delivered, w.Expected, w.Lost), w.Delivered == w.Expected)
	var lasts []float64
	for _, s := range r.samples[nameSensor][WStorm] {
		lasts = append(lasts, float64(s.LastAfter))
	}
	last := time.Duration(slices.Max(append(lasts, 0)))
	judge("storm: last finding <= 0.5 s after the storm (worst round)", len(lasts) > 0, us(last), last <= 500*time.Millisecond)
	rate := r.medianOf(nameSensor, WStorm, func(s Sample) float64 { return s.Rate })
	judge(">= 100k findings/s into NATS (storm, writer start to last finding received)", len(lasts) > 0, fmt.Sprintf("%.0f/s", rate), rate >= 100000)
	all, _, _ := r.latencies(nameSensor)
	p50, p99 := percentile(all, 0.5), percentile(all, 0.99)
	judge("1 finding: p50 <= 150 µs", len(all) > 0, us(p50), p50 <= 150*time.Microsecond)
	judge("1 finding: p99 <= 1 ms", len(all) > 0, us(p99), p99 <= time.Millisecond)
	return b.String()
}

// Plot writes an SVG (a PNG when path ends in .png): the overhead of each monitor on the benign workloads,
// the storm writer's slowdown, and the latency percentiles.
func (r *Results) Plot(path string) error {
	palette := []color.Color{
		color.RGBA{0x4c, 0x72, 0xb0, 0xff}, color.RGBA{0x55, 0xa8, 0x68, 0xff}, color.RGBA{0xc4, 0x4e, 0x52, 0xff},
		color.RGBA{0x81, 0x72, 0xb2, 0xff}, color.RGBA{0xcc, 0xb9, 0x74, 0xff}, color.RGBA{0x64, 0xb5, 0xcd, 0xff},
	}
	colour := map[string]color.Color{}
	for i, m := range r.Monitors[1:] {
		colour[m] = palette[i%len(palette)]
	}
	// bars draws one bar per series in each group; the legend sits above
	// the tallest bar.
	bars := func(title, unit string, groups, series []string, value func(series, group string) float64) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text, p.Y.Label.Text = title, unit
		w := vg.Points(90 / float64(len(series)+1))
		top := 0.0
		for i, s := range series {
			var v plotter.Values
			for _, g := range groups {
				v = append(v, value(s, g))
				top = max(top, v[len(v)-1])
			}
			bc, err := plotter.NewBarChart(v, w)
			if err != nil {
				return nil, err
			}
			bc.LineStyle.Width = 0
			bc.Color = colour[s]
			bc.Offset = w * vg.Length(float64(i)-float64(len(series)-1)/2)
			p.Add(bc)
			p.Legend.Add(s, bc)
		}
		p.NominalX(groups...)
		p.Legend.Top, p.Legend.Left = true, true
		p.Y.Max = max(p.Y.Max, top*(1+0.12*float64(len(series))))
		p.Add(plotter.NewGrid())
		return p, nil
	}
	over, err := bars("Benign work: time over no monitor", "%", []string{WSyscalls, WChurn, WTar}, r.Monitors[1:],
		func(m, wl string) float64 { v, _ := r.Overhead(m, wl); return v })
	if err != nil {
		return err
	}
	storm, err := bars(fmt.Sprintf("Drift storm: writer's time (none = 1)"), "×", []string{WStorm}, r.watching(), func(m, wl string) float64 {
		v, _ := r.perRound(m, wl, func(s, b Sample) float64 { return float64(s.Time) / float64(b.Time) })
		return v
	})
	if err != nil {
		return err
	}
	lat, err := bars("Mutation to report, one every 5 ms", "µs", []string{"p50", "p90", "p99"}, r.watching(), func(m, p string) float64 {
		all, _, _ := r.latencies(m)
		return float64(percentile(all, map[string]float64{"p50": 0.5, "p90": 0.9, "p99": 0.99}[p])) / 1e3
	})
	if err != nil {
		return err
	}
	const wd, ht = 14 * vg.Inch, 4.5 * vg.Inch
	var c interface {
		vg.CanvasWriterTo
	}
	if strings.HasSuffix(path, ".png") {
		c = vgimg.PngCanvas{Canvas: vgimg.New(wd, ht)}
	} else {
		c = vgsvg.New(wd, ht)
	}
	tiles := draw.Tiles{Rows: 1, Cols: 3, PadX: vg.Millimeter * 6, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2, PadTop: vg.Millimeter * 2}
	dc := draw.New(c)
	for i, p := range []*plot.Plot{over, storm, lat} {
		p.Draw(tiles.At(dc, i, 0))
	}
	return writeFile(path, c)
}

func writeFile(path string, c vg.CanvasWriterTo) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %v", path, err)
	}
	return f.Close()
}
