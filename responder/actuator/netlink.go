package actuator

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// LinkCordon cordons a host from the machine that holds its link (a
// hypervisor, a gateway, the test bed's root namespace): it takes the link
// down and/or detaches it from its bridge. A root user on the host cannot
// undo either.
type LinkCordon struct {
	// Link names the link of a host in Netns, e.g. its tap or veth.
	Link func(host string) (string, error)
	// Netns is the namespace holding the links ("" for the caller's).
	Netns string
	// Down sets the link down; Detach removes it from its bridge. Neither
	// set means both.
	Down, Detach bool
	// Bridge, if set, is where Uncordon re-attaches a detached link.
	Bridge string
}

// Name identifies the actuator in the audit trail.
func (a *LinkCordon) Name() string { return "netlink" }

func (a *LinkCordon) handle() (*netlink.Handle, error) {
	if a.Netns == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromPath(a.Netns)
	if err != nil {
		return nil, fmt.Errorf("netlink actuator: open %s: %w", a.Netns, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

func (a *LinkCordon) find(h *netlink.Handle, host string) (netlink.Link, error) {
	if a.Link == nil {
		return nil, errors.New("netlink actuator: no host -> link mapping configured")
	}
	name, err := a.Link(host)
	if err != nil {
		return nil, fmt.Errorf("netlink actuator: link of %s: %w", host, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("netlink actuator: link %s of host %s: %w", name, host, err)
	}
	return l, nil
}

// Cordon takes the host's link down and/or off its bridge.
func (a *LinkCordon) Cordon(ctx context.Context, t Target) error {
	h, err := a.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := a.find(h, t.Host)
	if err != nil {
		return err
	}
	both := !a.Down && !a.Detach
	if a.Detach || both {
		if l.Attrs().MasterIndex != 0 {
			if err := h.LinkSetNoMaster(l); err != nil {
				return fmt.Errorf("netlink actuator: detach %s from its bridge: %w", l.Attrs().Name, err)
			}
		}
	}
	if a.Down || both {
		if err := h.LinkSetDown(l); err != nil {
			return fmt.Errorf("netlink actuator: set %s down: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

// Uncordon brings the link back up and re-attaches it to Bridge if set.
func (a *LinkCordon) Uncordon(ctx context.Context, t Target) error {
	h, err := a.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := a.find(h, t.Host)
	if err != nil {
		return err
	}
	if a.Bridge != "" && l.Attrs().MasterIndex == 0 {
		br, err := h.LinkByName(a.Bridge)
		if err != nil {
			return fmt.Errorf("netlink actuator: bridge %s: %w", a.Bridge, err)
		}
		if err := h.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("netlink actuator: attach %s to %s: %w", l.Attrs().Name, a.Bridge, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("netlink actuator: set %s up: %w", l.Attrs().Name, err)
	}
	return nil
}

// LinkStatus reports whether link name in the namespace at nsPath ("" for
// the caller's) is administratively up and its bridge's ifindex (0 if none).
func LinkStatus(nsPath, name string) (up bool, master int, err error) {
	a := &LinkCordon{Netns: nsPath}
	h, err := a.handle()
	if err != nil {
		return false, 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return false, 0, err
	}
	return l.Attrs().Flags&net.FlagUp != 0, l.Attrs().MasterIndex, nil
}
