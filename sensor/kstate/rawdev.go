// Package kstate holds what the seal records of the kernel itself: the raw
// devices under the protected file systems (which the kernel programs judge
// opens against, bpf/seal.h), and the security-relevant kernel state (active
// LSMs, lockdown, module, kexec, io_uring and BPF restrictions, loaded modules,
// attached BPF programs and links), compared with the seal's baseline.
package kstate

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Device types in a raw device key (S_IFBLK, S_IFCHR).
const (
	blockDev = unix.S_IFBLK
	charDev  = unix.S_IFCHR
)

// kdev is the kernel's dev_t encoding (MKDEV: major << 20 | minor).
func kdev(major, minor uint32) uint32 { return major<<20 | minor }

// Key is a raw device as bpf/seal.h's rawdevs keys it.
func Key(typ, major, minor uint32) uint64 { return uint64(typ)<<32 | uint64(kdev(major, minor)) }

// memDevices are /dev/mem, /dev/kmem and /dev/port (char 1:1, 1:2, 1:4).
var memDevices = []uint64{Key(charDev, 1, 1), Key(charDev, 1, 2), Key(charDev, 1, 4)}

// RawDevices returns the raw devices opening for writing is drift: every
// block device under a protected file system mounted now (a partition's
// whole disk and the devices a device-mapper or md device stacks on
// included), /dev/mem, /dev/kmem and /dev/port, less the devices allowed.
// classify says whether a mount point is protected (longest-prefix rules).
func RawDevices(mountinfo string, protected func(dir string) bool, allow []string) ([]uint64, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	set := map[uint64]bool{}
	for _, k := range memDevices {
		set[k] = true
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source super
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || !protected(unescape(fields[4])) {
			continue
		}
		sep := 6
		for sep < len(fields) && fields[sep] != "-" {
			sep++
		}
		var majmin string
		if sep+2 < len(fields) && strings.HasPrefix(fields[sep+2], "/dev/") {
			var st unix.Stat_t
			if unix.Stat(unescape(fields[sep+2]), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
				majmin = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
			}
		}
		if majmin == "" {
			majmin = fields[2]
		}
		addBlock(set, majmin, 0)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", mountinfo, err)
	}
	for _, a := range allow {
		var st unix.Stat_t
		if unix.Stat(a, &st) != nil {
			continue // absent now: nothing to allow
		}
		typ := st.Mode & unix.S_IFMT
		if typ == unix.S_IFBLK || typ == unix.S_IFCHR {
			delete(set, Key(typ, unix.Major(st.Rdev), unix.Minor(st.Rdev)))
		}
	}
	out := make([]uint64, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	return out, nil
}

// addBlock adds the block device majmin ("8:1") when the kernel knows it
// as one, its whole disk when it is a partition, and the devices it stacks
// on (slaves), a few levels deep.
func addBlock(set map[uint64]bool, majmin string, depth int) {
	sys := "/sys/dev/block/" + majmin
	if depth > 4 {
		return
	}
	if _, err := os.Stat(sys); err != nil {
		return // not a block device (tmpfs, overlay, nfs...)
	}
	maj, min, ok := parseMajMin(majmin)
	if !ok {
		return
	}
	set[Key(blockDev, maj, min)] = true
	if _, err := os.Stat(sys + "/partition"); err == nil {
		if b, err := os.ReadFile(sys + "/../dev"); err == nil {
			addBlock(set, strings.TrimSpace(string(b)), depth+1)
		}
	}
	slaves, _ := filepath.Glob(sys + "/slaves/*/dev")
	for _, s := range slaves {
		if b, err := os.ReadFile(s); err == nil {
			addBlock(set, strings.TrimSpace(string(b)), depth+1)
		}
	}
}

func parseMajMin(s string) (maj, min uint32, ok bool) {
	a, b, found := strings.Cut(s, ":")
	x, err1 := strconv.ParseUint(a, 10, 12)
	y, err2 := strconv.ParseUint(b, 10, 20)
	return uint32(x), uint32(y), found && err1 == nil && err2 == nil
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
