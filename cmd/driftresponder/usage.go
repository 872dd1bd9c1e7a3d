package main

import (
	"flag"
	"fmt"
)

// usage is driftresponder's -h: what it does, examples, then the flags.
func usage(fs *flag.FlagSet) func() {
	return func() {
		fmt.Fprint(fs.Output(), `usage: driftresponder [flags]

Reads every host's findings and heartbeats from NATS JetStream, groups them into incidents, decides by
policy (alert, cordon, destroy), acts through the host's gate, netlink or a destroy hook, verifies
cordons, and records every decision and action in the DRIFT_AUDIT stream. Replicas share the work.
Bad input exits 2; a failure at run time exits 1.

examples:
  driftresponder -nats nats://127.0.0.1:4222 -dry-run             decide and audit, never act
  driftresponder -policy /etc/driftresponder/policy.yaml -heartbeat-interval 1s -max-hosts 3 \
      -link 'tap-{{.Host}}' -probe '{{.Host}}.fleet:22' -metrics-addr :9465

flags:
`)
		fs.PrintDefaults()
	}
}
