package gate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

const (
	mgmtPort  = 4222 // the management service (NATS) on host mgmt
	probePort = 7000 // an ordinary service on every host
)

// fleet is a bed with a target host, a peer, and a management host whose
// mgmtPort is allowlisted; every host echoes on both ports.
func fleet(t *testing.T) (target, peer, mgmt *testbed.Host) {
	b := testbed.New(t)
	target, peer, mgmt = b.AddHost("target"), b.AddHost("peer"), b.AddHost("mgmt")
	for _, h := range []*testbed.Host{target, peer, mgmt} {
		for _, p := range []uint16{mgmtPort, probePort} {
			if err := h.Echo(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	return target, peer, mgmt
}

// Probe bounds: a probe that must pass gets long enough for a loaded
// machine (it returns as soon as it passes); one that must be blocked waits
// out the short one (a drop is decided in the kernel, at once).
const (
	passBound    = 5 * time.Second
	blockedBound = 500 * time.Millisecond
)

func probe(from *testbed.Host, to *testbed.Host, port uint16, udp bool, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if udp {
		return testbed.ProbeUDP(ctx, from, to.AddrPort(port))
	}
	return testbed.Probe(ctx, from, to.AddrPort(port))
}

func TestCordonStopsTrafficButManagement(t *testing.T) {
	testenv.RequireBPF(t)
	for _, mode := range []Mode{ModeTCX, ModeClsact} {
		t.Run(string(mode), func(t *testing.T) {
			target, peer, mgmt := fleet(t)
			allow := []Rule{{Prefix: netipPrefix(mgmt), Ports: []uint16{mgmtPort}}}
			g, err := Attach(target.NetnsPath, allow, Options{PinDir: testPinDir(t), Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := g.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			if g.Mode() != mode {
				t.Errorf("mode %s, want %s", g.Mode(), mode)
			}
			if fmt.Sprint(g.Interfaces()) != "["+testbed.HostIf+"]" {
				t.Errorf("attached to %v, want [%s] (not lo)", g.Interfaces(), testbed.HostIf)
			}
			type path struct {
				name     string
				from, to *testbed.Host
				port     uint16
				udp      bool
				cordoned bool // passes while cordoned
			}
			paths := []path{
				{"peer->target tcp", peer, target, probePort, false, false},
				{"target->peer tcp", target, peer, probePort, false, false},
				{"peer->target udp", peer, target, probePort, true, false},
				{"target->peer udp", target, peer, probePort, true, false},
				{"target->mgmt management port", target, mgmt, mgmtPort, false, true},
				{"target->mgmt management port udp", target, mgmt, mgmtPort, true, true},
				{"target->mgmt other port", target, mgmt, probePort, false, false},
				{"peer->mgmt (not gated)", peer, mgmt, probePort, false, true},
			}
			check := func(cordoned bool) {
				t.Helper()
				for _, p := range paths {
					want, bound := !cordoned || p.cordoned, blockedBound
					if want {
						bound = passBound
					}
					err := probe(p.from, p.to, p.port, p.udp, bound)
					if want && err != nil {
						t.Errorf("cordon=%v %s: want pass, got %v", cordoned, p.name, err)
					}
					if !want && err == nil {
						t.Errorf("cordon=%v %s: passed, want blocked", cordoned, p.name)
					}
				}
			}
			check(false)
			if err := g.SetCordon(true); err != nil {
				t.Fatal(err)
			}
			check(true)
			c, err := g.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c.DroppedIn == 0 || c.DroppedOut == 0 || c.PassedIn == 0 || c.PassedOut == 0 {
				t.Errorf("counters %+v: want drops and passes both ways", c)
			}
			if err := g.SetCordon(false); err != nil {
				t.Fatal(err)
			}
			check(false)
		})
	}
}

func TestCloseDetaches(t *testing.T) {
	testenv.RequireBPF(t)
	for _, mode := range []Mode{ModeTCX, ModeClsact} {
		t.Run(string(mode), func(t *testing.T) {
			target, peer, _ := fleet(t)
			g, err := Attach(target.NetnsPath, nil, Options{PinDir: testPinDir(t), Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			if err := g.SetCordon(true); err != nil {
				t.Fatal(err)
			}
			if probe(peer, target, probePort, false, blockedBound) == nil {
				t.Fatal("cordon did not block")
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			if err := probe(peer, target, probePort, false, passBound); err != nil {
				t.Errorf("after Close: %v", err)
			}
			if mode == ModeClsact {
				nh, err := netlinkIn(target)
				if err != nil {
					t.Fatal(err)
				}
				defer nh.Close()
				l, _ := nh.LinkByName(testbed.HostIf)
				qs, _ := nh.QdiscList(l)
				for _, q := range qs {
					if q.Type() == "clsact" {
						t.Errorf("clsact qdisc left on %s", testbed.HostIf)
					}
				}
			}
		})
	}
}
