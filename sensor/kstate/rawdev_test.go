package kstate

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRawDevices: a block-backed mount the policy protects puts its device
// in the set, one it does not leaves it out; /dev/mem, kmem and port are
// always in unless allowed (a device node allowed by its path, wherever it
// is).
func TestRawDevices(t *testing.T) {
	dir := t.TempDir()
	// a mount of this machine's block device, if /sys knows one; else a
	// made-up number that no /sys entry backs (left out: not a block device)
	blk := ""
	if ents, _ := os.ReadDir("/sys/dev/block"); len(ents) > 0 {
		blk = ents[0].Name()
	}
	mi := filepath.Join(dir, "mountinfo")
	line := "25 1 " + blk + " / /data rw,relatime shared:1 - ext4 none rw\n36 25 0:99 / /tmp rw - tmpfs tmpfs rw\n"
	if err := os.WriteFile(mi, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	protected := func(dir string) bool { return dir == "/data" }
	got, err := RawDevices(mi, protected, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range memDevices {
		if !slices.Contains(got, m) {
			t.Errorf("memory device %#x missing from %x", m, got)
		}
	}
	if blk != "" {
		maj, min, _ := parseMajMin(blk)
		if !slices.Contains(got, Key(blockDev, maj, min)) {
			t.Errorf("block device %s under a protected mount missing from %x", blk, got)
		}
		none, err := RawDevices(mi, func(string) bool { return false }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(none) != len(memDevices) {
			t.Errorf("nothing protected: got %x, want only the memory devices", none)
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	node := filepath.Join(dir, "mem")
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 1))); err != nil {
		t.Fatal(err)
	}
	allowed, err := RawDevices(mi, protected, []string{node, filepath.Join(dir, "absent")})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(allowed, Key(charDev, 1, 1)) || !slices.Contains(allowed, Key(charDev, 1, 4)) {
		t.Errorf("with %s allowed: %x, want /dev/mem out and /dev/port in", node, allowed)
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/mnt/a\040b`); got != "/mnt/a b" {
		t.Fatalf("unescape: %q", got)
	}
}
