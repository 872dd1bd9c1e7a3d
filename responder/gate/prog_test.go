package gate

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// testPinDir is a fresh bpffs directory for one test.
func testPinDir(t *testing.T) string {
	t.Helper()
	var raw [4]byte
	_, _ = rand.Read(raw[:])
	dir := filepath.Join(DefaultPinDir, "test-"+hex.EncodeToString(raw[:]))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

const (
	actPass = -1 // TC_ACT_UNSPEC / TCX_NEXT
	actDrop = 2  // TC_ACT_SHOT
)

// frame builds an Ethernet frame carrying an IPv4 or IPv6 packet with a TCP,
// UDP or ICMPv6 header (ports, or the ICMPv6 type in sport).
func frame(src, dst netip.Addr, proto uint8, sport, dport uint16) []byte {
	b := make([]byte, 14, 128)
	var l4 []byte
	switch proto {
	case 6, 17:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
	case 58:
		l4 = make([]byte, 8)
		l4[0] = byte(sport)
	default:
		l4 = make([]byte, 8)
	}
	if src.Is4() {
		binary.BigEndian.PutUint16(b[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		ip[8] = 64
		ip[9] = proto
		s, d := src.As4(), dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		b = append(b, ip...)
	} else {
		binary.BigEndian.PutUint16(b[12:], 0x86dd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6] = proto
		ip[7] = 64
		s, d := src.As16(), dst.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		b = append(b, ip...)
	}
	return append(b, l4...)
}

func arpFrame() []byte {
	b := make([]byte, 14+28)
	binary.BigEndian.PutUint16(b[12:], 0x0806)
	return b
}

func run(t *testing.T, p *ebpf.Program, pkt []byte) int32 {
	t.Helper()
	ret, err := p.Run(&ebpf.RunOptions{Data: pkt})
	if err != nil {
		t.Fatalf("run %v: %v", p, err)
	}
	return int32(ret)
}

func TestGateDecisions(t *testing.T) {
	testenv.RequireBPF(t)
	var rules []Rule
	for _, s := range []string{"192.0.2.250:4222", "198.51.100.0/24:22", "203.0.113.7", "[2001:db8::1]:4222"} {
		r, err := ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	g, err := load(rules, Options{PinDir: testPinDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()

	self := netip.MustParseAddr("192.0.2.10")
	self6 := netip.MustParseAddr("2001:db8::10")
	mgmt := netip.MustParseAddr("192.0.2.250")
	bastion := netip.MustParseAddr("198.51.100.9")
	other := netip.MustParseAddr("192.0.2.20")
	// Each case is one packet seen leaving (egress) or entering the host.
	cases := []struct {
		name     string
		egress   bool
		pkt      []byte
		cordoned int32
	}{
		{"arp", true, arpFrame(), actPass},
		{"to NATS on its port", true, frame(self, mgmt, 6, 40000, 4222), actPass},
		{"from NATS on its port", false, frame(mgmt, self, 6, 4222, 40000), actPass},
		{"to NATS host on another port", true, frame(self, mgmt, 6, 40000, 80), actDrop},
		{"UDP to NATS port", true, frame(self, mgmt, 17, 40000, 4222), actPass},
		{"ICMP to NATS host (no ports)", true, frame(self, mgmt, 1, 0, 0), actDrop},
		{"bastion ssh in", false, frame(bastion, self, 6, 51000, 22), actPass},
		{"bastion ssh reply", true, frame(self, bastion, 6, 22, 51000), actPass},
		{"bastion to another port", false, frame(bastion, self, 6, 51000, 8080), actDrop},
		{"any port to an address rule", true, frame(self, netip.MustParseAddr("203.0.113.7"), 17, 1, 53), actPass},
		{"to another host", true, frame(self, other, 6, 40000, 7000), actDrop},
		{"from another host", false, frame(other, self, 6, 7000, 40000), actDrop},
		{"spoofed allowed destination on ingress", false, frame(other, mgmt, 6, 40000, 4222), actDrop},
		{"v6 to NATS", true, frame(self6, netip.MustParseAddr("2001:db8::1"), 6, 40000, 4222), actPass},
		{"v6 elsewhere", true, frame(self6, netip.MustParseAddr("2001:db8::2"), 6, 40000, 4222), actDrop},
		{"v6 neighbour solicitation", true, frame(self6, netip.MustParseAddr("ff02::1:ff00:2"), 58, 135, 0), actPass},
		{"v6 echo request", true, frame(self6, netip.MustParseAddr("2001:db8::2"), 58, 128, 0), actDrop},
	}
	for _, on := range []bool{false, true} {
		if err := g.SetCordon(on); err != nil {
			t.Fatal(err)
		}
		for _, tc := range cases {
			p := g.objs.GateIngress
			if tc.egress {
				p = g.objs.GateEgress
			}
			want := int32(actPass)
			if on {
				want = tc.cordoned
			}
			if got := run(t, p, tc.pkt); got != want {
				t.Errorf("cordon=%v %s: got %d, want %d", on, tc.name, got, want)
			}
		}
	}
	c, err := g.Counters()
	if err != nil {
		t.Fatal(err)
	}
	var drops, passes uint64
	for _, tc := range cases {
		if tc.cordoned == actDrop {
			drops++
		} else {
			passes++
		}
	}
	if c.DroppedIn+c.DroppedOut != drops || c.PassedIn+c.PassedOut != passes {
		t.Errorf("counters %+v, want %d drops and %d passes (only while cordoned)", c, drops, passes)
	}
}

func TestFlagIsPinnedAndShared(t *testing.T) {
	testenv.RequireBPF(t)
	dir := testPinDir(t)
	g, err := load(nil, Options{PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, FlagPin)); err != nil {
		t.Fatalf("flag not pinned: %v", err)
	}
	if err := SetPinned(dir, true); err != nil {
		t.Fatal(err)
	}
	if on, err := g.Cordoned(); err != nil || !on {
		t.Fatalf("after SetPinned(true): cordoned=%v, %v", on, err)
	}
	// A second loader reuses the pin: the cordon survives a restart.
	g2, err := load(nil, Options{PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if on, _ := g2.Cordoned(); !on {
		t.Error("a gate loaded over the existing pin does not see the cordon")
	}
	if err := g2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, FlagPin)); err != nil {
		t.Error("a gate that reused the pin removed it on Close")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, FlagPin)); !os.IsNotExist(err) {
		t.Errorf("the pin's creator left it behind on Close: %v", err)
	}
}
