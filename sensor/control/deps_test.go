package control_test

import (
	"go/build"
	"strings"
	"testing"
)

const module = "github.com/driftsensor/driftsensor/"

// moduleDeps lists the packages of this module that pkg links, with who
// imports each, and the other packages they import directly (the standard
// library's testing among them). It reads the sources in this process
// (go/build), so the test cache sees every file it depends on.
func moduleDeps(t *testing.T, pkg string) map[string]string {
	t.Helper()
	by := map[string]string{pkg: ""}
	todo := []string{pkg}
	for len(todo) > 0 {
		p := todo[0]
		todo = todo[1:]
		bp, err := build.Import(p, ".", 0)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, imp := range bp.Imports {
			if _, seen := by[imp]; !seen {
				by[imp] = p
				if strings.HasPrefix(imp, module) {
					todo = append(todo, imp)
				}
			}
		}
	}
	return by
}

// TestFleetCommandsLinkNoHostPublisher proves the split: the responder and
// driftctl talk to the fleet through this package and sensor/transport, and
// link neither the host's publisher nor its spool. No command links the
// testing package (its flags and code are for test binaries): what
// driftctl drill and testbed run outside tests imports no test helper.
func TestFleetCommandsLinkNoHostPublisher(t *testing.T) {
	for _, cmd := range []string{"cmd/driftsensor", "cmd/driftresponder", "cmd/driftctl"} {
		deps := moduleDeps(t, module+cmd)
		if by, ok := deps["testing"]; ok {
			t.Errorf("%s links testing, imported by %s", cmd, by)
		}
		if cmd == "cmd/driftsensor" {
			continue // the host's own daemon: it is the publisher
		}
		if _, ok := deps[module+"sensor/control"]; !ok {
			t.Fatalf("%s does not link sensor/control: is the walk reading this module? %v", cmd, deps)
		}
		for _, host := range []string{"sensor/spool", "sensor/publish"} {
			if by, ok := deps[module+host]; ok {
				t.Errorf("%s links %s (host-side code), imported by %s", cmd, host, by)
			}
		}
	}
}
