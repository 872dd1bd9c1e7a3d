package actuator

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

const echoPort = 7000

// pair is a bed with a host to act on and a prober host, echoing on echoPort.
func pair(t *testing.T) (*testbed.Bed, *testbed.Host, *TCPProber) {
	b := testbed.New(t)
	victim, prober := b.AddHost("victim"), b.AddHost("prober")
	if err := victim.Echo(echoPort); err != nil {
		t.Fatal(err)
	}
	p := &TCPProber{
		Addr: func(host string) (string, error) {
			h := b.Host(host)
			if h == nil {
				return "", errors.New("no such host")
			}
			return h.AddrPort(echoPort).String(), nil
		},
		Dial: prober.DialContext,
	}
	return b, victim, p
}

// waitReachable fails the test unless host answers a probe within a few
// seconds: a bed just built may need a moment (ARP, links coming up).
func waitReachable(t *testing.T, p Prober, host string) {
	t.Helper()
	var err error
	for i := 0; i < 20; i++ {
		if err = probeOnce(p, host); err == nil {
			return
		}
	}
	t.Fatalf("%s unreachable before any cordon: %v", host, err)
}

func probeOnce(p Prober, host string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	return p.Probe(ctx, host)
}

func TestLinkCordonTakesTheLinkOff(t *testing.T) {
	testenv.RequireBPF(t)
	for _, tc := range []struct {
		name         string
		down, detach bool
	}{{"both", false, false}, {"down", true, false}, {"detach", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			b, victim, p := pair(t)
			a := &LinkCordon{
				Link:   func(host string) (string, error) { return b.Host(host).Link, nil },
				Down:   tc.down,
				Detach: tc.detach,
				Bridge: b.Bridge,
			}
			waitReachable(t, p, "victim")
			target := Target{Host: "victim", Incident: "inc-1", Action: "cordon"}
			if err := a.Cordon(context.Background(), target); err != nil {
				t.Fatal(err)
			}
			up, master, err := LinkStatus("", victim.Link)
			if err != nil {
				t.Fatal(err)
			}
			wantUp := tc.detach // only "detach" leaves it up
			if up != wantUp || (master == 0) != !tc.down {
				t.Errorf("after cordon: up=%v master=%d", up, master)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := WaitBlocked(ctx, p, "victim", 200*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			if err := a.Uncordon(context.Background(), target); err != nil {
				t.Fatal(err)
			}
			if up, master, _ := LinkStatus("", victim.Link); !up || master == 0 {
				t.Errorf("after uncordon: up=%v master=%d", up, master)
			}
			// The veth needs a moment to carry traffic again.
			var perr error
			for i := 0; i < 50; i++ {
				if perr = probeOnce(p, "victim"); perr == nil {
					break
				}
			}
			if perr != nil {
				t.Errorf("after uncordon: %v", perr)
			}
		})
	}
}

func TestCgroupDestroyKillsAndRemoves(t *testing.T) {
	testenv.RequireBPF(t)
	b := testbed.New(t)
	victim, prober := b.AddHost("victim"), b.AddHost("prober")
	echo, err := victim.StartEcho(echoPort)
	if err != nil {
		t.Fatal(err)
	}
	p := &TCPProber{Addr: func(string) (string, error) { return victim.AddrPort(echoPort).String(), nil }, Dial: prober.DialContext}
	waitReachable(t, p, "victim")
	cmds := []*exec.Cmd{echo}
	for i := 0; i < 3; i++ {
		c := exec.Command("sleep", "1000")
		if err := victim.Start(c); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	d := &CgroupDestroy{Resolve: func(host string) (string, string, error) {
		h := b.Host(host)
		return h.Cgroup, h.Netns, nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Destroy(ctx, Target{Host: "victim", Incident: "inc-1", Action: "destroy"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		if err := c.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("pid %d ended with %v, want killed", c.Process.Pid, err)
		}
	}
	if pids, _ := victim.Procs(); len(pids) != 0 {
		t.Errorf("processes left in the cgroup: %v", pids)
	}
	if _, err := os.Stat(victim.NetnsPath); !os.IsNotExist(err) {
		t.Errorf("namespace %s still there", victim.NetnsPath)
	}
	// The kernel frees a namespace asynchronously once its last user is gone.
	if _, err := WaitBlocked(ctx, p, "victim", 200*time.Millisecond); err != nil {
		t.Error(err)
	}
	// With its last process gone the namespace is freed, and its veth with it.
	testenv.Eventually(t, "veth "+victim.Link+" of the destroyed host to go", func() bool {
		_, _, err := LinkStatus("", victim.Link)
		return err != nil
	})
	// Destroying again is harmless.
	if err := d.Destroy(ctx, Target{Host: "victim"}); err != nil {
		t.Errorf("second destroy: %v", err)
	}
}

func TestCommandHook(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCommand([]string{"cp", "/dev/null", filepath.Join(dir, "{{.Host}}-{{.Incident}}-{{.Action}}")})
	if err != nil {
		t.Fatal(err)
	}
	target := Target{Host: "web-1", Incident: "inc-7", Action: "destroy"}
	if err := c.Destroy(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "web-1-inc-7-destroy")); err != nil {
		t.Errorf("the hook did not run with the rendered arguments: %v", err)
	}

	// No shell: metacharacters are plain argument bytes, and a host name
	// that is not a valid subject token is refused outright.
	c, _ = NewCommand([]string{"echo", "{{.Incident}}"})
	argv, err := c.Argv(Target{Host: "h", Incident: "$(touch /tmp/x); rm -rf /"})
	if err != nil || len(argv) != 2 || argv[1] != "$(touch /tmp/x); rm -rf /" {
		t.Errorf("argv %q, %v", argv, err)
	}
	if _, err := c.Argv(Target{Host: "h;reboot"}); err == nil {
		t.Error("an invalid host name was rendered")
	}

	c, _ = NewCommand([]string{"ls", "/nonexistent-{{.Host}}"})
	err = c.Destroy(context.Background(), Target{Host: "h"})
	if err == nil || !strings.Contains(err.Error(), "nonexistent-h") {
		t.Errorf("failing hook: %v, want an error with its output", err)
	}
	if _, err := NewCommand([]string{"virsh", "destroy", "{{.Hots}}"}); err == nil || !strings.Contains(err.Error(), "Hots") {
		t.Errorf("a field Target lacks: %v", err)
	}
	if _, err := NewCommand([]string{"x", "{{.Host"}); err == nil {
		t.Error("a bad template was accepted")
	}
	if _, err := NewCommand(nil); err == nil {
		t.Error("an empty command was accepted")
	}
}

func TestWebhookRetriesThenDelivers(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	var got Target
	fails := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		if fails > 0 {
			fails--
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &got); err != nil {
			t.Errorf("body %s: %v", body, err)
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server not on loopback: %s", srv.URL)
	}
	w := &Webhook{URL: srv.URL, Backoff: time.Millisecond}
	target := Target{Host: "web-1", Incident: "inc-9", Action: "destroy", Events: []string{"e1", "e2"}}
	if err := w.Destroy(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0] != "inc-9/destroy" || keys[2] != keys[0] {
		t.Errorf("tries with keys %q, want 3 with inc-9/destroy", keys)
	}
	if got.Schema != TargetSchema || got.Host != "web-1" || got.Incident != "inc-9" || len(got.Events) != 2 {
		t.Errorf("delivered %+v", got)
	}
}

func TestWebhookGivesUp(t *testing.T) {
	var n int
	var mu sync.Mutex
	status := http.StatusBadGateway
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		w.WriteHeader(status)
	}))
	defer srv.Close()
	w := &Webhook{URL: srv.URL, Tries: 3, Backoff: time.Millisecond}
	if err := w.Post(context.Background(), Target{Host: "h", Incident: "i"}); err == nil || n != 3 {
		t.Errorf("5xx forever: err=%v after %d tries, want an error after 3", err, n)
	}
	n, status = 0, http.StatusForbidden
	if err := w.Post(context.Background(), Target{Host: "h", Incident: "i"}); err == nil || n != 1 {
		t.Errorf("403: err=%v after %d tries, want an error after 1", err, n)
	}
	// A closed port: network errors are retried, then reported.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	w = &Webhook{URL: "http://" + addr, Tries: 2, Backoff: time.Millisecond}
	if err := w.Post(context.Background(), Target{Host: "h", Incident: "i"}); err == nil {
		t.Error("a closed port was reported delivered")
	}
}
