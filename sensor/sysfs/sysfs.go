// Package sysfs finds and mounts the kernel file systems the sensor needs:
// the cgroup v2 hierarchy, bpffs and tracefs. Nothing is hard-coded: on hybrid
// layouts cgroup v2 lives at /sys/fs/cgroup/unified, elsewhere at /sys/fs/cgroup.
package sysfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mount is one line of /proc/self/mountinfo that matters here.
type Mount struct {
	Point  string
	FSType string
}

// Mounts lists the mounts of the calling process's mount namespace.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent maj:min root point opts [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, s := range fields {
			if s == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		out = append(out, Mount{Point: unescape(fields[4]), FSType: fields[sep+1]})
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// CgroupRoot returns where the cgroup v2 hierarchy is mounted.
func CgroupRoot() (string, error) {
	ms, err := Mounts()
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.FSType == "cgroup2" {
			return m.Point, nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) or boot with systemd.unified_cgroup_hierarchy=1")
}

// Ensure mounts fstype at point unless a file system of that type is already
// there. It reports whether it mounted, so callers can undo only their own work.
func Ensure(fstype, point string) (mounted bool, err error) {
	ms, err := Mounts()
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if m.Point == point && m.FSType == fstype {
			return false, nil
		}
	}
	if err := os.MkdirAll(point, 0o755); err != nil {
		return false, fmt.Errorf("create mount point %s for %s: %w", point, fstype, err)
	}
	if err := unix.Mount(fstype, point, fstype, 0, ""); err != nil {
		return false, fmt.Errorf("mount %s at %s: %w (run as root)", fstype, point, err)
	}
	return true, nil
}

// EnsureBPFFS mounts bpffs at /sys/fs/bpf if missing.
func EnsureBPFFS() (bool, error) { return Ensure("bpf", "/sys/fs/bpf") }

// EnsureTraceFS mounts tracefs at /sys/kernel/tracing if missing.
func EnsureTraceFS() (bool, error) { return Ensure("tracefs", "/sys/kernel/tracing") }

// kernelFS are the file systems the sensor mounts when they are missing
// (bpffs for pins, tracefs, securityfs for the LSM list).
var kernelFS = map[string]bool{"bpf": true, "tracefs": true, "securityfs": true}

// MountPoints is the set of current mount points, for UnmountNew.
func MountPoints() map[string]bool {
	points := map[string]bool{}
	ms, _ := Mounts()
	for _, m := range ms {
		points[m.Point] = true
	}
	return points
}

// UnmountNew unmounts the kernel file systems the sensor mounts when missing
// (bpffs, tracefs, securityfs) that were mounted since before was taken
// (MountPoints), the last mounted first: test runs and the demo leave the
// machine's mounts as they found them. It reports what it could not unmount.
func UnmountNew(before map[string]bool) error {
	ms, err := Mounts()
	if err != nil {
		return err
	}
	var errs []error
	for i := len(ms) - 1; i >= 0; i-- {
		if m := ms[i]; kernelFS[m.FSType] && !before[m.Point] {
			if err := unix.Unmount(m.Point, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s (%s): %w", m.Point, m.FSType, err))
			}
		}
	}
	return errors.Join(errs...)
}

// RemoveCgroup kills what is left in the cgroup v2 directory dir, removes
// its child cgroups, then dir; a dir already gone is no error. A cgroup can
// be removed only once its killed processes have exited: it retries for
// up to 10 s.
func RemoveCgroup(dir string) error {
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return nil
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			if err := RemoveCgroup(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = os.Remove(dir); err == nil || os.IsNotExist(err) {
			return nil
		}
	}
	return err
}
