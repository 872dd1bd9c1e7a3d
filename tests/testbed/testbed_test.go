package testbed

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

func TestHostsReachEachOther(t *testing.T) {
	testenv.RequireBPF(t)
	b := New(t)
	a, c := b.AddHost("a"), b.AddHost("c")
	if err := c.Echo(7000); err != nil {
		t.Fatal(err)
	}
	if err := a.Echo(7000); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Probe(ctx, a, c.AddrPort(7000)); err != nil {
		t.Fatalf("tcp a -> c: %v", err)
	}
	if err := ProbeUDP(ctx, c, a.AddrPort(7000)); err != nil {
		t.Fatalf("udp c -> a: %v", err)
	}
}

func TestProbeRefusesOtherAddresses(t *testing.T) {
	testenv.RequireBPF(t)
	b := New(t)
	a := b.AddHost("a")
	ctx := context.Background()
	targets := []string{"127.0.0.1:22", "10.0.0.1:80", "198.51.100.1:80"}
	for ip := range b.taken { // the machine's own addresses, even inside 192.0.2.0/24
		targets = append(targets, netip.AddrPortFrom(ip, 22).String())
	}
	for _, to := range targets {
		if err := Probe(ctx, a, mustAddrPort(t, to)); err == nil || !strings.Contains(err.Error(), "outside the test bed") {
			t.Errorf("probe to %s: got %v, want a refusal", to, err)
		}
		if err := ProbeUDP(ctx, a, mustAddrPort(t, to)); err == nil || !strings.Contains(err.Error(), "outside the test bed") {
			t.Errorf("probe to %s: got %v, want a refusal", to, err)
		}
	}
}

func TestRunIsInsideNamespaceAndCgroup(t *testing.T) {
	testenv.RequireBPF(t)
	b := New(t)
	h := b.AddHost("h")
	out, err := h.Run("cat", "/proc/self/cgroup")
	if err != nil {
		t.Fatalf("run: %v: %s", err, out)
	}
	rel := strings.TrimPrefix(h.Cgroup, filepath.Dir(b.Cgroup))
	if !strings.Contains(string(out), "0::"+rel+"\n") {
		t.Errorf("cgroup of the command: %q, want 0::%s", out, rel)
	}
	out, err = h.Run("readlink", "/proc/self/ns/net")
	if err != nil {
		t.Fatalf("run: %v: %s", err, out)
	}
	own, _ := os.Readlink("/proc/self/ns/net")
	if strings.TrimSpace(string(out)) == own {
		t.Errorf("command ran in the test's own network namespace %s", own)
	}
	out, err = h.Run("cat", "/proc/net/dev")
	if err != nil {
		t.Fatalf("run: %v: %s", err, out)
	}
	if !strings.Contains(string(out), HostIf+":") || strings.Contains(string(out), "eth1:") {
		t.Errorf("interfaces seen by the command:\n%s", out)
	}
}

func TestDestroyKillsProcessesAndNamespace(t *testing.T) {
	testenv.RequireBPF(t)
	b := New(t)
	h := b.AddHost("victim")
	cmd := exec.Command("sleep", "1000")
	if err := h.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if pids, _ := h.Procs(); len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("cgroup procs %v, want [%d]", pids, cmd.Process.Pid)
	}
	if err := h.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("sleep ended with %v, want killed", err)
	}
	if _, err := os.Stat(h.NetnsPath); !os.IsNotExist(err) {
		t.Errorf("namespace %s still there: %v", h.NetnsPath, err)
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	testenv.RequireBPF(t)
	var b *Bed
	var hosts []*Host
	t.Run("bed", func(t *testing.T) {
		b = New(t)
		hosts = append(hosts, b.AddHost("x"), b.AddHost("y"))
		if err := hosts[0].Start(exec.Command("sleep", "1000")); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := netlink.LinkByName(b.Bridge); err == nil {
		t.Errorf("bridge %s left behind", b.Bridge)
	}
	if _, err := os.Stat(b.Cgroup); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left behind", b.Cgroup)
	}
	for _, h := range hosts {
		if _, err := os.Stat(h.NetnsPath); !os.IsNotExist(err) {
			t.Errorf("namespace %s left behind", h.NetnsPath)
		}
		if _, err := netlink.LinkByName(h.Link); err == nil {
			t.Errorf("veth %s left behind", h.Link)
		}
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
