// Package inns runs code inside another network namespace. Namespaces belong
// to OS threads, not goroutines, so the work happens on a locked thread that is
// switched in and back; a thread that cannot be switched back is discarded.
package inns

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn with the calling goroutine's thread in the network namespace at
// path (a /run/netns/NAME bind mount or /proc/PID/ns/net). Sockets, netlink
// handles and processes created by fn stay in that namespace after Do returns.
// An empty path runs fn where the caller is.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer target.Close()
	return DoHandle(target, fn)
}

// DoHandle is Do for an already open namespace handle. fn runs on a goroutine
// of its own so that a thread which cannot be switched back dies with it.
func DoHandle(target netns.NsHandle, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- doLocked(target, fn) }()
	return <-done
}

func doLocked(target netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", target, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Stay locked: the runtime then destroys this thread when the
		// goroutine exits instead of reusing it in the wrong namespace.
		return fmt.Errorf("return to the original network namespace: %w (after: %v)", err, ferr)
	}
	runtime.UnlockOSThread()
	return ferr
}
