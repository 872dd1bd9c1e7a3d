package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestDrillListIsTheREADMETable: the README's catalog table is exactly what
// driftctl drill --list prints.
func TestDrillListIsTheREADMETable(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"drill", "--list"}, &out, &errb); code != exitOK {
		t.Fatalf("drill --list: exit %d: %s", code, errb.String())
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- drill-catalog: driftctl drill --list -->\n", "<!-- end drill-catalog -->"
	s := string(readme)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatal("README.md has no drill-catalog block")
	}
	if got := s[i+len(begin) : j]; got != out.String() {
		t.Fatalf("README.md's catalog table differs from driftctl drill --list: regenerate it\n--- README\n%s\n--- --list\n%s", got, out.String())
	}
}

// TestDrillRefusesBadFlags: a bad count or pattern exits 2 naming the flag,
// before anything is made.
func TestDrillRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"drill", "--hosts", "0"}, "--hosts 0: want 1 to 50"},
		{[]string{"drill", "--runs", "1001"}, "--runs 1001: want 1 to 1000"},
		{[]string{"drill", "--techniques", "nosuch"}, `"nosuch" matches no technique`},
		{[]string{"drill", "extra"}, `unexpected argument "extra"`},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errb.String(), exitUsage, tc.want)
		}
	}
}
