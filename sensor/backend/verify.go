package backend

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
)

// Verify re-reads what the sensor wrote into the kernel (the configuration,
// the scope, the policy's prefix rules and allowed ports) and checks that
// every link is still attached to its program. It returns one line per
// difference, saying what changed, and writes the sensor's values back, so
// the next call is clean unless someone changes them again. A detached link
// cannot be restored here and is reported once.
func (l *Live) Verify() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var diffs []string
	if l.configMap != nil {
		diffs = append(diffs, l.verifyConfig()...)
	}
	if l.scopeMap != nil {
		diffs = append(diffs, l.verifyScope()...)
	}
	for _, t := range []struct {
		name  string
		m     *ebpf.Map
		rules []Rule
	}{{"rules", l.rulesMap, l.rules}, {"images", l.imagesMap, l.images}} {
		if t.m != nil {
			diffs = append(diffs, verifyRules(t.name, t.m, t.rules)...)
		}
	}
	if l.portsMap != nil {
		diffs = append(diffs, l.verifyPorts()...)
	}
	return append(diffs, l.verifyLinks()...)
}

func (l *Live) verifyConfig() []string {
	var got Config
	if err := l.configMap.Lookup(uint32(0), &got); err != nil {
		return []string{fmt.Sprintf("config_map: cannot be read back: %v", err)}
	}
	if got == l.cfg {
		return nil
	}
	var diffs []string
	for _, f := range []struct {
		name      string
		got, want uint32
	}{
		{"sealed", got.Sealed, l.cfg.Sealed}, {"scope_cgroups", got.ScopeCgroups, l.cfg.ScopeCgroups},
		{"reflex", got.Reflex, l.cfg.Reflex}, {"deny_binds", got.DenyBinds, l.cfg.DenyBinds},
		{"epoch", got.Epoch, l.cfg.Epoch},
	} {
		if f.got != f.want {
			diffs = append(diffs, fmt.Sprintf("config_map: %s is %d, the sensor wrote %d (restored)", f.name, f.got, f.want))
		}
	}
	if err := l.put(); err != nil {
		diffs = append(diffs, "config_map: "+err.Error())
	}
	return diffs
}

func (l *Live) verifyScope() []string {
	var diffs []string
	seen := map[uint64]bool{}
	var id uint64
	var v uint8
	var extra []uint64
	it := l.scopeMap.Iterate()
	for it.Next(&id, &v) {
		seen[id] = true
		if _, ok := l.scope[id]; !ok {
			extra = append(extra, id)
		}
	}
	if err := it.Err(); err != nil {
		return []string{fmt.Sprintf("scope_map: cannot be read back: %v", err)}
	}
	for _, id := range extra {
		diffs = append(diffs, fmt.Sprintf("scope_map: cgroup %d added (removed again)", id))
		if err := l.scopeMap.Delete(id); err != nil {
			diffs = append(diffs, fmt.Sprintf("scope_map: remove cgroup %d: %v", id, err))
		}
	}
	for id, dir := range l.scope {
		if seen[id] {
			continue
		}
		diffs = append(diffs, fmt.Sprintf("scope_map: cgroup %s (id %d) removed (restored)", dir, id))
		if err := l.scopeMap.Put(id, uint8(1)); err != nil {
			diffs = append(diffs, fmt.Sprintf("scope_map: restore cgroup %s: %v", dir, err))
		}
	}
	return diffs
}

// verifyRules compares a prefix trie with the rules the sensor wrote.
func verifyRules(name string, m *ebpf.Map, rules []Rule) []string {
	want := make(map[string]ruleVal, len(rules))
	for _, r := range rules {
		want[r.Prefix] = ruleVal{Class: r.Class, ID: r.ID}
	}
	var diffs []string
	seen := map[string]bool{}
	var k lpmKey
	var v ruleVal
	it := m.Iterate()
	for it.Next(&k, &v) {
		prefix := string(k.Data[:min(k.Bits/8, uint32(len(k.Data)))])
		seen[prefix] = true
		w, ok := want[prefix]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: prefix %s added (class %d, rule %d)", name, prefix, v.Class, v.ID))
		case w != v:
			diffs = append(diffs, fmt.Sprintf("%s: prefix %s is class %d rule %d, the sensor wrote class %d rule %d", name, prefix, v.Class, v.ID, w.Class, w.ID))
		}
	}
	if err := it.Err(); err != nil {
		return []string{fmt.Sprintf("%s: cannot be read back: %v", name, err)}
	}
	for p := range want {
		if !seen[p] {
			diffs = append(diffs, fmt.Sprintf("%s: prefix %s removed", name, p))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	for i := range diffs {
		diffs[i] += " (restored)"
	}
	if err := PutRules(m, rules); err != nil {
		diffs = append(diffs, fmt.Sprintf("%s: restore: %v", name, err))
	}
	return diffs
}

func (l *Live) verifyPorts() []string {
	got := new(PortSet)
	if err := l.portsMap.Lookup(uint32(0), got); err != nil {
		return []string{fmt.Sprintf("ports: cannot be read back: %v", err)}
	}
	if *got == *l.ports {
		return nil
	}
	var changed []string
	for p := range got {
		if got[p] != l.ports[p] {
			changed = append(changed, fmt.Sprintf("%d %s", p, map[bool]string{false: "denied", true: "allowed"}[got[p] != 0]))
		}
	}
	if len(changed) > 8 {
		changed = append(changed[:8], fmt.Sprintf("and %d more", len(changed)-8))
	}
	diffs := []string{fmt.Sprintf("ports: now %s (restored)", strings.Join(changed, ", "))}
	if err := l.portsMap.Put(uint32(0), l.ports); err != nil {
		diffs = append(diffs, fmt.Sprintf("ports: restore: %v", err))
	}
	return diffs
}

func (l *Live) verifyLinks() []string {
	var diffs []string
	for i := range l.links {
		st := &l.links[i]
		if st.gone {
			continue
		}
		info, err := st.Link.Link.Info()
		var why string
		switch {
		case err != nil:
			why = fmt.Sprintf("cannot be read: %v", err)
		case info.Program != st.prog:
			why = fmt.Sprintf("runs program id %d instead of the sensor's %d", info.Program, st.prog)
		case st.cgroup != 0 && (info.Cgroup() == nil || info.Cgroup().CgroupId != st.cgroup):
			why = "detached from its cgroup"
		default:
			continue
		}
		st.gone = true
		diffs = append(diffs, fmt.Sprintf("link %s (id %d): %s", st.What, st.id, why))
	}
	return diffs
}
