// Package deploy holds what a fleet installs besides the binaries: package
// specs, systemd units, configuration, the container image, the Grafana
// dashboard and the Prometheus alert rules. Its tests check that they fit
// the code: the shipped policies parse, the rules and real scrapes pass
// promtool, and every metric the rules and the dashboard use exists.
package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftsensor/driftsensor/internal/metrics"
	"github.com/driftsensor/driftsensor/internal/outputs"
	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/publish"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// TestShippedPolicies: the policies the packages install parse, and the
// sensor's never seals by itself.
func TestShippedPolicies(t *testing.T) {
	p, err := policy.Load("etc/driftsensor/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.SealOnStart || len(p.ScopeCgroups) != 0 || p.ReflexCordon {
		t.Errorf("installed sensor policy: seal_on_start %v, scope %v, reflex cordon %v; want an unsealed whole host and no reflex (it needs --gate)",
			p.SealOnStart, p.ScopeCgroups, p.ReflexCordon)
	}
	data, err := os.ReadFile("etc/driftresponder/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rp, err := decide.ParsePolicy("etc/driftresponder/policy.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if rp.Default != decide.ActAlert || rp.DeadMan != decide.ActAlert || len(rp.Rules) != 0 {
		t.Errorf("installed responder policy %+v: want alert only until the operator says otherwise", rp)
	}
}

// promtool returns promtool's path; it is a failure in CI
// (DRIFT_REQUIRE_BPF set) when missing, else a skip.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not found (Debian's prometheus package; scripts/setup.sh installs it)"
		if testenv.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// TestAlertRules: promtool accepts the rules, and its unit tests of them
// (prometheus/alerts_test.yaml: the alert outputs' rules) pass.
func TestAlertRules(t *testing.T) {
	tool := promtool(t)
	out, err := exec.Command(tool, "check", "rules", "prometheus/alerts.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	test := exec.Command(tool, "test", "rules", "alerts_test.yaml")
	test.Dir = "prometheus"
	if out, err := test.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestScrapesAndReferences scrapes a real responder on a real NATS server
// and the sensor's exposition over HTTP, has promtool check each scrape, and
// checks that every metric the alert rules and the dashboard name is one of
// theirs.
func TestScrapesAndReferences(t *testing.T) {
	tool := promtool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	srv, url, err := transport.StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r, err := decide.New(nc, decide.Config{Replica: "deploy-test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	responder := metrics.NewRegistry("driftresponder")
	responder.MustRegister(r.Collectors()...)
	// An -alert-to output, as cmd/driftresponder registers it (never sent to).
	alertOut, err := outputs.Open("syslog+udp://127.0.0.1:9", outputs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer alertOut.Close(ctx)
	responder.MustRegister(outputs.Collectors("driftresponder_alert_output_records_total", []*outputs.Output{alertOut})...)

	sensor := metrics.NewRegistry("driftsensor")
	sensor.MustRegister(publish.NewCollector(func() publish.Metrics {
		return publish.Metrics{Findings: map[event.Kind]uint64{event.KindFile: 2}, Transport: event.TransportJetStream,
			State: event.StateSealed, Backend: "tracepoint", Gate: publish.GateOpen}
	}))

	names := map[string]bool{"up": true}
	for _, reg := range []*prometheus.Registry{responder, sensor} {
		addr, err := metrics.Serve(ctx, "test", "127.0.0.1:0", reg)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + addr.String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		check := exec.Command(tool, "check", "metrics")
		check.Stdin = bytes.NewReader(body)
		if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
		for _, line := range strings.Split(string(body), "\n") {
			if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
				names[f[2]] = true
			}
		}
		// Vectors with no series yet (no decision made) are named only in
		// their descriptions.
		descs := make(chan *prometheus.Desc, 256)
		go func() { reg.Describe(descs); close(descs) }()
		for d := range descs {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				names[m[1]] = true
			}
		}
	}

	var exprs []string
	rules, _ := os.ReadFile("prometheus/alerts.yaml")
	for _, l := range strings.Split(string(rules), "\n") {
		if s := strings.TrimSpace(l); strings.HasPrefix(s, "expr:") {
			exprs = append(exprs, s)
		}
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	data, _ := os.ReadFile("grafana/driftsensor.json")
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("grafana/driftsensor.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 20 {
		t.Fatalf("%d expressions found in the rules and the dashboard", len(exprs))
	}
	for _, e := range exprs {
		for _, n := range metricRef.FindAllString(e, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
			if !names[n] && !names[base] {
				t.Errorf("%q uses %s, which neither daemon exposes", e, n)
			}
		}
	}
}

var (
	fqName    = regexp.MustCompile(`fqName: "([^"]+)"`)
	metricRef = regexp.MustCompile(`\b(driftsensor|driftresponder|process|go)_[a-z_]+\b`)
)
