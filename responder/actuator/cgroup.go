package actuator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netns"
)

// CgroupDestroy is the test bed's destroy: it kills every process in the
// host's cgroup v2 subtree at once (cgroup.kill), waits until the cgroup is
// empty, then deletes the host's named network namespace.
type CgroupDestroy struct {
	// Resolve gives the host's cgroup directory and network namespace name
	// (as under /run/netns).
	Resolve func(host string) (cgroupDir, netnsName string, err error)
}

// Name identifies the actuator in the audit trail.
func (d *CgroupDestroy) Name() string { return "cgroup-kill" }

// Destroy kills and removes the host. A host already gone is not an error.
func (d *CgroupDestroy) Destroy(ctx context.Context, t Target) error {
	if d.Resolve == nil {
		return errors.New("cgroup destroy: no host -> cgroup mapping configured")
	}
	dir, ns, err := d.Resolve(t.Host)
	if err != nil {
		return fmt.Errorf("cgroup destroy: %s: %w", t.Host, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("cgroup destroy: kill %s: %w", dir, err)
	}
	for {
		raw, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil || bytes.Contains(raw, []byte("populated 0")) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup destroy: %s still has processes: %w", dir, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if ns != "" {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			if err := netns.DeleteNamed(ns); err != nil {
				return fmt.Errorf("cgroup destroy: delete network namespace %s: %w", ns, err)
			}
		}
	}
	return nil
}
