package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/transport"
)

// init sizes the streams and the bucket alike, running it again applies new
// limits, the audit stream refuses delete and purge, and a bad size is a
// usage error that changes nothing.
func TestInitSizesStreams(t *testing.T) {
	url, nc := embedded(t)
	for _, bad := range [][]string{{"--replicas", "7"}, {"--max-age", "-1h"}, {"--max-age", "10s"}, {"--max-bytes", "-5"}, {"--max-age", "1h", "--dedup-window", "2h"}} {
		code, _, stderr := driftctl(t, append([]string{"--nats", url, "init"}, bad...)...)
		if code != exitUsage || !strings.Contains(stderr, bad[len(bad)-2]) {
			t.Errorf("init %v: exit %d, %q; want a usage error naming the flag", bad, code, stderr)
		}
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.Stream(ctx, event.StreamName); err == nil {
		t.Fatal("a refused init created the stream")
	}

	code, out, _ := driftctl(t, "--nats", url, "init", "--max-age", "720h", "--max-bytes", "100000000")
	if code != exitOK || strings.Count(out, "created") != 3 {
		t.Fatalf("init: exit %d\n%s", code, out)
	}
	code, out, _ = driftctl(t, "--nats", url, "init", "--max-age", "2160h", "--max-bytes", "200000000", "--dedup-window", "30m")
	if code != exitOK || strings.Count(out, "updated") != 3 {
		t.Fatalf("init again: exit %d\n%s", code, out)
	}
	for _, name := range []string{event.StreamName, event.AuditStream, "KV_" + event.StateBucket} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		if cfg.Replicas != 1 || cfg.MaxBytes != 200000000 {
			t.Errorf("%s: replicas %d, max bytes %d", name, cfg.Replicas, cfg.MaxBytes)
		}
		wantAge := 2160 * time.Hour
		if name == "KV_"+event.StateBucket {
			wantAge = 0 // a host's state lasts as long as the host
		}
		if cfg.MaxAge != wantAge {
			t.Errorf("%s: max age %v, want %v", name, cfg.MaxAge, wantAge)
		}
		if name == event.StreamName && cfg.Duplicates != 30*time.Minute {
			t.Errorf("%s: dedup window %v", name, cfg.Duplicates)
		}
	}

	// The audit trail is append-only, for every user.
	if _, err := js.Publish(ctx, "drift.audit.web-1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	audit, _ := js.Stream(ctx, event.AuditStream)
	if err := audit.Purge(ctx); err == nil {
		t.Error("DRIFT_AUDIT was purged")
	}
	if err := audit.DeleteMsg(ctx, 1); err == nil {
		t.Error("a DRIFT_AUDIT record was deleted")
	}
	cfg := transport.AuditStreamConfig(transport.Settings{})
	cfg.DenyDelete, cfg.DenyPurge = false, false
	if _, err := js.UpdateStream(ctx, cfg); err == nil {
		t.Error("DRIFT_AUDIT's deny delete/purge was switched off")
	}
}
