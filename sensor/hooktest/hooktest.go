// Package hooktest is the one table of hook test cases every kernel backend
// runs: each case sets up files as the test process (never judged), has an
// actor (the test binary re-executed inside the sealed scope) make one
// syscall, and states the findings the sensor must publish for it, as
// event.Event: kind, action (the literal names findings carry), canonical paths,
// exec reasons, port, whether it was denied. Nothing else may come from the
// actor's pid.
//
// Backends differ by design in a few places (the lsm backend judges io_uring
// operations at the same hooks as syscalls, it can deny, it watches mmap and
// signals); a case says so with a Differ naming the backend, the mode and the
// reason. A backend that cannot do a case at all skips it with that reason,
// so the skip shows in the test output.
//
// A backend's test binary calls act.ActorMain from TestMain, and its harness
// implements Runner; Run runs the table. NewBed is a Scope over any
// backend.Backend and a sensor.Sensor, which the harnesses use.
//
// The exec payloads are a tiny static x86-64 ELF (act.TrueELF): the package is
// for linux/amd64, like the BPF objects.
package hooktest

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// Mode is how a backend runs: detect reports drift, enforce also refuses it.
type Mode string

// The modes.
const (
	Detect  Mode = "detect"
	Enforce Mode = "enforce"
)

// Config is what a scope is set to for a case.
type Config struct {
	Mode      Mode
	DenyBinds bool // net.deny_binds
}

// AllowedSetting is the one kernel setting the test policy allows writing.
const AllowedSetting = "/proc/sys/kernel/domainname"

// AllowedPort is the one port the test policy allows binding and listening on.
const AllowedPort = 47001

// Env names one case's own directories under the scope's image root, created
// empty before the case's setup. The test policy protects Root, makes
// Root/var and Root/usr/app writable exceptions, and allows exec from
// Root/usr, the usual system directories and the test binary.
type Env struct {
	Root string // the image root: protected
	Etc  string // Root/etc/<case>: protected, not an exec image path
	Var  string // Root/var/<case>: writable exception
	App  string // Root/usr/app/<case>: writable exception inside an exec image path
	Usr  string // Root/usr/bin/<case>: protected exec image path
	Bin  string // Root/bin/<case>: Usr through the symlinked directory Root/bin -> usr/bin
	Opt  string // Root/opt/<case>: protected, not an exec image path

	Tag string // the case's directory name in each of those

	Scope string // the scope's cgroup directory

	SensorPID    int    // the sensor's process (the test process)
	SensorProgID uint32 // an id of one of the backend's own programs, 0 if it has no self-protection
	Vars         map[string]string
	Files        map[string]*os.File // files Setup opened, for Case.Files
}

// Expand replaces $root, $etc, $var, $app, $usr, $bin, $opt, $tag, $scope, $sensor
// (the sensor's pid), $progid and the names in Vars in s (set by Setup, or by
// the actor printing VarPrefix lines: wants are expanded after the act).
func (e Env) Expand(s string) string {
	return os.Expand(s, func(k string) string {
		switch k {
		case "root":
			return e.Root
		case "etc":
			return e.Etc
		case "var":
			return e.Var
		case "app":
			return e.App
		case "usr":
			return e.Usr
		case "bin":
			return e.Bin
		case "opt":
			return e.Opt
		case "tag":
			return e.Tag
		case "scope":
			return e.Scope
		case "sensor":
			return fmt.Sprint(e.SensorPID)
		case "progid":
			return fmt.Sprint(e.SensorProgID)
		}
		if v, ok := e.Vars[k]; ok {
			return v
		}
		panic(fmt.Sprintf("hooktest: $%s names nothing", k))
	})
}

func (e Env) expandAll(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = e.Expand(s)
	}
	return out
}

// Expand fills w's paths, argv and target pid from the case's Env.
func (w Want) Expand(e Env) Want {
	w.Path, w.NewPath, w.Target = e.Expand(w.Path), e.Expand(w.NewPath), e.Expand(w.Target)
	w.Argv = e.expandAll(w.Argv)
	if w.TargetPID != "" {
		w.TargetPID = e.Expand(w.TargetPID)
	}
	return w
}

// Want is one finding a case expects. Every field is checked: for file and
// exec findings an empty Path, NewPath, Target or Reasons means the finding
// carries none, Port is exact unless AnyPort; Argv, Arg, ArgLow, TargetPID,
// Detail (and a sensor finding's Path) are checked when set.
// Paths, argv and TargetPID are templates (see Env.Expand).
type Want struct {
	Kind    event.Kind
	Action  string // one of the Act* names
	Path    string // canonical
	NewPath string // rename and link target
	Target  string // symlink contents as given
	Reasons []string
	Argv    []string
	Port    uint16
	AnyPort bool // the kernel picked the port
	Denied  bool
	Arg     *uint64 // event.Exec.Arg
	ArgLow  *uint32 // its low 32 bits
	Detail  string  // event.Health.Detail, exact, when set
	// TargetPID is the pid a ptrace or signal finding names (the low 32
	// bits of event.Exec.Arg), as a template such as "$sensor".
	TargetPID string
	// AnyThread: the operation may run on another thread of the actor (an
	// io_uring worker), so the finding's tid is not the actor's.
	AnyThread bool
	// Unresolved: the file finding says its name ran through a link the
	// backend could not follow (event.File.Unresolved).
	Unresolved bool
}

// Valid says what is wrong with a Want that would match too much: no kind or
// action, a file finding without a path, a net finding without a port.
func (w Want) Valid() error {
	switch {
	case w.Kind == "" || w.Action == "":
		return fmt.Errorf("want %+v names no kind or no action", w)
	case w.Kind == event.KindFile && w.Path == "":
		return fmt.Errorf("file want %q names no path", w.Action)
	case w.Kind == event.KindNet && (w.Port == 0) == !w.AnyPort:
		return fmt.Errorf("net want %q must name a port or AnyPort, not both or neither", w.Action)
	case w.Kind != event.KindFile && w.Kind != event.KindExec && w.Kind != event.KindNet && w.Kind != event.KindSensor:
		return fmt.Errorf("want of kind %q: the table has file, exec, net and sensor findings", w.Kind)
	case (w.Action == ActPtrace || w.Action == ActSignal) && w.TargetPID == "":
		return fmt.Errorf("%s want names no TargetPID", w.Action)
	}
	return nil
}

// AnyErrno in Outcome.Errno: the syscall's result is not checked.
const AnyErrno = syscall.Errno(^uintptr(0))

// Outcome is what a case must produce on one backend in one mode.
type Outcome struct {
	Want  []Want        // every one must arrive
	Extra []Want        // may arrive too (checked without Denied); nothing else may
	Errno syscall.Errno // the actor's syscall result (AnyErrno: not checked)
	// PreErrno is what the case's preparation steps must return (0: they
	// succeed); enforce mode refuses a preparation that is itself drift.
	PreErrno syscall.Errno
	Notes    []string // why it departs from the case's default, if it does
}

// Differ says where a backend or mode departs from a case's default outcome,
// and why. Empty Backend or Mode match any.
type Differ struct {
	Backend string
	Mode    Mode
	Why     string
	Then    func(o *Outcome) // edits the outcome
}

// Case is one row of the table.
type Case struct {
	Group string
	Name  string
	// AllowBinds runs the case with net.deny_binds off (default: on).
	AllowBinds bool
	// Setup prepares files as the test process, which no backend judges.
	Setup func(t testing.TB, e *Env)
	// Pre are actor actions run in the sealed scope before Act; each must
	// succeed. Arguments are templates (see Env.Expand).
	Pre [][]string
	// Act is the actor's action and arguments (templates).
	Act []string
	// Files are descriptors the actor inherits, as 3, 4, ...
	Files func(t testing.TB, e Env) []*os.File
	// Unsealed acts before sealing; Outside acts from outside the scope.
	Unsealed, Outside bool
	// SealAtReady starts the actor unsealed and seals when it prints "ready".
	SealAtReady bool
	// Want lists the findings in detect mode; none means the act is benign.
	Want  []Want
	Extra []Want
	// Errno is the detect-mode result of the actor's syscall (0: success).
	Errno syscall.Errno
	// Differs depart from the default outcome. By default, enforce mode
	// expects every wanted finding denied and the syscall to fail with EPERM.
	Differs []Differ
}

// Outcome resolves what the case must produce on backend in mode.
func (c Case) Outcome(backend string, mode Mode) (o Outcome) {
	o = Outcome{Want: append([]Want(nil), c.Want...), Extra: append([]Want(nil), c.Extra...), Errno: c.Errno}
	if mode == Enforce && len(o.Want) > 0 {
		for i := range o.Want {
			o.Want[i].Denied = true
		}
		o.Errno = syscall.EPERM
	}
	for _, d := range c.Differs {
		if (d.Backend != "" && d.Backend != backend) || (d.Mode != "" && d.Mode != mode) {
			continue
		}
		if d.Then != nil {
			d.Then(&o)
		}
		o.Notes = append(o.Notes, d.Why)
	}
	return o
}

// Action names as findings carry them: the contract (the OCSF mapping, the
// responder's rules and SIEM queries key on these strings), spelled out here
// rather than taken from sensor.ActionName so a wrong name there fails.
const (
	ActOpen        = "open_write"
	ActTruncate    = "truncate"
	ActRename      = "rename"
	ActUnlink      = "unlink"
	ActRmdir       = "rmdir"
	ActLink        = "link"
	ActSymlink     = "symlink"
	ActMkdir       = "mkdir"
	ActMknod       = "mknod"
	ActChmod       = "chmod"
	ActChown       = "chown"
	ActSetxattr    = "setxattr"
	ActRemovexattr = "removexattr"
	ActUtimes      = "utimes"
	ActMount       = "mount"
	ActSetflags    = "setflags"
	ActWrite       = "write"
	ActUring       = "io_uring"
	ActExec        = "exec"
	ActModule      = "module_load"
	ActKexec       = "kexec_load"
	ActBPF         = "bpf_prog_load"
	ActPtrace      = "ptrace_attach"
	ActUringSetup  = "io_uring_setup"
	ActSignal      = "signal_sensor"
	ActTamper      = "tamper"
	ActLeaveScope  = "leave_scope"
	ActKSetting    = "kernel_setting"
	ActRawDevice   = "raw_device"
	ActBind        = "bind"
	ActListen      = "listen"
)
