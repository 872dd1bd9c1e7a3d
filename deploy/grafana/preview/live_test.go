package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

var shot = flag.String("shot", "", "TestDashboardLive: write the screenshot here (make dashboard-shot: docs/dashboard.png)")

// TestMain unmounts the kernel file systems the test mounted.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// scrapeEvery is the test Prometheus' scrape interval.
const scrapeEvery = time.Second

// TestDashboardLive proves the dashboard against live metrics: a test bed
// of two sealed hosts, each with its driftsensor, and a driftresponder, all
// scraped by Debian's prometheus; drift in web (a refused listen, a tool run
// from /tmp, an edit of a protected file) and in peer (the tool) makes
// findings of every kind, decisions, and a cordon of web. Then every query
// of every panel of driftsensor.json, its variables filled in as Grafana
// would, must return at least one series: a query without data is a
// dashboard bug. The preview drawn from those answers has every panel, and
// its screenshot shows the lines (-shot keeps it).
func TestDashboardLive(t *testing.T) {
	testenv.RequireBPF(t)
	for _, bin := range []string{"prometheus", "chromium"} {
		if _, err := exec.LookPath(bin); err != nil {
			msg := bin + " is not installed (scripts/setup.sh installs it)"
			if testenv.Required() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	dash, err := LoadDashboard("../driftsensor.json")
	if err != nil {
		t.Fatal(err)
	}
	bin := testenv.BuildAll(t, "github.com/driftsensor/driftsensor/cmd/driftsensor", "github.com/driftsensor/driftsensor/cmd/driftresponder")
	if err := testbed.Down(testbed.CLIPrefix + "dash"); err != nil { // a run killed earlier
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "img")
	passwd := filepath.Join(img, "etc", "passwd")
	if err := os.MkdirAll(filepath.Dir(passwd), 0o755); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := errors.Join(os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\n"), 0o644), os.WriteFile(pol, []byte(fmt.Sprintf("version: 1\nprotect: [%s]\nexec:\n  image_paths: [/usr, /bin, /sbin, /lib, /lib64]\n"+
		"net:\n  allowed_ports: [7070]\n  deny_binds: true\n", img)), 0o644)); err != nil {
		t.Fatal(err)
	}
	p, err := testbed.Up("dash", []string{"web", "peer"}, testbed.PipelineConfig{Sensor: filepath.Join(bin, "driftsensor"),
		Policy: pol, Seal: true, SensorArgs: []string{"--metrics-addr", "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	web, peer := p.Host("web"), p.Host("peer")
	if err := web.Echo(7070); err != nil {
		t.Fatal(err)
	}
	probe := func(ctx context.Context) error { return testbed.Probe(ctx, peer, web.AddrPort(7070)) }
	testenv.Eventually(t, "peer reaching web", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return probe(ctx) == nil
	})
	if err := p.StartResponder(filepath.Join(bin, "driftresponder"), "--rule", "kind=file,action=cordon",
		"--probe", web.AddrPort(7070).String(), "--probe-netns", peer.NetnsPath, "--metrics-addr", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	targets := map[string]map[string]string{"driftsensor": {}, "driftresponder": {"responder": metricsAddr(t, p.ResponderLog)}}
	for _, name := range []string{"web", "peer"} {
		targets["driftsensor"][name] = metricsAddr(t, p.Sensors[name].Log)
	}
	server := startPrometheus(t, targets)
	start := time.Now()
	// Some quiet samples first, so the graphs show the drift begin.
	waitQuery(t, server, "3 daemons scraped 8 times", `count(count_over_time(up[1m]) >= 8) == 3`)

	drift := func(h *testbed.Host, cmd string) {
		t.Helper()
		if out, err := h.Run("timeout", "5", "sh", "-c", cmd); err != nil {
			t.Fatalf("%s: %s: %v: %s", h.Name, cmd, err, out)
		}
	}
	const tool = "cp /bin/true /tmp/.tool-$$ && /tmp/.tool-$$; rm -f /tmp/.tool-$$"
	drift(web, "busybox nc -l -p 4444 || true") // a listen: refused
	drift(web, tool)
	drift(peer, tool)
	drift(web, "echo 'evil:x:0:0::/:/bin/sh' >> "+passwd)
	ctx, cancel := context.WithTimeout(context.Background(), testenv.WaitBound)
	defer cancel()
	if _, err := testbed.WaitBlocked(ctx, probe, 50*time.Millisecond); err != nil {
		log, _ := os.ReadFile(p.ResponderLog)
		t.Fatalf("web not cordoned: %v\nresponder log:\n%s", err, log)
	}
	waitQuery(t, server, "web's gate closed, scraped", `driftsensor_gate{instance="web",state="closed"} == 1`)
	waitQuery(t, server, "the responder's cordon, scraped 3 times", `count_over_time(driftresponder_actions_total{action="cordon",result="ok"}[1m]) >= 3`)
	// A second wave: the responder's counters and histograms are created
	// at their first observation, which rate() cannot see; the second one
	// draws (README, Install on a fleet, says so).
	drift(peer, tool)
	drift(web, tool)
	waitQuery(t, server, "a second decision, scraped twice",
		`count_over_time((histogram_quantile(0.99, sum by (le) (rate(driftresponder_stage_latency_seconds_bucket{stage="decide"}[4s]))) >= 0)[1m:1s]) >= 2`)

	w := Window{Start: start, End: time.Now(), Step: scrapeEvery}
	if w.Vars, err = dash.Vars(nil, w.Step, scrapeEvery); err != nil {
		t.Fatal(err)
	}
	data, err := Fetch(context.Background(), server, dash, w)
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, pd := range data {
		for _, r := range pd.Results {
			if len(r.Series) == 0 {
				t.Errorf("panel %q target %s: no data from %s", pd.Panel.Title, r.Target.RefID, r.Expr)
			}
			for _, s := range r.Series {
				if _, ok := s.Last(); ok && pd.Panel.Type == "timeseries" {
					lines++
				}
			}
		}
	}
	for _, c := range []struct {
		title, legend string
		want          float64
	}{{"Gates closed", "closed", 1}, {"Hosts by state", "cordoned", 1}, {"Hosts by state", "sealed", 1}, {"Sensors up", "down", 0}} {
		if v := last(t, data, c.title, c.legend).last; v != c.want {
			t.Errorf("%s: %s shows %v, want %v", c.title, c.legend, v, c.want)
		}
	}
	// The drift the test made shows in the graphs.
	for _, c := range [][2]string{{"Findings per second by kind", "exec"}, {"Findings per second by kind", "net"},
		{"Findings per second by kind", "file"}, {"Decisions per second by action", "alert ok"}} {
		if peak := last(t, data, c[0], c[1]).peak; peak <= 0 {
			t.Errorf("%s: %s never rises above 0", c[0], c[1])
		}
	}

	page, err := Render(dash, data, w, "a test bed's Prometheus")
	if err != nil {
		t.Fatal(err)
	}
	html := filepath.Join(t.TempDir(), "dashboard.html")
	if err := os.WriteFile(html, page.HTML, 0o644); err != nil {
		t.Fatal(err)
	}
	dom, err := Chromium("--dump-dom", "file://"+html)
	if err != nil {
		t.Fatal(err)
	}
	for _, pd := range data {
		if want := fmt.Sprintf(`data-panel="%d"`, pd.Panel.ID); !strings.Contains(string(dom), want) {
			t.Errorf("the rendered page lacks panel %d %q", pd.Panel.ID, pd.Panel.Title)
		}
	}
	if strings.Contains(string(dom), "No data") {
		t.Error("the rendered page shows a panel with no data")
	}
	if n := strings.Count(string(dom), "<path "); n != lines {
		t.Errorf("the rendered page has %d lines, want %d (one per series of the time series panels)", n, lines)
	}
	out := *shot
	if out == "" {
		out = filepath.Join(t.TempDir(), "dashboard.png")
	}
	if err := Screenshot(html, out, page); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if cfg.Width != page.Width || cfg.Height != page.Height {
		t.Errorf("screenshot %dx%d, want the page's %dx%d", cfg.Width, cfg.Height, page.Width, page.Height)
	}
	t.Logf("%d panels, %d queries answered, %d lines drawn; screenshot %s", len(data), countQueries(data), lines, out)
}

// metricsAddr is the address a daemon serves metrics on, from its log.
func metricsAddr(t *testing.T, log string) string {
	t.Helper()
	var addr string
	testenv.Eventually(t, "the metrics address in "+log, func() bool {
		f, err := os.Open(log)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l struct{ Message, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "metrics on /metrics" {
				addr = l.Addr
				return true
			}
		}
		return false
	})
	return addr
}

// startPrometheus runs Debian's prometheus on a free loopback port with its
// storage in a temporary directory, scraping targets (job -> instance ->
// address) every scrapeEvery; it is stopped at cleanup, and dies with the
// test process. It returns the server's URL once it is ready.
func startPrometheus(t *testing.T, targets map[string]map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global: {scrape_interval: %s, evaluation_interval: %[1]s}\nscrape_configs:\n", scrapeEvery)
	for job, insts := range targets {
		fmt.Fprintf(&cfg, "  - job_name: %s\n    static_configs:\n", job)
		for inst, addr := range insts {
			fmt.Fprintf(&cfg, "      - {targets: [%q], labels: {instance: %q}}\n", addr, inst)
		}
	}
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("prometheus", "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	url := "http://" + addr
	if !testenv.Within(testenv.WaitBound, func() bool {
		select {
		case <-done:
			return false
		default:
		}
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		out, _ := os.ReadFile(log.Name())
		t.Fatalf("prometheus on %s not ready (exited: %v):\n%s", addr, cmd.ProcessState != nil, out)
	}
	return url
}

// waitQuery waits until expr has a series at Prometheus.
func waitQuery(t *testing.T, server, what, expr string) {
	t.Helper()
	testenv.Eventually(t, what+" ("+expr+")", func() bool {
		v, err := query(context.Background(), server, true, map[string][]string{"query": {expr}})
		return err == nil && len(series(v, "")) > 0
	})
}

// value is a series' last value and its greatest.
type value struct{ last, peak float64 }

// last is the value of the series with legend in the panel titled title.
func last(t *testing.T, data []PanelData, title, legend string) value {
	t.Helper()
	for _, pd := range data {
		for _, r := range pd.Results {
			for _, s := range r.Series {
				if pd.Panel.Title != title || s.Legend != legend {
					continue
				}
				var v value
				v.last, _ = s.Last()
				for _, p := range s.Points {
					if f := float64(p.Value); f > v.peak { // false for NaN
						v.peak = f
					}
				}
				return v
			}
		}
	}
	t.Fatalf("no series %q in panel %q", legend, title)
	return value{}
}

func countQueries(data []PanelData) int {
	n := 0
	for _, pd := range data {
		n += len(pd.Results)
	}
	return n
}
