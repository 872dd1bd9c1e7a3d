// Package chromium runs Debian's chromium headless on local pages: the
// dashboard preview's screenshots and the tests that check what a page
// renders (the drill report, the dashboard) share this one call.
package chromium

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ErrNotInstalled is Run's error when there is no chromium on $PATH.
var ErrNotInstalled = errors.New("chromium is not installed (scripts/setup.sh installs it)")

// Run runs chromium headless with args and no network, in a profile of its
// own that it removes after, and returns its output (--dump-dom: the DOM).
func Run(args ...string) ([]byte, error) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		return nil, ErrNotInstalled
	}
	profile, err := os.MkdirTemp("", "chromium-profile")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(profile)
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--hide-scrollbars", "--user-data-dir=" + profile}
	cmd := exec.Command(bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out, nil
}
