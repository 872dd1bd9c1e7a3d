package fleet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

// TestREADMEFleetSetup runs the README's fleet setup line by line, as
// written, with the real binaries: driftctl creds, the real nats-server on
// the generated configuration, driftctl init, a sensor with its own host
// seed, the responder with responder.nk, driftctl seal and status. Only the
// port is a free one, and the sensor watches a test-bed host (its cgroup) with
// a policy of the test's own, so it seals nothing else. Then it proves the setup works: the
// sensor applies the seal (status shows it, its watch ok, no mismatch), a
// mutation in its scope reaches the stream, the responder runs, and a sensor
// with a seed the server does not know stops at once with exit status 2 and
// the server's reason.
func TestREADMEFleetSetup(t *testing.T) {
	testenv.RequireBPF(t)
	bin := binaries(t)
	lines := readmeBlock(t, "fleet-setup")
	dir := t.TempDir()
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	// The sensor's scope and policy: a test-bed host and an image directory of the test's own.
	web := testbed.New(t).AddHost("web-1")
	root, err := sysfs.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	scope := strings.TrimPrefix(web.Cgroup, root)
	img := filepath.Join(dir, "img")
	if err := os.MkdirAll(filepath.Join(img, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	polFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polFile, []byte("version: 1\nprotect: ["+img+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sensorReady, responderReady := filepath.Join(dir, "sensor.ready"), filepath.Join(dir, "responder.ready")

	vars := strings.Fields(lines[0])
	for _, v := range vars {
		name, _, ok := strings.Cut(v, "=")
		if !ok {
			t.Fatalf("README fleet block: first line %q should set FLEET and NATS", lines[0])
		}
		switch name {
		case "FLEET":
			env = append(env, "FLEET="+filepath.Join(dir, "fleet"))
		case "NATS":
			env = append(env, "NATS=nats://"+addr)
		default:
			t.Fatalf("README fleet block sets %s: teach the test about it", name)
		}
	}
	fleetDir := filepath.Join(dir, "fleet")
	var procs = map[string]*proc{}
	for _, line := range lines[1:] {
		line = strings.ReplaceAll(line, "127.0.0.1:4222", addr)
		bg := strings.HasSuffix(strings.TrimSpace(line), "&")
		line = strings.TrimSuffix(strings.TrimSpace(line), "&")
		prog := strings.Fields(line)[0]
		switch prog {
		case "driftsensor":
			line += " --scope-cgroup " + scope + " --policy " + polFile + " --state-dir " + filepath.Join(dir, "state") +
				" --ready-file " + sensorReady + " --stdout=false"
		case "driftresponder":
			line += " --ready-file " + responderReady
		}
		cmd := exec.Command("sh", "-c", "exec "+line)
		cmd.Env, cmd.Dir = env, dir
		if !bg {
			if code, out := run(t, cmd); code != 0 {
				t.Fatalf("README line %q: exit %d\n%s", line, code, out)
			}
			continue
		}
		p := start(t, prog, cmd)
		procs[prog] = p
		switch prog {
		case "nats-server":
			waitPort(t, p, addr)
		case "driftsensor":
			waitFile(t, p, sensorReady)
		case "driftresponder":
			waitFile(t, p, responderReady)
		}
	}
	for _, want := range []string{"nats-server", "driftsensor", "driftresponder"} {
		if procs[want] == nil {
			t.Fatalf("the README fleet block does not start %s", want)
		}
	}

	admin := []string{"--nats", "nats://" + addr, "--nats-nkey", filepath.Join(fleetDir, "admin.nk")}
	testenv.Eventually(t, "web-1 sealed, applied by its sensor, watch ok, over JetStream", func() bool {
		h, ok := hostIn(status(t, bin, admin...), "web-1")
		return ok && h.State == event.StateSealed && h.Heartbeat != nil && h.Heartbeat.State == event.StateSealed &&
			h.Heartbeat.StateWatch == "ok" && h.Heartbeat.Transport == "jetstream" && h.Mismatch == ""
	})

	// Drift in the sensor's scope reaches the stream under the host's own credentials.
	target := filepath.Join(img, "etc", "fleet-drift")
	if out, err := web.Run("sh", "-c", "echo x > "+target); err != nil {
		t.Fatalf("mutation in web-1: %v: %s", err, out)
	}
	testenv.Eventually(t, "the finding on "+target+" in the stream", func() bool {
		_, out := run(t, exec.Command(filepath.Join(bin, "driftctl"), append(admin, "replay", "--since", "1h", "--host", "web-1", "--json")...))
		return strings.Contains(out, `"path":"`+target+`"`)
	})
	for name, p := range procs {
		if p.exited() {
			t.Fatalf("%s exited: %v\n%s", name, p.err, p.output())
		}
	}

	// Every identity did its work within its permissions.
	if out := procs["nats-server"].output(); strings.Contains(out, "Violation") {
		t.Fatalf("the server refused a permission during the setup:\n%s", out)
	}

	// A seed the server does not know: exit 2 at once, with the server's reason.
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	foreign := filepath.Join(dir, "foreign.nk")
	if err := os.WriteFile(foreign, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := run(t, exec.Command(filepath.Join(bin, "driftsensor"), "--nats", "nats://"+addr, "--nats-nkey", foreign, "--host", "db-1",
		"--scope-cgroup", scope, "--policy", polFile, "--state-dir", filepath.Join(dir, "state2"), "--stdout=false"))
	if code != 2 || !strings.Contains(out, "Authorization Violation") || !strings.Contains(out, foreign) {
		t.Fatalf("driftsensor with a foreign seed: exit %d, want 2 with the server's reason and the seed named:\n%s", code, out)
	}
	code, out = run(t, exec.Command(filepath.Join(bin, "driftresponder"), "--nats", "nats://"+addr, "--nats-nkey", foreign))
	if code != 2 || !strings.Contains(out, "Authorization Violation") {
		t.Fatalf("driftresponder with a foreign seed: exit %d, want 2 with the server's reason:\n%s", code, out)
	}
}
