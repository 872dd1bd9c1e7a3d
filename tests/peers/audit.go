package peers

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// AuditRules are auditd rules equivalent to driftsensor's built-in policy:
// Debian's default rules file first (buffer, backlog wait, failure mode),
// then exec from outside the image paths, every bind and listen, and writes
// and attribute changes anywhere but the writable exceptions. auditd cannot
// tell an allowed port from another, nor a tainted file from the image's.
func AuditRules() string {
	var b strings.Builder
	b.WriteString("-D\n-b 8192\n--backlog_wait_time 60000\n-f 1\n")
	for _, d := range []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/opt"} {
		// On a merged-/usr system /bin and the others are symlinks into
		// /usr, which dir= does not take.
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() {
			fmt.Fprintf(&b, "-a never,exit -F arch=b64 -S execve,execveat -F dir=%s\n", d)
		}
	}
	b.WriteString("-a always,exit -F arch=b64 -S execve,execveat -k " + AuditExecKey + "\n")
	b.WriteString("-a always,exit -F arch=b64 -S bind,listen -k drift-net\n")
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/tmp", "/var/tmp", "/var/log"} {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() {
			fmt.Fprintf(&b, "-a never,exit -F arch=b64 -F dir=%s\n", d)
		}
	}
	b.WriteString("-a always,exit -F arch=b64 -F dir=/ -F perm=wa -k drift-file\n")
	return b.String()
}

// AuditRestore leaves the kernel's audit as a machine without auditd has it:
// no rules, auditing off, and a task rule that keeps new processes off the
// audit path (once auditing was on, every new process would otherwise carry
// an audit context).
func AuditRestore() error {
	var errs []error
	for _, args := range [][]string{{"-D"}, {"-e", "0"}, {"-a", "never,task"}} {
		if out, err := exec.Command("auditctl", args...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("auditctl %s: %v: %s", strings.Join(args, " "), err, out))
		}
	}
	return errors.Join(errs...)
}

// Auditd runs Debian's auditd with its packaged configuration, but with a log
// of its own (in a writable exception, so writing it is not audited) that
// never rotates, and AuditRules.
type Auditd struct {
	dir     string
	log     string
	c       *child
	kauditd int
	stopped atomic.Bool
	done    chan struct{}
	readErr error
}

// Name is the daemon's.
func (a *Auditd) Name() string { return "auditd" }

// Reports is true.
func (a *Auditd) Reports() bool { return true }

// CPU of auditd and of the kernel thread that hands it the records.
func (a *Auditd) CPU() (time.Duration, error) {
	d, err := procCPU(a.c.cmd.Process.Pid)
	if err != nil {
		return 0, err
	}
	k, err := procCPU(a.kauditd)
	return d + k, err
}

var lostRe = regexp.MustCompile(`(?m)^lost (\d+)$`)

// Lost is the kernel's count of audit records it dropped.
func (a *Auditd) Lost() (uint64, error) {
	out, err := exec.Command("auditctl", "-s").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("auditctl -s: %v: %s", err, out)
	}
	m := lostRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("auditctl -s printed no lost count: %s", out)
	}
	return strconv.ParseUint(string(m[1]), 10, 64)
}

// Start writes the configuration, starts auditd in the foreground, loads
// the rules and follows the log.
func (a *Auditd) Start(col *Collector) error {
	conf, err := os.ReadFile("/etc/audit/auditd.conf")
	if err != nil {
		return fmt.Errorf("auditd's configuration: %v (install auditd: scripts/setup.sh)", err)
	}
	if a.kauditd, err = findKernelThread("kauditd"); err != nil {
		return err
	}
	if a.dir, err = os.MkdirTemp("", "driftpeers-audit"); err != nil {
		return err
	}
	a.log = filepath.Join(a.dir, "audit.log")
	var out []string
	for _, l := range strings.Split(string(conf), "\n") {
		switch k, _, _ := strings.Cut(l, "="); strings.TrimSpace(k) {
		case "log_file":
			l = "log_file = " + a.log
		case "max_log_file_action":
			l = "max_log_file_action = IGNORE"
		}
		out = append(out, l)
	}
	if err := os.WriteFile(filepath.Join(a.dir, "auditd.conf"), []byte(strings.Join(out, "\n")), 0o600); err != nil {
		return err
	}
	rules := filepath.Join(a.dir, "drift.rules")
	if err := os.WriteFile(rules, []byte(AuditRules()), 0o600); err != nil {
		return err
	}
	c, err := startChild(func(out io.Reader) { io.Copy(io.Discard, out) }, "auditd", "-n", "-c", a.dir)
	if err != nil {
		return err
	}
	a.c = c
	pidLine := regexp.MustCompile(`(?m)^pid ` + strconv.Itoa(c.cmd.Process.Pid) + `$`)
	if err := c.waitReady("auditctl -s naming its pid", func() bool {
		out, _ := exec.Command("auditctl", "-s").Output()
		_, err := os.Stat(a.log)
		return pidLine.Match(out) && err == nil
	}); err != nil {
		return err
	}
	if out, err := exec.Command("auditctl", "-R", rules).CombinedOutput(); err != nil {
		return fmt.Errorf("auditctl -R %s: %v: %s", rules, err, out)
	}
	if out, err := exec.Command("auditctl", "-e", "1").CombinedOutput(); err != nil {
		return fmt.Errorf("auditctl -e 1: %v: %s", err, out)
	}
	a.done = make(chan struct{})
	a.stopped.Store(false) // the monitor runs again each round
	a.readErr = nil
	go a.tail(col)
	return nil
}

// tail reads the log as auditd writes it, woken by inotify, until auditd has
// stopped and the log is read to its end.
func (a *Auditd) tail(col *Collector) {
	defer close(a.done)
	f, err := os.Open(a.log)
	if err != nil {
		a.readErr = err
		return
	}
	defer f.Close()
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		a.readErr = err
		return
	}
	defer unix.Close(ifd)
	if _, err := unix.InotifyAddWatch(ifd, a.log, unix.IN_MODIFY); err != nil {
		a.readErr = err
		return
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var partial string
	buf := make([]byte, 4096)
	for {
		line, err := r.ReadString('\n')
		if err == nil {
			at := Now()
			if o, ok, perr := ParseAudit(partial + line[:len(line)-1]); perr == nil && ok {
				o.At = at
				col.Add(o)
			}
			partial = ""
			continue
		}
		partial += line
		if err != io.EOF {
			a.readErr = err
			return
		}
		if a.stopped.Load() {
			return // auditd exited before this read: the log is complete
		}
		unix.Poll([]unix.PollFd{{Fd: int32(ifd), Events: unix.POLLIN}}, 50)
		for {
			if n, _ := unix.Read(ifd, buf); n <= 0 {
				break
			}
		}
	}
}

// Stop removes the rules, stops auditd, reads the rest of its log and leaves
// the kernel as AuditRestore does.
func (a *Auditd) Stop() error {
	var errs []error
	if out, err := exec.Command("auditctl", "-D").CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("auditctl -D: %v: %s", err, out))
	}
	if a.c != nil {
		errs = append(errs, a.c.stop())
	}
	a.stopped.Store(true)
	if a.done != nil {
		<-a.done
	}
	errs = append(errs, a.readErr, AuditRestore())
	os.RemoveAll(a.dir)
	return errors.Join(errs...)
}

// findKernelThread returns the pid of the kernel thread named comm.
func findKernelThread(comm string) (int, error) {
	ds, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range ds {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm")); err == nil && strings.TrimSpace(string(b)) == comm {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no kernel thread %s: is audit built into this kernel (CONFIG_AUDIT)?", comm)
}

// Diagnose says what auditd's log and the kernel hold when a report of path
// did not arrive.
func (a *Auditd) Diagnose(path string) string {
	log, _ := os.ReadFile(a.log)
	rules, _ := exec.Command("auditctl", "-l").CombinedOutput()
	status, _ := exec.Command("auditctl", "-s").CombinedOutput()
	var naming []string
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, path) {
			naming = append(naming, l)
		}
	}
	return fmt.Sprintf("%s has %d bytes, %d lines naming %s: %s; auditctl -l: %s; auditctl -s: %s",
		a.log, len(log), len(naming), path, strings.Join(naming, "\n"), rules, status)
}
