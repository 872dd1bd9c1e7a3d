package event_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// jsonBlock is one ```json block of README.md.
type jsonBlock struct {
	line int
	data []byte
}

func readmeBlocks(t *testing.T) []jsonBlock {
	t.Helper()
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []jsonBlock
	var cur *jsonBlock
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```json":
			cur = &jsonBlock{line: n + 1}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.data = append(cur.data, line+"\n"...)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("README.md:%d: unterminated json block", cur.line)
	}
	return out
}

// strictDecode decodes b into v refusing unknown fields and trailing data.
func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the object")
	}
	return nil
}

func generic(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// sameJSON fails unless v encodes to the same JSON value as the example:
// the example shows every field the code emits and nothing else.
func sameJSON(t *testing.T, where string, example []byte, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if want, got := generic(t, example), generic(t, b); !reflect.DeepEqual(want, got) {
		t.Errorf("%s: the example is not what the code emits;\nexample: %s\ncode:    %s", where, compact(example), b)
	}
}

func compact(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

// TestREADMEExamples parses every JSON example of README.md into the type
// its schema names, so the documentation cannot drift from the code.
func TestREADMEExamples(t *testing.T) {
	blocks := readmeBlocks(t)
	events := map[string]*event.Event{}
	kinds := map[event.Kind]bool{}
	seen := map[string]bool{}
	var ocsf []jsonBlock
	for _, b := range blocks {
		where := fmt.Sprintf("README.md:%d", b.line)
		var head struct {
			Schema   string  `json:"schema"`
			ClassUID *int    `json:"class_uid"`
			Cmd      *string `json:"cmd"`
		}
		if err := json.Unmarshal(b.data, &head); err != nil {
			t.Errorf("%s: not JSON: %v", where, err)
			continue
		}
		switch {
		case head.Schema == event.Schema:
			var ev event.Event
			if err := strictDecode(b.data, &ev); err != nil {
				t.Errorf("%s: finding: %v", where, err)
				continue
			}
			checkFinding(t, where, &ev)
			sameJSON(t, where, b.data, &ev)
			events[ev.ID] = &ev
			kinds[ev.Kind] = true
		case head.Schema == event.HeartbeatSchema:
			var hb event.Heartbeat
			if err := strictDecode(b.data, &hb); err != nil {
				t.Errorf("%s: heartbeat: %v", where, err)
				continue
			}
			if err := event.ValidHost(hb.Host); err != nil || hb.Time.IsZero() || hb.Backend == "" {
				t.Errorf("%s: heartbeat host %q time %v backend %q: %v", where, hb.Host, hb.Time, hb.Backend, err)
			}
			if _, err := event.ParseState(string(hb.State)); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			sameJSON(t, where, b.data, &hb)
		case head.Schema == event.StateChangeSchema:
			var ch event.StateChange
			if err := strictDecode(b.data, &ch); err != nil {
				t.Errorf("%s: state change: %v", where, err)
				continue
			}
			for _, s := range []event.State{ch.From, ch.To} {
				if _, err := event.ParseState(string(s)); err != nil {
					t.Errorf("%s: %v", where, err)
				}
			}
			sameJSON(t, where, b.data, &ch)
		case head.Schema == event.AuditSchema:
			var r event.AuditRecord
			if err := strictDecode(b.data, &r); err != nil {
				t.Errorf("%s: audit record: %v", where, err)
				continue
			}
			if err := event.ValidHost(r.Host); err != nil || r.Time.IsZero() || r.Stage == "" || r.Replica == "" {
				t.Errorf("%s: audit record host %q time %v stage %q replica %q: %v", where, r.Host, r.Time, r.Stage, r.Replica, err)
			}
			sameJSON(t, where, b.data, &r)
		case head.Schema == event.CtlSchema && head.Cmd != nil:
			if _, err := event.DecodeCtlCommand(bytes.TrimSpace(b.data)); err != nil {
				t.Errorf("%s: the sensor would reject this command: %v", where, err)
			}
		case head.Schema == event.CtlSchema:
			var r event.CtlReply
			if err := strictDecode(b.data, &r); err != nil {
				t.Errorf("%s: ctl reply: %v", where, err)
				continue
			}
			sameJSON(t, where, b.data, &r)
		case head.ClassUID != nil:
			ocsf = append(ocsf, b)
			continue
		default:
			t.Errorf("%s: an example with schema %q: which type is it?", where, head.Schema)
			continue
		}
		seen[head.Schema] = true
	}
	for _, k := range []event.Kind{event.KindFile, event.KindExec, event.KindNet, event.KindSensor} {
		if !kinds[k] {
			t.Errorf("README.md has no example of a %s finding", k)
		}
	}
	for _, s := range []string{event.HeartbeatSchema, event.StateChangeSchema, event.AuditSchema, event.CtlSchema} {
		if !seen[s] {
			t.Errorf("README.md has no %s example", s)
		}
	}
	if len(ocsf) == 0 {
		t.Error("README.md has no OCSF example")
	}
	// An OCSF example is the mapping of the finding example whose id is its metadata.uid.
	for _, b := range ocsf {
		where := fmt.Sprintf("README.md:%d", b.line)
		var head struct {
			Metadata struct {
				UID string `json:"uid"`
			} `json:"metadata"`
		}
		_ = json.Unmarshal(b.data, &head)
		ev, ok := events[head.Metadata.UID]
		if !ok {
			t.Errorf("%s: OCSF example of finding %q, which has no example", where, head.Metadata.UID)
			continue
		}
		o, err := event.ToOCSF(ev)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		sameJSON(t, where, b.data, o)
		checkOCSFExample(t, where, b.data, ev)
	}
	// Every finding example maps to OCSF with the fields its class requires.
	for _, ev := range events {
		checkOCSF(t, ev, map[event.Kind]int{
			event.KindFile: event.OCSFClassFileSystem, event.KindExec: event.OCSFClassProcess,
			event.KindNet: event.OCSFClassNetwork, event.KindSensor: event.OCSFClassDetection,
		}[ev.Kind], mustOCSF(t, ev).ActivityID)
	}
}

func mustOCSF(t *testing.T, ev *event.Event) *event.OCSF {
	t.Helper()
	o, err := event.ToOCSF(ev)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// checkFinding checks what the schema promises beyond the Go types.
func checkFinding(t *testing.T, where string, ev *event.Event) {
	t.Helper()
	if err := event.ValidHost(ev.Host); err != nil {
		t.Errorf("%s: %v", where, err)
	}
	if ev.ID == "" || ev.Seq == 0 || ev.Time.IsZero() || ev.Action == "" {
		t.Errorf("%s: id %q seq %d time %v action %q: all are required", where, ev.ID, ev.Seq, ev.Time, ev.Action)
	}
	if ev.Backend != "lsm" && ev.Backend != "tracepoint" {
		t.Errorf("%s: backend %q (want lsm or tracepoint)", where, ev.Backend)
	}
	payloads := map[event.Kind]bool{
		event.KindFile: ev.File != nil, event.KindExec: ev.Exec != nil,
		event.KindNet: ev.Net != nil, event.KindSensor: ev.Health != nil,
	}
	if _, ok := payloads[ev.Kind]; !ok {
		t.Errorf("%s: kind %q (want file, exec, net or sensor)", where, ev.Kind)
	}
	for k, has := range payloads {
		if has != (k == ev.Kind) {
			t.Errorf("%s: a %s finding must carry exactly the %s payload", where, ev.Kind, ev.Kind)
		}
	}
}

// ocsfFileActivity is what OCSF 1.3.0 (file_activity.json) and the mapping
// table of README.md say a file finding becomes, spelled out here so that the
// example is checked against the contract, not only against ToOCSF's output.
var ocsfFileActivity = map[string]struct {
	id   int64
	name string
}{
	"link": {1, "Create"}, "symlink": {1, "Create"}, "mkdir": {1, "Create"}, "mknod": {1, "Create"},
	"open_write": {3, "Update"}, "truncate": {3, "Update"}, "write": {3, "Update"},
	"unlink": {4, "Delete"}, "rmdir": {4, "Delete"}, "rename": {5, "Rename"},
	"setxattr": {6, "Set Attributes"}, "removexattr": {6, "Set Attributes"}, "utimes": {6, "Set Attributes"},
	"setflags": {6, "Set Attributes"}, "chmod": {7, "Set Security"}, "chown": {7, "Set Security"},
	"mount": {12, "Mount"},
}

// checkOCSFExample checks an OCSF example of a file finding against the OCSF
// rules and the finding it maps, independently of event.ToOCSF.
func checkOCSFExample(t *testing.T, where string, data []byte, ev *event.Event) {
	t.Helper()
	if ev.Kind != event.KindFile {
		t.Errorf("%s: OCSF example of a %s finding: the independent check knows file findings only", where, ev.Kind)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	act, ok := ocsfFileActivity[ev.Action]
	if !ok {
		t.Fatalf("%s: no OCSF activity for file action %q", where, ev.Action)
	}
	str := func(path string) string { v, _ := lookup(m, path); s, _ := v.(string); return s }
	for _, c := range []struct {
		path string
		got  any
		want any
	}{
		{"class_uid", num(m, "class_uid"), int64(1001)},
		{"class_name", str("class_name"), "File System Activity"},
		{"category_uid", num(m, "category_uid"), int64(1)},
		{"category_name", str("category_name"), "System Activity"},
		{"activity_id", num(m, "activity_id"), act.id},
		{"activity_name", str("activity_name"), act.name},
		{"type_uid", num(m, "type_uid"), 1001*100 + act.id},
		{"type_name", str("type_name"), "File System Activity: " + act.name},
		{"severity_id", num(m, "severity_id"), int64(4)},
		{"severity", str("severity"), "High"},
		{"time", num(m, "time"), ev.Time.UnixMilli()},
		{"metadata.version", str("metadata.version"), "1.3.0"},
		{"metadata.product.name", str("metadata.product.name"), "driftsensor"},
		{"metadata.uid", str("metadata.uid"), ev.ID},
		{"metadata.sequence", num(m, "metadata.sequence"), int64(ev.Seq)},
		{"metadata.log_name", str("metadata.log_name"), "drift.v1." + ev.Host + ".file"},
		{"device.hostname", str("device.hostname"), ev.Host},
		{"actor.process.pid", num(m, "actor.process.pid"), int64(ev.Process.PID)},
		{"actor.process.name", str("actor.process.name"), ev.Process.Comm},
		{"actor.process.file.path", str("actor.process.file.path"), ev.Process.Exe},
		{"file.path", str("file.path"), ev.File.Path},
		{"file.name", str("file.name"), ev.File.Path[strings.LastIndexByte(ev.File.Path, '/')+1:]},
		{"unmapped.driftsensor.action", str("unmapped.driftsensor.action"), ev.Action},
		{"unmapped.driftsensor.kind", str("unmapped.driftsensor.kind"), "file"},
	} {
		if c.got != c.want {
			t.Errorf("%s: OCSF %s is %v, the contract says %v", where, c.path, c.got, c.want)
		}
	}
}
