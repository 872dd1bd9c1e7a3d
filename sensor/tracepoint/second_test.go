package tracepoint

import "testing"

// TestNeedsSecondSysExit: kernels newer than the last one seen never to skip
// a syscall tracepoint run (6.18) get the second sys_exit copy; an unreadable
// release gets it too.
func TestNeedsSecondSysExit(t *testing.T) {
	for release, want := range map[string]bool{
		"6.1.0-50-cloud-amd64":       false,
		"6.12.117+deb13-cloud-amd64": false,
		"6.18.0":                     false,
		"6.19.1":                     true,
		"7.2.13+deb14-cloud-amd64":   true,
		"":                           true,
		"unknown":                    true,
	} {
		if got := NeedsSecondSysExit(release); got != want {
			t.Errorf("NeedsSecondSysExit(%q) = %v, want %v", release, got, want)
		}
	}
}
