package backend

import (
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// bpf(2) commands: the kinds of the sensor's own objects are named by the
// command that turns an id into a descriptor (the first half of a self_ids
// key, bpf/maps.h), and tamper findings name the command used.
const (
	CmdProgGetFDByID = 13
	CmdMapGetFDByID  = 14
	CmdLinkGetFDByID = 30
)

// bpfCmds names the commands the kernel reports as tampering (bpf/maps.h
// bpf_target_of).
var bpfCmds = map[uint32]string{
	2: "BPF_MAP_UPDATE_ELEM", 3: "BPF_MAP_DELETE_ELEM", 9: "BPF_PROG_DETACH",
	CmdProgGetFDByID: "BPF_PROG_GET_FD_BY_ID", CmdMapGetFDByID: "BPF_MAP_GET_FD_BY_ID",
	21: "BPF_MAP_LOOKUP_AND_DELETE_ELEM", 22: "BPF_MAP_FREEZE", 25: "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
	26: "BPF_MAP_UPDATE_BATCH", 27: "BPF_MAP_DELETE_BATCH", 29: "BPF_LINK_UPDATE",
	CmdLinkGetFDByID: "BPF_LINK_GET_FD_BY_ID", 34: "BPF_LINK_DETACH",
}

// kindOf is the kind of object a command acts on.
func kindOf(cmd uint32) uint32 {
	switch cmd {
	case 9, CmdProgGetFDByID:
		return CmdProgGetFDByID
	case 29, 34, CmdLinkGetFDByID:
		return CmdLinkGetFDByID
	}
	return CmdMapGetFDByID
}

// BPFCmdName names a bpf(2) command as the kernel's headers do.
func BPFCmdName(cmd uint32) string {
	if n, ok := bpfCmds[cmd]; ok {
		return n
	}
	return fmt.Sprintf("bpf command %d", cmd)
}

// Object is one of the sensor's own programs, maps or links.
type Object struct {
	Kind string // "map", "program" or "link"
	Name string // its name in the BPF object ("config_map", "drift_sys_exit"), or what a link attaches
	ID   uint32
}

func (o Object) String() string {
	return fmt.Sprintf("driftsensor %s %s (id %d)", o.Kind, o.Name, o.ID)
}

// Link is an attached link and what it attaches, for findings.
type Link struct {
	Link link.Link
	What string // e.g. "tp_btf/sys_exit", "cgroup/bind4 on /sys/fs/cgroup/x"
}

// Own is what a backend owns in the kernel, handed to Guard once everything
// is attached.
type Own struct {
	Programs map[string]*ebpf.Program
	// Maps names maps; the maps the programs use are found from them too,
	// named as the kernel knows them (at most 15 bytes).
	Maps  map[string]*ebpf.Map
	Links []Link
	// SelfIDs, Guarded and Liveness are the maps of bpf/maps.h that Guard
	// fills once and freezes.
	SelfIDs, Guarded, Liveness *ebpf.Map
	// Files are the sensor's own files and directories (Options.Protect).
	Files []string
	// Shared are maps the programs use that others write by design, never
	// the sensor's own: the cordon gate's flag, which the responder flips.
	Shared []*ebpf.Map
}

// linkState is what Verify expects of a link.
type linkState struct {
	Link
	id     link.ID
	prog   ebpf.ProgramID
	cgroup uint64 // 0: not a cgroup link
	gone   bool   // already reported detached
}

// guardMax is GUARD_MAX (bpf/maps.h): the guarded map's size.
const guardMax = 64

// SetSelf sets what the kernel programs must know before load, in .rodata
// (frozen by the kernel at load, so no bpf() command can rewrite it): the
// sensor's own process, the inode numbers of its guarded files, and whether
// the kernel allows direct loads.
func SetSelf(spec *ebpf.CollectionSpec, opts Options) error {
	v, ok := spec.Variables["self_tgid"]
	if !ok {
		return errors.New("BPF object has no self_tgid variable (bpf/maps.h): rebuild it with make generate")
	}
	if err := v.Set(uint32(os.Getpid())); err != nil {
		return fmt.Errorf("set self_tgid: %w", err)
	}
	if len(opts.Protect) > guardMax {
		return fmt.Errorf("protect: %d files and directories, at most %d", len(opts.Protect), guardMax)
	}
	if len(opts.Protect) > 0 {
		var inos [guardMax]uint64
		for i, f := range opts.Protect {
			var st unix.Stat_t
			if err := unix.Stat(f, &st); err != nil {
				return fmt.Errorf("protect %s: %w (give an existing file or directory of the sensor's)", f, err)
			}
			inos[i] = st.Ino
		}
		if err := spec.Variables["guard_files"].Set(uint32(len(opts.Protect))); err != nil {
			return fmt.Errorf("set guard_files: %w", err)
		}
		if err := spec.Variables["guarded_ino"].Set(inos); err != nil {
			return fmt.Errorf("set guarded_ino: %w", err)
		}
	}
	return setDirectLoads(spec)
}

// Guard records the sensor's own objects and files in the kernel, so that
// another process touching them is reported at the syscall, and freezes
// those tables and the liveness counter against writes from user space.
// Verify later checks the links against what Guard saw.
func (l *Live) Guard(own Own) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.objects = map[uint64]Object{}
	add := func(kind uint32, id uint32, o Object) {
		o.ID = id
		l.objects[uint64(kind)<<32|uint64(id)] = o
	}
	shared := map[ebpf.MapID]bool{}
	for _, m := range own.Shared {
		if m == nil {
			continue
		}
		if info, err := m.Info(); err == nil {
			if id, ok := info.ID(); ok {
				shared[id] = true
			}
		}
	}
	for name, m := range own.Maps {
		info, err := m.Info()
		if err != nil {
			return fmt.Errorf("map %s info: %w", name, err)
		}
		if id, ok := info.ID(); ok && !shared[id] {
			add(CmdMapGetFDByID, uint32(id), Object{Kind: "map", Name: name})
		}
	}
	for name, p := range own.Programs {
		info, err := p.Info()
		if err != nil {
			return fmt.Errorf("program %s info: %w", name, err)
		}
		if id, ok := info.ID(); ok {
			add(CmdProgGetFDByID, uint32(id), Object{Kind: "program", Name: name})
		}
		// Maps the programs use that the loader holds no descriptor of,
		// such as .rodata.
		ids, _ := info.MapIDs()
		for _, id := range ids {
			if _, ok := l.objects[uint64(CmdMapGetFDByID)<<32|uint64(id)]; ok || shared[id] {
				continue
			}
			name := "?"
			if m, err := ebpf.NewMapFromID(id); err == nil {
				if mi, err := m.Info(); err == nil {
					name = mi.Name
				}
				m.Close()
			}
			add(CmdMapGetFDByID, uint32(id), Object{Kind: "map", Name: name})
		}
	}
	l.links = l.links[:0]
	for _, lk := range own.Links {
		info, err := lk.Link.Info()
		if err != nil {
			return fmt.Errorf("link %s info: %w", lk.What, err)
		}
		st := linkState{Link: lk, id: info.ID, prog: info.Program}
		if cg := info.Cgroup(); cg != nil {
			st.cgroup = cg.CgroupId
		}
		add(CmdLinkGetFDByID, uint32(info.ID), Object{Kind: "link", Name: lk.What})
		l.links = append(l.links, st)
	}
	for key := range l.objects {
		if err := own.SelfIDs.Put(key, uint8(1)); err != nil {
			return fmt.Errorf("record the sensor's own ids: %w", err)
		}
	}
	for _, f := range own.Files {
		var st unix.Stat_t
		if err := unix.Stat(f, &st); err != nil {
			return fmt.Errorf("protect %s: %w (give an existing file or directory of the sensor's)", f, err)
		}
		if err := own.Guarded.Put(FileID{Dev: KernelDev(st.Dev), Ino: st.Ino}, uint8(1)); err != nil {
			return fmt.Errorf("protect %s: %w (at most %d files and directories)", f, err, guardMax)
		}
	}
	for name, m := range map[string]*ebpf.Map{"self_ids": own.SelfIDs, "guarded": own.Guarded, "liveness": own.Liveness} {
		if err := m.Freeze(); err != nil {
			return fmt.Errorf("freeze %s: %w", name, err)
		}
	}
	return nil
}

// FileID is struct file_id (bpf/maps.h).
type FileID struct {
	Dev uint64
	Ino uint64
}

// KernelDev turns a device number as stat(2) gives it into the kernel's
// internal encoding (dev_t in struct super_block: major << 20 | minor),
// which the programs read.
func KernelDev(dev uint64) uint64 {
	return uint64(unix.Major(dev))<<20 | uint64(unix.Minor(dev))
}

// SelfObject names one of the sensor's own objects from a tamper record's
// argument (cmd << 32 | id); ok is false for an id Guard did not record.
func (l *Live) SelfObject(arg uint64) (cmd uint32, o Object, ok bool) {
	cmd, id := uint32(arg>>32), uint32(arg)
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok = l.objects[uint64(kindOf(cmd))<<32|uint64(id)]
	if !ok {
		o = Object{Kind: "object", Name: "?", ID: id}
	}
	return cmd, o, ok
}

// SelfObjects lists the sensor's own objects, sorted by kind and name.
func (l *Live) SelfObjects() []Object {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Object, 0, len(l.objects))
	for _, o := range l.objects {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out
}
