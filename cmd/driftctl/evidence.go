package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/driftsensor/driftsensor/cmd/driftctl/internal/evidence"
)

// evidence shows (and with --out saves) what the responder kept of an
// incident before acting on the host.
func (c *cli) evidence(args []string) error {
	fs := flag.NewFlagSet("evidence", flag.ContinueOnError)
	out := fs.String("out", "", "also save it into this directory (created; new files only): evidence.json and files/<n>-<name>.head")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("want exactly one incident id (driftctl incidents lists them), got %d arguments", len(rest))
	}
	id := rest[0]
	if id == "" || len(id) > 64 || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '"' || r == '/' }) {
		return usagef("incident id %q: want the id from driftctl incidents, e.g. inc-...", id)
	}
	nc, js, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ev, raw, err := evidence.Fetch(c.ctx, js, id)
	if errors.Is(err, evidence.ErrUnknown) {
		return usageError{err.Error()}
	}
	if err != nil {
		return err
	}
	if err := evidence.WriteText(c.stdout, ev); err != nil {
		return err
	}
	if *out == "" {
		return nil
	}
	files, err := evidence.Save(*out, ev, raw)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\nsaved: %s\n", strings.Join(files, " "))
	return nil
}
