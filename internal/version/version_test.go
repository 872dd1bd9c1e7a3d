package version

import (
	"flag"
	"io"
	"runtime"
	"runtime/debug"
	"testing"
)

// TestCommitOf: a plain go build in a checkout reports the revision Go
// recorded, marked -dirty when the tree had changes; a build without VCS
// information reports none (String then says "unknown").
func TestCommitOf(t *testing.T) {
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "2dad137e0c3b"}
	cases := []struct {
		name     string
		settings []debug.BuildSetting
		want     string
	}{
		{"clean tree", []debug.BuildSetting{rev, {Key: "vcs.modified", Value: "false"}}, "2dad137e0c3b"},
		{"changed tree", []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}, rev}, "2dad137e0c3b-dirty"},
		{"revision only", []debug.BuildSetting{{Key: "vcs", Value: "git"}, rev}, "2dad137e0c3b"},
		{"no VCS information", []debug.BuildSetting{{Key: "-compiler", Value: "gc"}}, ""},
		{"changed tree but no revision", []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}}, ""},
		{"no settings", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := commitOf(c.settings); got != c.want {
				t.Errorf("commitOf = %q, want %q", got, c.want)
			}
		})
	}
}

// TestString: the --version line names the tool, version, commit, Go
// release and platform; with no commit known it says "unknown", never an
// empty pair of words.
func TestString(t *testing.T) {
	v, c := Version, Commit
	t.Cleanup(func() { Version, Commit = v, c })
	plat := runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	Version, Commit = "0.3.0", "2dad137e0c3b-dirty"
	if got, want := String("driftctl"), "driftctl 0.3.0 (commit 2dad137e0c3b-dirty, "+plat; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	Commit = ""
	if got, want := String("driftsensor"), "driftsensor 0.3.0 (commit unknown, "+plat; got != want {
		t.Errorf("String without a commit = %q, want %q", got, want)
	}
}

// TestFlag: --version is a boolean flag, off unless given.
func TestFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{{nil, false}, {[]string{"--version"}, true}, {[]string{"-version=false"}, false}} {
		fs := flag.NewFlagSet("tool", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		show := Flag(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatalf("parse %q: %v", c.args, err)
		}
		if *show != c.want {
			t.Errorf("after %q: --version %v, want %v", c.args, *show, c.want)
		}
	}
	fs := flag.NewFlagSet("tool", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	Flag(fs)
	if err := fs.Parse([]string{"--version=yes"}); err == nil {
		t.Error("--version=yes parsed: a boolean flag must refuse it")
	}
}
