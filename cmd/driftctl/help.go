package main

import (
	"flag"
	"fmt"
)

// commandDocs is what each command's --help says beyond its synopsis (the
// help field of commands): what it does and an example.
var commandDocs = map[string]struct{ desc, example string }{
	"creds": {"Generate a nats-server configuration (server.conf including auth.conf) and an nkey seed for each host,\n" +
		"the responder and the admin; existing seeds are kept unless --rotate.", "driftctl creds --hosts web-1,web-2 --out /etc/nats/drift"},
	"init": {"Create, or resize when they exist, the findings stream DRIFT, the append-only audit stream DRIFT_AUDIT\n" +
		"and the host state bucket: replicas, age and size limits, the findings stream's dedup window.", "driftctl --nats nats://nats1.fleet:4222 --nats-nkey admin.nk init --replicas 3 --max-age 2160h"},
	"seal":      {"Seal HOST (mutable -> sealed): its sensor records the baseline and every later change is drift. Audited.", "driftctl seal web-1 --by alice"},
	"unseal":    {"Unseal HOST (sealed -> mutable), for authorised maintenance. Audited.", "driftctl unseal web-1 --by alice"},
	"cordon":    {"Set HOST cordoned in the control plane: its sensor closes its gate (with --gate) and the responder holds it cordoned. Audited.", "driftctl cordon web-1 --by alice"},
	"uncordon":  {"Return a cordoned HOST to sealed and close its incident, so a new drift is acted on again. Audited.", "driftctl uncordon web-1 --by alice"},
	"status":    {"The fleet as a table: state, backend, last heartbeat, findings, lost records, transport, version.", "driftctl status --wait 3s"},
	"watch":     {"Findings live as they arrive, one line each (coloured on a terminal, JSON when piped).", "driftctl watch --host web-1 --kind exec"},
	"replay":    {"Findings the stream kept for a time range.", "driftctl replay --since 24h --kind file --format ocsf"},
	"incidents": {"The responder's incidents from the audit stream: stages and their times, action, actuators, verification, errors.", "driftctl incidents --host web-1 --since 24h"},
	"evidence": {"What the responder kept of INCIDENT before destroying (or after cordoning) its host: the incident's findings\n" +
		"with their process ancestry, each file as the host's sensor read it (SHA-256, size, first 4 KiB), the host's recent findings.", "driftctl evidence inc-2sYgGbzQ0JpWAa1p9fG3Xq --out ./inc-2sYg"},
	"drill": {"Without --host: run the technique catalog (driftctl drill --list) on sealed test-bed hosts made on this\n" +
		"machine (root). Each run gets a fresh host with a root tree of its own and its own driftsensor (beside driftctl,\n" +
		"or on $PATH); an actor plays the technique in the host's scope and the finding must be exactly the catalog's; a\n" +
		"responder cordons (verified by a probe) and destroys the host. Prints each stage's time from the mutation and\n" +
		"p50/p90/p99/max per stage; exit status 1 when a technique is missed or a control is not silent.\n" +
		"With --host: drill a live host: sign a short-lived drill marker with the operator's nkey (--nats-nkey or --sign-nkey),\n" +
		"have the responder confirm it trusts it (driftresponder --drill-key), ask the host's sensor to perform harmless\n" +
		"techniques in its --drill-dir, and report every stage the responder went through, timed. record: decide and\n" +
		"record only; cordon: cordon for real, keep evidence, release. A marker signed by another key, unsigned or\n" +
		"expired makes the findings real incidents.", "driftctl drill --hosts 5 --techniques 'persistence,exec-*' --html drill.html; driftctl --nats-nkey admin.nk drill --host web-1 --mode cordon"},
	"approve": {"Release an action the blast-radius limiter holds for INCIDENT. Audited.", "driftctl approve 2sYgGbzQ0JpWAa1p9fG3Xq --by alice"},
}

// usageFor makes fs's -h say what the running command does, its arguments,
// an example and its flags (the global flags among them).
func (c *cli) usageFor(fs *flag.FlagSet) {
	cmd, doc := commands[c.cmd], commandDocs[c.cmd]
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: driftctl %s\n\n%s\n\nexample:\n  %s\n\nflags (the global flags are accepted here too):\n", cmd.help, doc.desc, doc.example)
		fs.PrintDefaults()
	}
}
