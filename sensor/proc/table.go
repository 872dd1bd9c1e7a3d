// Package proc enriches findings with process context (executable, argv,
// cgroup, container, ancestry) read from procfs, through a bounded cache that
// still knows a process for a while after it has exited.
package proc

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
	"golang.org/x/sys/unix"
)

// DefaultMaxEntries is the cache size New uses when given none.
const DefaultMaxEntries = 8192

// revalidateAfter is how long a cached ancestor is trusted before procfs is
// read again: without it every finding would cost up to MaxAncestors reads,
// with it an ancestor that execs shows its old image for at most this long.
// The process a finding is about is checked against procfs every time.
const revalidateAfter = time.Second

// key names one process: pids are reused, (pid, start time) is not.
type key struct {
	pid   uint32
	start uint64
}

// info is what the table knows of one process. It is never modified once
// stored, so it can be read without the lock.
type info struct {
	ppid      uint32 // as first seen: a reparented process keeps its real parent
	comm      string
	exe       string
	argv      []string
	cgroup    string
	container string
	cgroupID  uint64 // the kernel's cgroup id when cgroup was read, 0 if unknown
	cgroupAt  int64  // when cgroup was read, on the table's clock
	full      bool   // argv and cgroup are known; ancestors only need comm and exe
}

// entry is one cache slot; its fields are guarded by Table.mu.
type entry struct {
	key
	info        *info
	parentStart uint64 // start time of the parent, once seen alive; 0 if unknown
	stale       bool   // Forget was called: do not serve while the process is alive
	tag         uint32 // the kernel's process tag when info was read; 0 if none
	checked     int64  // when info was last confirmed against procfs
	prev, next  *entry // LRU ring, most recent first
}

// Table is a bounded, least-recently-used cache of process context keyed by
// pid and start time. It is safe for concurrent use; no lock is held while
// procfs is read.
type Table struct {
	root       string
	max        int
	revalidate int64 // nanoseconds; see revalidateAfter
	epoch      time.Time
	bootOffset int64 // ns procfs adds to the kernel's boot times: the time namespace's

	mu     sync.Mutex
	byKey  map[key]*entry
	latest map[uint32]*entry // the newest entry for each pid, for processes that are gone
	lru    entry             // sentinel of the LRU ring
	// cgroups maps the kernel's cgroup id to its path and container, as
	// read from procfs: a new process in a cgroup seen within revalidate
	// costs one procfs file less.
	cgroups map[uint64]cgroupInfo
}

// cgroupInfo is what a v2-only cgroup file said of one cgroup id.
type cgroupInfo struct {
	path, container string
	at              int64 // when read, on the table's clock
}

// maxCgroups bounds Table.cgroups; past it the map starts over.
const maxCgroups = 4096

// New returns a table reading procRoot (normally "/proc"; "" means that)
// and caching at most maxEntries processes (DefaultMaxEntries if <= 0).
func New(procRoot string, maxEntries int) *Table {
	if procRoot == "" {
		procRoot = "/proc"
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	t := &Table{
		root:       filepath.Clean(procRoot),
		max:        maxEntries,
		revalidate: int64(revalidateAfter),
		epoch:      time.Now(),
		byKey:      make(map[key]*entry),
		latest:     make(map[uint32]*entry),
		cgroups:    make(map[uint64]cgroupInfo),
		bootOffset: bootOffset(procRoot),
	}
	t.lru.next, t.lru.prev = &t.lru, &t.lru
	return t
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// Fill completes p, whose PID (and the other fields the kernel record carries)
// is set: PPID if 0, and Comm, Exe, Argv, Cgroup, Container and Ancestry where
// empty. Fields already set are kept. If the process has exited, Fill uses what
// the cache still knows of it, provided the cached comm matches p.Comm, and
// otherwise leaves p as it was. Fill never fails and never waits on another
// Fill. The returned Argv is shared with the cache and must not be modified.
func (t *Table) Fill(p *event.Process) { t.FillKernel(p, Kernel{}) }

// Kernel is what a kernel record says of its process besides p's fields.
type Kernel struct {
	// Tag is the process tag (start time and exec generation; 0 when the
	// backend has none). While the tag of a pid is the one its cached data
	// was read under, the process has neither exited nor exec'd, so the data
	// is served without reading procfs: a burst of findings from one process
	// costs one procfs read, not one per finding.
	Tag uint32
	// Start is the start of the process p.PID names, in nanoseconds after
	// boot (0: unknown). With the pid it names the process exactly: if
	// procfs shows another start, the pid was taken by a new process after
	// the record's, and the finding gets what the cache knew of its own
	// process, never the newcomer's context.
	Start uint64
	// ParentStart is the same of the process p.PPID names. A parent
	// confirmed within revalidate is then served without reading procfs: a
	// new process costs the reads of its own context only.
	ParentStart uint64
}

// nsPerTick converts the kernel's start times to the clock ticks of
// /proc/PID/stat (USER_HZ is 100 on every Linux architecture the sensor
// builds for).
const nsPerTick = 1e9 / 100

// ticks converts a start from the kernel (ns after boot, 0 unknown) to
// procfs's clock ticks, which count in the reader's time namespace.
func (t *Table) ticks(ns uint64) uint64 {
	if ns == 0 {
		return 0
	}
	return uint64(int64(ns)+t.bootOffset) / nsPerTick
}

// FillKernel is Fill with what the kernel record adds (see Kernel).
func (t *Table) FillKernel(p *event.Process, k Kernel) {
	if p == nil || p.PID == 0 {
		return
	}
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	now := int64(time.Since(t.epoch))

	kstart := t.ticks(k.Start)
	e, in := t.tagged(p, k.Tag)
	if in == nil {
		e, in = t.subject(p, kstart, s, now)
		if e != nil && k.Tag != 0 {
			t.mu.Lock()
			e.tag = k.Tag
			t.mu.Unlock()
		}
	}
	if in != nil {
		if p.PPID == 0 {
			p.PPID = in.ppid
		}
		setIfEmpty(&p.Comm, in.comm)
		setIfEmpty(&p.Exe, in.exe)
		setIfEmpty(&p.Cgroup, in.cgroup)
		setIfEmpty(&p.Container, in.container)
		if p.Argv == nil {
			p.Argv = in.argv
		}
	}
	if p.Ancestry == nil {
		p.Ancestry = t.ancestry(p, e, in, kstart, t.ticks(k.ParentStart), s, now)
	}
}

func setIfEmpty(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// Forget marks what the table knows of pid as out of date, as after an exec.
// The next Fill for a live pid reads procfs again; the old data is served only
// as the last known state of a process that has since gone, so that findings
// still queued when its exit was reported keep their context. The LRU evicts it.
func (t *Table) Forget(pid uint32) {
	t.mu.Lock()
	if e := t.latest[pid]; e != nil {
		e.stale = true
	}
	t.mu.Unlock()
}

// tagged returns the cached data of p's process when the kernel's tag says it
// is still the process and image it was read from.
func (t *Table) tagged(p *event.Process, tag uint32) (*entry, *info) {
	if tag == 0 {
		return nil, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.latest[p.PID]
	if e == nil || e.tag != tag || e.stale || !e.info.full || (p.CgroupID != 0 && e.info.cgroupID != p.CgroupID) {
		return nil, nil
	}
	t.touch(e)
	return e, e.info
}

// subject returns what is known of the process p is about, reading procfs.
// kstart is its start in ticks as the kernel gave it, 0 if not given.
func (t *Table) subject(p *event.Process, kstart uint64, s *scratch, now int64) (*entry, *info) {
	dir, err := t.openPID(p.PID)
	if err != nil {
		return t.lastKnown(p.PID, kstart, p.Comm)
	}
	defer unix.Close(dir)
	st, err := readStat(dir, s.stat[:])
	// A later start: the record's process exited and its pid was taken.
	// (An earlier one cannot be that: it would have held the pid all along.)
	if err != nil || (kstart != 0 && st.start > kstart) {
		return t.lastKnown(p.PID, kstart, p.Comm)
	}
	k := key{p.PID, st.start}
	exe, exeOK := readExe(dir, s.exe[:])

	t.mu.Lock()
	e := t.byKey[k]
	var old *info
	if e != nil {
		old = e.info
		if !e.stale && old.full && old.comm == string(st.comm) &&
			(old.exe == string(exe) || !exeOK) && !t.cgroupStale(old, p.CgroupID, now) {
			t.touch(e)
			e.checked = now
			t.mu.Unlock()
			return e, old
		}
	}
	t.mu.Unlock()

	in := &info{
		ppid:     st.ppid,
		comm:     string(st.comm),
		exe:      string(exe),
		cgroupID: p.CgroupID,
		cgroupAt: now,
	}
	in.argv = readArgv(dir, s.big[:])
	in.cgroup, in.container = t.cgroupOf(dir, p.CgroupID, s, now)
	// A process with an image and no argv is between the two halves of an
	// execve (since 5.18 even argc == 0 shows one empty argument): read again next time.
	in.full = !exeOK || in.argv != nil
	if !exeOK && old != nil && old.exe != "" {
		// Exiting: its memory and image are gone, what the cache saw is not.
		in.exe, in.argv = old.exe, old.argv
		if in.cgroup == "" {
			in.cgroup, in.container = old.cgroup, old.container
		}
	}
	return t.store(k, in, nil, now)
}

// cgroupOf returns the cgroup path and container of the process whose
// procfs directory is dir and whose cgroup id the kernel says is id (0:
// unknown): from the cache while the id was read within revalidate, else
// from procfs. Only a file of the unified hierarchy alone is cached: on a
// hybrid system the container may come from a v1 line, which the v2 id does
// not name.
func (t *Table) cgroupOf(dir int, id uint64, s *scratch, now int64) (path, container string) {
	if id != 0 {
		t.mu.Lock()
		c, ok := t.cgroups[id]
		t.mu.Unlock()
		if ok && now-c.at <= t.revalidate {
			return c.path, c.container
		}
	}
	path, container, v2 := readCgroup(dir, s.big[:])
	if id != 0 && v2 {
		t.mu.Lock()
		if len(t.cgroups) >= maxCgroups {
			clear(t.cgroups)
		}
		t.cgroups[id] = cgroupInfo{path: path, container: container, at: now}
		t.mu.Unlock()
	}
	return path, container
}

// cgroupStale reports whether the cgroup in in must be read again: the kernel
// says the process moved, or, without a cgroup id, it was read too long ago.
func (t *Table) cgroupStale(in *info, id uint64, now int64) bool {
	if id != 0 {
		return in.cgroupID != id
	}
	return now-in.cgroupAt > t.revalidate
}

// store installs in as the data of process k, keeping the parent as first
// seen, links child to it if child is not nil, and returns the entry.
func (t *Table) store(k key, in *info, child *entry, now int64) (*entry, *info) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.byKey[k]
	if e == nil {
		e = &entry{key: k}
		t.byKey[k] = e
		t.pushFront(e)
	} else {
		t.touch(e)
		if e.info != nil {
			in.ppid = e.info.ppid
		}
	}
	e.info, e.stale, e.checked = in, false, now
	if l := t.latest[k.pid]; l == nil || l.start <= k.start {
		t.latest[k.pid] = e
	}
	if child != nil {
		child.parentStart = k.start
	}
	for len(t.byKey) > t.max {
		t.evict(t.lru.prev)
	}
	return e, in
}

// lastKnown returns the cached state of pid, a process that is gone: the one
// that started at start if the kernel said (0: not said), else the newest,
// if its comm matches the kernel's (a cheap guard against a reused pid).
func (t *Table) lastKnown(pid uint32, start uint64, comm string) (*entry, *info) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.latest[pid]
	if start != 0 {
		e = t.byKey[key{pid, start}]
	}
	if e == nil || (start == 0 && comm != "" && e.info.comm != comm) {
		return nil, nil
	}
	t.touch(e)
	return e, e.info
}

// ancestry walks up from the process p is about, parent first. kstart and
// pstart are the starts (in ticks) of p.PID and p.PPID, 0 if unknown.
func (t *Table) ancestry(p *event.Process, e *entry, in *info, kstart, pstart uint64, s *scratch, now int64) []event.Ancestor {
	var out [MaxAncestors]event.Ancestor
	n := 0
	ppid, start := p.PPID, kstart
	if in != nil {
		ppid, start = in.ppid, e.start
	}
	if ppid != p.PPID {
		pstart = 0 // reparented since first seen: the walk follows the real parent
	}
	for n < MaxAncestors && ppid != 0 && !seen(out[:n], p.PID, ppid) {
		pe, pin := t.parent(e, ppid, start, pstart, s, now)
		pstart = 0
		if pin == nil {
			out[n] = event.Ancestor{PID: ppid}
			n++
			break
		}
		out[n] = event.Ancestor{PID: ppid, Comm: pin.comm, Exe: pin.exe}
		n++
		e, ppid, start = pe, pin.ppid, pe.start
	}
	if n == 0 {
		return nil
	}
	return append([]event.Ancestor(nil), out[:n]...)
}

// seen guards the walk against a cycle, which only bad procfs data could make.
func seen(out []event.Ancestor, self, pid uint32) bool {
	if pid == self {
		return true
	}
	for _, a := range out {
		if a.PID == pid {
			return true
		}
	}
	return false
}

// parent returns the parent ppid of child (nil if the walk starts from the
// kernel's PPID alone), which started at or before childStart (0 if unknown).
// kstart is the parent's start as the kernel gave it (0 if not given): a
// parent confirmed under that key within revalidate is served as is.
func (t *Table) parent(child *entry, ppid uint32, childStart, kstart uint64, s *scratch, now int64) (*entry, *info) {
	var linked *entry // the parent as seen alive before
	t.mu.Lock()
	if kstart != 0 {
		if e := t.byKey[key{ppid, kstart}]; e != nil && t.fresh(e, now) {
			t.touch(e)
			if child != nil {
				child.parentStart = kstart
			}
			in := e.info
			t.mu.Unlock()
			return e, in
		}
	}
	if child != nil && child.parentStart != 0 {
		linked = t.byKey[key{ppid, child.parentStart}]
		if linked != nil && t.fresh(linked, now) {
			t.touch(linked)
			in := linked.info
			t.mu.Unlock()
			return linked, in
		}
	}
	t.mu.Unlock()

	if dir, err := t.openPID(ppid); err == nil {
		st, err := readStat(dir, s.stat[:])
		// A parent starts before its child; a later start means the pid was reused.
		if err == nil && (childStart == 0 || st.start <= childStart) &&
			(linked == nil || st.start == linked.start) {
			exe, exeOK := readExe(dir, s.exe[:])
			unix.Close(dir)
			return t.confirm(child, key{ppid, st.start}, st, exe, exeOK, now)
		}
		unix.Close(dir)
	}

	// The parent is gone: use what was seen of it.
	t.mu.Lock()
	defer t.mu.Unlock()
	if linked != nil {
		t.touch(linked)
		return linked, linked.info
	}
	if childStart == 0 {
		return nil, nil // nothing ties a cached process to this pid
	}
	if l := t.latest[ppid]; l != nil && l.start <= childStart {
		t.touch(l)
		if child != nil {
			child.parentStart = l.start
		}
		return l, l.info
	}
	return nil, nil
}

// fresh says the cached ancestor e may be served without reading procfs.
func (t *Table) fresh(e *entry, now int64) bool {
	return !e.stale && now-e.checked < t.revalidate
}

// confirm checks the cached data of ancestor k against what procfs just
// showed, replacing it if the process has exec'd or was forgotten.
func (t *Table) confirm(child *entry, k key, st stat, exe []byte, exeOK bool, now int64) (*entry, *info) {
	t.mu.Lock()
	if e := t.byKey[k]; e != nil {
		in := e.info
		if !e.stale && in.comm == string(st.comm) && (in.exe == string(exe) || !exeOK) {
			e.checked = now
			t.touch(e)
			if child != nil {
				child.parentStart = k.start
			}
			t.mu.Unlock()
			return e, in
		}
		if !exeOK {
			exe = []byte(in.exe) // exiting: keep the image it had
		}
	}
	t.mu.Unlock()
	return t.store(k, &info{ppid: st.ppid, comm: string(st.comm), exe: string(exe)}, child, now)
}

// touch moves e to the front of the LRU ring.
func (t *Table) touch(e *entry) {
	if e.prev == nil || t.lru.next == e {
		return // evicted meanwhile, or already first
	}
	e.prev.next, e.next.prev = e.next, e.prev
	t.pushFront(e)
}

func (t *Table) pushFront(e *entry) {
	e.prev, e.next = &t.lru, t.lru.next
	t.lru.next.prev = e
	t.lru.next = e
}

// evict drops e from the table.
func (t *Table) evict(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(t.byKey, e.key)
	if t.latest[e.pid] == e {
		delete(t.latest, e.pid)
	}
}
