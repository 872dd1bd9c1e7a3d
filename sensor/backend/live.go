package backend

import (
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// Config mirrors struct config (bpf/common.h): the live configuration every
// backend keeps in its config_map.
type Config struct {
	Sealed       uint32
	ScopeCgroups uint32
	Reflex       uint32
	DenyBinds    uint32
	Epoch        uint32
}

// Bits of Config.Reflex (REFLEX_* in bpf/common.h).
const (
	ReflexKill   = 1 << 0
	ReflexDeny   = 1 << 1
	ReflexCordon = 1 << 2
)

// Live is what both backends keep the same way at run time: the configuration
// mirrored in the kernel (and what it must read back, for Verify), the
// sensor's own objects, and the ring buffer. Backends embed it.
type Live struct {
	mu        sync.Mutex // the configuration: written by state changes, checked by Verify
	cfg       Config
	configMap *ebpf.Map
	ring      *Ring

	scopeMap            *ebpf.Map
	scope               map[uint64]string // cgroup id -> directory
	rulesMap, imagesMap *ebpf.Map
	rules, images       []Rule
	portsMap            *ebpf.Map
	ports               *PortSet
	rawMap              *ebpf.Map
	rawDevices          func() ([]uint64, error)
	objects             map[uint64]Object
	links               []linkState
}

// Scope sets who is watched: never the sensor itself (bpf/maps.h self_tgid,
// set by SetSelf); with scope cgroups, only tasks in them or below. It writes
// the configuration, not yet sealed.
func (l *Live) Scope(configMap, scopeMap *ebpf.Map, scope []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.configMap, l.scopeMap = configMap, scopeMap
	l.scope = map[uint64]string{}
	for _, dir := range scope {
		id, err := CgroupID(dir)
		if err != nil {
			return err
		}
		if err := scopeMap.Put(id, uint8(1)); err != nil {
			return fmt.Errorf("scope cgroup %s: %w", dir, err)
		}
		l.scope[id] = dir
		l.cfg.ScopeCgroups = 1
	}
	return l.put()
}

// OpenRing starts reading the ring buffer.
func (l *Live) OpenRing(events *ebpf.Map) (err error) {
	l.ring, err = OpenRing(events)
	return err
}

// ApplyPolicy fills the policy maps (dirLinks may be nil: a backend with
// exact paths needs no rewrite) and the configuration's policy bits; the raw
// devices (rawDevs) are filled at every seal.
func (l *Live) ApplyPolicy(r Rules, reflex uint32, rules, images, ports, dirLinks, rawDevs, interps *ebpf.Map) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rulesMap, l.imagesMap, l.portsMap = rules, images, ports
	l.rawMap, l.rawDevices = rawDevs, r.RawDevices
	l.rules, l.images = append([]Rule(nil), r.Paths...), append([]Rule(nil), r.Images...)
	if err := PutRules(rules, r.Paths); err != nil {
		return fmt.Errorf("path rules: %w", err)
	}
	if err := PutRules(images, r.Images); err != nil {
		return fmt.Errorf("exec image rules: %w", err)
	}
	if dirLinks != nil {
		if err := PutDirLinks(dirLinks, r.DirLinks); err != nil {
			return err
		}
	}
	if err := putInterpreters(interps, r.Interpreters); err != nil {
		return err
	}
	var err error
	if l.ports, err = PutPorts(ports, r.PortAllowed); err != nil {
		return err
	}
	l.cfg.DenyBinds = 0
	if r.DenyBinds {
		l.cfg.DenyBinds = 1
	}
	if r.ReflexKill {
		reflex |= ReflexKill
	}
	l.cfg.Reflex = reflex
	return l.put()
}

// SetSealed flips the sealed flag: from then on every mutation in scope is a
// finding. A new seal starts a new epoch, so judgements from an earlier seal
// (descriptors already seen) do not carry over.
func (l *Live) SetSealed(sealed bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sealed && l.cfg.Sealed == 0 {
		l.cfg.Epoch++
	}
	if sealed {
		if err := l.putRawDevices(); err != nil {
			return err
		}
	}
	l.cfg.Sealed = 0
	if sealed {
		l.cfg.Sealed = 1
	}
	return l.put()
}

// putInterpreters makes bpf/seal.h's interps hold exactly names.
func putInterpreters(m *ebpf.Map, names []string) error {
	want := map[[16]byte]bool{}
	for _, n := range names {
		var k [16]byte
		if len(n) == 0 || len(n) > 15 {
			return fmt.Errorf("interpreter %q: want a name of 1 to 15 bytes", n)
		}
		copy(k[:], n)
		if err := m.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("interpreter %s: %w", n, err)
		}
		want[k] = true
	}
	var k [16]byte
	var v uint8
	var stale [][16]byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// putRawDevices makes the raw device set what the mounts say now: the
// block devices under protected file systems are found when sealing.
func (l *Live) putRawDevices() error {
	if l.rawMap == nil || l.rawDevices == nil {
		return nil
	}
	devs, err := l.rawDevices()
	if err != nil {
		return fmt.Errorf("raw devices under protected file systems: %w", err)
	}
	want := map[uint64]bool{}
	for _, d := range devs {
		if err := l.rawMap.Put(d, uint8(1)); err != nil {
			return fmt.Errorf("raw device %d:%d: %w", uint32(d)>>20, uint32(d)&(1<<20-1), err)
		}
		want[d] = true
	}
	var k uint64
	var v uint8
	var stale []uint64
	it := l.rawMap.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := l.rawMap.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (l *Live) put() error {
	if err := l.configMap.Put(uint32(0), &l.cfg); err != nil {
		return fmt.Errorf("write sensor config map: %w", err)
	}
	return nil
}

// Reader is the ring buffer every record arrives on.
func (l *Live) Reader() *ringbuf.Reader { return l.ring.Reader() }

// RingFill is the fraction of the ring buffer holding unread records.
func (l *Live) RingFill() float64 { return l.ring.Fill() }

// CloseRing stops reading the ring buffer.
func (l *Live) CloseRing() {
	if l.ring != nil {
		l.ring.Close()
	}
}
