package main

import (
	"strings"
	"testing"
)

// TestCommandHelp: every command's -h exits 0 and says its synopsis, what it
// does, an example of itself and its flags; --version names the build.
func TestCommandHelp(t *testing.T) {
	for name, cmd := range commands {
		t.Run(name, func(t *testing.T) {
			doc, ok := commandDocs[name]
			if !ok || doc.desc == "" || !strings.HasPrefix(doc.example, "driftctl ") || !strings.Contains(doc.example, " "+name) {
				t.Fatalf("command %s has no description or example of itself: %+v", name, doc)
			}
			code, stdout, stderr := driftctl(t, name, "-h")
			if code != exitOK || stdout != "" {
				t.Fatalf("exit %d, stdout %q", code, stdout)
			}
			for _, want := range []string{"usage: driftctl " + cmd.help + "\n", doc.desc, "example:\n  " + doc.example, "-nats string"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("help lacks %q:\n%s", want, stderr)
				}
			}
		})
	}
	code, stdout, _ := driftctl(t, "--version")
	if code != exitOK || !strings.HasPrefix(stdout, "driftctl dev (commit ") {
		t.Errorf("--version: exit %d, %q", code, stdout)
	}
}
