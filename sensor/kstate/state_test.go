package kstate

import (
	"slices"
	"testing"
)

// TestDiff: every kind of change is one line naming what changed, sorted.
func TestDiff(t *testing.T) {
	was := State{
		Settings: map[string]string{"/proc/sys/kernel/kptr_restrict": "1", "/sys/kernel/security/lockdown": "none [integrity] confidentiality"},
		Modules:  map[string]bool{"ext4": true, "loop": true},
		Programs: map[uint32]bool{7: true, 9: true},
		Links:    map[uint32]bool{3: true},
	}
	now := State{
		Settings: map[string]string{"/proc/sys/kernel/kptr_restrict": "0", "/sys/kernel/security/lockdown": "none [integrity] confidentiality"},
		Modules:  map[string]bool{"ext4": true, "nf_tables": true},
		Programs: map[uint32]bool{7: true, 12: true},
		Links:    map[uint32]bool{},
	}
	want := []string{
		"/proc/sys/kernel/kptr_restrict: 1 -> 0",
		"BPF link detached: id 3",
		"BPF program loaded: id 12",
		"BPF program unloaded: id 9",
		"module loaded: nf_tables",
		"module unloaded: loop",
	}
	if got := Diff(was, now); !slices.Equal(got, want) {
		t.Fatalf("Diff:\n got %q\nwant %q", got, want)
	}
	if got := Diff(now, now); len(got) != 0 {
		t.Fatalf("no change: %q", got)
	}
}

// TestRead reads this kernel's state: every setting has a value (or
// "absent"), and the BPF id walk ends.
func TestRead(t *testing.T) {
	s, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range Settings {
		if s.Settings[f] == "" {
			t.Errorf("%s: no value", f)
		}
	}
}

// BenchmarkRead: the cost of one comparison's read, which the daemon pays
// every --kernel-check.
func BenchmarkRead(b *testing.B) {
	for b.Loop() {
		if _, err := Read(); err != nil {
			b.Fatal(err)
		}
	}
}
