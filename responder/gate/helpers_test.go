package gate

import (
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/driftsensor/driftsensor/tests/testbed"
)

func netipPrefix(h *testbed.Host) netip.Prefix { return netip.PrefixFrom(h.Addr, 32) }

func netlinkIn(h *testbed.Host) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(h.NetnsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}
