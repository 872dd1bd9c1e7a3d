package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/driftsensor/driftsensor/internal/nldump"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
)

// Down removes, by name, everything a bed whose names start with prefix
// made: processes in its cgroups (killed), the cgroups, its network
// namespaces and their mounts under /run/netns, its bridge and veths, the
// gate pins of its sensors, and its work directory. It needs no record of
// the bed, so it also cleans up after a process that was killed (SIGKILL)
// before it could remove its bed. Something already gone is not an error.
func Down(prefix string) error {
	if prefix == "" {
		return errors.New("testbed: down needs a name prefix")
	}
	var errs []error
	// Processes first: they hold namespaces and pins.
	if root, err := sysfs.CgroupRoot(); err != nil {
		errs = append(errs, err)
	} else if err := sysfs.RemoveCgroup(filepath.Join(root, prefix)); err != nil {
		errs = append(errs, fmt.Errorf("remove cgroup %s: %w", filepath.Join(root, prefix), err))
	}
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix+"-") {
				if err := netns.DeleteNamed(e.Name()); err != nil && !os.IsNotExist(err) {
					errs = append(errs, fmt.Errorf("delete network namespace %s: %w", e.Name(), err))
				}
			}
		}
	}
	// A namespace file whose unmount failed above, or any other mount
	// carrying the prefix.
	if ms, err := sysfs.Mounts(); err == nil {
		for i := len(ms) - 1; i >= 0; i-- {
			if ownsMount(prefix, ms[i].Point) {
				if err := syscall.Unmount(ms[i].Point, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !os.IsNotExist(err) {
					errs = append(errs, fmt.Errorf("unmount %s: %w", ms[i].Point, err))
				}
			}
		}
	}
	links, err := nldump.Retry(netlink.LinkList)
	if err != nil {
		errs = append(errs, fmt.Errorf("list links: %w", err))
	}
	for _, l := range links {
		if n := l.Attrs().Name; ownsLink(prefix, n) {
			// A veth goes with its peer's namespace, asynchronously.
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
				errs = append(errs, fmt.Errorf("delete link %s: %w", n, err))
			}
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		links, err := nldump.Retry(netlink.LinkList)
		still := []string{}
		if err != nil {
			still = append(still, err.Error()) // not known gone: look again
		}
		for _, l := range links {
			if ownsLink(prefix, l.Attrs().Name) {
				still = append(still, l.Attrs().Name)
			}
		}
		if len(still) == 0 {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("links still there 10s after delete: %v", still))
			break
		}
	}
	// driftsensor pins its gate under its host name, which on a bed is the
	// host's namespace name.
	if pins, err := filepath.Glob(filepath.Join(gatePinDir, prefix+"-*")); err == nil {
		for _, p := range pins {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, fmt.Errorf("remove gate pin %s: %w", p, err))
			}
		}
	}
	if err := os.RemoveAll(WorkDir(prefix)); err != nil {
		errs = append(errs, err)
	}
	_ = os.Remove(filepath.Dir(WorkDir(prefix))) // when no other bed uses it
	return errors.Join(errs...)
}

// gatePinDir is gate.DefaultPinDir, where driftsensor pins its gate (not
// imported: the gate's own tests build beds with this package).
const gatePinDir = "/sys/fs/bpf/driftsensor"

// netnsDir is where named network namespaces are mounted (ip netns).
const netnsDir = "/run/netns"

// WorkDir is where a bed made by Create keeps credentials, sensor state and
// logs: under /run, so a reboot clears it, and named by the prefix, so Down
// finds it.
func WorkDir(prefix string) string { return filepath.Join("/run/driftsensor-testbed", prefix) }

// Leftovers lists what of a bed with names starting with prefix still
// exists (cgroup, namespaces, mounts, links, pins, work directory): empty
// after Down.
func Leftovers(prefix string) []string {
	var left []string
	if root, err := sysfs.CgroupRoot(); err == nil {
		if _, err := os.Stat(filepath.Join(root, prefix)); err == nil {
			left = append(left, "cgroup "+filepath.Join(root, prefix))
		}
	}
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix+"-") {
				left = append(left, "netns "+e.Name())
			}
		}
	}
	if ms, err := sysfs.Mounts(); err == nil {
		for _, m := range ms {
			if ownsMount(prefix, m.Point) {
				left = append(left, "mount "+m.Point)
			}
		}
	}
	links, err := nldump.Retry(netlink.LinkList)
	if err != nil {
		left = append(left, "links unknown: "+err.Error())
	}
	for _, l := range links {
		if ownsLink(prefix, l.Attrs().Name) {
			left = append(left, "link "+l.Attrs().Name)
		}
	}
	pins, _ := filepath.Glob(filepath.Join(gatePinDir, prefix+"-*"))
	for _, p := range pins {
		left = append(left, "pin "+p)
	}
	if _, err := os.Stat(WorkDir(prefix)); err == nil {
		left = append(left, "dir "+WorkDir(prefix))
	}
	return left
}

// ownsLink: the bridge is named prefix, veths prefix+"h"+octet.
func ownsLink(prefix, name string) bool {
	if name == prefix {
		return true
	}
	rest, ok := strings.CutPrefix(name, prefix+"h")
	if !ok || rest == "" {
		return false
	}
	for _, r := range rest {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// ownsMount: a namespace file of the bed, or anything named for it.
func ownsMount(prefix, point string) bool {
	base := filepath.Base(point)
	return base == prefix || strings.HasPrefix(base, prefix+"-")
}
