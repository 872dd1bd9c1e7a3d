// Package version holds what a build stamps into every driftsensor binary:
// the release version and the source commit (make dist sets both with
// -ldflags -X), reported by --version, heartbeats and metrics.
package version

import (
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release, e.g. "0.3.0"; "dev" for a plain go build.
// Set with -ldflags "-X github.com/driftsensor/driftsensor/internal/version.Version=0.3.0".
var Version = "dev"

// Commit is the source commit the binary was built from ("-dirty" appended
// when the tree had changes). Set with -ldflags -X like Version; a plain go
// build in a git checkout falls back to the revision Go records itself.
var Commit = ""

func init() {
	if Commit != "" {
		return
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		Commit = commitOf(bi.Settings)
	}
}

// commitOf is the commit Go recorded in a build's VCS settings, "-dirty"
// appended when the tree had changes; "" when it recorded none (a build
// outside a checkout, or with -buildvcs=false).
func commitOf(settings []debug.BuildSetting) string {
	var rev, dirty string
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}

// String is the one line --version prints: tool, version, commit, Go
// release and platform.
func String(tool string) string {
	c := Commit
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("%s %s (commit %s, %s, %s/%s)", tool, Version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Flag registers --version on fs; when the returned value is true after
// parsing, the command prints String and exits 0.
func Flag(fs *flag.FlagSet) *bool {
	return fs.Bool("version", false, "print the version and commit, then exit")
}
