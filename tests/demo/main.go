// Command demo is make demo: two test hosts, web and peer, on a test bed of
// its own (tests/testbed: each a network namespace and a cgroup, on a bridge
// of the bed's), each watched by its own driftsensor, with NATS and
// driftresponder on loopback. Drift inside web is detected in the kernel,
// published over NATS, and the responder cordons web: peer's probe stops
// passing. The machine's own interfaces, routes and firewall are never
// touched, nor its files but a short-lived tool in /tmp: the sealed image is
// a directory of the demo's. Everything the demo made is removed at the end,
// also on failure, and what a killed demo left is removed at the next start.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/tests/testbed"
)

const (
	bedName  = "demo"
	echoPort = 7070
)

func main() {
	bin := flag.String("bin", "bin", "directory holding driftsensor and driftresponder (make build)")
	flag.Parse()
	if err := run(*bin); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(bin string) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("run as root (it loads eBPF programs and makes network namespaces)")
	}
	sensor, responder := filepath.Join(bin, "driftsensor"), filepath.Join(bin, "driftresponder")
	for _, b := range []string{sensor, responder} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s missing: run make build", b)
		}
	}
	if err := testbed.Down(testbed.CLIPrefix + bedName); err != nil { // a demo killed earlier
		return err
	}
	defer sysfs.UnmountNew(sysfs.MountPoints())
	work, err := os.MkdirTemp("", "driftsensor-demo.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	img := filepath.Join(work, "img")
	for _, d := range []string{"etc", "var/log", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(img, d), 0o755); err != nil {
			return err
		}
	}
	passwd := filepath.Join(img, "etc", "passwd")
	if err := os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		return err
	}
	policy := filepath.Join(work, "policy.yaml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf(`version: 1
protect: [%s]
exceptions: [%s/var/log]
exec:
  image_paths: [/usr, /bin, /sbin, /lib, /lib64, %s/usr]
net:
  allowed_ports: [%d]
  deny_binds: true
`, img, img, img, echoPort)), 0o644); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	say("== test bed: hosts web and peer, each a netns + cgroup with its own sealed driftsensor (scope: its cgroup;")
	say("   cordon gate on its interfaces; its own NATS credential); NATS on loopback")
	p, err := testbed.Up(bedName, []string{"web", "peer"}, testbed.PipelineConfig{Sensor: sensor, Policy: policy, Seal: true})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	web, peer := p.Host("web"), p.Host("peer")
	say("   bridge %s; web %s (netns %s), peer %s (netns %s); NATS %s", p.Bridge, web.Addr, web.Netns, peer.Addr, peer.Netns, p.URL)
	if err := web.Echo(echoPort); err != nil {
		return err
	}
	probe := func(ctx context.Context) error { return testbed.Probe(ctx, peer, web.AddrPort(echoPort)) }
	if err := within(ctx, 10*time.Second, probe); err != nil {
		return fmt.Errorf("peer cannot reach web's echo server: %w", err)
	}
	say("   peer -> web:%d answers", echoPort)

	say("== driftresponder: file drift -> cordon, verified by a probe from peer")
	if err := p.StartResponder(responder, "--rule", "kind=file,action=cordon",
		"--probe", web.AddrPort(echoPort).String(), "--probe-netns", peer.NetnsPath); err != nil {
		return err
	}

	say("== inside web: benign work (no findings)")
	if out, err := web.Run("sh", "-c", "echo ok >> "+img+"/var/log/app.log; cat "+passwd+" > /dev/null; /bin/true"); err != nil {
		return fmt.Errorf("benign work in web: %v: %s", err, out)
	}

	say("== inside web: drift")
	say("   open a backdoor port (refused in the kernel; alert)")
	out, _ := web.Run("timeout", "2", "busybox", "nc", "-l", "-p", "4444")
	say("     %s", strings.TrimSpace(string(out)))
	say("   drop and run a tool from /tmp (exec drift; alert)")
	if out, err := web.Run("sh", "-c", "cp /bin/true /tmp/.implant-$$ && /tmp/.implant-$$; rc=$?; rm -f /tmp/.implant-$$; exit $rc"); err != nil {
		return fmt.Errorf("tool in /tmp: %v: %s", err, out)
	}
	say("   edit %s (file drift; cordon)", passwd)
	if out, err := web.Run("sh", "-c", "echo 'evil:x:0:0::/:/bin/sh' >> "+passwd); err != nil {
		return fmt.Errorf("edit passwd: %v: %s", err, out)
	}

	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, cutErr := testbed.WaitBlocked(wctx, probe, 50*time.Millisecond)
	cancel()
	// The passwd edit is the last drift: once its finding is out, every
	// earlier one is (findings are in order), so the list below is complete.
	findings, ferr := waitFindings(ctx, p.Sensors["web"].Findings, passwd)

	say("== findings published by web's driftsensor (JSON lines; also on %s)", p.Sensors["web"].Subject("<kind>"))
	for _, f := range findings {
		say("   %s", f.line)
	}
	say("== responder audit trail (stage, action)")
	for _, l := range auditTrail(p.ResponderLog) {
		say("   %s", l)
	}
	if ferr != nil {
		return ferr
	}
	for _, f := range findings {
		if !f.drift {
			return fmt.Errorf("a finding that is not one of the three drifts (benign work must produce none): %s", f.line)
		}
	}
	if cutErr != nil {
		log, _ := os.ReadFile(p.ResponderLog)
		return fmt.Errorf("web still answers after drift (%v); responder log:\n%s", cutErr, log)
	}
	say("== web is cordoned: peer -> web:%d no longer answers. The machine's own network was never touched.", echoPort)
	return nil
}

func say(format string, a ...any) { fmt.Printf(format+"\n", a...) }

// within retries probe until it passes or bound ends.
func within(ctx context.Context, bound time.Duration, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		err := probe(pctx)
		pcancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finding is one line of the demo's findings list.
type finding struct {
	line  string
	drift bool // one of the demo's three drifts
	last  bool // the passwd edit
}

// waitFindings reads the sensor's findings until the edit of passwd is
// among them, within a bound, leaving out the record of the sealed state
// the sensor started with (not drift).
func waitFindings(ctx context.Context, file, passwd string) ([]finding, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		var out []finding
		done := false
		if f, err := os.Open(file); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var e event.Event
				if json.Unmarshal(sc.Bytes(), &e) != nil || e.Action == "state_applied" {
					continue
				}
				fd := describe(e, passwd)
				done = done || fd.last
				out = append(out, fd)
			}
			f.Close()
		}
		if done {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("no finding for the edit of %s in %s", passwd, file)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// describe is one finding in a line: sequence, kind, action, what, who.
func describe(e event.Event, passwd string) finding {
	what := ""
	switch {
	case e.File != nil:
		what = e.File.Path
	case e.Exec != nil:
		what = e.Exec.Path
		if len(e.Exec.Reasons) > 0 {
			what += " (" + strings.Join(e.Exec.Reasons, ",") + ")"
		}
	case e.Net != nil:
		what = fmt.Sprintf("port %d", e.Net.Port)
	}
	if e.Denied {
		what += " denied"
	}
	who := ""
	if e.Process != nil {
		who = fmt.Sprintf("pid %d %s", e.Process.PID, e.Process.Comm)
	}
	f := finding{line: fmt.Sprintf("seq %-3d %-4s %-16s %s  %s", e.Seq, e.Kind, e.Action, what, who)}
	f.last = e.Kind == event.KindFile && e.File != nil && e.File.Path == passwd
	f.drift = f.last || (e.Kind == event.KindNet && e.Net != nil && e.Net.Port == 4444) ||
		(e.Kind == event.KindExec && e.Exec != nil && strings.HasPrefix(e.Exec.Path, "/tmp/.implant-"))
	return f
}

// auditTrail is the responder's audit records from its log: stage and
// action, repeats folded.
func auditTrail(log string) []string {
	f, err := os.Open(log)
	if err != nil {
		return []string{err.Error()}
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct{ Message, Stage, Action, Host string }
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.Message != "audit" {
			continue
		}
		l := r.Stage + " " + r.Action + " " + r.Host
		if len(out) == 0 || out[len(out)-1] != l {
			out = append(out, l)
		}
	}
	return out
}
