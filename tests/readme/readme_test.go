// Package readme runs the commands of the README's sh blocks: each one as
// written, or in a test-bed form (a loopback server, a temporary directory,
// a scope cgroup of the test's own instead of the fleet's names), or skipped
// with its reason. A command the README gains without an entry here fails the
// test, and so does an entry whose command the README lost.
package readme

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/control"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// entry is what the test does with one README command.
type entry struct {
	skip string // why it is not run here
	run  func(t *testing.T, root string)
}

const fleetSkip = "the fleet-setup block: tests/fleet TestREADMEFleetSetup runs it line by line (a free port, a scope cgroup and policy of its own)"

// plan has every command of the README's sh blocks (comments cut, && split).
var plan = map[string]entry{
	"scripts/setup.sh":               {skip: "installs Debian packages and Go as root on the machine; .ci/run runs it first on every CI machine"},
	"make demo":                      {run: makeDemo},
	"DRIFT_REQUIRE_BPF=1 make check": {skip: "is CI itself: .ci/run runs exactly this, and this test is part of it (it would recurse)"},
	"make build":                     {run: makeBuild},
	"bin/driftctl drill --hosts 5 --html drill.html": {skip: "the whole catalog on 5 test-bed hosts is make e2e (tests/drill TestDrillCatalog, the same code with the sensor binary built by the test), part of make check"},
	"bin/driftsensor --seal":                         {run: sensorSeal},
	"bin/driftsensor --scope-cgroup /my/service --seal --gate --mgmt-allow 10.0.0.5:4222 --nats nats://nats.fleet:4222 --nats-nkey host.nk": {
		skip: "--gate attaches to every interface of the namespace it runs in (here: the machine's own) and nats.fleet, host.nk name a fleet; tests/e2e runs these flags on test-bed hosts (--gate --gate-netns, --mgmt-allow) and tests/fleet with --nats-nkey"},
	"FLEET=/etc/driftsensor/fleet NATS=nats://127.0.0.1:4222":                                                                                         {skip: fleetSkip},
	"driftctl creds --hosts web-1,db-1 --out $FLEET --nats-listen 127.0.0.1:4222":                                                                     {skip: fleetSkip},
	"nats-server -c $FLEET/server.conf &":                                                                                                             {skip: fleetSkip},
	"driftctl --nats $NATS --nats-nkey $FLEET/admin.nk init --max-age 2160h":                                                                          {skip: fleetSkip},
	"driftsensor --nats $NATS --nats-nkey $FLEET/hosts/web-1.nk --host web-1 &":                                                                       {skip: fleetSkip},
	"driftresponder --nats $NATS --nats-nkey $FLEET/responder.nk &":                                                                                   {skip: fleetSkip},
	"driftctl --nats $NATS --nats-nkey $FLEET/admin.nk seal web-1":                                                                                    {skip: fleetSkip},
	"driftctl --nats $NATS --nats-nkey $FLEET/admin.nk status":                                                                                        {skip: fleetSkip},
	"driftctl creds --hosts web-1,web-2,db-1 --out /etc/nats/drift":                                                                                   {run: credsCluster},
	"driftctl export --durable siem --format ocsf --out /var/log/drift/findings.ocsf --to syslog+tls://siem.example:6514?ca=/etc/ssl/siem-ca.pem":     {run: exportToSyslog},
	"driftresponder -nats nats://nats1.fleet:4222 -alert-to hec+https://splunk.example:8088 -alert-to bulk+https://elastic.example:9200/drift-alerts": {run: responderAlerts},
}

// command is one command of the README, with its line.
type command struct {
	line int
	text string
}

func readmeCommands(t *testing.T, root string) []command {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []command
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case !in && strings.TrimSpace(l) == "```sh":
			in = true
		case in && strings.HasPrefix(l, "```"):
			in = false
		case in:
			if i := strings.Index(l, " #"); i >= 0 {
				l = l[:i]
			}
			for _, c := range strings.Split(l, " && ") {
				if c = strings.TrimSpace(c); c != "" {
					out = append(out, command{n, c})
				}
			}
		}
	}
	return out
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TestREADMECommands runs every command, in README order.
func TestREADMECommands(t *testing.T) {
	root := repoRoot()
	cmds := readmeCommands(t, root)
	seen := map[string]bool{}
	for _, c := range cmds {
		seen[c.text] = true
		if _, ok := plan[c.text]; !ok {
			t.Errorf("README.md:%d: %q is neither run nor skipped by tests/readme: add it to plan", c.line, c.text)
		}
	}
	for cmd := range plan {
		if !seen[cmd] {
			t.Errorf("tests/readme plans %q, which the README no longer has", cmd)
		}
	}
	if t.Failed() {
		return
	}
	// make build first: the other commands use bin/.
	t.Run("make build", func(t *testing.T) { makeBuild(t, root) })
	for _, c := range cmds {
		if c.text == "make build" {
			continue
		}
		e := plan[c.text]
		t.Run(c.text, func(t *testing.T) {
			if e.skip != "" {
				t.Skipf("README.md:%d: not run here: %s", c.line, e.skip)
			}
			e.run(t, root)
		})
	}
}

func bin(root, name string) string { return filepath.Join(root, "bin", name) }

func makeBuild(t *testing.T, root string) {
	cmd := exec.Command("make", "build")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	for _, b := range []string{"driftsensor", "driftresponder", "driftctl"} {
		if _, err := os.Stat(bin(root, b)); err != nil {
			t.Errorf("make build made no bin/%s: %v", b, err)
		}
	}
}

// make demo as written: its own test bed, detection, cordon verified by a probe.
func makeDemo(t *testing.T, root string) {
	testenv.RequireBPF(t)
	cmd := exec.Command("make", "demo")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "== web is cordoned") {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
}

// The sensor sealed with the built-in policy: in test-bed form, scoped to a
// cgroup of the test's own (sealing the whole machine would turn every other
// test's work into drift), with a state directory and an embedded server port
// of its own and a ready file; SIGTERM ends it with status 0.
func sensorSeal(t *testing.T, root string) {
	testenv.RequireBPF(t)
	cg := testenv.NewCgroup(t)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	cmd := exec.Command(bin(root, "driftsensor"), "--seal", "--scope-cgroup", cg.Rel,
		"--host", "readme", "--embedded-port", "0", "--state-dir", dir, "--ready-file", ready)
	cmd.Dir = root
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	testenv.Eventually(t, "the sealed sensor's ready file", func() bool {
		_, err := os.Stat(ready)
		select {
		case err := <-done:
			t.Fatalf("driftsensor ended: %v\n%s", err, out.String())
		default:
		}
		return err == nil
	})
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Fatalf("driftsensor after SIGTERM: %v\n%s", err, out.String())
	}
}

// driftctl creds for a three-host cluster, into a temporary directory
// instead of /etc/nats/drift: every file the README's comment names.
func credsCluster(t *testing.T, root string) {
	out := filepath.Join(t.TempDir(), "drift")
	if b, err := exec.Command(bin(root, "driftctl"), "creds", "--hosts", "web-1,web-2,db-1", "--out", out).CombinedOutput(); err != nil {
		t.Fatalf("driftctl creds: %v\n%s", err, b)
	}
	for _, f := range []string{"server.conf", "auth.conf", "hosts/web-1.nk", "hosts/web-2.nk", "hosts/db-1.nk", "responder.nk", "admin.nk"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("driftctl creds wrote no %s: %v", f, err)
		}
	}
}

// jetstreamServer is an embedded server with the findings stream and one
// finding of host web-1 in it.
func jetstreamServer(t *testing.T) (string, *nats.Conn) {
	t.Helper()
	s, url, err := transport.StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctl, err := control.New(nc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return url, nc
}

func publishFinding(t *testing.T, nc *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ev := event.Event{Schema: event.Schema, ID: "readme-1", Host: "web-1", Seq: 1, Time: time.Now().UTC(), Kind: event.KindExec,
		Action: "exec", Backend: "tracepoint", Exec: &event.Exec{Path: "/tmp/.x/kworker", Reasons: []string{"outside_image"}},
		Process: &event.Process{PID: 7, Comm: "kworker"}}
	data, _ := json.Marshal(ev)
	if _, err := js.Publish(context.Background(), event.Subject("web-1", event.KindExec), data); err != nil {
		t.Fatal(err)
	}
}

// tlsServerCert is a certificate for 127.0.0.1 and a CA file that trusts it.
func tlsServerCert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	cert := srv.TLS.Certificates[0]
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	srv.Close()
	return cert, ca
}

// driftctl export into an OCSF file and a TLS syslog receiver: in test-bed
// form, the receiver on loopback with a CA of the test's, the file in a
// temporary directory, a loopback server, and --count 1 so it ends.
func exportToSyslog(t *testing.T, root string) {
	url, nc := jetstreamServer(t)
	publishFinding(t, nc)
	cert, ca := tlsServerCert(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan *rfc5424.SyslogMessage, 4)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		octetcounting.NewParser(syslog.WithListener(func(r *syslog.Result) {
			if r.Error == nil {
				got <- r.Message.(*rfc5424.SyslogMessage)
			}
		})).Parse(c)
	}()
	out := filepath.Join(t.TempDir(), "findings.ocsf")
	b, err := exec.Command(bin(root, "driftctl"), "--nats", url, "export", "--durable", "siem", "--format", "ocsf", "--out", out,
		"--to", "syslog+tls://"+l.Addr().String()+"?ca="+ca, "--count", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("driftctl export: %v\n%s", err, b)
	}
	data, _ := os.ReadFile(out)
	var o struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &o); err != nil || o.Metadata.UID != "readme-1" {
		t.Errorf("%s holds %q, want the finding readme-1 in OCSF (%v)", out, data, err)
	}
	select {
	case m := <-got:
		if *m.Hostname != "web-1" || *m.Message != strings.TrimSpace(string(data)) {
			t.Errorf("syslog message: host %q MSG %q", *m.Hostname, *m.Message)
		}
	case <-time.After(testenv.WaitBound):
		t.Fatal("the syslog receiver got nothing")
	}
}

// driftresponder with a HEC and an Elastic output: in test-bed form, both
// collectors on loopback over https with a CA of the test's (?ca=), the
// token in $DRIFT_HEC_TOKEN, a loopback server; a finding the default policy
// alerts on reaches both.
func responderAlerts(t *testing.T, root string) {
	url, nc := jetstreamServer(t)
	cert, ca := tlsServerCert(t)
	var mu sync.Mutex
	bodies := map[string]string{}
	collector := func(name string) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies[name] += r.URL.Path + " " + r.Header.Get("Authorization") + " " + string(b)
			mu.Unlock()
			if name == "hec" {
				io.WriteString(w, `{"text":"Success","code":0}`)
			} else {
				io.WriteString(w, `{"errors":false,"items":[]}`)
			}
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "https://")
	}
	hec, bulk := collector("hec"), collector("bulk")
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(bin(root, "driftresponder"), "-nats", url, "-heartbeat-interval", "0", "-ready-file", ready,
		"-alert-to", "hec+https://"+hec+"?ca="+ca, "-alert-to", "bulk+https://"+bulk+"/drift-alerts?ca="+ca)
	cmd.Env = append(os.Environ(), "DRIFT_HEC_TOKEN=readme-token")
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	testenv.Eventually(t, "the responder's ready file", func() bool { _, err := os.Stat(ready); return err == nil })
	publishFinding(t, nc)
	testenv.Eventually(t, "the alert at both collectors", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(bodies["hec"], `"stage":"alert"`) && strings.Contains(bodies["bulk"], `"stage":"alert"`)
	})
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasPrefix(bodies["hec"], "/services/collector/event Splunk readme-token ") || !strings.Contains(bodies["hec"], `"readme-1"`) {
		t.Errorf("HEC got %s", bodies["hec"])
	}
	if !strings.HasPrefix(bodies["bulk"], "/_bulk ") || !strings.Contains(bodies["bulk"], `"_index":"drift-alerts"`) {
		t.Errorf("_bulk got %s", bodies["bulk"])
	}
}

// syncBuf collects a process's output.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
