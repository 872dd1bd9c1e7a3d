package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestDrillUsageErrors(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	file := filepath.Join(t.TempDir(), "admin.nk")
	os.WriteFile(file, seed, 0o600)
	acct, _ := nkeys.CreateAccount()
	aseed, _ := acct.Seed()
	afile := filepath.Join(t.TempDir(), "acct.nk")
	os.WriteFile(afile, aseed, 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"drill", "--host", "a.b"}, `--host: host name "a.b"`},
		{[]string{"drill", "--host", "web", "--mode", "destroy"}, `--mode "destroy": want record or cordon`},
		{[]string{"drill", "--host", "web", "--ttl", "11m"}, "--ttl 11m0s: want more than 0 and at most 10m0s"},
		{[]string{"drill", "--host", "web", "--techniques", "file,rm"}, `--techniques: unknown technique "rm" (want exec, file)`},
		{[]string{"drill", "--host", "web", "--sign-nkey", "/nonexistent/admin.nk"}, "operator key: open /nonexistent/admin.nk: no such file or directory"},
		{[]string{"drill", "--host", "web", "--sign-nkey", afile}, "operator key " + afile + ": not a user nkey seed (SU...)"},
		{[]string{"drill", "--host", "web", "extra", "--sign-nkey", file}, `unexpected argument "extra"`},
	} {
		code, _, stderr := driftctl(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

// With no responder to confirm the marker, no drill starts: exit 1, and
// nothing is asked of the host.
func TestDrillWithoutResponder(t *testing.T) {
	url, _ := embedded(t)
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	file := filepath.Join(t.TempDir(), "admin.nk")
	os.WriteFile(file, seed, 0o600)
	code, _, stderr := driftctl(t, "--nats", url, "--timeout", "500ms", "drill", "--host", "web", "--sign-nkey", file)
	if code != exitFailure || !strings.Contains(stderr, "the responder does not listen on drift.v1.ctl.drill") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
}
