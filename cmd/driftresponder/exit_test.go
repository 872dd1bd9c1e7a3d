package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// TestExitStatus: help is 0, bad input is 2 with a message naming it, a
// server that cannot be reached is 1, as for driftsensor and driftctl.
func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	bin := testenv.Build(t, "github.com/driftsensor/driftsensor/cmd/driftresponder")
	bad := filepath.Join(dir, "policy.yaml")
	os.WriteFile(bad, []byte("default: cordn\n"), 0o644)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"-h"}, 0, "examples:"},
		{"help lists flags", []string{"-h"}, 0, "-metrics-addr"},
		{"version", []string{"--version"}, 0, "driftresponder dev (commit "},
		{"unknown flag", []string{"-bogus"}, 2, "flag provided but not defined: -bogus"},
		{"bad value", []string{"-missed-beats", "x"}, 2, `invalid value "x" for flag -missed-beats`},
		{"policy typo", []string{"-policy", bad}, 2, bad + ":1:"},
		{"missing policy", []string{"-policy", filepath.Join(dir, "nope.yaml")}, 2, "nope.yaml"},
		{"link mode", []string{"-link", "tap-{{.Host}}", "-link-mode", "sideways"}, 2, `-link-mode "sideways": want down, detach or both`},
		{"template", []string{"-probe", "{{.Hots}:22"}, 2, "-probe"},
		{"template field", []string{"-link", "tap-{{.Hots}}"}, 2, `-link "tap-{{.Hots}}"`},
		{"probe without port", []string{"-probe", "{{.Host}}.fleet"}, 2, `-probe "{{.Host}}.fleet" renders "example-host.fleet"`},
		{"destroy command field", []string{"-destroy-cmd", "virsh destroy {{.Hots}}"}, 2, "-destroy-cmd: command hook: argument 2"},
		{"metrics address", []string{"-metrics-addr", "127.0.0.1:99999"}, 2, "-metrics-addr 127.0.0.1:99999"},
		{"no server", []string{"-nats", "nats://127.0.0.1:1"}, 1, "nats://127.0.0.1:1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := exec.Command(bin, c.args...).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code || !strings.Contains(string(out), c.want) || strings.Contains(string(out), "panic") {
				t.Errorf("exit %d, want %d; output %q should say %q", code, c.code, out, c.want)
			}
		})
	}
}
