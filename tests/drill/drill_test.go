package drill

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

// TestMain: the test binary is also the drill's actor and the hosts' echo
// server when re-executed as one.
func TestMain(m *testing.M) {
	ActorMainIfChild()
	testbed.ServeEchoIfChild()
	os.Exit(testenv.Main(m))
}

// TestCatalogValid: the embedded catalog parses, has at least 40
// techniques with ATT&CK ids and their exact findings, and covers every
// family issue 14 asks for, plus the negative controls.
func TestCatalogValid(t *testing.T) {
	c := Catalog()
	var techniques, controls int
	for _, x := range c {
		if x.Control {
			controls++
		} else {
			techniques++
		}
	}
	if techniques < 40 || controls < 5 {
		t.Fatalf("%d techniques and %d controls, want at least 40 and 5", techniques, controls)
	}
	// One technique per family the issue names, by id.
	for _, id := range []string{"systemd-unit", "systemd-timer", "cron-d", "authorized-keys-root", "ld-so-preload",
		"pam-config", "user-added", "sudoers-d", "root-ca", "binary-copy-over", "binary-rename-over", "config-sed-i",
		"setuid", "file-capability", "timestomp", "chattr", "hardlink-into-system", "symlink-into-system", "exec-tmp",
		"exec-dev-shm", "exec-memfd", "finit-module", "listen-tcp", "bind-udp", "listen-tcp6", "io-uring-write",
		"mount-over-bin", "log-truncate", "control-read-shadow", "control-write-tmp", "control-exec-image",
		"control-listen-allowed"} {
		if !slices.ContainsFunc(c, func(x Technique) bool { return x.ID == id }) {
			t.Errorf("the catalog has no %s", id)
		}
	}
}

// TestCatalogRefusesBadInput: a bad catalog is refused with the technique
// and the fix named.
func TestCatalogRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"- {id: x, attack: T1, tactic: p, name: n, act: [create, /etc/x], want: {kind: file, action: open_write, path: /etc/x}}", `attack "T1": want a MITRE ATT&CK id`},
		{"- {id: x, attack: T1543, tactic: p, name: n, act: [frob], want: {kind: file, action: open_write, path: /etc/x}}", `act ["frob"]: want one of the actor operations`},
		{"- {id: x, attack: T1543, tactic: p, name: n, act: [create, /etc/x], want: {kind: file, action: open_write}}", "a file want needs its path"},
		{"- {id: x, control: true, tactic: c, name: n, act: [read, /etc/x], want: {kind: file, action: open_write, path: /x}}", "a control has no want"},
		{"- {id: x, attack: T1543, tactic: p, name: n, act: [create, /etc/x]}", "want is required"},
		{"- {id: x, tactic: c, name: n, control: true, act: [read, /a]}\n- {id: x, tactic: c, name: n, control: true, act: [read, /a]}", "id used twice"},
		{"- {id: x, tactic: c, name: n, control: true, act: [read, /a], colour: red}", "field colour not found"},
	} {
		_, err := ParseCatalog("c.yaml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "c.yaml") {
			t.Errorf("ParseCatalog(%q) = %v, want an error naming c.yaml and %q", tc.doc, err, tc.want)
		}
	}
}

// TestSelect: patterns match ids, tactics and ATT&CK ids; one that matches
// nothing is an error.
func TestSelect(t *testing.T) {
	c := Catalog()
	got, err := Select(c, "exec-*,T1136.001")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range got {
		ids = append(ids, x.ID)
	}
	want := []string{"user-added", "shadow-entry", "exec-tmp", "exec-dev-shm", "exec-var-tmp", "exec-memfd", "exec-deleted"}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("Select = %v, want %v", ids, want)
	}
	if _, err := Select(c, "nosuch*"); err == nil || !strings.Contains(err.Error(), `"nosuch*" matches no technique`) {
		t.Fatalf("Select(nosuch*) = %v, want the pattern named", err)
	}
}

// runDrill runs techniques on hosts test-bed hosts and fails on any run
// that did not pass, printing the report.
func runDrill(t *testing.T, hosts int, patterns string) *Report {
	testenv.RequireBPF(t)
	ts, err := Select(Catalog(), patterns)
	if err != nil {
		t.Fatal(err)
	}
	sensor := testenv.Build(t, "github.com/driftsensor/driftsensor/cmd/driftsensor")
	rep, err := Run(context.Background(), Config{Hosts: hosts, Runs: 1, Techniques: ts, Sensor: sensor,
		Progress: func(done, total int, r Result) { t.Log(ProgressLine(done, total, r)) }})
	if rep != nil {
		var b strings.Builder
		rep.WriteTable(&b)
		t.Log("\n" + b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != len(ts) {
		t.Fatalf("%d results for %d techniques", len(rep.Results), len(ts))
	}
	for _, r := range rep.Results {
		if !r.Pass {
			t.Errorf("%s: %s", r.ID, r.Why)
		}
	}
	return rep
}

// TestDrillCatalog is make e2e: the whole catalog on 5 sealed test-bed
// hosts at a time. Every technique is detected with its exact finding
// (kind, action, canonical path or port, by the actor's pid) and its host
// cordoned, verified and destroyed; every control stays silent up to the
// marker that follows it. Every stage is recorded, and in the order of
// the chain: each one causes the next, so a stage timed before the one
// before it is a stage measured at the wrong point.
func TestDrillCatalog(t *testing.T) {
	rep := runDrill(t, 5, "*")
	for _, r := range rep.Results {
		if r.Control || !r.Pass {
			continue
		}
		prev, prevAt := "the mutation", 0.0
		for _, s := range Stages {
			at, ok := r.StagesUS[s]
			if !ok {
				t.Errorf("%s: stage %s not recorded: %v", r.ID, s, r.StagesUS)
				continue
			}
			if at < prevAt {
				t.Errorf("%s: stage %s at %.1f us comes before %s at %.1f us: %v", r.ID, s, at, prev, prevAt, r.StagesUS)
			}
			prev, prevAt = s, at
		}
	}
}

// TestWaitUntil: waitUntil returns true once a broadcast makes the
// condition hold, and false at its timeout when nothing does.
func TestWaitUntil(t *testing.T) {
	var mu sync.Mutex
	c := sync.NewCond(&mu)
	n := 0
	go func() {
		mu.Lock()
		n = 1
		mu.Unlock()
		c.Broadcast()
	}()
	mu.Lock()
	ok := waitUntil(c, time.Minute, func() bool { return n == 1 })
	mu.Unlock()
	if !ok {
		t.Fatal("waitUntil missed the broadcast")
	}
	mu.Lock()
	ok = waitUntil(c, 10*time.Millisecond, func() bool { return n == 2 })
	mu.Unlock()
	if ok {
		t.Fatal("waitUntil said yes to a condition that never held")
	}
}
