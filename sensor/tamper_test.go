package sensor_test

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/event"
	"github.com/driftsensor/driftsensor/sensor/hooktest"
	"github.com/driftsensor/driftsensor/sensor/hooktest/act"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
)

// The attacks of issue 13 on the tracepoint backend, each made by another
// process (the test binary re-executed as the actor, or bpftool) outside the
// sealed scope: tampering with the sensor is reported wherever it comes from.

// tamperBed is a sealed hook-test bed on the tracepoint backend that guards
// the given files.
func tamperBed(t *testing.T, protect ...string) *hooktest.Bed {
	bed := hooktest.NewBed(t, hooktest.BedConfig{
		Load: func(opts backend.Options) (backend.Backend, error) {
			root, err := sysfs.CgroupRoot()
			if err != nil {
				return nil, err
			}
			opts.CgroupRoot = root
			opts.Protect = protect
			return tracepoint.Load(opts)
		},
	})
	bed.Seal(t, true)
	return bed
}

// selfObject finds one of the backend's own objects by kind and name.
func selfObject(t *testing.T, b backend.Backend, kind, name string) backend.Object {
	t.Helper()
	for _, o := range b.(*tracepoint.Backend).SelfObjects() {
		if o.Kind == kind && o.Name == name {
			return o
		}
	}
	t.Fatalf("no %s %q among the sensor's objects: %v", kind, name, b.(*tracepoint.Backend).SelfObjects())
	return backend.Object{}
}

// expectTamper waits for the tamper finding with this detail from pid.
func expectTamper(t *testing.T, bed *hooktest.Bed, pid int, detail string) *event.Event {
	t.Helper()
	return bed.Expect(t, hooktest.Want{Kind: event.KindSensor, Action: sensor.ActionTamper, Detail: detail}, pid)
}

func expectVerify(t *testing.T, b backend.Backend, want []string) {
	t.Helper()
	if got := b.Verify(); !reflect.DeepEqual(got, want) {
		t.Errorf("Verify:\n got %q\nwant %q", got, want)
	}
}

// stillWatching proves the sensor still reports a mutation in the scope.
func stillWatching(t *testing.T, bed *hooktest.Bed, tag string) {
	t.Helper()
	e := bed.Env(t, tag)
	p := filepath.Join(e.Etc, "after")
	res := bed.Act(t, hooktest.Act{Args: []string{"symlink", "/x", p}})
	bed.Expect(t, hooktest.Want{Kind: event.KindFile, Action: hooktest.ActSymlink, Path: p, Target: "/x"}, res.PID)
}

// TestTamperConfigMap: another process unseals the sensor through its config
// map. The kernel reports the descriptor and the write at the syscall; the
// heartbeat's check names the change and restores the seal.
func TestTamperConfigMap(t *testing.T) {
	bed := tamperBed(t)
	be := bed.Backend()
	cfg := selfObject(t, be, "map", "config_map")
	// struct config with sealed = 0 and the rest as the sensor wrote it
	// (scope on, no reflex, deny_binds on, first epoch).
	val := make([]byte, 20)
	for i, v := range []uint32{0, 1, 0, 1, 1} {
		binary.LittleEndian.PutUint32(val[i*4:], v)
	}
	res := bed.Act(t, hooktest.Act{Outside: true, Args: []string{"bpf-map-update", fmt.Sprint(cfg.ID), "00000000", hex.EncodeToString(val)}})
	if res.Errno != 0 {
		t.Fatalf("the attacker's map update failed (%v): the attack was not made\n%s", res.Errno, res.Out)
	}
	by := fmt.Sprintf("by pid %d (%s)", res.PID, act.ActorComm())
	expectTamper(t, bed, res.PID, fmt.Sprintf("bpf(BPF_MAP_GET_FD_BY_ID) on driftsensor map config_map (id %d) %s", cfg.ID, by))
	expectTamper(t, bed, res.PID, fmt.Sprintf("bpf(BPF_MAP_UPDATE_ELEM) on driftsensor map config_map (id %d) %s", cfg.ID, by))

	expectVerify(t, be, []string{"config_map: sealed is 0, the sensor wrote 1 (restored)"})
	expectVerify(t, be, nil)
	stillWatching(t, bed, "config")
}

// TestTamperRules: another process deletes a policy rule; the kernel
// reports the delete, the check names the rule and puts it back.
func TestTamperRules(t *testing.T) {
	bed := tamperBed(t)
	be := bed.Backend()
	rules := selfObject(t, be, "map", "rules")
	prefix := bed.Root() + "/var/"
	key := make([]byte, 4+256)
	binary.LittleEndian.PutUint32(key, uint32(len(prefix)*8))
	copy(key[4:], prefix)
	res := bed.Act(t, hooktest.Act{Outside: true, Args: []string{"bpf-map-delete", fmt.Sprint(rules.ID), hex.EncodeToString(key)}})
	if res.Errno != 0 {
		t.Fatalf("the attacker's rule delete failed (%v)\n%s", res.Errno, res.Out)
	}
	expectTamper(t, bed, res.PID, fmt.Sprintf("bpf(BPF_MAP_DELETE_ELEM) on driftsensor map rules (id %d) by pid %d (%s)", rules.ID, res.PID, act.ActorComm()))
	expectVerify(t, be, []string{fmt.Sprintf("rules: prefix %s removed (restored)", prefix)})
	expectVerify(t, be, nil)
}

// TestTamperSelfTgidRefused: the sensor's own process is named in .rodata,
// which the kernel froze at load. `bpftool map update` on it, which would
// make the attacker the sensor (invisible), is refused and reported, and the
// sensor still sees the scope afterwards.
func TestTamperSelfTgidRefused(t *testing.T) {
	bpftool, err := exec.LookPath("bpftool")
	if err != nil {
		if testenv.Required() {
			t.Fatal("bpftool is not installed (scripts/setup.sh installs it)")
		}
		t.Skip("bpftool is not installed")
	}
	bed := tamperBed(t)
	be := bed.Backend()
	ro := selfObject(t, be, "map", ".rodata")
	m, err := ebpf.NewMapFromID(ebpf.MapID(ro.ID))
	if err != nil {
		t.Fatal(err)
	}
	size := int(m.ValueSize())
	m.Close()
	// value: self_tgid = 0 (and the rest zero): no longer the sensor's pid
	args := []string{"map", "update", "id", fmt.Sprint(ro.ID), "key", "0", "0", "0", "0", "value"}
	args = append(args, strings.Fields(strings.Repeat("0 ", size))...)
	cmd := exec.Command(bpftool, args...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Operation not permitted") {
		t.Fatalf("bpftool map update on .rodata: err %v, output %q; want a refusal (Operation not permitted)", err, out)
	}
	pid := cmd.Process.Pid
	by := fmt.Sprintf("by pid %d (bpftool)", pid)
	expectTamper(t, bed, pid, fmt.Sprintf("bpf(BPF_MAP_GET_FD_BY_ID) on driftsensor map .rodata (id %d) %s", ro.ID, by))
	expectTamper(t, bed, pid, fmt.Sprintf("bpf(BPF_MAP_UPDATE_ELEM) on driftsensor map .rodata (id %d) %s, refused: %v", ro.ID, by, syscall.EPERM))
	expectVerify(t, be, nil)
	stillWatching(t, bed, "rodata")
}

// TestTamperBindLinkDetach: another process detaches the sensor's cgroup
// bind hook. The kernel reports the descriptor and the detach; the check
// says the link is detached, once.
func TestTamperBindLinkDetach(t *testing.T) {
	bed := tamperBed(t)
	be := bed.Backend()
	what := "cgroup/bind4 on " + bed.Cgroup().Path
	lk := selfObject(t, be, "link", what)
	res := bed.Act(t, hooktest.Act{Outside: true, Args: []string{"bpf-link-detach", fmt.Sprint(lk.ID)}})
	if res.Errno != 0 {
		t.Fatalf("the attacker's link detach failed (%v)\n%s", res.Errno, res.Out)
	}
	by := fmt.Sprintf("by pid %d (%s)", res.PID, act.ActorComm())
	expectTamper(t, bed, res.PID, fmt.Sprintf("bpf(BPF_LINK_GET_FD_BY_ID) on driftsensor link %s (id %d) %s", what, lk.ID, by))
	expectTamper(t, bed, res.PID, fmt.Sprintf("bpf(BPF_LINK_DETACH) on driftsensor link %s (id %d) %s", what, lk.ID, by))
	expectVerify(t, be, []string{fmt.Sprintf("link %s (id %d): detached from its cgroup", what, lk.ID)})
	expectVerify(t, be, nil)
}

// TestTamperSensorFiles: another process, outside the scope, reading the
// sensor's credentials or a file in its spool directory (made after the
// sensor started) is reported at the open; the sensor's own reads are not.
func TestTamperSensorFiles(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "host.creds")
	spool := filepath.Join(dir, "spool")
	if err := os.WriteFile(creds, []byte("seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	bed := tamperBed(t, creds, spool)
	seg := filepath.Join(spool, "seg-1")
	if err := os.WriteFile(seg, []byte("findings"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(creds); err != nil { // the sensor's own read
		t.Fatal(err)
	}
	for _, p := range []string{creds, seg} {
		res := bed.Act(t, hooktest.Act{Outside: true, Args: []string{"read", p}})
		expectTamper(t, bed, res.PID, fmt.Sprintf("open of driftsensor file %s by pid %d (%s)", p, res.PID, act.ActorComm()))
	}
	for _, ev := range bed.Findings(t, os.Getpid()) {
		t.Errorf("the sensor's own access is a finding: %s", act.Describe(ev))
	}
}

// TestKernelCounter: the liveness counter moves on an idle host, at every
// read by the sensor, and only the kernel program moves it: another
// process's write is refused (the map is frozen) and reported.
func TestKernelCounter(t *testing.T) {
	bed := tamperBed(t)
	be := bed.Backend()
	read := func() uint64 {
		st, err := be.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st.KernelCounter
	}
	c1 := read()
	c2 := read()
	if c2 <= c1 {
		t.Fatalf("kernel counter did not move between two reads: %d then %d", c1, c2)
	}
	live := selfObject(t, be, "map", "liveness")
	forged := make([]byte, 8)
	binary.LittleEndian.PutUint64(forged, 1<<40)
	res := bed.Act(t, hooktest.Act{Outside: true, Args: []string{"bpf-map-update", fmt.Sprint(live.ID), "00000000", hex.EncodeToString(forged)}})
	if res.Errno != syscall.EPERM {
		t.Fatalf("forging the kernel counter: errno %v, want EPERM (a frozen map)\n%s", res.Errno, res.Out)
	}
	expectTamper(t, bed, res.PID, fmt.Sprintf("bpf(BPF_MAP_UPDATE_ELEM) on driftsensor map liveness (id %d) by pid %d (%s), refused: %v", live.ID, res.PID, act.ActorComm(), syscall.EPERM))
	if c3 := read(); c3 <= c2 || c3 >= 1<<40 {
		t.Fatalf("kernel counter after the forgery: %d (before %d)", c3, c2)
	}
}
