package inns

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

func TestDoRunsInsideAndReturns(t *testing.T) {
	testenv.RequireBPF(t)
	// The test's own thread creates the namespace; keep it, and never
	// return it to the scheduler (the test goroutine exits locked).
	runtime.LockOSThread()
	before, _ := os.Readlink("/proc/thread-self/ns/net")
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.New() // moves this thread; moved back below
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	want := target.UniqueId()
	var inside netns.NsHandle
	err = DoHandle(target, func() error {
		var err error
		inside, err = netns.Get()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if inside.UniqueId() != want {
		t.Errorf("fn ran in %s, want %s", inside.UniqueId(), want)
	}
	if after, _ := os.Readlink("/proc/thread-self/ns/net"); after != before {
		t.Errorf("caller's thread left in %s, was %s", after, before)
	}
	sentinel := errors.New("x")
	if err := DoHandle(target, func() error { return sentinel }); err != sentinel {
		t.Errorf("fn's error not passed through: %v", err)
	}
	if err := Do("/nonexistent/ns", func() error { return nil }); err == nil {
		t.Error("a missing namespace path was accepted")
	}
}
