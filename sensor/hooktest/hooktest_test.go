package hooktest

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/record"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

func TestMain(m *testing.M) {
	if IsWorkload() { // TestWorkloads' child
		os.Exit(WorkloadMain())
	}
	os.Exit(testenv.Main(m))
}

// TestTable checks the table itself, unprivileged: unique names, a reason for
// every departure, wants that name what they match, and logs which backend and
// mode runs or skips each case (go test -v ./sensor/hooktest/).
func TestTable(t *testing.T) {
	names := map[string]bool{}
	for _, c := range Cases() {
		id := c.Group + "/" + c.Name
		if names[id] {
			t.Errorf("%s: two cases of that name", id)
		}
		names[id] = true
		if len(c.Act) == 0 {
			t.Errorf("%s: no action", id)
		}
		for _, d := range c.Differs {
			if d.Why == "" {
				t.Errorf("%s: a Differ without a reason", id)
			}
			if d.Backend != "" && d.Backend != Tracepoint && d.Backend != LSM {
				t.Errorf("%s: Differ for unknown backend %q", id, d.Backend)
			}
		}
		for _, w := range append(append([]Want(nil), c.Want...), c.Extra...) {
			if err := w.Valid(); err != nil {
				t.Errorf("%s: %v", id, err)
			}
		}
		var row []string
		for _, be := range []struct {
			name  string
			modes []Mode
		}{{Tracepoint, []Mode{Detect}}, {LSM, []Mode{Detect, Enforce}}} {
			for _, m := range be.modes {
				o := c.Outcome(be.name, m)
				switch {
				case len(o.Want) == 0:
					row = append(row, be.name+"/"+string(m)+": no finding")
				default:
					var acts []string
					for _, w := range o.Want {
						a := w.Action
						if w.Denied {
							a += " denied"
						}
						acts = append(acts, a)
					}
					row = append(row, be.name+"/"+string(m)+": "+strings.Join(acts, ", "))
				}
				if len(o.Notes) > 0 {
					row[len(row)-1] += " (" + strings.Join(o.Notes, "; ") + ")"
				}
			}
		}
		t.Logf("%-70s %s", id, strings.Join(row, "; "))
	}
}

func TestExpand(t *testing.T) {
	e := Env{Etc: "/i/etc/x", Tag: "x", SensorPID: 7, Vars: map[string]string{"v": "w"}}
	if got := e.Expand("$etc/../$tag/./d $sensor $v"); got != "/i/etc/x/../x/./d 7 w" {
		t.Fatalf("got %q", got)
	}
}

// TestActionNames: the sensor names every operation as the contract spells it
// (the literal names above, which the OCSF mapping and the responder's rules
// key on), and an unknown operation by number.
func TestActionNames(t *testing.T) {
	for _, c := range []struct {
		kind, op uint16
		want     string
	}{
		{record.KindFile, record.OpOpen, ActOpen}, {record.KindFile, record.OpTruncate, ActTruncate},
		{record.KindFile, record.OpRename, ActRename}, {record.KindFile, record.OpUnlink, ActUnlink},
		{record.KindFile, record.OpRmdir, ActRmdir}, {record.KindFile, record.OpLink, ActLink},
		{record.KindFile, record.OpSymlink, ActSymlink}, {record.KindFile, record.OpMkdir, ActMkdir},
		{record.KindFile, record.OpMknod, ActMknod}, {record.KindFile, record.OpChmod, ActChmod},
		{record.KindFile, record.OpChown, ActChown}, {record.KindFile, record.OpSetxattr, ActSetxattr},
		{record.KindFile, record.OpRemovexattr, ActRemovexattr}, {record.KindFile, record.OpUtimes, ActUtimes},
		{record.KindFile, record.OpMount, ActMount}, {record.KindFile, record.OpSetflags, ActSetflags},
		{record.KindFile, record.OpWrite, ActWrite}, {record.KindFile, record.OpUring, ActUring},
		{record.KindExec, record.OpExec, ActExec}, {record.KindExec, record.OpModule, ActModule},
		{record.KindExec, record.OpKexec, ActKexec}, {record.KindExec, record.OpBPF, ActBPF},
		{record.KindExec, record.OpPtrace, ActPtrace}, {record.KindExec, record.OpUringSetup, ActUringSetup},
		{record.KindExec, record.OpSignal, ActSignal}, {record.KindExec, record.OpSelfBPF, ActTamper},
		{record.KindExec, record.OpSelfOpen, ActTamper},
		{record.KindNet, record.OpBind, ActBind}, {record.KindNet, record.OpListen, ActListen},
		{record.KindNet, record.OpExec, "op" + strconv.Itoa(int(record.OpExec))},
	} {
		if got := sensor.ActionName(c.kind, c.op); got != c.want {
			t.Errorf("ActionName(%d, %d) = %q, the contract says %q", c.kind, c.op, got, c.want)
		}
	}
}

// TestMatchNamesEverything: a want matches only the finding it names, field
// by field, and a finding without the payload its kind carries matches none.
func TestMatchNamesEverything(t *testing.T) {
	proc := &event.Process{PID: 1}
	file := Want{Kind: event.KindFile, Action: ActUnlink, Path: "/etc/f"}
	ptrace := Want{Kind: event.KindExec, Action: ActPtrace, TargetPID: "42"}
	bind := Want{Kind: event.KindNet, Action: ActBind, Port: 80}
	for _, c := range []struct {
		name string
		w    Want
		ev   event.Event
		want bool
	}{
		{"file: the path named", file, event.Event{Kind: event.KindFile, Action: ActUnlink, Process: proc, File: &event.File{Path: "/etc/f"}}, true},
		{"file: another path", file, event.Event{Kind: event.KindFile, Action: ActUnlink, Process: proc, File: &event.File{Path: "/etc/g"}}, false},
		{"file: a new path the want does not name", file, event.Event{Kind: event.KindFile, Action: ActUnlink, Process: proc, File: &event.File{Path: "/etc/f", NewPath: "/x"}}, false},
		{"file: no payload", file, event.Event{Kind: event.KindFile, Action: ActUnlink, Process: proc}, false},
		{"file: denied when not wanted", file, event.Event{Kind: event.KindFile, Action: ActUnlink, Denied: true, Process: proc, File: &event.File{Path: "/etc/f"}}, false},
		{"ptrace: the target named", ptrace, event.Event{Kind: event.KindExec, Action: ActPtrace, Process: proc, Exec: &event.Exec{Arg: 0x4206<<32 | 42}}, true},
		{"ptrace: another target", ptrace, event.Event{Kind: event.KindExec, Action: ActPtrace, Process: proc, Exec: &event.Exec{Arg: 0x4206<<32 | 43}}, false},
		{"ptrace: no payload", ptrace, event.Event{Kind: event.KindExec, Action: ActPtrace, Process: proc}, false},
		{"ptrace: a path the want does not name", ptrace, event.Event{Kind: event.KindExec, Action: ActPtrace, Process: proc, Exec: &event.Exec{Path: "/x", Arg: 42}}, false},
		{"bind: the port named", bind, event.Event{Kind: event.KindNet, Action: ActBind, Process: proc, Net: &event.Net{Port: 80}}, true},
		{"bind: another port", bind, event.Event{Kind: event.KindNet, Action: ActBind, Process: proc, Net: &event.Net{Port: 81}}, false},
		{"bind: no payload", bind, event.Event{Kind: event.KindNet, Action: ActBind, Process: proc}, false},
	} {
		if got := c.w.Match(&c.ev); got != c.want {
			t.Errorf("%s: Match = %v, want %v", c.name, got, c.want)
		}
	}
	for _, w := range []Want{
		{Action: ActUnlink, Path: "/etc/f"},
		{Kind: event.KindFile, Action: ActUnlink},
		{Kind: event.KindNet, Action: ActBind},
		{Kind: event.KindNet, Action: ActBind, Port: 1, AnyPort: true},
		{Kind: event.KindExec, Action: ActPtrace},
	} {
		if w.Valid() == nil {
			t.Errorf("%+v is valid; it names too little", w)
		}
	}
}
