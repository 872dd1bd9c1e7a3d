package proc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/testenv"
)

// helperEnv makes the test binary act as a helper process instead of running tests.
const helperEnv = "DRIFTSENSOR_PROC_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "sleep":
		time.Sleep(30 * time.Second)
		os.Exit(0)
	case "spawn":
		// Start a grandchild for the test, report its pid, then wait to be killed.
		c := exec.Command("sleep", "30")
		if err := c.Start(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(c.Process.Pid)
		time.Sleep(30 * time.Second)
		os.Exit(0)
	}
	os.Exit(2)
}

// start runs cmd and kills and reaps it when the test ends.
func start(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	waitExec(t, cmd.Process.Pid)
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// waitExec waits until pid has finished its execve: Start returns once the
// new image is in place, but its argv shows a moment later.
func waitExec(t testing.TB, pid int) {
	t.Helper()
	testenv.Eventually(t, fmt.Sprintf("pid %d to show its argv", pid), func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return err != nil || len(b) > 0
	})
}

// helper starts the test binary in helper mode with the given argv tail.
func helper(t *testing.T, mode string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	return cmd
}

// kernelView is what the kernel record would carry for pid.
func kernelView(t *testing.T, pid int) *event.Process {
	t.Helper()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		t.Fatalf("read comm of %d: %v", pid, err)
	}
	return &event.Process{PID: uint32(pid), TID: uint32(pid), UID: 4242, GID: 4343,
		Comm: strings.TrimSuffix(string(comm), "\n"), CgroupID: 77}
}

func selfExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func sleepExe(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("no sleep binary: %v (coreutils is part of every supported system)", err)
	}
	p, err = filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFillSelf(t *testing.T) {
	tab := New("/proc", 64)
	p := kernelView(t, os.Getpid())
	comm := p.Comm
	tab.Fill(p)

	if p.PID != uint32(os.Getpid()) || p.TID != p.PID || p.UID != 4242 || p.GID != 4343 || p.Comm != comm || p.CgroupID != 77 {
		t.Errorf("kernel fields changed: %+v", p)
	}
	if want := selfExe(t); p.Exe != want {
		t.Errorf("Exe = %q, want %q", p.Exe, want)
	}
	if p.PPID != uint32(os.Getppid()) {
		t.Errorf("PPID = %d, want %d", p.PPID, os.Getppid())
	}
	if len(os.Args) <= MaxArgs && len(strings.Join(os.Args, "")) <= MaxArgvBytes && !reflect.DeepEqual(p.Argv, os.Args) {
		t.Errorf("Argv = %q, want %q", p.Argv, os.Args)
	}
	cg, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(cg), "\n") {
		if v2, ok := strings.CutPrefix(line, "0::"); ok && p.Cgroup != v2 {
			t.Errorf("Cgroup = %q, want %q", p.Cgroup, v2)
		}
	}
	if len(p.Ancestry) == 0 || p.Ancestry[0].PID != uint32(os.Getppid()) {
		t.Fatalf("Ancestry = %+v, want parent %d first", p.Ancestry, os.Getppid())
	}
	if len(p.Ancestry) > MaxAncestors {
		t.Errorf("%d ancestors, want at most %d", len(p.Ancestry), MaxAncestors)
	}

	// The second Fill is served from the cache and says the same.
	q := kernelView(t, os.Getpid())
	tab.Fill(q)
	if !reflect.DeepEqual(p, q) {
		t.Errorf("cached Fill differs:\n%+v\n%+v", p, q)
	}
}

func TestFillChild(t *testing.T) {
	cmd := start(t, exec.Command("sleep", "5"))
	tab := New("/proc", 64)
	p := kernelView(t, cmd.Process.Pid)
	tab.Fill(p)

	if want := sleepExe(t); p.Exe != want {
		t.Errorf("Exe = %q, want %q", p.Exe, want)
	}
	if want := []string{"sleep", "5"}; !reflect.DeepEqual(p.Argv, want) {
		t.Errorf("Argv = %q, want %q", p.Argv, want)
	}
	if p.PPID != uint32(os.Getpid()) {
		t.Errorf("PPID = %d, want %d", p.PPID, os.Getpid())
	}
	if len(p.Ancestry) < 2 {
		t.Fatalf("Ancestry = %+v, want at least us and our parent", p.Ancestry)
	}
	if a := p.Ancestry[0]; a.PID != uint32(os.Getpid()) || a.Exe != selfExe(t) || a.Comm == "" {
		t.Errorf("Ancestry[0] = %+v, want pid %d exe %q", a, os.Getpid(), selfExe(t))
	}
	if a := p.Ancestry[1]; a.PID != uint32(os.Getppid()) {
		t.Errorf("Ancestry[1] = %+v, want pid %d", a, os.Getppid())
	}
}

func TestFillExited(t *testing.T) {
	exited := func(t *testing.T) *exec.Cmd {
		cmd := exec.Command("sleep", "5")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitExec(t, cmd.Process.Pid)
		return cmd
	}
	reap := func(cmd *exec.Cmd) {
		cmd.Process.Kill()
		cmd.Wait()
	}

	t.Run("cached", func(t *testing.T) {
		cmd := exited(t)
		tab := New("/proc", 64)
		tab.Fill(kernelView(t, cmd.Process.Pid))
		reap(cmd)

		p := &event.Process{PID: uint32(cmd.Process.Pid), TID: uint32(cmd.Process.Pid), UID: 7, Comm: "sleep"}
		tab.Fill(p)
		if p.PID != uint32(cmd.Process.Pid) || p.Comm != "sleep" || p.UID != 7 {
			t.Errorf("kernel fields changed: %+v", p)
		}
		if p.Exe != sleepExe(t) || !reflect.DeepEqual(p.Argv, []string{"sleep", "5"}) {
			t.Errorf("Exe, Argv = %q, %q: want the cached ones", p.Exe, p.Argv)
		}
		if len(p.Ancestry) == 0 || p.Ancestry[0].PID != uint32(os.Getpid()) {
			t.Errorf("Ancestry = %+v, want us first", p.Ancestry)
		}

		// A different comm means the pid is not the process the cache saw.
		q := &event.Process{PID: p.PID, TID: p.PID, Comm: "other"}
		tab.Fill(q)
		if q.Exe != "" || q.Argv != nil || q.Ancestry != nil {
			t.Errorf("comm mismatch served cached data: %+v", q)
		}
	})

	t.Run("never seen", func(t *testing.T) {
		cmd := exited(t)
		reap(cmd)
		tab := New("/proc", 64)
		p := &event.Process{PID: uint32(cmd.Process.Pid), TID: uint32(cmd.Process.Pid), Comm: "sleep", PPID: uint32(os.Getpid())}
		tab.Fill(p)
		if p.PID != uint32(cmd.Process.Pid) || p.Comm != "sleep" || p.Exe != "" || p.Argv != nil {
			t.Errorf("Fill = %+v, want only the kernel's fields", p)
		}
		// The kernel's PPID still leads to live ancestors.
		if len(p.Ancestry) == 0 || p.Ancestry[0].PID != uint32(os.Getpid()) || p.Ancestry[0].Exe != selfExe(t) {
			t.Errorf("Ancestry = %+v, want us first", p.Ancestry)
		}
	})
}

// TestCachedAncestorOutlivesIt: a process whose parent has exited keeps the
// parent it had in its ancestry, from the cache.
func TestCachedAncestorOutlivesIt(t *testing.T) {
	parent := helper(t, "spawn")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start(t, parent)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })

	tab := New("/proc", 64)
	p := kernelView(t, child)
	tab.Fill(p)
	if len(p.Ancestry) < 2 || p.Ancestry[0].PID != uint32(parent.Process.Pid) || p.Ancestry[1].PID != uint32(os.Getpid()) {
		t.Fatalf("Ancestry = %+v, want helper %d then us %d", p.Ancestry, parent.Process.Pid, os.Getpid())
	}

	parent.Process.Kill()
	parent.Wait()
	testenv.Eventually(t, "the grandchild reparented", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			t.Fatalf("grandchild gone: %v", err)
		}
		st, err := parseStat(b)
		if err != nil {
			t.Fatal(err)
		}
		return st.ppid != uint32(parent.Process.Pid)
	})

	tab.revalidate = 0 // make Fill look at /proc for every ancestor
	q := kernelView(t, child)
	tab.Fill(q)
	if q.PPID != uint32(parent.Process.Pid) {
		t.Errorf("PPID = %d, want the original parent %d", q.PPID, parent.Process.Pid)
	}
	if len(q.Ancestry) < 2 || q.Ancestry[0].PID != uint32(parent.Process.Pid) ||
		q.Ancestry[0].Exe != selfExe(t) || q.Ancestry[1].PID != uint32(os.Getpid()) {
		t.Errorf("Ancestry = %+v, want the exited helper (from the cache) then us", q.Ancestry)
	}

	// Without the cache only the new parent is known.
	r := kernelView(t, child)
	New("/proc", 64).Fill(r)
	if r.PPID == uint32(parent.Process.Pid) {
		t.Errorf("uncached PPID = %d, the exited parent", r.PPID)
	}
}

func TestArgvBoundsLive(t *testing.T) {
	args := make([]string, 40)
	for i := range args {
		args[i] = fmt.Sprintf("arg%02d", i)
	}
	cmd := start(t, helper(t, "sleep", args...))
	p := kernelView(t, cmd.Process.Pid)
	New("/proc", 8).Fill(p)
	if len(p.Argv) != MaxArgs+1 || p.Argv[MaxArgs] != TruncMark {
		t.Fatalf("Argv has %d elements ending %q, want %d ending %q", len(p.Argv), p.Argv[len(p.Argv)-1], MaxArgs+1, TruncMark)
	}
	if want := append([]string{cmd.Args[0]}, args[:MaxArgs-1]...); !reflect.DeepEqual(p.Argv[:MaxArgs], want) {
		t.Errorf("Argv = %q, want %q", p.Argv[:MaxArgs], want)
	}

	long := strings.Repeat("x", 2*MaxArgvBytes)
	cmd = start(t, helper(t, "sleep", long))
	p = kernelView(t, cmd.Process.Pid)
	New("/proc", 8).Fill(p)
	if len(p.Argv) != 3 || p.Argv[2] != TruncMark || len(p.Argv[0])+len(p.Argv[1]) != MaxArgvBytes {
		t.Errorf("Argv of a %d-byte argument: %d elements, lengths %d", len(long), len(p.Argv), len(strings.Join(p.Argv, "")))
	}
}

func TestParseArgv(t *testing.T) {
	nul := func(args ...string) []byte { return []byte(strings.Join(args, "\x00") + "\x00") }
	n := func(k int) []string {
		s := make([]string, k)
		for i := range s {
			s[i] = strconv.Itoa(i)
		}
		return s
	}
	tests := []struct {
		name string
		in   []byte
		more bool
		want []string
	}{
		{"empty", nil, false, nil},
		{"two", nul("ls", "-l"), false, []string{"ls", "-l"}},
		{"empty argument kept", nul("a", "", "b"), false, []string{"a", "", "b"}},
		{"one empty argument", []byte{0}, false, []string{""}},
		{"no terminator", []byte("a\x00b"), false, []string{"a", "b"}},
		{"exactly MaxArgs", nul(n(MaxArgs)...), false, n(MaxArgs)},
		{"MaxArgs+1", nul(n(MaxArgs + 1)...), false, append(n(MaxArgs), TruncMark)},
		{"exactly MaxArgvBytes", nul(strings.Repeat("a", MaxArgvBytes-1), "b"), false,
			[]string{strings.Repeat("a", MaxArgvBytes-1), "b"}},
		{"one byte over", nul(strings.Repeat("a", MaxArgvBytes-1), "bc"), false,
			[]string{strings.Repeat("a", MaxArgvBytes-1), "b", TruncMark}},
		{"over at a boundary", nul(strings.Repeat("a", MaxArgvBytes), "b"), false,
			[]string{strings.Repeat("a", MaxArgvBytes), TruncMark}},
		{"cut keeps UTF-8 whole", nul(strings.Repeat("a", MaxArgvBytes-1) + "é"), false,
			[]string{strings.Repeat("a", MaxArgvBytes-1), TruncMark}},
		{"file continues", []byte("a\x00b"), true, []string{"a", "b", TruncMark}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseArgv(tt.in, tt.more)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseArgv = %q (%d), want %q (%d)", got, len(got), tt.want, len(tt.want))
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name  string
		line  string
		comm  string
		ppid  uint32
		start uint64
		bad   bool
	}{
		{"plain", fakeStat(42, "bash", 1, 12345), "bash", 1, 12345, false},
		{"spaces and parens", fakeStat(42, "a) b (c) d", 7, 9), "a) b (c) d", 7, 9, false},
		{"trailing paren", fakeStat(42, "x)", 7, 9), "x)", 7, 9, false},
		{"empty comm", fakeStat(42, "", 7, 9), "", 7, 9, false},
		{"kernel thread", "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 3 0 0 20 0 1 0 4 0 0 18446744073709551615\n", "kthreadd", 0, 4, false},
		{"truncated", "42 (bash) S 1 0 0 0", "", 0, 0, true},
		{"no comm", "42 bash S 1", "", 0, 0, true},
		{"bad number", strings.Replace(fakeStat(42, "bash", 1, 5), " 1 ", " x ", 1), "", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseStat([]byte(tt.line))
			if tt.bad {
				if err == nil {
					t.Errorf("parseStat(%q) = %+v, want an error", tt.line, st)
				}
				return
			}
			if err != nil || string(st.comm) != tt.comm || st.ppid != tt.ppid || st.start != tt.start {
				t.Errorf("parseStat(%q) = comm %q ppid %d start %d, %v", tt.line, st.comm, st.ppid, st.start, err)
			}
		})
	}
}

func TestContainerID(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const id2 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	tests := []struct {
		path, want string
	}{
		{"/system.slice/docker-" + id + ".scope", id},
		{"/docker/" + id, id},
		{"/docker/" + id + "/docker/" + id2, id2},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b2c.slice/cri-containerd-" + id + ".scope", id},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c.slice/crio-" + id + ".scope", id},
		{"/kubepods/burstable/pod6a4b1c2d-0000-4000-8000-000000000000/" + id, id},
		{"/system.slice/containerd.service/kubepods-besteffort-pod1b2c.slice:cri-containerd:" + id, id},
		{"/machine.slice/libpod-" + id + ".scope", id},
		{"/machine.slice/libpod-" + id + ".scope/container", id},
		{"/machine.slice/libpod-conmon-" + id + ".scope", ""},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c.slice/crio-conmon-" + id + ".scope", ""},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b2c.slice", ""},
		{"/system.slice/docker.service", ""},
		{"/user.slice/user-0.slice/session-1.scope", ""},
		{"/docker-" + id[:12] + ".scope", ""},
		{"/docker/" + strings.ToUpper(id), ""},
		{"/process_api/c9110e807db2c2278e4685fb85d49967", ""},
		{"/", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := ContainerID(tt.path); got != tt.want {
			t.Errorf("ContainerID(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestParseCgroup(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name, in, path, container string
		v2only                    bool
	}{
		{"v2", "0::/system.slice/docker-" + id + ".scope\n", "/system.slice/docker-" + id + ".scope", id, true},
		{"hybrid, id only in v1", "4:memory:/docker/" + id + "\n1:cpu:/docker/" + id + "\n0::/\n", "/", id, false},
		{"hybrid, none", "9:name=systemd:/\n4:memory:/process_api/c9110e807db2c2278e4685fb85d49967\n0::/\n", "/", "", false},
		{"hybrid, id in v2 first", "0::/docker-" + id + ".scope\n4:memory:/other\n", "/docker-" + id + ".scope", id, false},
		{"v1 only", "2:cpu,cpuacct:/user.slice\n", "", "", false},
		{"no newline", "0::/init.scope", "/init.scope", "", true},
		{"empty", "", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, c, v2 := parseCgroup([]byte(tt.in))
			if path != tt.path || c != tt.container || v2 != tt.v2only {
				t.Errorf("parseCgroup = %q, %q, v2 only %v; want %q, %q, %v", path, c, v2, tt.path, tt.container, tt.v2only)
			}
		})
	}
}

// TestCgroupByID: a process in a cgroup the table read within revalidate
// takes its path from the cache (the kernel's cgroup id names it); another
// id, an old entry or a hybrid file is read from procfs.
func TestCgroupByID(t *testing.T) {
	root := t.TempDir()
	tab := New(root, 16)
	// proc makes process pid with the cgroup file content, fills it as the
	// kernel's cgroup id says, and returns the cgroup the table gave it.
	proc := func(pid uint32, content string, cgroupID uint64) string {
		t.Helper()
		fakeProc(t, root, pid, "p", 1, 100+uint64(pid), "/usr/bin/p")
		if err := os.WriteFile(filepath.Join(root, strconv.Itoa(int(pid)), "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		p := &event.Process{PID: pid, TID: pid, CgroupID: cgroupID}
		tab.Fill(p)
		return p.Cgroup
	}
	// The files after the first differ only so that the test can tell where
	// an answer came from.
	const own = "0::/read.from.procfs\n"
	if got := proc(10, "0::/app.slice/a.service\n", 77); got != "/app.slice/a.service" {
		t.Fatalf("first process of cgroup 77: cgroup %q", got)
	}
	if got := proc(11, own, 77); got != "/app.slice/a.service" {
		t.Errorf("second process of cgroup 77 within revalidate: cgroup %q, want the cached /app.slice/a.service", got)
	}
	if got := proc(12, own, 78); got != "/read.from.procfs" {
		t.Errorf("a process of another cgroup id: cgroup %q, want its own file's", got)
	}
	if got := proc(13, own, 0); got != "/read.from.procfs" {
		t.Errorf("a process with no cgroup id: cgroup %q, want its own file's", got)
	}
	// Hybrid: the v1 lines may name another container; never cached.
	proc(14, "4:memory:/docker/x\n0::/\n", 79)
	if got := proc(15, own, 79); got != "/read.from.procfs" {
		t.Errorf("after a hybrid file for cgroup 79: cgroup %q, want the process's own file's", got)
	}
	// Past revalidate the cgroup is read again (a renamed cgroup keeps its id).
	tab.revalidate = 0
	if got := proc(16, "0::/app.slice/renamed.service\n", 77); got != "/app.slice/renamed.service" {
		t.Errorf("cgroup 77 past revalidate: %q, want the renamed path read again", got)
	}
}

func fakeStat(pid uint32, comm string, ppid uint32, start uint64) string {
	return fmt.Sprintf("%d (%s) S %d 0 0 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, comm, ppid, start)
}

// fakeProc writes a process into a fake procfs root.
func fakeProc(t *testing.T, root string, pid uint32, comm string, ppid uint32, start uint64, exe string, argv ...string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(int(pid)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("stat", fakeStat(pid, comm, ppid, start))
	write("cmdline", strings.Join(argv, "\x00")+"\x00")
	write("cgroup", "0::/system.slice/fake.service\n")
	os.Remove(filepath.Join(dir, "exe"))
	if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
}

// TestPIDReuse: data cached for one process is never served for another that
// got the same pid, which it tells apart by its start time.
func TestPIDReuse(t *testing.T) {
	root := t.TempDir()
	const comm = "a) b (c"
	fakeProc(t, root, 100, comm, 1, 1000, "/usr/bin/first", "first", "one")
	tab := New(root, 16)

	fill := func(comm string) *event.Process {
		p := &event.Process{PID: 100, TID: 100, Comm: comm}
		tab.Fill(p)
		return p
	}
	p := fill("")
	if p.Comm != comm || p.Exe != "/usr/bin/first" || !reflect.DeepEqual(p.Argv, []string{"first", "one"}) ||
		p.PPID != 1 || p.Cgroup != "/system.slice/fake.service" {
		t.Fatalf("first Fill = %+v", p)
	}
	if len(p.Ancestry) != 1 || p.Ancestry[0] != (event.Ancestor{PID: 1}) {
		t.Errorf("Ancestry = %+v, want pid 1 alone (absent from the fake root)", p.Ancestry)
	}

	// Same process: the cache answers, even though the file changed.
	fakeProc(t, root, 100, comm, 1, 1000, "/usr/bin/first", "rewritten")
	if p := fill(comm); !reflect.DeepEqual(p.Argv, []string{"first", "one"}) {
		t.Errorf("same process: Argv = %q, want the cached one", p.Argv)
	}
	// After Forget it reads procfs again.
	tab.Forget(100)
	if p := fill(comm); !reflect.DeepEqual(p.Argv, []string{"rewritten"}) {
		t.Errorf("after Forget: Argv = %q, want the file's", p.Argv)
	}

	// Another process with the same pid, comm and exe: only the start time differs.
	fakeProc(t, root, 100, comm, 1, 2000, "/usr/bin/first", "second")
	if p := fill(comm); !reflect.DeepEqual(p.Argv, []string{"second"}) {
		t.Errorf("reused pid: Argv = %q, want the new process's", p.Argv)
	}

	// Once gone, the newest process is what the cache knows.
	if err := os.RemoveAll(filepath.Join(root, "100")); err != nil {
		t.Fatal(err)
	}
	if p := fill(comm); !reflect.DeepEqual(p.Argv, []string{"second"}) || p.Exe != "/usr/bin/first" {
		t.Errorf("gone: Fill = %+v, want the newest cached process", p)
	}
}

// TestAncestorReuse: an ancestor pid now held by a process younger than its
// child is not that child's parent.
func TestAncestorReuse(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 10, "init", 0, 1, "/sbin/init", "init")
	fakeProc(t, root, 20, "sshd", 10, 100, "/usr/sbin/sshd", "sshd")
	fakeProc(t, root, 30, "bash", 20, 200, "/bin/bash", "-bash")
	fakeProc(t, root, 40, "evil", 30, 300, "/tmp/evil", "evil")

	tab := New(root, 16)
	p := &event.Process{PID: 40, TID: 40, Comm: "evil"}
	tab.Fill(p)
	want := []event.Ancestor{{PID: 30, Comm: "bash", Exe: "/bin/bash"}, {PID: 20, Comm: "sshd", Exe: "/usr/sbin/sshd"}, {PID: 10, Comm: "init", Exe: "/sbin/init"}}
	if !reflect.DeepEqual(p.Ancestry, want) {
		t.Fatalf("Ancestry = %+v, want %+v", p.Ancestry, want)
	}

	// bash exits, its pid goes to a newer process; the cache still knows bash.
	tab.revalidate = 0
	fakeProc(t, root, 30, "cron", 10, 500, "/usr/sbin/cron", "cron")
	p = &event.Process{PID: 40, TID: 40, Comm: "evil"}
	tab.Fill(p)
	if !reflect.DeepEqual(p.Ancestry, want) {
		t.Errorf("after pid reuse: Ancestry = %+v, want %+v", p.Ancestry, want)
	}

	// A fresh table, which never saw bash, reports the pid alone.
	p = &event.Process{PID: 40, TID: 40, Comm: "evil"}
	New(root, 16).Fill(p)
	if want := []event.Ancestor{{PID: 30}}; !reflect.DeepEqual(p.Ancestry, want) {
		t.Errorf("uncached: Ancestry = %+v, want %+v", p.Ancestry, want)
	}
}

// TestParentByKernelStart: a new process whose parent the kernel names by
// pid and start is given the parent confirmed within revalidate without a
// procfs read; without the kernel's start, or past revalidate, the parent is
// read again.
func TestParentByKernelStart(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 10, "init", 0, 1, "/sbin/init", "init")
	fakeProc(t, root, 30, "bash", 10, 200, "/bin/bash", "-bash")
	tab := New(root, 16)
	bash := uint64(200 * nsPerTick)
	// child fills a new process pid of bash's as the kernel reports it.
	child := func(pid uint32, kstart uint64) []event.Ancestor {
		t.Helper()
		fakeProc(t, root, pid, "sh", 30, 300+uint64(pid), "/bin/sh", "sh")
		p := &event.Process{PID: pid, TID: pid, PPID: 30}
		tab.FillKernel(p, Kernel{ParentStart: kstart})
		if len(p.Ancestry) != 2 || p.Ancestry[1] != (event.Ancestor{PID: 10, Comm: "init", Exe: "/sbin/init"}) {
			t.Fatalf("pid %d: Ancestry = %+v, want bash then init", pid, p.Ancestry)
		}
		return p.Ancestry
	}
	if a := child(41, bash); a[0] != (event.Ancestor{PID: 30, Comm: "bash", Exe: "/bin/bash"}) {
		t.Fatalf("first child: parent %+v, want bash read from procfs", a[0])
	}
	// Only a procfs read would see this; the files change so that the test
	// can tell where an answer came from.
	fakeProc(t, root, 30, "bash", 10, 200, "/bin/read.from.procfs", "-bash")
	if a := child(42, bash); a[0].Exe != "/bin/bash" {
		t.Errorf("second child, the kernel naming bash: parent exe %q, want the cached /bin/bash", a[0].Exe)
	}
	if a := child(43, bash+nsPerTick); a[0].Exe != "/bin/read.from.procfs" {
		t.Errorf("a parent start the cache does not hold: parent exe %q, want procfs read", a[0].Exe)
	}
	fakeProc(t, root, 30, "bash", 10, 200, "/bin/read.again", "-bash")
	if a := child(44, 0); a[0].Exe != "/bin/read.again" {
		t.Errorf("no kernel start: parent exe %q, want procfs read", a[0].Exe)
	}
	fakeProc(t, root, 30, "bash", 10, 200, "/bin/past.revalidate", "-bash")
	tab.revalidate = 0
	if a := child(45, bash); a[0].Exe != "/bin/past.revalidate" {
		t.Errorf("past revalidate: parent exe %q, want procfs read", a[0].Exe)
	}
}

// TestSubjectByKernelStart: a record's process is named by pid and start. A
// process that took the pid after it exited is not the record's: the
// finding gets what the cache knew of its own process, or nothing, never
// the newcomer's context (which an attacker could pick by cycling pids).
func TestSubjectByKernelStart(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 100, "evil", 1, 1000, "/tmp/evil", "evil")
	tab := New(root, 16)
	fill := func(tab *Table, start uint64) *event.Process {
		p := &event.Process{PID: 100, TID: 100, PPID: 1, Comm: "evil"}
		tab.FillKernel(p, Kernel{Start: start * nsPerTick})
		return p
	}
	if p := fill(tab, 1000); p.Exe != "/tmp/evil" || !reflect.DeepEqual(p.Argv, []string{"evil"}) {
		t.Fatalf("live process: %+v, want /tmp/evil", p)
	}
	// evil exits, and its pid goes to a newer process of the same name.
	fakeProc(t, root, 100, "evil", 1, 2000, "/usr/bin/benign", "benign")
	if p := fill(tab, 1000); p.Exe != "/tmp/evil" || !reflect.DeepEqual(p.Argv, []string{"evil"}) {
		t.Errorf("a finding of evil's after its pid was taken: %+v, want evil's cached context", p)
	}
	if p := fill(New(root, 16), 1000); p.Exe != "" || p.Argv != nil {
		t.Errorf("the same, evil never cached: %+v, want no exe and no argv", p)
	}
	if p := fill(tab, 2000); p.Exe != "/usr/bin/benign" {
		t.Errorf("a finding of the newcomer's: %+v, want its own context", p)
	}
	if p := fill(tab, 0); p.Exe != "/usr/bin/benign" {
		t.Errorf("no start from the kernel: %+v, want the pid's process now", p)
	}
}

// TestBootOffset: procfs counts starts in the reader's time namespace; the
// kernel's are converted with its boot-time offset.
func TestBootOffset(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "self", "timens_offsets"),
		[]byte("monotonic           0         0\nboottime            5 250000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fakeProc(t, root, 100, "p", 1, 1000, "/bin/p", "p")
	tab := New(root, 16)
	if tab.bootOffset != 5_250_000_000 {
		t.Fatalf("bootOffset = %d, want 5.25 s", tab.bootOffset)
	}
	kernel := uint64(1000*nsPerTick - 5_250_000_000)
	tab.FillKernel(&event.Process{PID: 100, PPID: 1}, Kernel{Start: kernel})
	if err := os.RemoveAll(filepath.Join(root, "100")); err != nil {
		t.Fatal(err)
	}
	// Gone: only the exact (pid, start) finds it in the cache.
	for _, c := range []struct {
		start uint64
		exe   string
	}{{kernel, "/bin/p"}, {kernel + nsPerTick, ""}} {
		p := &event.Process{PID: 100, PPID: 1}
		tab.FillKernel(p, Kernel{Start: c.start})
		if p.Exe != c.exe {
			t.Errorf("kernel start %d ns: exe %q, want %q", c.start, p.Exe, c.exe)
		}
	}
	if got := New(t.TempDir(), 1).bootOffset; got != 0 {
		t.Errorf("no timens_offsets: bootOffset = %d, want 0", got)
	}
}

func TestAncestryDepthAndCycle(t *testing.T) {
	root := t.TempDir()
	for pid := uint32(1); pid <= 12; pid++ {
		fakeProc(t, root, pid, "p"+strconv.Itoa(int(pid)), pid-1, uint64(pid), "/bin/p", "p")
	}
	p := &event.Process{PID: 12, TID: 12}
	New(root, 64).Fill(p)
	if len(p.Ancestry) != MaxAncestors || p.Ancestry[0].PID != 11 || p.Ancestry[MaxAncestors-1].PID != 4 {
		t.Errorf("Ancestry = %+v, want 11 down to 4", p.Ancestry)
	}

	fakeProc(t, root, 50, "a", 51, 5, "/bin/a", "a")
	fakeProc(t, root, 51, "b", 50, 5, "/bin/b", "b")
	p = &event.Process{PID: 50, TID: 50}
	New(root, 64).Fill(p)
	if want := []event.Ancestor{{PID: 51, Comm: "b", Exe: "/bin/b"}}; !reflect.DeepEqual(p.Ancestry, want) {
		t.Errorf("cycle: Ancestry = %+v, want %+v", p.Ancestry, want)
	}
}

func TestEviction(t *testing.T) {
	root := t.TempDir()
	for pid := uint32(1); pid <= 6; pid++ {
		fakeProc(t, root, pid, "p", 0, uint64(pid), "/bin/p", "p")
	}
	tab := New(root, 3)
	for pid := uint32(1); pid <= 6; pid++ {
		tab.Fill(&event.Process{PID: pid, TID: pid})
	}
	tab.mu.Lock()
	defer tab.mu.Unlock()
	if len(tab.byKey) != 3 || len(tab.latest) != 3 {
		t.Fatalf("%d entries, %d pids; want 3", len(tab.byKey), len(tab.latest))
	}
	n := 0
	for e := tab.lru.next; e != &tab.lru; e = e.next {
		if tab.byKey[e.key] != e || e.pid < 4 {
			t.Errorf("LRU holds pid %d", e.pid)
		}
		n++
	}
	if n != 3 {
		t.Errorf("LRU ring has %d entries, want 3", n)
	}
}

func TestConcurrentFill(t *testing.T) {
	cmd := start(t, exec.Command("sleep", "5"))
	tab := New("/proc", 4)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				pid := os.Getpid()
				if i%2 == 1 {
					pid = cmd.Process.Pid
				}
				p := &event.Process{PID: uint32(pid), TID: uint32(pid)}
				tab.Fill(p)
				if p.Exe == "" {
					t.Errorf("no Exe for %d", pid)
					return
				}
				if i%7 == 0 {
					tab.Forget(uint32(pid))
				}
			}
		}()
	}
	wg.Wait()
}

func TestFillNil(t *testing.T) {
	tab := New("", 0)
	tab.Fill(nil)
	p := &event.Process{}
	tab.Fill(p)
	if !reflect.DeepEqual(p, &event.Process{}) {
		t.Errorf("pid 0 filled: %+v", p)
	}
}

// BenchmarkFill: the process table filling a finding's process (this test
// binary) from its cache, after Forget, and from a new table. Each run checks
// the last fill: the benchmark measures fills that happened.
func BenchmarkFill(b *testing.B) {
	pid := uint32(os.Getpid())
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	filled := func(b *testing.B, p *event.Process) {
		b.Helper()
		if p.Exe != exe || p.PPID != uint32(os.Getppid()) || p.Comm == "" || len(p.Argv) == 0 {
			b.Fatalf("fill of this process: %+v, want exe %s, ppid %d, a comm and an argv", p, exe, os.Getppid())
		}
	}
	var p *event.Process
	b.Run("cached", func(b *testing.B) {
		tab := New("/proc", 1024)
		tab.Fill(&event.Process{PID: pid})
		b.ReportAllocs()
		for b.Loop() {
			p = &event.Process{PID: pid, TID: pid, CgroupID: 1}
			tab.Fill(p)
		}
		filled(b, p)
	})
	b.Run("forgotten", func(b *testing.B) {
		tab := New("/proc", 1024)
		b.ReportAllocs()
		for b.Loop() {
			tab.Forget(pid)
			p = &event.Process{PID: pid, TID: pid, CgroupID: 1}
			tab.Fill(p)
		}
		filled(b, p)
	})
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p = &event.Process{PID: pid, TID: pid, CgroupID: 1}
			New("/proc", 1024).Fill(p)
		}
		filled(b, p)
	})
	// A process the table has not seen, child of this one (which the table
	// has): its own context is read cold, the parent comes from the cache
	// when the kernel names it by its start, else from procfs again.
	own := &event.Process{PID: pid}
	New("/proc", 1).Fill(own)
	st, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		b.Fatal(err)
	}
	self, err := parseStat(st)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		k    Kernel
	}{{"new-child", Kernel{}}, {"new-child-kernel-parent", Kernel{ParentStart: self.start * nsPerTick}}} {
		b.Run(c.name, func(b *testing.B) {
			tab := New("/proc", 1024)
			tab.Fill(&event.Process{PID: pid})
			for b.Loop() {
				b.StopTimer()
				cmd := exec.Command(sleepExe(b), "60")
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				waitExec(b, cmd.Process.Pid)
				p = &event.Process{PID: uint32(cmd.Process.Pid), PPID: pid}
				b.StartTimer()
				tab.FillKernel(p, c.k)
				b.StopTimer()
				cmd.Process.Kill()
				cmd.Wait()
				if len(p.Ancestry) == 0 || p.Ancestry[0].Exe != exe || p.Exe != sleepExe(b) {
					b.Fatalf("fill of a new child: %+v, want sleep with this process (%s) as parent", p, exe)
				}
				b.StartTimer()
			}
		})
	}
}

// TestMidExec: an argv read while execve is still building it is not cached.
func TestMidExec(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 7, "new", 0, 1, "/usr/bin/new")
	if err := os.WriteFile(filepath.Join(root, "7", "cmdline"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tab := New(root, 4)
	p := &event.Process{PID: 7, TID: 7}
	tab.Fill(p)
	if p.Exe != "/usr/bin/new" || p.Argv != nil {
		t.Fatalf("Fill = %+v", p)
	}
	fakeProc(t, root, 7, "new", 0, 1, "/usr/bin/new", "new", "-x")
	p = &event.Process{PID: 7, TID: 7}
	tab.Fill(p)
	if want := []string{"new", "-x"}; !reflect.DeepEqual(p.Argv, want) {
		t.Errorf("Argv = %q, want %q", p.Argv, want)
	}
}

// TestFillKernelServesCacheWhileTagHolds: the same kernel tag means the same
// process image, so procfs is not read again; a new tag (after an exec) is.
func TestFillKernelServesCacheWhileTagHolds(t *testing.T) {
	cmd := exec.Command("sh", "-c", "read go; exec sleep 5") // execs when the test says so
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	tbl := New("/proc", 16)
	pid := uint32(cmd.Process.Pid)
	var first event.Process
	testenv.Eventually(t, "sh to have its argv (the exec into sh done)", func() bool {
		first = event.Process{PID: pid}
		tbl.FillKernel(&first, Kernel{Tag: 1})
		if len(first.Argv) > 0 {
			return true
		}
		tbl.Forget(pid)
		return false
	})
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "sh to exec sleep", func() bool {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		return filepath.Base(exe) == "sleep"
	})
	same := event.Process{PID: pid}
	tbl.FillKernel(&same, Kernel{Tag: 1})
	if same.Exe != first.Exe {
		t.Fatalf("same tag: exe %q, want the cached %q (procfs read again)", same.Exe, first.Exe)
	}
	fresh := event.Process{PID: pid}
	tbl.FillKernel(&fresh, Kernel{Tag: 2})
	if fresh.Exe == first.Exe || filepath.Base(fresh.Exe) != "sleep" {
		t.Fatalf("new tag: exe %q, want sleep read from procfs (was %q)", fresh.Exe, first.Exe)
	}
}
