package backend

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The map layouts below mirror bpf/path.h and bpf/common.h; both backends'
// objects declare the same maps (bpf/maps.h), so one loader serves both.

// lpmKey is struct lpm_key: a prefix length in bits and the bytes.
type lpmKey struct {
	Bits uint32
	Data [256]byte
}

// ruleVal is struct rule_val.
type ruleVal struct {
	Class uint32
	ID    uint32
}

// dirLink is struct dirlink.
type dirLink struct {
	Plen, Tlen uint32
	Target     [256]byte
}

func newLPMKey(prefix string) *lpmKey {
	k := &lpmKey{Bits: uint32(len(prefix) * 8)}
	copy(k.Data[:], prefix)
	return k
}

// PutRules makes the prefix trie m hold exactly rules. New entries go in
// before stale ones are removed, so the kernel never sees an empty policy.
func PutRules(m *ebpf.Map, rules []Rule) error {
	want := map[string]bool{}
	for _, r := range rules {
		if len(r.Prefix) == 0 || len(r.Prefix) > 255 || r.Prefix[0] != '/' {
			return fmt.Errorf("prefix %q: must be an absolute path of at most 255 bytes", r.Prefix)
		}
		if err := m.Put(newLPMKey(r.Prefix), ruleVal{Class: r.Class, ID: r.ID}); err != nil {
			return fmt.Errorf("prefix %s: %w", r.Prefix, err)
		}
		want[r.Prefix] = true
	}
	var k lpmKey
	var v ruleVal
	var stale []lpmKey
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !want[string(k.Data[:k.Bits/8])] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := m.Delete(&k); err != nil {
			return err
		}
	}
	return nil
}

// PutDirLinks fills the symlinked-directory trie ("/bin/" -> "/usr/bin/").
func PutDirLinks(m *ebpf.Map, links map[string]string) error {
	for from, to := range links {
		if !strings.HasSuffix(from, "/") || !strings.HasSuffix(to, "/") || len(from) > 255 || len(to) > 255 {
			return fmt.Errorf("directory link %q -> %q: both must end in / and be at most 255 bytes", from, to)
		}
		v := dirLink{Plen: uint32(len(from)), Tlen: uint32(len(to))}
		copy(v.Target[:], to)
		if err := m.Put(newLPMKey(from), &v); err != nil {
			return fmt.Errorf("directory link %s: %w", from, err)
		}
	}
	return nil
}

// PortSet is struct port_set (bpf/maps.h): 1 = the port may be bound.
type PortSet [65536]uint8

// PutPorts writes the set of ports the policy allows, in one element, and
// returns what it wrote.
func PutPorts(m *ebpf.Map, allowed func(uint16) bool) (*PortSet, error) {
	set := new(PortSet)
	for p := 1; p < len(set); p++ {
		if allowed != nil && allowed(uint16(p)) {
			set[p] = 1
		}
	}
	if err := m.Put(uint32(0), set); err != nil {
		return nil, fmt.Errorf("allowed ports: %w", err)
	}
	return set, nil
}

// ReadStats sums the per-CPU counters of the stats map (enum stat_idx) and
// reads the liveness counter, which this very read advances (bpf/maps.h
// count_liveness). The programs' skipped runs are read first, before the
// counters of what was judged in their place.
func ReadStats(m, liveness *ebpf.Map, progs ...*ebpf.Program) (Stats, error) {
	var s Stats
	for _, p := range progs {
		// Misses are counted whether or not bpf_stats is enabled.
		st, err := p.Stats()
		if err != nil {
			return s, fmt.Errorf("read program stats: %w", err)
		}
		s.Skipped += st.RecursionMisses
	}
	if err := liveness.Lookup(uint32(0), &s.KernelCounter); err != nil {
		return s, fmt.Errorf("read the liveness counter: %w", err)
	}
	for i, dst := range []*uint64{&s.Lost, &s.TaintFull, &s.Truncated, &s.Recovered, &s.Unmarked, &s.MapWalked, &s.MapUnfound} {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return s, fmt.Errorf("read kernel counters: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return s, nil
}

// CgroupID is the kernel's id of a cgroup v2 directory: its inode number.
func CgroupID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("scope cgroup %s: %w (give a directory in the cgroup v2 hierarchy)", dir, err)
	}
	return st.Ino, nil
}
