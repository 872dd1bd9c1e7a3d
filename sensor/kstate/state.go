package kstate

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Settings are the security-relevant kernel settings the seal records, by
// the file they are read from.
var Settings = []string{
	"/sys/kernel/security/lsm",
	"/sys/kernel/security/lockdown",
	"/proc/sys/kernel/modules_disabled",
	"/proc/sys/kernel/kexec_load_disabled",
	"/proc/sys/kernel/io_uring_disabled",
	"/proc/sys/kernel/unprivileged_bpf_disabled",
	"/proc/sys/kernel/kptr_restrict",
}

// State is the security-relevant kernel state at one moment.
type State struct {
	Settings map[string]string // file -> value, "absent" when this kernel has no such file
	Modules  map[string]bool   // loaded modules (/proc/modules)
	Programs map[uint32]bool   // ids of loaded BPF programs
	Links    map[uint32]bool   // ids of BPF links
}

// Read reads the state. It takes no descriptor of any BPF object: ids come
// from BPF_*_GET_NEXT_ID alone, so reading never touches another sensor's
// programs (a descriptor by id on them is a tamper finding).
func Read() (State, error) {
	s := State{Settings: map[string]string{}, Modules: map[string]bool{}}
	for _, f := range Settings {
		b, err := os.ReadFile(f)
		switch {
		case errors.Is(err, os.ErrNotExist):
			s.Settings[f] = "absent"
		case err != nil:
			return s, fmt.Errorf("read %s: %w", f, err)
		default:
			s.Settings[f] = strings.TrimSpace(string(b))
		}
	}
	mods, err := os.Open("/proc/modules")
	if err == nil {
		sc := bufio.NewScanner(mods)
		for sc.Scan() {
			if name, _, ok := strings.Cut(sc.Text(), " "); ok {
				s.Modules[name] = true
			}
		}
		mods.Close()
		if err := sc.Err(); err != nil {
			return s, fmt.Errorf("read /proc/modules: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) { // a kernel without modules has none
		return s, err
	}
	if s.Programs, err = ids(bpfProgGetNextID); err != nil {
		return s, fmt.Errorf("list BPF programs: %w", err)
	}
	if s.Links, err = ids(bpfLinkGetNextID); err != nil {
		return s, fmt.Errorf("list BPF links: %w", err)
	}
	return s, nil
}

const (
	bpfProgGetNextID = 11
	bpfLinkGetNextID = 31
)

// ids walks BPF_*_GET_NEXT_ID from 0 to the end (ENOENT).
func ids(cmd uintptr) (map[uint32]bool, error) {
	out := map[uint32]bool{}
	var attr struct{ start, next, flags uint32 }
	for {
		_, _, e := unix.Syscall(unix.SYS_BPF, cmd, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		if e == unix.ENOENT {
			return out, nil
		}
		if e != 0 {
			return nil, e
		}
		out[attr.next] = true
		attr.start = attr.next
	}
}

// Diff says how now differs from was, one line per change, sorted:
// "/proc/sys/kernel/kptr_restrict: 1 -> 0", "module loaded: nf_tables",
// "BPF program loaded: id 812", "BPF link detached: id 14".
func Diff(was, now State) []string {
	var out []string
	for _, f := range Settings {
		if a, b := was.Settings[f], now.Settings[f]; a != b {
			out = append(out, fmt.Sprintf("%s: %s -> %s", f, a, b))
		}
	}
	out = append(out, setDiff(was.Modules, now.Modules, "module loaded: %s", "module unloaded: %s")...)
	out = append(out, setDiff(was.Programs, now.Programs, "BPF program loaded: id %d", "BPF program unloaded: id %d")...)
	out = append(out, setDiff(was.Links, now.Links, "BPF link attached: id %d", "BPF link detached: id %d")...)
	sort.Strings(out)
	return out
}

func setDiff[K comparable](was, now map[K]bool, added, removed string) []string {
	var out []string
	for k := range now {
		if !was[k] {
			out = append(out, fmt.Sprintf(added, k))
		}
	}
	for k := range was {
		if !now[k] {
			out = append(out, fmt.Sprintf(removed, k))
		}
	}
	return out
}
