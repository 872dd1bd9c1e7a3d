package event_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// attr is one attribute an OCSF class requires, by dotted path, with the
// JSON type it must have: int (OCSF integer_t, long_t, timestamp_t), string,
// object or bool.
type attr struct{ path, typ string }

// Required attributes, from the OCSF 1.3.0 schema (ocsf-schema v1.3.0:
// events/base_event.json, events/system/system.json, file_activity.json,
// process_activity.json, events/network/network.json, network_activity.json,
// events/findings/finding.json, detection_finding.json, and the objects
// metadata, product, device, file, network_connection_info, finding_info).
// 1.3.0 differs from 1.1.0 for these classes only in Network Activity:
// src_endpoint went from required to "at least one of src_endpoint and
// dst_endpoint", and activity 7 (Listen) was added.
var (
	ocsfBase = []attr{
		{"activity_id", "int"}, {"category_uid", "int"}, {"class_uid", "int"}, {"type_uid", "int"},
		{"severity_id", "int"}, {"time", "int"},
		{"metadata", "object"}, {"metadata.version", "string"},
		{"metadata.product", "object"}, {"metadata.product.name", "string"},
		{"metadata.product.vendor_name", "string"}, // required until 1.4.0
	}
	ocsfClasses = map[int]struct {
		category   int
		activities []int // the class's activity_id enum, besides 0 Unknown and 99 Other
		required   []attr
		atLeastOne [][]string // constraints: at least one of these paths is present
	}{
		event.OCSFClassFileSystem: {1, span(1, 14), []attr{
			{"actor", "object"}, {"device", "object"}, {"device.type_id", "int"},
			{"file", "object"}, {"file.name", "string"}, {"file.type_id", "int"},
		}, [][]string{actorOneOf}},
		event.OCSFClassProcess: {1, span(1, 5), []attr{
			{"actor", "object"}, {"device", "object"}, {"device.type_id", "int"},
			{"process", "object"},
		}, [][]string{actorOneOf}},
		event.OCSFClassNetwork: {4, span(1, 7), nil,
			[][]string{{"dst_endpoint", "src_endpoint"}}},
		event.OCSFClassDetection: {2, span(1, 3), []attr{
			{"finding_info", "object"}, {"finding_info.uid", "string"},
			{"finding_info.title", "string"}, // required until 1.4.0
		}, nil},
	}
	// Objects that are optional but, when present, have required attributes.
	ocsfObjects = map[string][]attr{
		"device":                 {{"type_id", "int"}},
		"file":                   {{"name", "string"}, {"type_id", "int"}},
		"file_result":            {{"name", "string"}, {"type_id", "int"}},
		"process.file":           {{"name", "string"}, {"type_id", "int"}},
		"actor.process.file":     {{"name", "string"}, {"type_id", "int"}},
		"connection_info":        {{"direction_id", "int"}},
		"dst_endpoint":           {{"port", "int"}},
		"actor.user":             {{"uid", "string"}},
		"actor.process.user":     {{"uid", "string"}},
		"process.parent_process": {{"pid", "int"}},
	}
	actorOneOf = []string{"actor.process", "actor.user", "actor.session", "actor.app_name", "actor.app_uid"}
	// Attributes added after 1.3.0, which a 1.3.0 consumer refuses.
	ocsfAfter13 = []string{"is_alert", "confidence_score", "risk_details"}
	// status_id enums: base event; Detection Finding's is its workflow state.
	statusBase      = []int{0, 1, 2, 99}
	statusDetection = []int{0, 1, 2, 3, 4, 99}
	// The observable type_id values of OCSF 1.3.0 (dictionary types' and
	// objects' "observable" numbers) that driftsensor may emit.
	observableTypes = map[int]string{1: "Hostname", 2: "IP Address", 7: "File Name", 9: "Process Name", 11: "Port"}
)

func span(lo, hi int) []int {
	var out []int
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

// lookup walks a dotted path through decoded JSON.
func lookup(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func typeOK(v any, typ string) bool {
	switch typ {
	case "int":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	case "string":
		s, ok := v.(string)
		return ok && s != ""
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "bool":
		_, ok := v.(bool)
		return ok
	}
	return false
}

func num(m map[string]any, path string) int64 {
	v, _ := lookup(m, path)
	f, _ := v.(float64)
	return int64(f)
}

// checkOCSF maps ev and checks the result, as JSON, against the class it claims.
func checkOCSF(t *testing.T, ev *event.Event, wantClass, wantActivity int) {
	t.Helper()
	o, err := event.ToOCSF(ev)
	if err != nil {
		t.Fatalf("ToOCSF(%s %s): %v", ev.Kind, ev.Action, err)
	}
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	class := int(num(m, "class_uid"))
	cl, ok := ocsfClasses[class]
	if !ok || class != wantClass {
		t.Fatalf("%s %s: class_uid %d, want %d", ev.Kind, ev.Action, class, wantClass)
	}
	for _, a := range append(append([]attr{}, ocsfBase...), cl.required...) {
		v, ok := lookup(m, a.path)
		if !ok {
			t.Errorf("%s %s (class %d): required %s missing in %s", ev.Kind, ev.Action, class, a.path, b)
		} else if !typeOK(v, a.typ) {
			t.Errorf("%s %s (class %d): %s = %v (%T), want %s", ev.Kind, ev.Action, class, a.path, v, v, a.typ)
		}
	}
	for _, set := range cl.atLeastOne {
		found := false
		for _, p := range set {
			if _, ok := lookup(m, p); ok {
				found = true
			}
		}
		if !found {
			t.Errorf("%s %s: none of %v present", ev.Kind, ev.Action, set)
		}
	}
	for obj, attrs := range ocsfObjects {
		if _, ok := lookup(m, obj); !ok {
			continue
		}
		for _, a := range attrs {
			v, ok := lookup(m, obj+"."+a.path)
			if !ok || !typeOK(v, a.typ) {
				t.Errorf("%s %s: %s present without a %s %s", ev.Kind, ev.Action, obj, a.typ, a.path)
			}
		}
	}
	act := int(num(m, "activity_id"))
	if act != wantActivity {
		t.Errorf("%s %s: activity_id %d, want %d", ev.Kind, ev.Action, act, wantActivity)
	}
	known := act == 0 || act == 99
	for _, a := range cl.activities {
		known = known || a == act
	}
	if !known {
		t.Errorf("%s %s: activity_id %d not in class %d's enum", ev.Kind, ev.Action, act, class)
	}
	if name, _ := lookup(m, "activity_name"); act == 99 && name != ev.Action {
		t.Errorf("%s: activity 99 (Other) must name the action, got %v", ev.Action, name)
	}
	if got, want := num(m, "type_uid"), int64(class)*100+int64(act); got != want {
		t.Errorf("%s %s: type_uid %d, want %d", ev.Kind, ev.Action, got, want)
	}
	if got := num(m, "category_uid"); got != int64(cl.category) {
		t.Errorf("%s %s: category_uid %d, want %d", ev.Kind, ev.Action, got, cl.category)
	}
	if s := num(m, "severity_id"); s < 0 || s > 6 && s != 99 {
		t.Errorf("severity_id %d", s)
	}
	for _, a := range ocsfAfter13 {
		if _, ok := lookup(m, a); ok {
			t.Errorf("%s %s: %s is not an OCSF 1.3.0 attribute", ev.Kind, ev.Action, a)
		}
	}
	statuses := statusBase
	if class == event.OCSFClassDetection {
		statuses = statusDetection
	}
	if st := int(num(m, "status_id")); !slices.Contains(statuses, st) {
		t.Errorf("%s %s: status_id %d not in class %d's enum %v", ev.Kind, ev.Action, st, class, statuses)
	}
	checkObservables(t, m, b)
	if got := num(m, "time"); got != ev.Time.UnixMilli() {
		t.Errorf("time %d, want %d (ms)", got, ev.Time.UnixMilli())
	}
	if v, _ := lookup(m, "metadata.version"); v != event.OCSFVersion {
		t.Errorf("metadata.version %v", v)
	}
	if v, _ := lookup(m, "metadata.uid"); v != ev.ID {
		t.Errorf("metadata.uid %v, want the finding's id %s", v, ev.ID)
	}
	if v, _ := lookup(m, "device.hostname"); v != ev.Host {
		t.Errorf("device.hostname %v, want %s", v, ev.Host)
	}
}

// checkObservables: every observable names an attribute of the event whose
// value it carries, with a 1.3.0 type, and the host is always one of them.
func checkObservables(t *testing.T, m map[string]any, b []byte) {
	t.Helper()
	list, ok := m["observables"].([]any)
	if !ok || len(list) == 0 {
		t.Errorf("no observables in %s", b)
		return
	}
	host := false
	for _, x := range list {
		o, _ := x.(map[string]any)
		name, _ := o["name"].(string)
		typ := int(num(o, "type_id"))
		if want, ok := observableTypes[typ]; !ok || o["type"] != want {
			t.Errorf("observable %v: type_id %d type %v", o, typ, o["type"])
		}
		v, ok := lookup(m, name)
		if !ok {
			t.Errorf("observable %v names %q, which the event lacks", o, name)
			continue
		}
		if got := fmt.Sprint(v); got != o["value"] {
			t.Errorf("observable %v: %s is %q", o, name, got)
		}
		host = host || name == "device.hostname"
	}
	if !host {
		t.Errorf("observables %v lack device.hostname", list)
	}
}

func sample(kind event.Kind, action string) *event.Event {
	ev := &event.Event{
		Schema: event.Schema, ID: "2sYgGbzQ0JpWAa1p9fG3Xq", Host: "web-1", Seq: 42, KTimeNS: 912345678901,
		Time: time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC), Kind: kind, Action: action, Backend: "tracepoint",
		Process: &event.Process{
			PID: 4242, TID: 4242, PPID: 1200, UID: 0, Comm: "bash", Exe: "/usr/bin/bash",
			Argv: []string{"bash", "-c", "x"}, CgroupID: 7, Cgroup: "/system.slice/ssh.service",
			Ancestry: []event.Ancestor{{PID: 1200, Comm: "sshd", Exe: "/usr/sbin/sshd"}, {PID: 1, Comm: "systemd"}},
		},
	}
	switch kind {
	case event.KindFile:
		ev.File = &event.File{Path: "/etc/ssh/sshd_config", Dev: 2049, Ino: 131, MountID: 29, Mode: 0o100644}
		if action == "rename" {
			ev.File.NewPath = "/etc/ssh/sshd_config.bak"
		}
	case event.KindExec:
		ev.Exec = &event.Exec{Path: "/tmp/.x/miner", Reasons: []string{"tainted", "outside_image"}, Dev: 2049, Ino: 99}
		if action == "ptrace_attach" {
			ev.Exec = &event.Exec{Arg: 1234}
		}
	case event.KindNet:
		ev.Net = &event.Net{Family: "inet", Protocol: "tcp", Addr: "0.0.0.0", Port: 4444}
		if action == "bind" || action == "bind_denied" {
			ev.Net = &event.Net{Family: "inet6", Protocol: "udp", Addr: "::", Port: 5353}
			ev.Action, ev.Denied = "bind", action == "bind_denied"
		}
	case event.KindSensor:
		ev.Process = nil
		ev.Health = &event.Health{LostRecords: 17, Detail: "the kernel could not queue 17 records"}
	}
	return ev
}

func TestOCSFClasses(t *testing.T) {
	for _, tc := range []struct {
		kind     event.Kind
		action   string
		class    int
		activity int
	}{
		{event.KindFile, "open_write", event.OCSFClassFileSystem, 3},
		{event.KindFile, "unlink", event.OCSFClassFileSystem, 4},
		{event.KindFile, "rename", event.OCSFClassFileSystem, 5},
		{event.KindFile, "mkdir", event.OCSFClassFileSystem, 1},
		{event.KindFile, "chmod", event.OCSFClassFileSystem, 7},
		{event.KindFile, "setxattr", event.OCSFClassFileSystem, 6},
		{event.KindFile, "mount", event.OCSFClassFileSystem, 12},
		{event.KindFile, "io_uring", event.OCSFClassFileSystem, 99},
		{event.KindExec, "exec", event.OCSFClassProcess, 1},
		{event.KindExec, "ptrace_attach", event.OCSFClassProcess, 3},
		{event.KindExec, "module_load", event.OCSFClassProcess, 99},
		{event.KindNet, "listen", event.OCSFClassNetwork, 7},
		{event.KindNet, "bind", event.OCSFClassNetwork, 99},
		{event.KindNet, "bind_denied", event.OCSFClassNetwork, 99},
		{event.KindSensor, "lost_records", event.OCSFClassDetection, 1},
		{event.KindSensor, "tampering", event.OCSFClassDetection, 1},
	} {
		t.Run(string(tc.kind)+"/"+tc.action, func(t *testing.T) {
			checkOCSF(t, sample(tc.kind, tc.action), tc.class, tc.activity)
		})
	}
}

func TestOCSFDetails(t *testing.T) {
	ev := sample(event.KindFile, "rename")
	ev.Denied = true
	ev.File.Ret = -1
	o, err := event.ToOCSF(ev)
	if err != nil {
		t.Fatal(err)
	}
	if o.File.Name != "sshd_config" || o.File.Path != "/etc/ssh/sshd_config" || o.File.TypeID != 1 || o.File.UID != "2049:131" {
		t.Errorf("file %+v", o.File)
	}
	if o.FileResult == nil || o.FileResult.Path != "/etc/ssh/sshd_config.bak" {
		t.Errorf("file_result %+v", o.FileResult)
	}
	if o.ActionID != 2 || o.DispositionID != 2 || o.StatusID != 2 || o.StatusCode != "-1" {
		t.Errorf("denied, failed rename: action %d disposition %d status %d code %q", o.ActionID, o.DispositionID, o.StatusID, o.StatusCode)
	}
	if o.Actor.Process.PID != 4242 || o.Actor.Process.ParentProcess.Name != "sshd" || o.Actor.User.UID != "0" {
		t.Errorf("actor %+v", o.Actor.Process)
	}

	x, err := event.ToOCSF(sample(event.KindExec, "exec"))
	if err != nil {
		t.Fatal(err)
	}
	if x.Process.File.Path != "/tmp/.x/miner" || x.Actor.Process.PID != 1200 || x.SeverityID != 5 {
		t.Errorf("exec: launched %+v by %+v severity %d", x.Process.File, x.Actor.Process, x.SeverityID)
	}
	n, err := event.ToOCSF(sample(event.KindNet, "bind"))
	if err != nil {
		t.Fatal(err)
	}
	if n.DstEndpoint.IP != "::" || n.DstEndpoint.Port != 5353 || n.ConnectionInfo.ProtocolVerID != 6 || n.ActivityName != "bind" ||
		n.StatusID != 1 || n.ActionID != 1 {
		t.Errorf("bind: %+v %+v %s status %d action %d", n.DstEndpoint, n.ConnectionInfo, n.ActivityName, n.StatusID, n.ActionID)
	}
	// A bind the kernel refused did not happen: a failed activity, denied and blocked.
	denied := sample(event.KindNet, "bind")
	denied.Denied = true
	d, err := event.ToOCSF(denied)
	if err != nil {
		t.Fatal(err)
	}
	if d.StatusID != 2 || d.Status != "Failure" || d.StatusDetail == "" || d.ActionID != 2 || d.DispositionID != 2 {
		t.Errorf("denied bind: status %d %q %q, action %d, disposition %d", d.StatusID, d.Status, d.StatusDetail, d.ActionID, d.DispositionID)
	}
	want := []event.OCSFObservable{
		{Name: "device.hostname", TypeID: 1, Type: "Hostname", Value: "web-1"},
		{Name: "actor.process.name", TypeID: 9, Type: "Process Name", Value: "bash"},
		{Name: "actor.process.file.name", TypeID: 7, Type: "File Name", Value: "bash"},
		{Name: "dst_endpoint.ip", TypeID: 2, Type: "IP Address", Value: "::"},
		{Name: "dst_endpoint.port", TypeID: 11, Type: "Port", Value: "5353"},
	}
	if !slices.Equal(d.Observables, want) {
		t.Errorf("bind observables %+v, want %+v", d.Observables, want)
	}
	h, err := event.ToOCSF(sample(event.KindSensor, "lost_records"))
	if err != nil {
		t.Fatal(err)
	}
	if h.FindingInfo.UID != ev.ID || !strings.Contains(h.FindingInfo.Title, "17") || h.StatusID != 1 {
		t.Errorf("health: %+v", h.FindingInfo)
	}
	un := h.Unmapped[event.Product].(map[string]any)
	if un["lost_records"] != uint64(17) || un["seq"] != uint64(42) {
		t.Errorf("unmapped: %v", un)
	}
}

func TestOCSFRefusesIncompleteFindings(t *testing.T) {
	noFile := sample(event.KindFile, "unlink")
	noFile.File = nil
	noTime := sample(event.KindNet, "listen")
	noTime.Time = time.Time{}
	badKind := sample(event.KindFile, "unlink")
	badKind.Kind = "heartbeat"
	for name, ev := range map[string]*event.Event{"nil": nil, "no file": noFile, "no time": noTime, "bad kind": badKind} {
		if _, err := event.ToOCSF(ev); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFormatFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var f event.Format
	fs.Var(&f, "format", "json or ocsf")
	if f.String() != "json" {
		t.Errorf("zero Format is %q, want json", f)
	}
	if err := fs.Parse([]string{"--format", "OCSF"}); err != nil || f != event.FormatOCSF {
		t.Fatalf("--format OCSF: %v %q", err, f)
	}
	fs.SetOutput(new(strings.Builder))
	if err := fs.Parse([]string{"--format", "xml"}); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("--format xml: %v", err)
	}
	ev := sample(event.KindExec, "exec")
	for _, tc := range []struct {
		f    event.Format
		want string
	}{{event.FormatJSON, `"schema":"driftsensor.event/v1"`}, {event.FormatOCSF, `"class_uid":1007`}} {
		b, err := tc.f.Marshal(ev)
		if err != nil || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %s %v", tc.f, b, err)
		}
	}
}
