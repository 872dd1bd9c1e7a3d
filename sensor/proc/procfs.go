package proc

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Bounds on what one finding carries about a process.
const (
	MaxArgs      = 32    // argv elements kept before the truncation mark
	MaxArgvBytes = 4096  // bytes of argument text kept before the truncation mark
	MaxAncestors = 8     // ancestors reported, parent first
	TruncMark    = "..." // last argv element when argv was cut
)

// scratch holds the read buffers of one Fill, pooled so that a Fill allocates
// only the strings it keeps.
type scratch struct {
	stat [1024]byte
	exe  [unix.PathMax]byte
	// Sized so that a full buffer always means a bound was hit: with at most
	// MaxArgs separators, MaxArgvBytes+MaxArgs+1 bytes exceed one of the bounds.
	// The cgroup file shares it; 4 KiB of cgroup lines is far beyond real ones.
	big [MaxArgvBytes + MaxArgs + 1 + 4096]byte
}

// stat is what Fill needs from /proc/PID/stat.
type stat struct {
	comm  []byte // aliases the read buffer
	state byte
	ppid  uint32
	start uint64 // clock ticks after boot; with the pid, it names one process
}

var errShortStat = errors.New("malformed stat")

// openPID opens the procfs directory of pid. Every later read goes through this
// descriptor: if the process dies, reads fail instead of returning the data of a
// new process that took the pid.
func (t *Table) openPID(pid uint32) (int, error) {
	return unix.Open(t.root+"/"+strconv.FormatUint(uint64(pid), 10),
		unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// readAt reads the file name under dir into buf and returns how many bytes it
// holds; n == len(buf) means the file may hold more.
func readAt(dir int, name string, buf []byte) (int, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return 0, err
	}
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	unix.Close(fd)
	return n, nil
}

// readStat reads and parses dir/stat.
func readStat(dir int, buf []byte) (stat, error) {
	n, err := readAt(dir, "stat", buf)
	if err != nil {
		return stat{}, err
	}
	return parseStat(buf[:n])
}

// parseStat parses the fields Fill needs from a /proc/PID/stat line. comm sits
// between the first '(' and the last ')' because it may itself contain spaces
// and parentheses; nothing after it can.
func parseStat(b []byte) (stat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return stat{}, errShortStat
	}
	st := stat{comm: b[open+1 : end]}
	rest := b[end+1:]
	field := 2 // the field just parsed: 2 is comm
	for len(rest) > 0 {
		for len(rest) > 0 && rest[0] == ' ' {
			rest = rest[1:]
		}
		i := bytes.IndexAny(rest, " \n")
		tok := rest
		if i >= 0 {
			tok, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(tok) == 0 {
			continue
		}
		field++
		switch field {
		case 3:
			st.state = tok[0]
		case 4:
			v, ok := atou(tok)
			if !ok || v > 1<<32-1 {
				return stat{}, errShortStat
			}
			st.ppid = uint32(v)
		case 22:
			v, ok := atou(tok)
			if !ok {
				return stat{}, errShortStat
			}
			st.start = v
			return st, nil
		}
	}
	return stat{}, errShortStat
}

// atou parses a decimal number without allocating.
func atou(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// readExe reads the dir/exe link. A kernel thread, a zombie or a process that
// is exiting has none.
func readExe(dir int, buf []byte) ([]byte, bool) {
	n, err := unix.Readlinkat(dir, "exe", buf)
	if err != nil || n <= 0 {
		return nil, false
	}
	return buf[:n], true
}

// readArgv reads dir/cmdline within the argv bounds.
func readArgv(dir int, buf []byte) []string {
	buf = buf[:MaxArgvBytes+MaxArgs+1]
	n, err := readAt(dir, "cmdline", buf)
	if err != nil {
		return nil
	}
	return parseArgv(buf[:n], n == len(buf))
}

// parseArgv splits NUL-separated arguments, keeping at most MaxArgs of them
// and MaxArgvBytes of their text; if anything was left out it ends argv with
// TruncMark. more says the buffer was full and the file may continue. All the
// kept arguments share one string allocation.
func parseArgv(b []byte, more bool) []string {
	if len(b) == 0 {
		return nil
	}
	if !more && b[len(b)-1] == 0 {
		b = b[:len(b)-1] // the terminator of the last argument
	}
	var ends [MaxArgs]int // end offset of each kept argument in b
	n, total, used := 0, 0, 0
	truncated := more
	for start := 0; ; {
		i := bytes.IndexByte(b[start:], 0)
		end := len(b)
		if i >= 0 {
			end = start + i
		}
		if n == MaxArgs {
			truncated = true
			break
		}
		if total+end-start > MaxArgvBytes {
			cut := start + utf8Prefix(b[start:end], MaxArgvBytes-total)
			if cut > start {
				ends[n], used = cut, cut
				n++
			}
			truncated = true
			break
		}
		total += end - start
		ends[n], used = end, end
		n++
		if i < 0 {
			break
		}
		start = end + 1
	}
	argv := make([]string, n, n+1)
	s := string(b[:used])
	start := 0
	for k := 0; k < n; k++ {
		argv[k] = s[start:ends[k]]
		start = ends[k] + 1
	}
	if truncated {
		argv = append(argv, TruncMark)
	}
	return argv
}

// utf8Prefix returns the length of the longest prefix of b no longer than max
// that does not split a UTF-8 sequence.
func utf8Prefix(b []byte, max int) int {
	if max >= len(b) {
		return len(b)
	}
	for i := max; i > 0 && i > max-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return max
}

// readCgroup reads dir/cgroup: the process's cgroup v2 path, the container
// id found in it (or, on a hybrid system, in a v1 line), and whether the
// file held the unified hierarchy's line alone.
func readCgroup(dir int, buf []byte) (path, container string, v2only bool) {
	n, err := readAt(dir, "cgroup", buf)
	if err != nil {
		return "", "", false
	}
	return parseCgroup(buf[:n])
}

// parseCgroup does the work of readCgroup on the file's contents.
func parseCgroup(b []byte) (path, container string, v2only bool) {
	var v1 []byte // first container id seen in a v1 line
	v2only = true
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if bytes.HasPrefix(line, []byte("0::")) {
			p := line[3:]
			path = string(p)
			if id := containerID(p); id != nil {
				return path, string(id), v2only && len(b) == 0
			}
			continue
		}
		if len(line) > 0 {
			v2only = false
		}
		if v1 == nil {
			// hierarchy-id:controllers:path
			if i := bytes.IndexByte(line, ':'); i >= 0 {
				if j := bytes.IndexByte(line[i+1:], ':'); j >= 0 {
					v1 = containerID(line[i+1+j+1:])
				}
			}
		}
	}
	return path, string(v1), v2only && path != ""
}

// bootOffset returns what /proc/PID/stat adds, in nanoseconds, to a kernel
// start time when this process reads it: its time namespace's boot-time
// offset (root/self/timens_offsets). 0 without time namespaces, or when the
// file cannot be read: a wrong offset only makes the kernel's starts miss
// the cache, and a process look gone.
func bootOffset(root string) int64 {
	b, err := os.ReadFile(root + "/self/timens_offsets")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || (f[0] != "boottime" && f[0] != "7") { // 7: CLOCK_BOOTTIME
			continue
		}
		sec, err1 := strconv.ParseInt(f[1], 10, 64)
		nsec, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return 0
		}
		return sec*1e9 + nsec
	}
	return 0
}
