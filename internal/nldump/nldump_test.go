package nldump

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestRetry: an interrupted dump's partial list is never returned; the
// first whole one is, and a table that never holds still is an error that
// still says why.
func TestRetry(t *testing.T) {
	calls := 0
	got, err := Retry(func() ([]string, error) {
		if calls++; calls < 3 {
			return []string{"partial"}, netlink.ErrDumpInterrupted
		}
		return []string{"a", "b"}, nil
	})
	if err != nil || len(got) != 2 || calls != 3 {
		t.Fatalf("got %v, %v after %d calls; want [a b] after 3", got, err, calls)
	}

	calls = 0
	got, err = Retry(func() ([]string, error) { calls++; return []string{"partial"}, netlink.ErrDumpInterrupted })
	if !errors.Is(err, netlink.ErrDumpInterrupted) || got != nil || calls != attempts {
		t.Fatalf("always interrupted: got %v, %v after %d calls; want nil and ErrDumpInterrupted after %d", got, err, calls, attempts)
	}

	other := errors.New("permission denied")
	calls = 0
	if _, err = Retry(func() ([]string, error) { calls++; return nil, other }); err != other || calls != 1 {
		t.Fatalf("another error: %v after %d calls; want it at once", err, calls)
	}
}
