package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// TestCloseRemovesEverything: a bed made outside a test (Create), with
// hosts and a process in one, leaves nothing once closed.
func TestCloseRemovesEverything(t *testing.T) {
	testenv.RequireBPF(t)
	b, err := Create("tbclose")
	if err == nil {
		t.Fatal("a 7-letter name was taken")
	}
	if b, err = Create("tbcl"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"x", "y"} {
		if _, err := b.Add(n); err != nil {
			t.Fatal(errors.Join(err, b.Close()))
		}
	}
	sleep := exec.Command("sleep", "1000")
	if err := b.Host("x").Start(sleep); err != nil {
		t.Fatal(errors.Join(err, b.Close()))
	}
	if left := Leftovers(b.Prefix); len(left) == 0 {
		t.Fatal("Leftovers sees nothing of a live bed")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if left := Leftovers(b.Prefix); len(left) > 0 {
		t.Fatalf("after Close: %v", left)
	}
}

// TestDownAfterAbandon: a bed its maker never closed (as if it was killed)
// is removed by Down from its prefix alone, its processes killed.
func TestDownAfterAbandon(t *testing.T) {
	testenv.RequireBPF(t)
	b, err := Create("tbdown")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() }) // only matters if Down fails
	h, err := b.Add("x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add("y"); err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("sleep", "1000")
	if err := h.Start(sleep); err != nil {
		t.Fatal(err)
	}
	if err := Down(b.Prefix); err != nil {
		t.Fatal(err)
	}
	if err := sleep.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the host's process ended with %v, want killed", err)
	}
	if left := Leftovers(b.Prefix); len(left) > 0 {
		t.Fatalf("after Down: %v", left)
	}
	if err := Down(b.Prefix); err != nil {
		t.Fatalf("Down of nothing: %v", err)
	}
}

// TestUpDriftCordons: the pipeline on a bed: a mutation inside one host is
// a finding of that host's own sensor (and of no other), and the responder
// cordons the host: the other host's probe stops passing.
func TestUpDriftCordons(t *testing.T) {
	testenv.RequireBPF(t)
	bin := testenv.BuildAll(t, "github.com/driftsensor/driftsensor/cmd/driftsensor", "github.com/driftsensor/driftsensor/cmd/driftresponder")
	img := filepath.Join(t.TempDir(), "img")
	os.MkdirAll(filepath.Join(img, "etc"), 0o755)
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pol, []byte("version: 1\nprotect: ["+img+"]\n"), 0o644)
	p, err := Up("tbup", []string{"web", "peer"}, PipelineConfig{Sensor: filepath.Join(bin, "driftsensor"), Policy: pol, Seal: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
		if left := Leftovers(p.Prefix); len(left) > 0 {
			t.Errorf("after Close: %v", left)
		}
	})
	web, peer := p.Host("web"), p.Host("peer")
	if err := web.Echo(7070); err != nil {
		t.Fatal(err)
	}
	probe := func(ctx context.Context) error { return Probe(ctx, peer, web.AddrPort(7070)) }
	testenv.Eventually(t, "peer reaching web", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return probe(ctx) == nil
	})
	if err := p.StartResponder(filepath.Join(bin, "driftresponder"), "--rule", "kind=file,action=cordon",
		"--probe", web.AddrPort(7070).String(), "--probe-netns", peer.NetnsPath); err != nil {
		t.Fatal(err)
	}

	target := filepath.Join(img, "etc", "passwd")
	if out, err := web.Run("sh", "-c", "echo evil >> "+target); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var got event.Event
	testenv.Eventually(t, "web's sensor reporting "+target, func() bool {
		raw, _ := os.ReadFile(p.Sensors["web"].Findings)
		for _, l := range strings.Split(string(raw), "\n") {
			var e event.Event
			if json.Unmarshal([]byte(l), &e) == nil && e.Kind == event.KindFile && e.File != nil && e.File.Path == target {
				got = e
				return true
			}
		}
		return false
	})
	if got.Host != web.Netns {
		t.Errorf("finding from host %q, want %q (the sensor's name is the namespace's)", got.Host, web.Netns)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := WaitBlocked(ctx, probe, 20*time.Millisecond); err != nil {
		log, _ := os.ReadFile(p.ResponderLog)
		t.Fatalf("web not cordoned: %v\nresponder log:\n%s", err, log)
	}
	// peer's sensor saw nothing of web's drift: scopes are per host. Its
	// output so far is only the record of the sealed state it applied.
	raw, _ := os.ReadFile(p.Sensors["peer"].Findings)
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e event.Event
		if json.Unmarshal([]byte(l), &e) != nil || e.Action != "state_applied" {
			t.Errorf("peer's sensor reported %q", l)
		}
	}
}

// TestNames: which names a bed owns, and which bed names are taken.
func TestNames(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{{"dtcab", true}, {"dtcabh101", true}, {"dtcabh", false}, {"dtcabch101", false}, {"dtcabh10x", false}, {"dtca", false}} {
		if ownsLink("dtcab", c.name) != c.ok {
			t.Errorf("ownsLink(dtcab, %s) = %v", c.name, !c.ok)
		}
	}
	if !ownsMount("dtcab", "/run/netns/dtcab-web") || ownsMount("dtcab", "/run/netns/dtcabc-web") {
		t.Error("ownsMount takes another bed's namespace or misses its own")
	}
	for _, n := range []string{"", "abcdefg", "Web", "a1", "a-b"} {
		if ValidName(n) == nil {
			t.Errorf("name %q taken", n)
		}
	}
	if err := ValidName("demo"); err != nil {
		t.Error(err)
	}
}
