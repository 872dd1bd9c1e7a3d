// Package backend defines what a kernel backend gives the sensor, whichever
// hooks it uses: the policy in kernel terms goes in, raw records come out.
package backend

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// Rule is one entry of a longest-prefix-match table.
type Rule struct {
	Prefix string // "/etc/" for a directory, "/usr/bin/env" for a file, "/" for everything
	Class  uint32 // ClassProtect or ClassExempt (0 for exec image rules)
	ID     uint32 // reported in findings
}

// Rule classes, as the kernel knows them (bpf/common.h CLASS_*).
const (
	ClassProtect = 1
	ClassExempt  = 2
	// ClassTaint flags an exempt prefix that lies inside the exec image
	// paths: files written there are tainted (executing them is drift).
	ClassTaint = 1 << 16
	// ClassKernelAllow flags an exact kernel setting (under /proc/sys or
	// /sys) the policy allows writing (bpf/common.h CLASS_KALLOW).
	ClassKernelAllow = 1 << 17
	// ClassLeaf flags a prefix no other rule lies under: it decides every
	// path below it, so the kernel can judge a directory's names once.
	ClassLeaf = 1 << 18
)

// Rules is the policy in the kernel's terms.
type Rules struct {
	Paths        []Rule            // protected and exempt prefixes
	Images       []Rule            // where exec is allowed
	DirLinks     map[string]string // symlinked directories: "/bin/" -> "/usr/bin/"
	PortAllowed  func(port uint16) bool
	DenyBinds    bool
	ReflexKill   bool
	ReflexCordon bool // set the cordon gate's flag at detection (needs Options.CordonFlag)
	Enforce      bool // deny mutations instead of only reporting them (lsm only)
	// RawDevices lists, at every seal, the raw devices opening for writing
	// is drift, as keys of bpf/seal.h's rawdevs (S_IFBLK or S_IFCHR << 32 |
	// the kernel's dev_t); nil: none.
	RawDevices func() ([]uint64, error)
	// Interpreters are program names (exec.interpreters) whose script
	// argument is judged like an exec when the program opens it.
	Interpreters []string
}

// Options says where a backend watches.
type Options struct {
	// Scope lists cgroup v2 directories (absolute paths in the mounted
	// hierarchy). Empty means the whole host.
	Scope []string
	// CgroupRoot is the cgroup v2 mount, where whole-host cgroup hooks attach.
	CgroupRoot string
	// RingBytes sizes the ring buffer; 0 keeps the default (8 MiB).
	RingBytes uint32
	// CordonFlag is the cordon gate's flag map (responder/gate), for the
	// cordon reflex; nil when no gate is attached.
	CordonFlag *ebpf.Map
	// Protect lists the sensor's own files and directories (credentials,
	// state, spool), which must exist at load: another process opening one
	// of them, or a file directly in one of the directories, is a tamper
	// finding (denied in lsm enforce mode).
	Protect []string
	// SecondSysExit attaches the tracepoint backend's second sys_exit copy
	// (bpf/tracepoint.c, exit_role) whatever the kernel; by default only
	// kernels newer than 6.18 get it (tracepoint.NeedsSecondSysExit).
	SecondSysExit bool
}

// Stats are the kernel's counters, summed over CPUs.
type Stats struct {
	Lost      uint64 // records the ring buffer could not take
	TaintFull uint64 // writes not tainted because the taint set was full
	Truncated uint64 // paths that did not fit a record
	// Recovered counts syscalls a second copy of a program judged because
	// the kernel skipped the first's run (tracepoint backend, bpf/tracepoint.c
	// exit_role).
	Recovered uint64
	// KernelCounter is advanced only by the kernel program, once per Stats
	// call (the sensor's read of the liveness map is the event it counts):
	// it moves on an idle host, and no one else can move it.
	KernelCounter uint64
	// Unmarked counts first sys_exit runs that could not mark their task
	// (tracepoint backend): the second copy judges those syscalls again and
	// counts them in Recovered.
	Unmarked uint64
	// MapWalked counts executable mprotects whose mapping the tracepoint
	// backend looked up without the mmap lock, held by another thread
	// (bpf/vma.h vma_walk); MapUnfound those whose mapping
	// no lookup found (another thread changed it meanwhile), so they went
	// unjudged.
	MapWalked, MapUnfound uint64
	// Skipped bounds from above the syscalls and events the kernel skipped
	// every program run for (recursion_misses), so nothing judged them: on
	// kernels that run syscall tracepoint programs preemptibly (7.2), a run
	// that finds the same program preempted on its CPU is skipped. Each
	// skipped run counts, but for the tracepoint backend's sys_exit, whose
	// second copy judges the first's skipped runs: there the first's skipped
	// runs less those the second judged count (bpf/tracepoint.c, exit_role).
	Skipped uint64
}

// Backend is a loaded and attached set of kernel programs.
type Backend interface {
	Name() string
	Apply(Rules) error
	SetSealed(bool) error
	Reader() *ringbuf.Reader
	// RingFill is the fraction of the ring buffer holding unread records
	// (0 once CloseRing ran, safe to call meanwhile).
	RingFill() float64
	// CloseRing stops reading the ring buffer: a read in progress returns.
	CloseRing()
	Stats() (Stats, error)
	// Verify re-reads the configuration the sensor wrote into the kernel
	// and checks its links are still attached; it returns each difference,
	// says what changed, and restores what it can. Each difference is
	// reported once.
	Verify() []string
	// SelfObject names the sensor's own object from a tamper record's
	// argument (bpf command << 32 | id).
	SelfObject(arg uint64) (cmd uint32, o Object, ok bool)
	Close() error
}
