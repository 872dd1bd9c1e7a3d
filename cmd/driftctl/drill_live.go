package main

import (
	"encoding/json"
	"flag"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/driftsensor/driftsensor/cmd/driftctl/internal/livedrill"
	"github.com/driftsensor/driftsensor/sensor/event"
)

// drill --host H runs a drill on one live host, behind a marker signed with
// the operator's own nkey (the one driftctl connects with). Test-bed drills
// (--hosts N) are drill.go's; drill dispatches here on --host.
func (c *cli) drillLive(args []string) error {
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	var o livedrill.Options
	fs.StringVar(&o.Host, "host", "", "the live host to drill (its sensor needs --drill-dir)")
	fs.StringVar(&o.Mode, "mode", event.DrillRecord, "record: the responder decides and records only; cordon: it cordons for real, keeps evidence, then releases")
	techniques := fs.String("techniques", strings.Join(event.TechniqueNames(), ","), "harmless techniques, comma-separated: "+strings.Join(event.TechniqueNames(), ", "))
	fs.DurationVar(&o.TTL, "ttl", 2*time.Minute, "how long the signed marker is valid (at most "+event.MaxDrillTTL.String()+")")
	fs.StringVar(&o.By, "by", "", "who runs the drill, in the marker (default: $USER@hostname)")
	fs.DurationVar(&o.Wait, "wait", 30*time.Second, "how long to wait for the responder's stages once the techniques ran")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	signWith := fs.String("sign-nkey", "", "the operator's nkey seed that signs the marker (default: the --nats-nkey or --nats-creds driftctl connects with)")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		return usagef("unexpected argument %q", rest[0])
	case o.Host == "":
		return usagef("--host is required")
	case event.ValidHost(o.Host) != nil:
		return usagef("--host: %v", event.ValidHost(o.Host))
	case o.Mode != event.DrillRecord && o.Mode != event.DrillCordon:
		return usagef("--mode %q: want %s or %s", o.Mode, event.DrillRecord, event.DrillCordon)
	case o.TTL <= 0 || o.TTL > event.MaxDrillTTL:
		return usagef("--ttl %v: want more than 0 and at most %v", o.TTL, event.MaxDrillTTL)
	case o.Wait <= 0:
		return usagef("--wait %v: must be more than 0", o.Wait)
	}
	o.Techniques = strings.Split(*techniques, ",")
	if err := event.CheckTechniques(o.Techniques); err != nil {
		return usagef("--techniques: %v", err)
	}
	if o.By == "" {
		o.By = defaultBy()
	}
	o.Timeout = c.g.timeout
	kp, err := c.operatorKey(*signWith)
	if err != nil {
		return err
	}
	defer kp.Wipe()
	nc, js, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	rep, err := livedrill.Run(c.ctx, nc, js, kp, o)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(c.stdout)
}

// operatorKey reads the nkey that signs drill markers: file, or the one
// driftctl connects with.
func (c *cli) operatorKey(file string) (nkeys.KeyPair, error) {
	o := c.g.options()
	for _, f := range []string{o.NKeySeedFile, o.CredsFile} {
		if file == "" {
			file = f
		}
	}
	if file == "" {
		return nil, usagef("a drill marker is signed with the operator's nkey: give it with --nats-nkey, --nats-creds or --sign-nkey")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, usagef("operator key: %v", err)
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return nil, usagef("operator key %s: %v", file, err)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, usagef("operator key %s: not a user nkey seed (SU...)", file)
	}
	return kp, nil
}
