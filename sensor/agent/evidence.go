package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// The responder runs off the host, so what a file looks like after drift
// (hash, size, first bytes) comes from the sensor, on request over the ctl
// subject. It reads only files its own recent findings named: the ctl
// subject is not a way to read arbitrary files off the host.

// reportedPaths remembers the last n paths the sensor's findings named.
type reportedPaths struct {
	mu    sync.Mutex
	set   map[string]int // path -> references in ring
	ring  []string       // grows to limit, then wraps
	limit int
	next  int
}

// reportedLimit is how many recent finding paths evidence can be asked for.
const reportedLimit = 1 << 14

// newReportedPaths remembers up to n paths. Its map and ring grow with the
// paths added, not sized for n up front: sized, they were 2 MB of an idle
// sensor's memory, with nothing in them.
func newReportedPaths(n int) *reportedPaths {
	return &reportedPaths{set: map[string]int{}, limit: n}
}

func (r *reportedPaths) add(ev *event.Event) {
	var paths [3]string
	if ev.File != nil {
		paths[0], paths[1] = ev.File.Path, ev.File.NewPath
	}
	if ev.Exec != nil {
		paths[2] = ev.Exec.Path
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range paths {
		if p == "" {
			continue
		}
		if len(r.ring) < r.limit {
			r.ring = append(r.ring, p)
			r.set[p]++
			continue
		}
		if old := r.ring[r.next]; old != "" {
			if r.set[old]--; r.set[old] <= 0 {
				delete(r.set, old)
			}
		}
		r.ring[r.next] = p
		r.next = (r.next + 1) % len(r.ring)
		r.set[p]++
	}
}

func (r *reportedPaths) has(p string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set[p] > 0
}

// Evidence reads the file at path, which one of this sensor's recent
// findings must have named.
func (d *Daemon) Evidence(path string) (*event.FileEvidence, error) {
	if !d.reported.has(path) {
		return nil, fmt.Errorf("evidence %s: no recent finding of this sensor names it (it reads only files its findings named)", path)
	}
	fe := readFileEvidence(path)
	return &fe, nil
}

// readFileEvidence reads path's size, mode, hash and head without following
// a final symlink and without blocking on a FIFO or a device; what cannot be
// read is said in Error.
func readFileEvidence(path string) event.FileEvidence {
	fe := event.FileEvidence{Path: path, Read: time.Now()}
	fi, err := os.Lstat(path)
	if err != nil {
		fe.Error = err.Error()
		return fe
	}
	fe.Size, fe.Mode, fe.MTime = fi.Size(), fi.Mode().String(), fi.ModTime()
	if !fi.Mode().IsRegular() {
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(path)
			fe.Error = fmt.Sprintf("a symlink to %q: not followed", target)
		} else {
			fe.Error = "not a regular file: not read"
		}
		return fe
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		fe.Error = err.Error()
		return fe
	}
	defer f.Close()
	// The file opened must be the one looked at: not swapped in between.
	st, err := f.Stat()
	if err != nil {
		fe.Error = err.Error()
		return fe
	}
	if !os.SameFile(fi, st) || !st.Mode().IsRegular() {
		fe.Error = "the file changed while it was read: not read"
		return fe
	}
	fe.Size, fe.Mode, fe.MTime = st.Size(), st.Mode().String(), st.ModTime()
	head := make([]byte, event.FileHead)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		fe.Error = err.Error()
		return fe
	}
	fe.Head = head[:n]
	h := sha256.New()
	total, err := io.Copy(h, io.NewSectionReader(f, 0, event.MaxHashBytes+1))
	switch {
	case err != nil:
		fe.Error = "hash: " + err.Error()
	case total > event.MaxHashBytes:
		fe.Error = fmt.Sprintf("larger than %d bytes: not hashed", event.MaxHashBytes)
	default:
		// The size is what was hashed, should the file have changed since.
		fe.Hashed, fe.SHA256, fe.Size = true, hex.EncodeToString(h.Sum(nil)), total
	}
	return fe
}
