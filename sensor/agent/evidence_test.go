package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// The sensor reads only files its findings named, never follows a final
// symlink, never blocks on a FIFO, and keeps the first 4 KiB and the hash.
func TestEvidenceOfReportedFilesOnly(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	data := []byte(strings.Repeat("0123456789abcdef", 320)) // 5120 bytes
	if err := os.WriteFile(big, data, 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink("/etc/passwd", link)
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(dir, "gone")
	d := &Daemon{reported: newReportedPaths(8)}

	if _, err := d.Evidence(big); err == nil || err.Error() != "evidence "+big+": no recent finding of this sensor names it (it reads only files its findings named)" {
		t.Fatalf("evidence of an unreported file: %v", err)
	}
	d.reported.add(&event.Event{File: &event.File{Path: big, NewPath: link}})
	d.reported.add(&event.Event{Exec: &event.Exec{Path: fifo}})
	d.reported.add(&event.Event{File: &event.File{Path: gone}})

	fe, err := d.Evidence(big)
	sum := sha256.Sum256(data)
	if err != nil || fe.Path != big || fe.Size != 5120 || fe.Mode != "-rw-r-----" || !fe.Hashed ||
		fe.SHA256 != hex.EncodeToString(sum[:]) || string(fe.Head) != string(data[:event.FileHead]) || fe.Error != "" || fe.Read.IsZero() {
		t.Fatalf("evidence of %s: %+v, %v", big, fe, err)
	}
	for path, want := range map[string]string{
		link: `a symlink to "/etc/passwd": not followed`,
		fifo: "not a regular file: not read",
		gone: "lstat " + gone + ": no such file or directory",
	} {
		fe, err := d.Evidence(path)
		if err != nil || fe.Error != want || fe.Head != nil || fe.Hashed {
			t.Errorf("evidence of %s: %+v, %v; want error %q", path, fe, err, want)
		}
	}
}

// The paths remembered are the last ones reported: an old path is refused.
func TestReportedPathsForget(t *testing.T) {
	r := newReportedPaths(2)
	r.add(&event.Event{File: &event.File{Path: "/a"}})
	r.add(&event.Event{File: &event.File{Path: "/b"}})
	r.add(&event.Event{File: &event.File{Path: "/b"}})
	if r.has("/a") || !r.has("/b") {
		t.Fatalf("after /a /b /b in a ring of 2: has /a %v, /b %v; want only /b", r.has("/a"), r.has("/b"))
	}
	r.add(&event.Event{Exec: &event.Exec{Path: "/c"}})
	if !r.has("/b") || !r.has("/c") {
		t.Fatalf("after /c: has /b %v, /c %v; want both", r.has("/b"), r.has("/c"))
	}
}

// Over the ctl subject, from a real sensor: the file a finding named, read
// on the host; a file no finding named is refused.
func TestEvidenceOverCtl(t *testing.T) {
	p := start(t, "ev1", true)
	sub, err := p.nc.SubscribeSync(event.Subject("ev1", event.KindFile))
	if err != nil {
		t.Fatal(err)
	}
	p.nc.Flush()
	pid := p.mutate(t, "passwd")
	p.checkWrite(t, next(t, sub), "passwd", pid)
	path := filepath.Join(p.img, "etc", "passwd")
	rep := ctlRequest(t, p, event.CmdEvidence, "e1", path)
	sum := sha256.Sum256([]byte("x\n"))
	if !rep.OK || rep.File == nil || rep.File.Path != path || rep.File.Size != 2 || string(rep.File.Head) != "x\n" ||
		rep.File.SHA256 != hex.EncodeToString(sum[:]) || !rep.File.Hashed {
		t.Fatalf("evidence reply %+v (file %+v)", rep, rep.File)
	}
	other := filepath.Join(p.img, "etc")
	rep = ctlRequest(t, p, event.CmdEvidence, "e2", other)
	if rep.OK || rep.File != nil || rep.Error != "evidence "+other+": no recent finding of this sensor names it (it reads only files its findings named)" {
		t.Fatalf("evidence of an unreported path: %+v", rep)
	}
}

func ctlRequest(t *testing.T, p *pipeline, cmd, id, arg string) event.CtlReply {
	t.Helper()
	c, err := event.NewCtlCommandArg(cmd, id, arg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.nc.Request(event.CtlSubject(p.host), c.Encode(), testenv.WaitBound)
	if err != nil {
		t.Fatalf("ctl %s: %v", cmd, err)
	}
	rep, err := event.DecodeCtlReply(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// A sensor without a drill directory, or asked for an unknown technique,
// refuses the drill and runs nothing.
func TestDrillRefusals(t *testing.T) {
	d := &Daemon{}
	if _, err := d.Drill("d1", "file"); err == nil || err.Error() != "drill: this sensor has no drill directory (start driftsensor with --drill-dir)" {
		t.Fatalf("no drill directory: %v", err)
	}
	d.cfg.DrillDir = t.TempDir()
	if _, err := d.Drill("d1", "file,format-disk"); err == nil || err.Error() != `drill: unknown technique "format-disk" (want exec, file)` {
		t.Fatalf("unknown technique: %v", err)
	}
	if entries, _ := os.ReadDir(d.cfg.DrillDir); len(entries) != 0 {
		t.Fatalf("a refused drill left %v", entries)
	}
}
