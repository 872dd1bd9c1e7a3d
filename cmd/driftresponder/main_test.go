package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/driftsensor/driftsensor/responder/decide"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// natsServer starts an embedded JetStream server on a random loopback port
// until the test ends.
func natsServer(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestRunDryRun(t *testing.T) {
	s := natsServer(t)

	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-nats", s.ClientURL(), "-dry-run", "-replica", "r1", "-ready-file", ready,
			"-rule", "kind=file,path=/etc,action=cordon", "-heartbeat-interval", "0"})
	}()
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	got := make(chan decide.Record, 16)
	if _, err := nc.Subscribe(decide.AuditPrefix+".>", func(m *nats.Msg) {
		var r decide.Record
		if json.Unmarshal(m.Data, &r) == nil {
			got <- r
		}
	}); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(event.Event{Schema: event.Schema, ID: "e1", Host: "h1", Seq: 1, Kind: event.KindFile, File: &event.File{Path: "/etc/passwd"}})
	if err := nc.Publish(event.Subject("h1", event.KindFile), data); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(20 * time.Second)
	for {
		select {
		case r := <-got:
			if r.Stage == decide.StageDryRun {
				if r.Action != decide.ActCordon || r.Replica != "r1" || !r.DryRun {
					t.Errorf("dry-run record %+v", r)
				}
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
				return
			}
		case <-timeout:
			t.Fatal("no dry-run record")
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-rule", "kind=file,action=zap"},
		{"-link", "{{.Host", "-nats", "nats://127.0.0.1:1"},
		{"-link", "x", "-link-mode", "sideways"},
		{"-policy", "/nonexistent/policy.yaml"},
		{"-destroy-cmd", "virsh {{.Host"},
		{"-probe", "{{.Host"},
		{"-alert-to", "syslog+udp://127.0.0.1"},
		{"-no-such-flag"},
	} {
		if err := run(context.Background(), args); err == nil || strings.Contains(err.Error(), "connect") {
			t.Errorf("%q: got %v, want a flag error before connecting", args, err)
		}
	}
}

// TestFlagRanges runs the built binary: every numeric flag and the server
// URL are checked before it connects, with exit status 2 and a message
// naming the flag, the value and what would be right.
func TestFlagRanges(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "driftresponder")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-heartbeat-interval", "1ns"}, "--heartbeat-interval 1ns: want from 100ms to 5m0s, or 0 for none"},
		{[]string{"-heartbeat-interval", "1h"}, "--heartbeat-interval 1h0m0s: want from 100ms to 5m0s, or 0 for none"},
		{[]string{"-missed-beats", "0"}, "--missed-beats 0: want from 1 to 1000"},
		{[]string{"-missed-beats", "-3"}, "--missed-beats -3: want from 1 to 1000"},
		{[]string{"-max-hosts", "-1"}, "--max-hosts -1: want from 0 to 1048576"},
		{[]string{"-max-percent", "101"}, "--max-percent 101: want from 0 to 100"},
		{[]string{"-max-percent", "NaN"}, "--max-percent NaN: want from 0 to 100"},
		{[]string{"-max-percent", "-5"}, "--max-percent -5: want from 0 to 100"},
		{[]string{"-window", "0s"}, "--window 0s: want from 1s to 168h0m0s"},
		{[]string{"-drill-key", "SUAM7GZ5UHE5JAMG4HS2UJ4ZSYXB3D6WRO3UJZ2R5GJ3CMQQN5W7DQT4XE"}, `--drill-key "SUAM7GZ5UHE5JAMG4HS2UJ4ZSYXB3D6WRO3UJZ2R5GJ3CMQQN5W7DQT4XE": want an operator's public user nkey (U..., 56 characters; driftctl creds prints the admin's), not a seed`},
		{[]string{"-missed-beats", "99999999999999999999"}, `invalid value "99999999999999999999" for flag -missed-beats`},
		{[]string{"-nats", "http://127.0.0.1:4222"}, `--nats "http://127.0.0.1:4222": "http://127.0.0.1:4222": scheme "http": want one of nats, tls, ws, wss`},
		{[]string{"-nats", "nats://127.0.0.1:4222,nats://[::1"}, `"nats://[::1": not a URL`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			out, err := exec.Command(bin, c.args...).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want status 2; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), c.want) || strings.Contains(string(out), "connect") {
				t.Errorf("output %q does not say %q (before connecting)", out, c.want)
			}
		})
	}
}

// TestRunWiresEveryActuator: every actuator flag is parsed, wired and the
// responder starts on them (ready file written), then stops on cancel.
func TestRunWiresEveryActuator(t *testing.T) {
	s := natsServer(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("default: alert\nrules:\n  - {kind: exec, action: destroy}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-nats", s.ClientURL(), "-policy", pol, "-replica", "r2", "-ready-file", ready, "-v",
			"-ctl-cordon=false", "-state-sync=false", "-gap-check=false", "-max-hosts", "3", "-max-percent", "50",
			"-link", "tap-{{.Host}}", "-link-mode", "down", "-destroy-cmd", "true {{.Host}}",
			"-destroy-webhook", "http://127.0.0.1:1/destroy", "-probe", "{{.Host}}:22", "-probe-netns", "/proc/self/ns/net"})
	}()
	testenv.Eventually(t, "the ready file", func() bool {
		select {
		case err := <-done:
			t.Fatalf("run ended before ready: %v", err)
		default:
		}
		_, err := os.Stat(ready)
		return err == nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
}

// TestHostTemplate: a template renders per host; one that cannot parse,
// renders empty or names another field than .Host is refused at start, with
// an error naming the flag.
func TestHostTemplate(t *testing.T) {
	f, err := hostTemplate("-link", "tap-{{.Host}}")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f("web-1"); err != nil || got != "tap-web-1" {
		t.Fatalf("rendered %q, %v; want tap-web-1", got, err)
	}
	for tmpl, want := range map[string]string{
		"{{if false}}x{{end}}": `-probe "{{if false}}x{{end}}": -probe rendered empty for example-host`,
		"{{.Name}}":            `-probe "{{.Name}}"`,
		"{{.Host":              `-probe "{{.Host"`,
	} {
		if _, err := hostTemplate("-probe", tmpl); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("template %q: %v, want an error saying %q", tmpl, err, want)
		}
	}
}
