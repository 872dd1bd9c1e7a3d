package peers

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// Lines as Debian's auditd 3.0.9 writes them (ENRICHED: translated fields after a GS byte).
func TestParseAudit(t *testing.T) {
	gs := "\x1d"
	for _, c := range []struct {
		name, line string
		want       Obs
		ok         bool
	}{
		{"created file", `type=PATH msg=audit(1796212778.978:9): item=1 name="/opt/atest/f" inode=745476 dev=fe:00 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=CREATE cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0` + gs + `OUID="root" OGID="root"`,
			Obs{Path: "/opt/atest/f"}, true},
		{"its parent directory", `type=PATH msg=audit(1796212778.978:9): item=0 name="/opt/atest/" inode=745475 dev=fe:00 mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=PARENT cap_fp=0`, Obs{}, false},
		{"name with a space, hex", `type=PATH msg=audit(1796212778.978:10): item=0 name=2F6F70742F612062 inode=1 nametype=NORMAL`, Obs{Path: "/opt/a b"}, true},
		{"syscall", `type=SYSCALL msg=audit(1796212778.978:9): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c items=2 ppid=10 pid=4242 auid=4294967295 uid=0 comm="touch" exe="/usr/bin/touch" key="drift-file"` + gs + `ARCH=x86_64 SYSCALL=openat`,
			Obs{PID: 4242}, true},
		{"exec", `type=SYSCALL msg=audit(1796212778.978:11): arch=c000003e syscall=59 success=yes exit=0 items=2 ppid=10 pid=77 comm="tool" exe="/tmp/tool" key="drift-exec"`, Obs{PID: 77, Exec: true}, true},
		{"io_uring", `type=URINGOP msg=audit(1796212778.978:12): uring_op=18 success=yes exit=5 items=1 ppid=10 pid=78 auid=4294967295 uid=0`, Obs{PID: 78}, true},
		{"neither", `type=PROCTITLE msg=audit(1796212778.978:9): proctitle=746F756368`, Obs{}, false},
	} {
		got, ok, err := ParseAudit(c.line)
		if err != nil || ok != c.ok || got != c.want {
			t.Errorf("%s: ParseAudit = %+v, %v, %v; want %+v, %v", c.name, got, ok, err, c.want, c.ok)
		}
	}
	for _, bad := range []string{"garbage", `type=PATH no header here`, `type=PATH msg=audit(1.0:1): name=zz nametype=NORMAL`, `type=SYSCALL msg=audit(1.0:1): pid=x`} {
		if _, _, err := ParseAudit(bad); err == nil || !strings.Contains(err.Error(), "audit log line") {
			t.Errorf("ParseAudit(%q): error %v, want one naming the line", bad, err)
		}
	}
}

func TestParseInotify(t *testing.T) {
	if o, err := ParseInotify("ATTRIB /opt/driftpeers1/storm/s1"); err != nil || o != (Obs{Path: "/opt/driftpeers1/storm/s1"}) {
		t.Errorf("ParseInotify = %+v, %v", o, err)
	}
	if o, err := ParseInotify("Q_OVERFLOW "); err != nil || o.Lost != 1 {
		t.Errorf("an overflow: %+v, %v; want one loss", o, err)
	}
	if _, err := ParseInotify("CREATE"); err == nil {
		t.Error("a line without a path parsed")
	}
}

func TestParseFinding(t *testing.T) {
	for _, c := range []struct {
		ev   event.Event
		want Obs
	}{
		{event.Event{Kind: event.KindFile, File: &event.File{Path: "/opt/x"}, Process: &event.Process{PID: 9}}, Obs{Path: "/opt/x", PID: 9}},
		{event.Event{Kind: event.KindExec, Exec: &event.Exec{Path: "/tmp/tool"}, Process: &event.Process{PID: 8}}, Obs{Path: "/tmp/tool", PID: 8, Exec: true}},
		{event.Event{Kind: event.KindSensor, Health: &event.Health{LostRecords: 12}}, Obs{Lost: 12}},
	} {
		line, _ := json.Marshal(c.ev)
		if got, err := ParseFinding(line); err != nil || got != c.want {
			t.Errorf("ParseFinding(%s) = %+v, %v; want %+v", line, got, err, c.want)
		}
	}
	if _, err := ParseFinding([]byte("{")); err == nil {
		t.Error("a broken line parsed")
	}
}

// The targets are judged on per-round ratios against the same round's
// baseline, medians over rounds.
func TestTargetsFromSamples(t *testing.T) {
	r := NewResults()
	r.Monitors = []string{nameNone, nameFloor, nameSensor}
	for round, times := range [][3]time.Duration{{100, 110, 112}, {200, 230, 210}, {100, 150, 101}} {
		r.Add(nameNone, WSyscalls, Sample{Round: round, Time: times[0]})
		r.Add(nameFloor, WSyscalls, Sample{Round: round, Time: times[1]})
		r.Add(nameSensor, WSyscalls, Sample{Round: round, Time: times[2]})
		r.Add(nameNone, WChurn, Sample{Round: round, Time: 100})
		r.Add(nameSensor, WChurn, Sample{Round: round, Time: time.Duration(103 + round)})
	}
	if v, _ := r.Overhead(nameSensor, WSyscalls); round1(v) != 5 {
		t.Errorf("syscall loop overhead %v %%, want the median of 12, 5, 1", v)
	}
	md := r.Markdown()
	for _, want := range []string{
		"| file churn <= 4 % (driftsensor (NATS)) | +4.0 % | met |",
		"| syscall loop within 3 points of the empty hook (driftsensor (NATS)) | -10.0 points (sensor +5.0 %, floor +15.0 %) | met |",
		"| storm: writer slowed <= ×1.3 | - | not measured |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// inotifywait as the benchmark runs it, on a directory of the test's own: a
// created file is reported with its path, and stopping reaps it.
func TestInotifyMonitorReports(t *testing.T) {
	if _, err := exec.LookPath("inotifywait"); err != nil {
		t.Fatal("inotifywait is not installed: run scripts/setup.sh")
	}
	dir := t.TempDir()
	m := &Inotify{Dirs: []string{dir}}
	col := &Collector{}
	if err := m.Start(col); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "new")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "inotifywait's report of "+f, func() bool { return col.Seen(f) })
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := col.Take(); !got.HasPath(f) || got.Lost() != 0 {
		t.Fatalf("reports %+v, want %s and no loss", got, f)
	}
}

// TestReadLinesNeverWaitsOnParsing: a monitor's output is read while the
// parser is stuck (a pipe that waited on parsing would block the writer),
// and every line is parsed, in order, before readLines returns.
func TestReadLinesNeverWaitsOnParsing(t *testing.T) {
	r, w := io.Pipe()
	release := make(chan struct{})
	var got []string
	var last int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		readLines(r, func(line []byte, at int64) {
			if len(got) == 0 {
				<-release
			}
			if at < last {
				t.Errorf("line %q stamped %d, before the line ahead of it (%d)", line, at, last)
			}
			last = at
			got = append(got, string(line))
		})
	}()
	const n = 1000
	wrote := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := fmt.Fprintf(w, "line %d\n", i); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- w.Close()
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testenv.WaitBound):
		t.Fatal("the writer is blocked: reading waits on the stuck parser")
	}
	close(release)
	select {
	case <-done:
	case <-time.After(testenv.WaitBound):
		t.Fatal("readLines did not return after its input ended")
	}
	if len(got) != n {
		t.Fatalf("parsed %d lines, want %d", len(got), n)
	}
	for i, l := range got {
		if l != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d parsed as %q", i, l)
		}
	}
}
