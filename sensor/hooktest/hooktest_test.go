package hooktest

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/driftsensor/driftsensor/sensor/testenv"
)

var unnamed = regexp.MustCompile(`^op\d+$`) // what sensor.ActionName gives an unknown op

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m))
}

// TestTable checks the table itself, unprivileged: unique names, a reason for
// every departure, action names the sensor gives, and logs which backend and
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
			if w.Action == "" || unnamed.MatchString(w.Action) {
				t.Errorf("%s: action %q is no name sensor.ActionName gives", id, w.Action)
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

// TestTrueELF: the exec payload is a valid x86-64 executable that exits 0.
func TestTrueELF(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(TrueELF()))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC || len(f.Progs) != 1 {
		t.Fatalf("machine %v type %v %d program headers", f.Machine, f.Type, len(f.Progs))
	}
	p := filepath.Join(t.TempDir(), "true")
	if err := os.WriteFile(p, TrueELF(), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(p).CombinedOutput(); err != nil {
		t.Fatalf("run it: %v %s", err, out)
	}
}

func TestExpand(t *testing.T) {
	e := Env{Etc: "/i/etc/x", Tag: "x", SensorPID: 7, Vars: map[string]string{"v": "w"}}
	if got := e.Expand("$etc/../$tag/./d $sensor $v"); got != "/i/etc/x/../x/./d 7 w" {
		t.Fatalf("got %q", got)
	}
}
