package tracepoint

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// scriptsState reads the scripts gate: the counter and whether pid has an entry.
func scriptsState(t *testing.T, b *Backend, pid int) (live int64, has bool) {
	t.Helper()
	if err := b.objs.ScriptsLive.Lookup(uint32(0), &live); err != nil {
		t.Fatalf("read scripts_live: %v", err)
	}
	var sn tpScriptName
	err := b.objs.Scripts.Lookup(uint32(pid), &sn)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read scripts[%d]: %v", pid, err)
	}
	return live, err == nil
}

// TestScriptGate: the counter every open for reading checks before looking
// a script up (bpf/seal.h, scripts_live) is 1 while an interpreter the
// kernel started with a script argument has not opened it, and 0 again both
// after the interpreter opened its script and after one exited without
// opening it; the entry goes with it, so a process reusing the pid is not
// judged by a stale name.
func TestScriptGate(t *testing.T) {
	bb := newBlindBed(t)
	script := filepath.Join(t.TempDir(), "x.sh")
	if err := os.WriteFile(script, []byte("exit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		script string
		opened bool // the interpreter runs its script, else the open fails
	}{
		{"opens its script", script, true},
		{"exits without opening its script", filepath.Join(t.TempDir(), "missing.sh"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if live, _ := scriptsState(t, bb.b, 0); live != 0 {
				t.Fatalf("scripts_live %d before the interpreter starts, want 0", live)
			}
			// Stopped by ptrace right after its exec: the exec hook has
			// run, the interpreter's own code has not.
			cmd, closeFD, err := bb.cg.Command("/bin/sh", c.script)
			if err != nil {
				t.Fatal(err)
			}
			defer closeFD()
			cmd.SysProcAttr.Ptrace = true
			runtime.LockOSThread() // ptrace requests come from the tracing thread
			defer runtime.UnlockOSThread()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || !ws.Stopped() {
				cmd.Process.Kill()
				t.Fatalf("interpreter %d not stopped at its exec: %v (status %v)", pid, err, ws)
			}
			if live, has := scriptsState(t, bb.b, pid); live != 1 || !has {
				cmd.Process.Kill()
				t.Fatalf("stopped at exec: scripts_live %d, entry for %d %v; want 1 and an entry", live, pid, has)
			}
			if err := syscall.PtraceDetach(pid); err != nil {
				cmd.Process.Kill()
				t.Fatal(err)
			}
			err = cmd.Wait()
			if c.opened != (err == nil) {
				t.Fatalf("sh %s: %v (want success %v)", c.script, err, c.opened)
			}
			if live, has := scriptsState(t, bb.b, pid); live != 0 || has {
				t.Fatalf("after the interpreter ended: scripts_live %d, entry for %d %v; want 0 and none", live, pid, has)
			}
		})
	}
}
