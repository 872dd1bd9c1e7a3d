package sysfs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// TestMounts: the mount table has / and /proc with their types, and a
// mount point with a space (escaped as \040 by the kernel) is read back.
func TestMounts(t *testing.T) {
	ms, err := sysfs.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, m := range ms {
		types[m.Point] = m.FSType
	}
	if types["/proc"] != "proc" || types["/"] == "" {
		t.Fatalf("mounts lack / or /proc (proc): %v", types)
	}
	root, err := sysfs.CgroupRoot()
	if err != nil || types[root] != "cgroup2" {
		t.Fatalf("cgroup root %q (%v), type %q", root, err, types[root])
	}
}

// TestEnsure: a file system already mounted at the point is left alone; one
// missing is mounted and reported so, once; a point that cannot be made is
// an error naming it.
func TestEnsure(t *testing.T) {
	root, err := sysfs.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	if mounted, err := sysfs.Ensure("cgroup2", root); err != nil || mounted {
		t.Fatalf("Ensure over the mounted cgroup2: mounted=%v %v", mounted, err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sysfs.Ensure("tmpfs", filepath.Join(file, "sub")); err == nil || !strings.Contains(err.Error(), "create mount point "+file) {
		t.Fatalf("Ensure under a file: %v", err)
	}
	testenv.RequireBPF(t) // root, to mount
	dir := filepath.Join(t.TempDir(), "mnt with space")
	mounted, err := sysfs.Ensure("tmpfs", dir)
	if err != nil || !mounted {
		t.Fatalf("Ensure tmpfs at %s: mounted=%v %v", dir, mounted, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	ms, err := sysfs.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range ms {
		found = found || (m.Point == dir && m.FSType == "tmpfs")
	}
	if !found {
		t.Fatalf("tmpfs at %q not in the mount table (escaping of the space?)", dir)
	}
	if again, err := sysfs.Ensure("tmpfs", dir); err != nil || again {
		t.Fatalf("second Ensure: mounted=%v %v", again, err)
	}
}
