package event

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// Only a marker signed by a trusted key, untouched, and valid now is taken.
func TestVerifyMarker(t *testing.T) {
	op, _ := nkeys.CreateUser()
	opPub, _ := op.PublicKey()
	other, _ := nkeys.CreateUser()
	otherPub, _ := other.PublicKey()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := DrillMarker{Schema: DrillSchema, ID: "d1", Host: "web-1", Mode: DrillCordon, Techniques: []string{"file", "exec"},
		Issued: now, Expires: now.Add(2 * time.Minute)}
	signed, err := SignMarker(m, op)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyMarker(signed, []string{opPub}, now.Add(time.Minute))
	if err != nil || got.ID != "d1" || got.Host != "web-1" || got.Mode != DrillCordon || !got.Expires.Equal(m.Expires) {
		t.Fatalf("verify: %+v, %v", got, err)
	}
	byOther, _ := SignMarker(m, other)
	var sm SignedMarker
	if err := json.Unmarshal(signed, &sm); err != nil {
		t.Fatalf("signed marker %s: %v", signed, err)
	}
	sm.Marker = []byte(strings.Replace(string(sm.Marker), `"mode":"cordon"`, `"mode":"record"`, 1))
	tampered, _ := json.Marshal(sm)
	unsigned, _ := json.Marshal(SignedMarker{Marker: sm.Marker})
	for _, tc := range []struct {
		name string
		b    []byte
		at   time.Time
		want string
	}{
		{"another key", byOther, now, "drill marker signed by " + otherPub + ", which is not an operator key this responder trusts"},
		{"tampered", tampered, now, "drill marker: bad signature by " + opPub},
		{"unsigned", unsigned, now, "drill marker is unsigned"},
		{"expired", signed, now.Add(2 * time.Minute), "drill marker d1: expired at 2026-03-01T12:02:00Z"},
		{"not yet issued", signed, now.Add(-time.Minute), "drill marker d1: issued in the future (2026-03-01T12:00:00Z)"},
		{"not JSON", []byte("x"), now, "drill marker is not a signed marker: invalid character 'x' looking for beginning of value"},
	} {
		if _, err := VerifyMarker(tc.b, []string{opPub}, tc.at); err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	m.Expires = now.Add(MaxDrillTTL + time.Second)
	if _, err := SignMarker(m, op); err == nil || err.Error() != "drill marker: valid for 10m1s (at most 10m0s)" {
		t.Errorf("a long-lived marker: %v", err)
	}
	m.Expires, m.Techniques = now.Add(time.Minute), []string{"file", "rm-rf"}
	if _, err := SignMarker(m, op); err == nil || err.Error() != `drill marker: unknown technique "rm-rf" (want exec, file)` {
		t.Errorf("an unknown technique: %v", err)
	}
}
