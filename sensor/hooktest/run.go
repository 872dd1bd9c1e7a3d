package hooktest

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
)

// Runner is one backend's test harness.
type Runner interface {
	// Backend names the backend, as Differ.Backend does.
	Backend() string
	// Modes lists the modes the backend has.
	Modes() []Mode
	// Start loads the backend on a scope of the test's own (a cgroup, an
	// image tree, the test policy) with the sensor reading its findings.
	Start(t *testing.T) Scope
}

// Act is one run of the actor.
type Act struct {
	Args        []string   // action, then its arguments
	Files       []*os.File // inherited as 3, 4, ...
	Outside     bool       // start it outside the scope
	SealAtReady bool       // seal when it prints "ready", then let it go on
}

// Result is what the actor reported.
type Result struct {
	PID, TID int
	Errno    syscall.Errno
	Out      string
}

// Scope is one started scope of a backend.
type Scope interface {
	// Configure sets the mode and the policy's deny_binds (a no-op when unchanged).
	Configure(t testing.TB, c Config)
	// Env creates a case's directories.
	Env(t testing.TB, tag string) Env
	Seal(t testing.TB, on bool)
	// Act runs the actor and waits for it; a failure that is no syscall
	// error fails the test.
	Act(t testing.TB, a Act) Result
	// Expect waits for a finding from pid matching w.
	Expect(t testing.TB, w Want, pid int) *event.Event
	// ExpectNone proves pid caused no finding (see Findings).
	ExpectNone(t testing.TB, pid int)
	// Findings returns every finding from pid, once every record the kernel
	// wrote for it has been read (a barrier: a later marker finding arrived).
	Findings(t testing.TB, pid int) []*event.Event
	// Check makes the backend's own assertions on a finding a case wanted.
	Check(t testing.TB, w Want, ev *event.Event, res Result)
}

// Run runs every case of the table on the runner's backend, in each of its
// modes, as subtests mode/group/case.
func Run(t *testing.T, r Runner) {
	s := r.Start(t)
	for _, mode := range r.Modes() {
		t.Run(string(mode), func(t *testing.T) {
			for i, c := range Cases() {
				t.Run(c.Group+"/"+c.Name, func(t *testing.T) {
					o := c.Outcome(r.Backend(), mode)
					s.Configure(t, Config{Mode: mode, DenyBinds: !c.AllowBinds})
					e := s.Env(t, fmt.Sprintf("%s-%02d", mode, i))
					runCase(t, s, c, e, o)
				})
			}
		})
	}
}

func runCase(t *testing.T, s Scope, c Case, e Env, o Outcome) {
	for _, n := range o.Notes {
		t.Logf("differs here: %s", n)
	}
	if c.Setup != nil {
		c.Setup(t, &e)
	}
	s.Seal(t, !c.Unsealed && !c.SealAtReady)
	for _, pre := range c.Pre {
		args := e.expandAll(pre)
		if res := s.Act(t, Act{Args: args}); res.Errno != o.PreErrno {
			t.Fatalf("preparing with %q: errno %v, want %v", args, res.Errno, o.PreErrno)
		}
	}
	for _, ws := range [][]Want{o.Want, o.Extra} {
		for i := range ws {
			if err := ws[i].Valid(); err != nil {
				t.Fatalf("the case matches too much: %v", err)
			}
		}
	}
	a := Act{Args: e.expandAll(c.Act), Outside: c.Outside, SealAtReady: c.SealAtReady}
	if c.Files != nil {
		a.Files = c.Files(t, e)
	}
	res := s.Act(t, a)
	for _, m := range varLine.FindAllStringSubmatch(res.Out, -1) {
		e.Vars[m[1]] = m[2]
	}
	for _, ws := range [][]Want{o.Want, o.Extra} {
		for i := range ws {
			ws[i] = ws[i].Expand(e)
		}
	}
	if o.Errno != AnyErrno && res.Errno != o.Errno {
		t.Errorf("actor %q: errno %d (%v), want %d (%v); it printed:\n%s", a.Args, int(res.Errno), res.Errno, int(o.Errno), o.Errno, res.Out)
	}
	for _, w := range o.Want {
		ev := s.Expect(t, w, res.PID)
		if ev.Process.CgroupID == 0 {
			t.Errorf("finding names no cgroup: %s", act.Describe(ev))
		}
		if ev.Kind == event.KindFile && ev.Rule == "" {
			t.Errorf("finding names no policy rule: %s", act.Describe(ev))
		}
		s.Check(t, w, ev, res)
	}
	for _, ev := range s.Findings(t, res.PID) {
		if !matchAny(ev, o.Want, false) && !matchAny(ev, o.Extra, true) {
			t.Errorf("unexpected finding from the actor (pid %d): %s", res.PID, act.Describe(ev))
		}
	}
}

var varLine = regexp.MustCompile(`(?m)^` + act.VarPrefix + `(\w+)=(.*)$`)

func matchAny(ev *event.Event, ws []Want, anyDenied bool) bool {
	for _, w := range ws {
		if anyDenied {
			w.Denied = ev.Denied
		}
		if w.Match(ev) {
			return true
		}
	}
	return false
}

// Match says whether ev is the finding w describes (the pid aside): every
// field w names, and the payload its kind carries.
func (w Want) Match(ev *event.Event) bool {
	if ev.Kind != w.Kind || ev.Action != w.Action || ev.Denied != w.Denied || ev.Process == nil {
		return false
	}
	switch w.Kind {
	case event.KindFile:
		return ev.File != nil && ev.File.Path == w.Path && ev.File.NewPath == w.NewPath && ev.File.Target == w.Target &&
			ev.File.Unresolved == w.Unresolved
	case event.KindExec:
		if ev.Exec == nil || ev.Exec.Path != w.Path || strings.Join(ev.Exec.Reasons, ",") != strings.Join(w.Reasons, ",") {
			return false
		}
		if w.Argv != nil && strings.Join(ev.Process.Argv, "\x00") != strings.Join(w.Argv, "\x00") {
			return false
		}
		if w.Arg != nil && ev.Exec.Arg != *w.Arg {
			return false
		}
		if w.ArgLow != nil && uint32(ev.Exec.Arg) != *w.ArgLow {
			return false
		}
		return w.TargetPID == "" || strconv.FormatUint(uint64(uint32(ev.Exec.Arg)), 10) == w.TargetPID
	case event.KindNet:
		return ev.Net != nil && (w.AnyPort || ev.Net.Port == w.Port)
	case event.KindSensor:
		// A sensor finding's detail says everything (command, object, file,
		// actor): wants name it exactly; its path is the file it names.
		return ev.Health != nil && (w.Path == "" || ev.Health.Path == w.Path) && (w.Detail == "" || ev.Health.Detail == w.Detail)
	}
	return false
}
