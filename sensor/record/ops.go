package record

// Op is one operation of the record format: its code, the action findings
// name it by, and its OCSF activity.
type Op struct {
	Kind   uint16
	Code   uint16
	Action string
	// Activity is the OCSF activity_id in the class of the finding's kind
	// (File System, Process or Network Activity); 0 when OCSF has none
	// (activity 99, Other, named by Action).
	Activity     int
	ActivityName string
}

// ActionTamper is the action of every finding about an act on the sensor
// itself (OpSelfBPF, OpSelfOpen, and what the heartbeat's checks find).
const ActionTamper = "tamper"

// Ops lists every operation of enum rec_op (TestOpsCoverEnum keeps it whole):
// the one table findings' action names and their OCSF activities come from.
var Ops = []Op{
	{KindFile, OpOpen, "open_write", 3, "Update"},
	{KindFile, OpTruncate, "truncate", 3, "Update"},
	{KindFile, OpRename, "rename", 5, "Rename"},
	{KindFile, OpUnlink, "unlink", 4, "Delete"},
	{KindFile, OpRmdir, "rmdir", 4, "Delete"},
	{KindFile, OpLink, "link", 1, "Create"},
	{KindFile, OpSymlink, "symlink", 1, "Create"},
	{KindFile, OpMkdir, "mkdir", 1, "Create"},
	{KindFile, OpMknod, "mknod", 1, "Create"},
	{KindFile, OpChmod, "chmod", 7, "Set Security"},
	{KindFile, OpChown, "chown", 7, "Set Security"},
	{KindFile, OpSetxattr, "setxattr", 6, "Set Attributes"},
	{KindFile, OpRemovexattr, "removexattr", 6, "Set Attributes"},
	{KindFile, OpUtimes, "utimes", 6, "Set Attributes"},
	{KindFile, OpMount, "mount", 12, "Mount"},
	{KindFile, OpSetflags, "setflags", 6, "Set Attributes"},
	{KindFile, OpWrite, "write", 3, "Update"},
	{KindFile, OpUring, "io_uring", 0, ""},
	{KindFile, OpKSetting, "kernel_setting", 0, ""},
	{KindFile, OpRawDev, "raw_device", 0, ""},

	{KindExec, OpExec, "exec", 1, "Launch"},
	{KindExec, OpModule, "module_load", 0, ""},
	{KindExec, OpKexec, "kexec_load", 0, ""},
	{KindExec, OpBPF, "bpf_prog_load", 0, ""},
	{KindExec, OpPtrace, "ptrace_attach", 3, "Open"},
	{KindExec, OpUringSetup, "io_uring_setup", 0, ""},
	{KindExec, OpSignal, "signal_sensor", 0, ""},
	{KindExec, OpSelfBPF, ActionTamper, 0, ""},
	{KindExec, OpSelfOpen, ActionTamper, 0, ""},
	{KindExec, OpLeaveScope, "leave_scope", 0, ""},

	{KindNet, OpBind, "bind", 0, ""},
	{KindNet, OpListen, "listen", 7, "Listen"},
}

var (
	byCode   = map[[2]uint16]*Op{}
	byAction = map[[2]string]*Op{}
)

func init() {
	kinds := map[uint16]string{KindFile: "file", KindExec: "exec", KindNet: "net"}
	for i := range Ops {
		o := &Ops[i]
		byCode[[2]uint16{o.Kind, o.Code}] = o
		byAction[[2]string{kinds[o.Kind], o.Action}] = o
	}
}

// OpOf returns the operation of a record's kind and op code.
func OpOf(kind, code uint16) (Op, bool) {
	o, ok := byCode[[2]uint16{kind, code}]
	if !ok {
		return Op{}, false
	}
	return *o, true
}

// Activity returns the OCSF activity of a finding's action: kind is the
// finding's kind as on the wire (file, exec, net). ok is false when OCSF has
// no activity for it.
func Activity(kind, action string) (id int, name string, ok bool) {
	o := byAction[[2]string{kind, action}]
	if o == nil || o.Activity == 0 {
		return 0, "", false
	}
	return o.Activity, o.ActivityName, true
}
