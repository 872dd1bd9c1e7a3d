package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
)

func TestEvidenceUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"evidence"}, "want exactly one incident id (driftctl incidents lists them), got 0 arguments"},
		{[]string{"evidence", "a", "b"}, "got 2 arguments"},
		{[]string{"evidence", "../inc-1"}, `incident id "../inc-1": want the id from driftctl incidents`},
		{[]string{"evidence", "inc-1", "--out"}, "flag needs an argument: -out"},
	} {
		code, _, stderr := driftctl(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

// driftctl evidence reads what the responder stored, shows it, saves it
// without overwriting anything, and says exit 2 for an incident with none.
func TestEvidenceShowAndSave(t *testing.T) {
	url, nc := embedded(t)
	code, _, stderr := driftctl(t, "--nats", url, "evidence", "inc-1")
	if code != exitUsage || !strings.Contains(stderr, "driftctl evidence: incident inc-1: no evidence kept: the bucket drift_evidence does not exist") {
		t.Fatalf("no bucket: exit %d, %q", code, stderr)
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	store, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: event.EvidenceBucket})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ev := finding("web-1", event.KindFile, 7, "/etc/passwd")
	ev.ID, ev.Time, ev.Action = "f7", at, "open_write"
	ev.Process = &event.Process{PID: 42, Comm: "sh", Exe: "/usr/bin/dash", UID: 0, Argv: []string{"sh", "-c", "echo evil >> /etc/passwd"},
		Ancestry: []event.Ancestor{{PID: 41, Comm: "sshd", Exe: "/usr/sbin/sshd"}, {PID: 1, Comm: "systemd"}}}
	head := []byte(strings.Repeat("a", 100))
	kept := event.Evidence{Schema: event.EvidenceSchema, Incident: "inc-1", Host: "web-1", Replica: "r1",
		Started: at.Add(time.Second), Finished: at.Add(time.Second + 1500*time.Microsecond), Chain: []event.Event{*ev}, Missing: []string{"f6"},
		Recent: []event.Event{*ev}, RecentWindow: 10 * time.Minute, RecentLimit: 100,
		Files: []event.FileEvidence{
			{Path: "/etc/passwd", Size: 100, Mode: "-rw-r--r--", MTime: at, Hashed: true, SHA256: "ab12", Head: head},
			{Path: "/tmp/x", Error: "lstat /tmp/x: no such file or directory"},
		}}
	raw := mustJSON(t, kept)
	if _, err := store.PutBytes(ctx, "inc-1", raw); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = driftctl(t, "--nats", url, "evidence", "inc-2")
	if code != exitUsage || !strings.Contains(stderr, "incident inc-2: no evidence kept in drift_evidence (driftctl incidents lists incidents") {
		t.Fatalf("unknown incident: exit %d, %q", code, stderr)
	}

	out := filepath.Join(t.TempDir(), "inc-1")
	code, stdout, _ := driftctl(t, "--nats", url, "evidence", "inc-1", "--out", out)
	want := `incident inc-1  host web-1
kept by r1 at 2026-03-01T12:00:01.0015Z (capture took 1.5ms)

findings of the incident (1):
  2026-03-01T12:00:00Z  seq 7  file open_write /etc/passwd  [f7]
    process 42 sh (/usr/bin/dash) uid 0  argv ["sh" "-c" "echo evil >> /etc/passwd"]
      <- 41 sshd (/usr/sbin/sshd)
      <- 1 systemd
  not in the stream any more: f6

files (2), as the host's sensor read them:
  /etc/passwd
    -rw-r--r--  100 bytes  modified 2026-03-01T12:00:00Z
    sha256 ab12
    first 100 bytes: "` + strings.Repeat("a", 64) + `" ... (all of them with --out)
  /tmp/x
    not read: lstat /tmp/x: no such file or directory

recent findings of web-1 (1, at most 100 of the last 10m0s):
  2026-03-01T12:00:00Z  seq 7  file open_write /etc/passwd  [f7]

saved: ` + filepath.Join(out, "evidence.json") + " " + filepath.Join(out, "files", "1-passwd.head") + "\n"
	if code != exitOK || stdout != want {
		t.Fatalf("evidence inc-1: exit %d\n%s\nwant\n%s", code, stdout, want)
	}
	if got, err := os.ReadFile(filepath.Join(out, "evidence.json")); err != nil || string(got) != string(raw) {
		t.Errorf("evidence.json: %v, %d bytes (want the %d stored)", err, len(got), len(raw))
	}
	if got, err := os.ReadFile(filepath.Join(out, "files", "1-passwd.head")); err != nil || string(got) != string(head) {
		t.Errorf("head: %q, %v", got, err)
	}
	// Saving again does not overwrite what is there.
	code, _, stderr = driftctl(t, "--nats", url, "evidence", "inc-1", "--out", out)
	if code != exitFailure || !strings.Contains(stderr, "evidence.json: file exists (save into a new or empty directory)") {
		t.Fatalf("save again: exit %d, %q", code, stderr)
	}
}
