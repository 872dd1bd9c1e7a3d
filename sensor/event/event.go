// Package event defines the one wire format every part of driftsensor speaks:
// the sensor emits it, the transport carries it, the responder and driftctl read it.
package event

import (
	"time"

	"golang.org/x/sys/unix"
)

// Schema names the version of the event format; consumers refuse other values.
const Schema = "driftsensor.event/v1"

// Kind is the family of a finding; it is also the last token of the NATS subject.
type Kind string

// The kinds of finding.
const (
	KindFile   Kind = "file"   // a file-system mutation
	KindExec   Kind = "exec"   // execution drift, module/kexec/bpf loads, ptrace
	KindNet    Kind = "net"    // a bind or listen on a port the policy does not allow
	KindSensor Kind = "sensor" // the sensor's own health: lost records, tampering, overflow
)

// Event is one finding, as published and as printed.
type Event struct {
	Schema  string    `json:"schema"`
	ID      string    `json:"id"`   // unique; consumers deduplicate on it
	Host    string    `json:"host"` // the host that saw it
	Seq     uint64    `json:"seq"`  // per-host sequence number; a gap means loss
	KTimeNS uint64    `json:"ktime_ns"`
	Time    time.Time `json:"time"`
	Kind    Kind      `json:"kind"`
	Action  string    `json:"action"` // what happened, e.g. "unlink", "exec_tainted", "listen"
	Backend string    `json:"backend"`
	Rule    string    `json:"rule,omitempty"` // the policy rule that matched
	Denied  bool      `json:"denied,omitempty"`
	Reflex  []string  `json:"reflex,omitempty"` // what the kernel did at detection: cordoned, killed

	File    *File    `json:"file,omitempty"`
	Exec    *Exec    `json:"exec,omitempty"`
	Net     *Net     `json:"net,omitempty"`
	Health  *Health  `json:"health,omitempty"`
	Process *Process `json:"process,omitempty"`

	// EmitKTimeNS is when the sensor handed the finding to its publisher, on
	// the clock of KTimeNS (KTimeNow): EmitKTimeNS-KTimeNS is the sensor's
	// own share of the latency, whatever the transport does after.
	EmitKTimeNS uint64 `json:"emit_ktime_ns,omitempty"`
}

// File describes the object of a file mutation.
type File struct {
	Path    string `json:"path"`               // canonical absolute path
	NewPath string `json:"new_path,omitempty"` // rename/link target, symlink name
	Target  string `json:"target,omitempty"`   // symlink contents as given
	Dev     uint64 `json:"dev,omitempty"`
	Ino     uint64 `json:"ino,omitempty"`
	MountID uint32 `json:"mount_id,omitempty"`
	Flags   uint32 `json:"flags,omitempty"` // open flags, rename flags, ...
	Mode    uint32 `json:"mode,omitempty"`
	Ret     int64  `json:"ret"`
	// Unresolved: the name ran through a /proc magic link of another
	// process (/proc/<pid>/root, cwd, exe, fd/N) that the tracepoint backend
	// cannot follow, so Path is the name as given, not the object it reached.
	Unresolved bool `json:"unresolved,omitempty"`
}

// Exec describes execution drift and privileged kernel operations.
type Exec struct {
	Path    string   `json:"path,omitempty"`
	Reasons []string `json:"reasons,omitempty"` // tainted, outside_image, memfd, deleted
	Dev     uint64   `json:"dev,omitempty"`
	Ino     uint64   `json:"ino,omitempty"`
	MountID uint32   `json:"mount_id,omitempty"`
	Arg     uint64   `json:"arg,omitempty"` // bpf cmd, ptrace target pid, io_uring opcode
	Ret     int64    `json:"ret"`
}

// Net describes a bind or listen.
type Net struct {
	Family   string `json:"family"` // inet, inet6
	Protocol string `json:"protocol"`
	Addr     string `json:"addr"`
	Port     uint16 `json:"port"`
}

// Health reports the sensor's own state as a finding: a blind spot is an incident.
type Health struct {
	// LostRecords is the exact number of findings (or kernel records) this
	// report is about; the reports of a host that reach the stream add up to
	// everything it lost.
	LostRecords uint64 `json:"lost_records,omitempty"`
	// LostTotal is the running total of findings reported lost by this run of
	// the sensor's publisher, this report included.
	LostTotal uint64 `json:"lost_total,omitempty"`
	Detail    string `json:"detail,omitempty"`
	// For a tamper finding the kernel reported: the bpf(2) command another
	// process made and the sensor's object it touched, or the sensor's own
	// file it opened.
	BPFCmd string `json:"bpf_cmd,omitempty"` // e.g. BPF_MAP_UPDATE_ELEM
	Object string `json:"object,omitempty"`  // e.g. "driftsensor map config_map (id 42)"
	Path   string `json:"path,omitempty"`
	// Restart describes the run before this one, in a sensor_restart finding.
	Restart *Restart `json:"restart,omitempty"`
	// Applied is the host state the sensor applied, in a state_applied record.
	Applied *StateApplied `json:"applied,omitempty"`
}

// Sensor actions that are records of the sensor's own life rather than of
// drift on the host.
const (
	// ActionSensorRestart: the sensor started again; the host was unwatched meanwhile.
	ActionSensorRestart = "sensor_restart"
	// ActionStateApplied: the sensor applied a host state to the kernel. It
	// is a record, not drift: the responder does not act on it.
	ActionStateApplied = "state_applied"
)

// StateApplied is a host state the sensor applied to the kernel.
type StateApplied struct {
	From State `json:"from"` // "" at start
	To   State `json:"to"`
	// Revision is the control plane's KV revision holding the state; 0 when
	// the sensor set it at start (--seal, or mutable by default).
	Revision uint64 `json:"revision,omitempty"`
	// By is who made the change when the sensor knows it (itself, at start).
	// For a change from the control plane the sensor does not (the KV entry
	// does not say): the audit record with the same revision on
	// drift.v1.<host>.state names who, and its absence means the change
	// bypassed driftctl and the responder.
	By string `json:"by,omitempty"`
}

// Restart is what a sensor knows at start about its previous run on the
// host: while it was down, the host was unwatched.
type Restart struct {
	Previous Liveness  `json:"previous"`  // the previous run's boot id, instance and start
	LastBeat time.Time `json:"last_beat"` // its last heartbeat: the last moment it was known alive
	DownMs   int64     `json:"down_ms"`   // from that heartbeat to this run's start
	// Clean is true when the previous run stopped on a signal and recorded
	// it; false when it was killed, crashed, or the host lost power.
	Clean bool `json:"clean"`
	// Reboot is true when the boot id changed: the host rebooted meanwhile.
	Reboot bool `json:"reboot,omitempty"`
}

// Process is the context of the process that caused a finding.
type Process struct {
	PID       uint32     `json:"pid"`
	TID       uint32     `json:"tid"`
	PPID      uint32     `json:"ppid"`
	UID       uint32     `json:"uid"`
	GID       uint32     `json:"gid"`
	Comm      string     `json:"comm"`
	Exe       string     `json:"exe,omitempty"`
	Argv      []string   `json:"argv,omitempty"`
	CgroupID  uint64     `json:"cgroup_id"`
	Cgroup    string     `json:"cgroup,omitempty"`
	Container string     `json:"container,omitempty"`
	Ancestry  []Ancestor `json:"ancestry,omitempty"` // parent first
}

// Ancestor is one link of the process's ancestry.
type Ancestor struct {
	PID  uint32 `json:"pid"`
	Comm string `json:"comm,omitempty"`
	Exe  string `json:"exe,omitempty"`
}

// KTimeNow reads CLOCK_MONOTONIC, the clock of the kernel's record times
// (bpf_ktime_get_ns), in nanoseconds.
func KTimeNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for this clock
	return uint64(ts.Nano())
}
