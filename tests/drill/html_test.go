package drill

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/internal/chromium"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// sampleReport is a report with every stage timed over a few runs, one
// miss and one silent control.
func sampleReport() *Report {
	r := &Report{Meta: Meta{Machine: "bench-1", Kernel: "6.18.0", Backend: "tracepoint", Version: "driftsensor 0.3.0", Started: time.Unix(1764676800, 0), Hosts: 5, Runs: 1}}
	for i, id := range []string{"systemd-unit", "ld-so-preload", "exec-tmp", "listen-tcp6"} {
		st := map[string]float64{}
		for j, s := range Stages {
			st[s] = float64((i + 1) * (j + 1) * 900)
		}
		r.Results = append(r.Results, Result{ID: id, Attack: "T1543.002", Tactic: "persistence", Run: 1, Pass: true, Want: "file/open_write /etc/x", StagesUS: st})
	}
	r.Results = append(r.Results,
		Result{ID: "pam-config", Attack: "T1556.003", Tactic: "persistence", Run: 1, Why: "missed: got file/chmod /etc/pam.d"},
		Result{ID: "control-read-shadow", Tactic: "control", Control: true, Run: 1, Pass: true, Want: "nothing"})
	r.Stages = stageStats(r.Results)
	return r
}

// render runs chromium.Run, skipping when chromium is missing unless tests must not skip.
func render(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := chromium.Run(args...)
	if errors.Is(err, chromium.ErrNotInstalled) && !testenv.Required() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHTMLReportRenders: the HTML report, opened by headless Chromium with
// no network, has the meta data, one histogram per timed stage with its
// bars, and the per-technique table; the screenshot shows the bars' colour.
func TestHTMLReportRenders(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var b bytes.Buffer
	if err := sampleReport().WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b.Bytes(), []byte("<script")) || bytes.Contains(b.Bytes(), []byte(" src=")) {
		t.Fatal("the report must be self-contained: no script, no external resource")
	}
	if err := os.WriteFile(page, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	dom := string(render(t, "--dump-dom", "file://"+page))
	for _, want := range []string{`<td id="kernel">6.18.0</td>`, `<td id="backend">tracepoint</td>`, `<td id="version">driftsensor 0.3.0</td>`,
		`<table id="techniques">`, `>systemd-unit</td>`, `>MISSED</td>`, `missed: got file/chmod /etc/pam.d`, `>silent</td>`,
		`<table id="targets">`, `5/5/5`, `1-10-60`} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	for _, s := range Stages {
		if !strings.Contains(dom, `data-stage="`+s+`"`) {
			t.Errorf("rendered page has no histogram of %s", s)
		}
	}
	if n := strings.Count(dom, "<rect "); n < len(Stages)*2 {
		t.Errorf("rendered page has %d histogram bars, want at least %d", n, len(Stages)*2)
	}
	shot := filepath.Join(dir, "shot.png")
	render(t, "--screenshot="+shot, "--window-size=1400,1200", "file://"+page)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if n := countColour(img, 0x2f, 0x6f, 0xd6); n < 500 {
		t.Fatalf("the screenshot shows %d pixels of the histogram bars' colour, want at least 500", n)
	}
}

// countColour counts pixels of one colour (within a small tolerance).
func countColour(img image.Image, r, g, b uint8) int {
	near := func(a uint32, c uint8) bool { d := int(a>>8) - int(c); return d > -6 && d < 6 }
	n := 0
	bd := img.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if near(cr, r) && near(cg, g) && near(cb, b) {
				n++
			}
		}
	}
	return n
}

// TestTableAndJSON: the terminal table has every run and the stage table
// with p50/p90/p99/max; the JSON has the results and per-stage samples.
func TestTableAndJSON(t *testing.T) {
	r := sampleReport()
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"systemd-unit", "MISSED", "missed: got file/chmod /etc/pam.d", "control-read-shadow", "silent",
		"STAGE (after the mutation)  N  P50", "destroy", "4 of 5 technique runs detected exactly, 1 of 1 controls silent"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	var j bytes.Buffer
	if err := r.WriteJSON(&j); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(j.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != 6 || back.Failed() != 1 || len(back.Stages) != len(Stages) || back.Stages[0].N != 4 ||
		back.Stages[0].P50 != 1800 || back.Stages[0].Max != 3600 {
		t.Fatalf("JSON round trip: %+v", back.Stages[0])
	}
}
