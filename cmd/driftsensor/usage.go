package main

import (
	"flag"
	"fmt"
)

// usage is driftsensor's -h: what it does, examples, then the flags.
func usage(fs *flag.FlagSet) func() {
	return func() {
		fmt.Fprint(fs.Output(), `usage: driftsensor [flags]

Watches this host (or cgroup v2 subtrees of it) from inside the kernel with eBPF and reports every
mutation of a sealed host as a finding: JSON lines on stdout and events on NATS drift.v1.<host>.<kind>.
Runs as root; SIGINT or SIGTERM detaches everything. Bad input exits 2.

examples:
  driftsensor --nats off --seal                        seal at once, print findings only
  driftsensor --policy /etc/driftsensor/policy.yaml    embedded NATS on 127.0.0.1:4222; the control plane seals
  driftsensor --scope-cgroup /my/service --seal --gate --mgmt-allow 10.0.0.5:4222 \
      --nats nats://nats.fleet:4222 --nats-nkey host.nk --metrics-addr :9464

flags:
`)
		fs.PrintDefaults()
	}
}
