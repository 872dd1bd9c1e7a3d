package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/driftsensor/driftsensor/sensor/record"
)

// OCSFVersion is the OCSF schema version findings are mapped to. 1.3.0 is
// the first with a Listen activity in Network Activity (and with
// src_endpoint no longer required there): a listening socket has no peer.
const OCSFVersion = "1.3.0"

// Product names driftsensor in OCSF metadata.
const Product = "driftsensor"

// OCSF class, category and enum values used by ToOCSF (OCSF 1.3.0).
const (
	OCSFClassFileSystem = 1001 // File System Activity, category 1 System Activity
	OCSFClassProcess    = 1007 // Process Activity, category 1 System Activity
	OCSFClassDetection  = 2004 // Detection Finding, category 2 Findings
	OCSFClassNetwork    = 4001 // Network Activity, category 4 Network Activity

	OCSFCategorySystem   = 1
	OCSFCategoryFindings = 2
	OCSFCategoryNetwork  = 4

	OCSFActivityOther = 99 // the activity has no OCSF enum value; activity_name says what it was
)

// OCSF is one finding as an OCSF 1.3.0 event. Which object fields are set
// depends on the class: File System Activity has Actor, Device and File;
// Process Activity has Actor, Device and Process; Network Activity has Actor,
// Device, DstEndpoint and ConnectionInfo; Detection Finding (the sensor's own
// health) has FindingInfo and Device. What OCSF has no attribute for is kept
// under unmapped.driftsensor.
type OCSF struct {
	ActivityID     int    `json:"activity_id"`
	ActivityName   string `json:"activity_name"`
	CategoryUID    int    `json:"category_uid"`
	CategoryName   string `json:"category_name"`
	ClassUID       int    `json:"class_uid"`
	ClassName      string `json:"class_name"`
	TypeUID        int64  `json:"type_uid"` // class_uid*100 + activity_id
	TypeName       string `json:"type_name"`
	SeverityID     int    `json:"severity_id"`
	Severity       string `json:"severity"`
	StatusID       int    `json:"status_id"` // activities: 1 Success, 2 Failure; Detection Finding: 1 New
	Status         string `json:"status"`
	StatusCode     string `json:"status_code,omitempty"` // the syscall's return value, when it failed
	StatusDetail   string `json:"status_detail,omitempty"`
	Time           int64  `json:"time"`            // milliseconds since the epoch
	TimezoneOffset int    `json:"timezone_offset"` // minutes; findings carry UTC
	Message        string `json:"message"`
	// ActionID and DispositionID (security_control profile): whether the
	// kernel let the operation happen (1 Allowed / 1 Allowed) or denied it
	// (2 Denied / 2 Blocked).
	ActionID      int    `json:"action_id"`
	Action        string `json:"action"`
	DispositionID int    `json:"disposition_id"`
	Disposition   string `json:"disposition"`

	Metadata       OCSFMetadata        `json:"metadata"`
	Device         OCSFDevice          `json:"device"`
	Actor          *OCSFActor          `json:"actor,omitempty"`
	File           *OCSFFile           `json:"file,omitempty"`
	FileResult     *OCSFFile           `json:"file_result,omitempty"`
	Process        *OCSFProcess        `json:"process,omitempty"`
	DstEndpoint    *OCSFEndpoint       `json:"dst_endpoint,omitempty"`
	ConnectionInfo *OCSFConnectionInfo `json:"connection_info,omitempty"`
	FindingInfo    *OCSFFindingInfo    `json:"finding_info,omitempty"`
	// Observables are the event's pivots (host, process, file, address,
	// port), each naming the attribute it was taken from.
	Observables []OCSFObservable `json:"observables,omitempty"`
	Unmapped    map[string]any   `json:"unmapped,omitempty"`
}

// OCSFObservable is the OCSF observable object.
type OCSFObservable struct {
	Name   string `json:"name"` // the attribute it points at, e.g. file.name
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
	Value  string `json:"value"`
}

// OCSF 1.3 observable type_id values driftsensor emits.
const (
	ObservableHostname    = 1
	ObservableIP          = 2
	ObservableFileName    = 7
	ObservableProcessName = 9
	ObservablePort        = 11
)

var observableTypes = map[int]string{ObservableHostname: "Hostname", ObservableIP: "IP Address", ObservableFileName: "File Name",
	ObservableProcessName: "Process Name", ObservablePort: "Port"}

// OCSFMetadata is the OCSF metadata object.
type OCSFMetadata struct {
	Version  string      `json:"version"` // OCSF schema version
	Product  OCSFProduct `json:"product"`
	UID      string      `json:"uid"`      // the finding's id: dedup key
	Sequence uint64      `json:"sequence"` // the per-host sequence number
	LogName  string      `json:"log_name"` // the NATS subject the finding travelled on
	Profiles []string    `json:"profiles"`
}

// OCSFProduct is the OCSF product object.
type OCSFProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

// OCSFDevice is the OCSF device object: the host that saw the finding.
type OCSFDevice struct {
	Hostname string `json:"hostname"`
	Name     string `json:"name"`
	TypeID   int    `json:"type_id"` // 1 Server
	Type     string `json:"type"`
}

// OCSFActor is the OCSF actor object.
type OCSFActor struct {
	Process *OCSFProcess `json:"process,omitempty"`
	User    *OCSFUser    `json:"user,omitempty"`
}

// OCSFUser is the OCSF user object; uid is the numeric user id as a string.
type OCSFUser struct {
	UID string `json:"uid"`
}

// OCSFProcess is the OCSF process object.
type OCSFProcess struct {
	PID           uint32       `json:"pid"`
	TID           uint32       `json:"tid,omitempty"`
	Name          string       `json:"name,omitempty"` // comm
	CmdLine       string       `json:"cmd_line,omitempty"`
	File          *OCSFFile    `json:"file,omitempty"` // the executable
	User          *OCSFUser    `json:"user,omitempty"`
	ParentProcess *OCSFProcess `json:"parent_process,omitempty"`
}

// OCSFFile is the OCSF file object.
type OCSFFile struct {
	Name   string `json:"name"`
	Path   string `json:"path,omitempty"`
	TypeID int    `json:"type_id"` // 0 Unknown, 1 Regular File, 2 Folder, 3 Character Device, 4 Block Device, 5 Local Socket, 6 Named Pipe, 7 Symbolic Link
	Type   string `json:"type"`
	UID    string `json:"uid,omitempty"` // "<dev>:<ino>"
}

// OCSFEndpoint is the OCSF network_endpoint object.
type OCSFEndpoint struct {
	IP   string `json:"ip,omitempty"`
	Port uint16 `json:"port"`
}

// OCSFConnectionInfo is the OCSF network_connection_info object.
type OCSFConnectionInfo struct {
	DirectionID   int    `json:"direction_id"` // 0 Unknown, 1 Inbound
	Direction     string `json:"direction"`
	ProtocolName  string `json:"protocol_name,omitempty"`
	ProtocolVerID int    `json:"protocol_ver_id,omitempty"` // 4 IPv4, 6 IPv6
}

// OCSFFindingInfo is the OCSF finding_info object.
type OCSFFindingInfo struct {
	UID   string   `json:"uid"`
	Title string   `json:"title"`
	Desc  string   `json:"desc,omitempty"`
	Types []string `json:"types"`
}

var severities = [...]string{0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}

// severity of each kind of finding on a sealed host. Executing something
// that is not the image is the strongest sign of compromise; every other
// mutation is high; a blind spot in the sensor is high too.
var severity = map[Kind]int{KindFile: 4, KindExec: 5, KindNet: 4, KindSensor: 4}

var fileTypes = [...]string{0: "Unknown", 1: "Regular File", 2: "Folder", 3: "Character Device", 4: "Block Device", 5: "Local Socket", 6: "Named Pipe", 7: "Symbolic Link"}

// ToOCSF maps a finding to OCSF 1.3.0: file findings to File System Activity
// (1001), exec findings to Process Activity (1007), net findings to Network
// Activity (4001), and the sensor's own health (lost records, tampering,
// spool damage) to Detection Finding (2004): a blind spot in the sensor is
// something a SOC must act on, which OCSF models as a finding, not as
// telemetry (the base event, class 0, would carry no finding semantics, and
// API Activity, 6003, describes API calls). An action OCSF has no value for
// becomes activity 99 (Other) with activity_name set to driftsensor's action.
func ToOCSF(ev *Event) (*OCSF, error) {
	if ev == nil {
		return nil, errors.New("ocsf: nil finding")
	}
	if ev.Time.IsZero() {
		return nil, fmt.Errorf("ocsf: finding %q has no time", ev.ID)
	}
	sev, ok := severity[ev.Kind]
	if !ok {
		return nil, fmt.Errorf("ocsf: finding %q: kind %q (want file, exec, net or sensor)", ev.ID, ev.Kind)
	}
	o := &OCSF{
		SeverityID: sev, Severity: severities[sev],
		StatusID: 1, Status: "Success",
		Time:     ev.Time.UnixMilli(),
		ActionID: 1, Action: "Allowed", DispositionID: 1, Disposition: "Allowed",
		Metadata: OCSFMetadata{
			Version:  OCSFVersion,
			Product:  OCSFProduct{Name: Product, VendorName: Product},
			UID:      ev.ID,
			Sequence: ev.Seq,
			LogName:  Subject(ev.Host, ev.Kind),
			Profiles: []string{"host", "security_control"},
		},
		Device: OCSFDevice{Hostname: ev.Host, Name: ev.Host, TypeID: 1, Type: "Server"},
	}
	if ev.Denied {
		o.ActionID, o.Action, o.DispositionID, o.Disposition = 2, "Denied", 2, "Blocked"
	}
	un := map[string]any{"kind": string(ev.Kind), "action": ev.Action, "seq": ev.Seq, "ktime_ns": ev.KTimeNS, "backend": ev.Backend}
	if ev.Rule != "" {
		un["rule"] = ev.Rule
	}
	if len(ev.Reflex) > 0 {
		un["reflex"] = ev.Reflex
	}
	if p := ev.Process; p != nil {
		if p.CgroupID != 0 {
			un["cgroup_id"] = p.CgroupID
		}
		if p.Cgroup != "" {
			un["cgroup"] = p.Cgroup
		}
		if p.Container != "" {
			un["container"] = p.Container
		}
		if len(p.Ancestry) > 0 {
			un["ancestry"] = p.Ancestry
		}
	}
	o.Unmapped = map[string]any{Product: un}

	var err error
	switch ev.Kind {
	case KindFile:
		err = ocsfFile(o, ev, un)
	case KindExec:
		err = ocsfExec(o, ev, un)
	case KindNet:
		err = ocsfNet(o, ev)
	case KindSensor:
		err = ocsfHealth(o, ev, un)
	}
	if err != nil {
		return nil, err
	}
	// A denied operation did not happen: for the activity classes that is a
	// failed activity (Detection Finding's status is its workflow state).
	if ev.Denied && o.ClassUID != OCSFClassDetection {
		o.StatusID, o.Status = 2, "Failure"
		o.StatusDetail = "denied in the kernel by driftsensor"
	}
	o.Observables = observables(o)
	o.TypeUID = int64(o.ClassUID)*100 + int64(o.ActivityID)
	o.TypeName = o.ClassName + ": " + o.ActivityName
	return o, nil
}

// observables lists the pivots of o: the host, the acting and the started
// process, the files and the endpoint, in the order they appear.
func observables(o *OCSF) []OCSFObservable {
	var list []OCSFObservable
	add := func(name string, typ int, value string) {
		if value != "" {
			list = append(list, OCSFObservable{Name: name, TypeID: typ, Type: observableTypes[typ], Value: value})
		}
	}
	add("device.hostname", ObservableHostname, o.Device.Hostname)
	if o.Actor != nil && o.Actor.Process != nil {
		add("actor.process.name", ObservableProcessName, o.Actor.Process.Name)
		if f := o.Actor.Process.File; f != nil {
			add("actor.process.file.name", ObservableFileName, f.Name)
		}
	}
	if o.Process != nil {
		add("process.name", ObservableProcessName, o.Process.Name)
		if f := o.Process.File; f != nil {
			add("process.file.name", ObservableFileName, f.Name)
		}
	}
	if o.File != nil {
		add("file.name", ObservableFileName, o.File.Name)
	}
	if o.FileResult != nil {
		add("file_result.name", ObservableFileName, o.FileResult.Name)
	}
	if e := o.DstEndpoint; e != nil {
		add("dst_endpoint.ip", ObservableIP, e.IP)
		add("dst_endpoint.port", ObservablePort, strconv.Itoa(int(e.Port)))
	}
	return list
}

func setClass(o *OCSF, class, category int, className, categoryName string) {
	o.ClassUID, o.ClassName, o.CategoryUID, o.CategoryName = class, className, category, categoryName
}

// setActivity sets the activity of ev's action from the operations table
// (record.Ops); Other, named by the action, when OCSF has none.
func setActivity(o *OCSF, ev *Event) {
	id, name, ok := record.Activity(string(ev.Kind), ev.Action)
	if !ok {
		id, name = OCSFActivityOther, ev.Action
	}
	o.ActivityID, o.ActivityName = id, name
}

func setStatus(o *OCSF, ret int64) {
	if ret < 0 {
		o.StatusID, o.Status, o.StatusCode = 2, "Failure", strconv.FormatInt(ret, 10)
	}
}

func ocsfFile(o *OCSF, ev *Event, un map[string]any) error {
	f := ev.File
	if f == nil {
		return fmt.Errorf("ocsf: file finding %q has no file", ev.ID)
	}
	setClass(o, OCSFClassFileSystem, OCSFCategorySystem, "File System Activity", "System Activity")
	setActivity(o, ev)
	setStatus(o, f.Ret)
	typ := fileType(ev.Action, f.Mode)
	o.File = ocsfFileObj(f.Path, typ, f.Dev, f.Ino)
	if f.NewPath != "" {
		o.FileResult = ocsfFileObj(f.NewPath, typ, 0, 0)
	}
	o.Actor = ocsfActor(ev.Process)
	o.Message = fmt.Sprintf("%s %s on sealed host %s", ev.Action, f.Path, ev.Host)
	if f.NewPath != "" {
		o.Message = fmt.Sprintf("%s %s -> %s on sealed host %s", ev.Action, f.Path, f.NewPath, ev.Host)
	}
	for k, v := range map[string]uint64{"flags": uint64(f.Flags), "mode": uint64(f.Mode), "mount_id": uint64(f.MountID)} {
		if v != 0 {
			un[k] = v
		}
	}
	if f.Target != "" {
		un["target"] = f.Target
	}
	return nil
}

func ocsfExec(o *OCSF, ev *Event, un map[string]any) error {
	x := ev.Exec
	if x == nil {
		return fmt.Errorf("ocsf: exec finding %q has no exec", ev.ID)
	}
	setClass(o, OCSFClassProcess, OCSFCategorySystem, "Process Activity", "System Activity")
	setStatus(o, x.Ret)
	// The launched process is the finding's process; the actor is its parent.
	proc := ocsfProc(ev.Process)
	if proc == nil {
		proc = &OCSFProcess{}
	}
	setActivity(o, ev)
	switch ev.Action {
	case "exec":
		if x.Path != "" {
			proc.File = ocsfFileObj(x.Path, 1, x.Dev, x.Ino)
		}
		o.Process = proc
		o.Actor = &OCSFActor{Process: proc.ParentProcess, User: proc.User}
		if o.Actor.Process == nil {
			o.Actor.Process = &OCSFProcess{}
		}
		o.Message = fmt.Sprintf("exec of %s on sealed host %s", x.Path, ev.Host)
		if len(x.Reasons) > 0 {
			o.Message = fmt.Sprintf("exec of %s (%s) on sealed host %s", x.Path, strings.Join(x.Reasons, ", "), ev.Host)
		}
	case "ptrace_attach":
		// The actor opens another process: the target's pid is the argument.
		o.Actor = &OCSFActor{Process: proc, User: proc.User}
		o.Process = &OCSFProcess{PID: uint32(x.Arg)}
		o.Message = fmt.Sprintf("ptrace attach to pid %d on sealed host %s", x.Arg, ev.Host)
	default:
		// module_load, kexec_load, bpf_prog_load, io_uring_setup, ...: done by
		// the process to the kernel, not to another process.
		o.Actor = &OCSFActor{Process: proc, User: proc.User}
		o.Process = proc
		o.Message = fmt.Sprintf("%s on sealed host %s", ev.Action, ev.Host)
		if x.Path != "" {
			o.Message = fmt.Sprintf("%s %s on sealed host %s", ev.Action, x.Path, ev.Host)
		}
	}
	if len(x.Reasons) > 0 {
		un["reasons"] = x.Reasons
	}
	if x.Arg != 0 {
		un["arg"] = x.Arg
	}
	if x.MountID != 0 {
		un["mount_id"] = x.MountID
	}
	return nil
}

func ocsfNet(o *OCSF, ev *Event) error {
	n := ev.Net
	if n == nil {
		return fmt.Errorf("ocsf: net finding %q has no net", ev.ID)
	}
	setClass(o, OCSFClassNetwork, OCSFCategoryNetwork, "Network Activity", "Network Activity")
	ci := &OCSFConnectionInfo{Direction: "Unknown", ProtocolName: n.Protocol}
	switch n.Family {
	case "inet":
		ci.ProtocolVerID = 4
	case "inet6":
		ci.ProtocolVerID = 6
	}
	setActivity(o, ev) // bind: OCSF has no activity for it
	if ev.Action == "listen" {
		ci.DirectionID, ci.Direction = 1, "Inbound"
	}
	o.DstEndpoint = &OCSFEndpoint{IP: n.Addr, Port: n.Port}
	o.ConnectionInfo = ci
	o.Actor = ocsfActor(ev.Process)
	o.Message = fmt.Sprintf("%s on %s port %d/%s on sealed host %s", ev.Action, n.Addr, n.Port, n.Protocol, ev.Host)
	return nil
}

func ocsfHealth(o *OCSF, ev *Event, un map[string]any) error {
	h := ev.Health
	if h == nil {
		return fmt.Errorf("ocsf: sensor finding %q has no health", ev.ID)
	}
	setClass(o, OCSFClassDetection, OCSFCategoryFindings, "Detection Finding", "Findings")
	o.ActivityID, o.ActivityName = 1, "Create"
	o.StatusID, o.Status = 1, "New" // a finding's status is its workflow state
	title := "driftsensor: " + strings.ReplaceAll(ev.Action, "_", " ")
	if h.LostRecords > 0 {
		title = fmt.Sprintf("%s (%d)", title, h.LostRecords)
		un["lost_records"] = h.LostRecords
	}
	if h.LostTotal > 0 {
		un["lost_total"] = h.LostTotal
	}
	if h.Restart != nil {
		un["down_ms"] = h.Restart.DownMs
		un["previous_instance"] = h.Restart.Previous.Instance
	}
	o.FindingInfo = &OCSFFindingInfo{UID: ev.ID, Title: title, Desc: h.Detail, Types: []string{"Sensor Health"}}
	if ev.Action == ActionStateApplied { // a record of the sensor's life, not drift
		o.SeverityID, o.Severity = 1, severities[1]
	}
	o.Message = title
	if h.Detail != "" {
		o.Message = h.Detail
	}
	if ev.Process != nil {
		o.Actor = ocsfActor(ev.Process)
	}
	return nil
}

func ocsfActor(p *Process) *OCSFActor {
	proc := ocsfProc(p)
	if proc == nil {
		return &OCSFActor{Process: &OCSFProcess{}}
	}
	return &OCSFActor{Process: proc, User: proc.User}
}

func ocsfProc(p *Process) *OCSFProcess {
	if p == nil {
		return nil
	}
	o := &OCSFProcess{PID: p.PID, TID: p.TID, Name: p.Comm, CmdLine: strings.Join(p.Argv, " "), User: &OCSFUser{UID: strconv.FormatUint(uint64(p.UID), 10)}}
	if p.Exe != "" {
		o.File = ocsfFileObj(p.Exe, 1, 0, 0)
	}
	if p.PPID != 0 {
		o.ParentProcess = &OCSFProcess{PID: p.PPID}
		if len(p.Ancestry) > 0 && p.Ancestry[0].PID == p.PPID {
			o.ParentProcess.Name = p.Ancestry[0].Comm
			if p.Ancestry[0].Exe != "" {
				o.ParentProcess.File = ocsfFileObj(p.Ancestry[0].Exe, 1, 0, 0)
			}
		}
	}
	return o
}

func ocsfFileObj(p string, typ int, dev, ino uint64) *OCSFFile {
	f := &OCSFFile{Name: path.Base(p), Path: p, TypeID: typ, Type: fileTypes[typ]}
	if ino != 0 {
		f.UID = fmt.Sprintf("%d:%d", dev, ino)
	}
	return f
}

// fileType is the OCSF file type_id from the action, or from the S_IFMT bits
// of mode when the record carries them (chmod's mode carries only permissions).
func fileType(action string, mode uint32) int {
	switch action {
	case "mkdir", "rmdir":
		return 2
	case "symlink":
		return 7
	}
	switch mode & 0o170000 {
	case 0o100000:
		return 1
	case 0o040000:
		return 2
	case 0o020000:
		return 3
	case 0o060000:
		return 4
	case 0o140000:
		return 5
	case 0o010000:
		return 6
	case 0o120000:
		return 7
	}
	return 0
}

// Format is how findings are written out: driftsensor's own JSON or OCSF.
// It implements flag.Value: flag.Var(&f, "format", "json or ocsf").
type Format string

// Output formats.
const (
	FormatJSON Format = "json" // the Event as defined here (schema driftsensor.event/v1)
	FormatOCSF Format = "ocsf" // ToOCSF, for SIEMs
)

// ParseFormat checks a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatJSON, FormatOCSF:
		return f, nil
	}
	return "", fmt.Errorf("format %q (want json or ocsf)", s)
}

// String returns the format name; the zero Format is json.
func (f Format) String() string {
	if f == "" {
		return string(FormatJSON)
	}
	return string(f)
}

// Set parses a flag value.
func (f *Format) Set(s string) error {
	v, err := ParseFormat(s)
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// Marshal encodes ev in the format, as one JSON object without a newline.
func (f Format) Marshal(ev *Event) ([]byte, error) {
	switch f {
	case "", FormatJSON:
		return json.Marshal(ev)
	case FormatOCSF:
		o, err := ToOCSF(ev)
		if err != nil {
			return nil, err
		}
		return json.Marshal(o)
	}
	return nil, fmt.Errorf("format %q (want json or ocsf)", string(f))
}
