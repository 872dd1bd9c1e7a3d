// Package bpftest loads the test programs of bpf/test: BPF_PROG_TEST_RUN
// entries that call the BPF code the backends share, on inputs a test picks.
// Only tests import it; the sensor never loads these programs (a test checks
// that the production objects hold none).
package bpftest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/record"
)

// Programs is the loaded test object.
type Programs struct {
	objs bpftestObjects
	ring *ringbuf.Reader // the object's own events, opened at the first Judge
}

// Load loads the test object. The maps in shared (by their C names, see
// MapsOf) replace the object's own: a test passes a loaded backend's maps so
// the shared code runs on the policy and caches that backend's hooks use.
func Load(shared map[string]*ebpf.Map) (*Programs, error) {
	spec, err := loadBpftest()
	if err != nil {
		return nil, fmt.Errorf("read embedded test object: %w", err)
	}
	repl := map[string]*ebpf.Map{}
	for name, ms := range spec.Maps {
		m := shared[name]
		if m == nil || strings.HasPrefix(name, ".") {
			continue
		}
		ms.MaxEntries = m.MaxEntries() // a ring buffer sized at load
		repl[name] = m
	}
	p := &Programs{}
	if err := spec.LoadAndAssign(&p.objs, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("kernel verifier rejected the test programs: %+v", ve)
		}
		return nil, fmt.Errorf("load test programs: %w", err)
	}
	return p, nil
}

// Close frees the test programs and the maps that were not shared.
func (p *Programs) Close() error {
	if p.ring != nil {
		p.ring.Close()
	}
	return p.objs.Close()
}

// MapsOf returns the maps of a bpf2go objects struct (or pointer to one) by
// their C names, for Load.
func MapsOf(objs any) map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		for v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		for i := 0; i < v.NumField(); i++ {
			f, ft := v.Field(i), v.Type().Field(i)
			if ft.Anonymous {
				walk(f)
				continue
			}
			if m, ok := f.Interface().(*ebpf.Map); ok && m != nil {
				if name := ft.Tag.Get("ebpf"); name != "" {
					out[name] = m
				}
			}
		}
	}
	walk(reflect.ValueOf(objs))
	return out
}

// Resolved is what the kernel's name resolution made of a name.
type Resolved struct {
	Path  string
	Trunc bool   // the path did not fit, or the walk gave up
	Class uint32 // the policy rule's class (backend.Class*), 0 for none
	Rule  uint32 // the policy rule's id
}

// SetName writes the name test_resolve resolves: relative to dfd (-100: the
// cwd) of the calling thread.
func (p *Programs) SetName(dfd int, name string) error {
	var in bpftestTestIn
	if len(name) >= len(in.Name) {
		return fmt.Errorf("name of %d bytes: test_resolve takes at most %d", len(name), len(in.Name)-1)
	}
	in.Dfd = int32(dfd)
	for i := 0; i < len(name); i++ {
		in.Name[i] = int8(name[i])
	}
	return p.objs.TestInMap.Put(uint32(0), &in)
}

// RunResolve runs test_resolve once on the name SetName wrote.
func (p *Programs) RunResolve() error {
	ret, err := p.objs.TestResolve.Run(&ebpf.RunOptions{})
	if err != nil {
		return fmt.Errorf("test run of test_resolve: %w", err)
	}
	if ret != 0 {
		return fmt.Errorf("test_resolve returned %d: a scratch map lookup failed", ret)
	}
	return nil
}

// Resolve resolves and classifies name as the tracepoint hooks do.
func (p *Programs) Resolve(dfd int, name string) (Resolved, error) {
	if err := p.SetName(dfd, name); err != nil {
		return Resolved{}, err
	}
	if err := p.RunResolve(); err != nil {
		return Resolved{}, err
	}
	var out bpftestTestOut
	if err := p.objs.TestOutMap.Lookup(uint32(0), &out); err != nil {
		return Resolved{}, fmt.Errorf("read test_out_map: %w", err)
	}
	b := make([]byte, 0, out.Len)
	for _, c := range out.Path[:min(int(out.Len), len(out.Path))] {
		b = append(b, byte(c))
	}
	return Resolved{Path: string(b), Trunc: out.Trunc != 0, Class: out.Class, Rule: out.Rule}, nil
}

// SetPolicy writes the policy's path rules and exec image rules, and the
// reflex bits of struct config (backend.Reflex*), into the object's own maps.
func (p *Programs) SetPolicy(paths, images []backend.Rule, reflex uint32) error {
	if err := backend.PutRules(p.objs.Rules, paths); err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	if err := backend.PutRules(p.objs.Images, images); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return p.objs.ConfigMap.Put(uint32(0), backend.Config{Sealed: 1, Reflex: reflex})
}

// Taint marks the file (dev, ino) as written after sealing.
func (p *Programs) Taint(dev, ino uint64) error {
	return p.objs.Taint.Put(bpftestFileId{Dev: dev, Ino: ino}, uint64(1))
}

// Request is one mutation as a hook's adapter hands it to judge_path
// (struct judge_req, bpf/judge.h), with its paths.
type Request struct {
	Op     uint16
	Path   string // the path, canonical
	Path2  string // rename, link: the second path; symlink: the target as a path (absolute targets)
	Target string // symlink: the target string
	Ret    int64
	Dev    uint64
	Ino    uint64
	MntID  uint32
	Flags  uint32
	Mode   uint32
	HFlags uint16 // header flags: record.FlagLexical, record.FlagAttempt
	Always bool   // a finding whatever the rules (mount-table changes)
	Taint  bool   // the operation writes the file
	Pre    bool   // the hook runs before the operation (lsm)
	Trunc  bool   // a path did not fit
}

// Judged is judge_path's answer.
type Judged struct {
	Verdict int32 // the hook's return value: 0, or -EPERM in enforce mode
	Taint   bool  // the written file is to be tainted
	// Record is the record judge_path sent, nil when it found the request
	// benign. Its slices point into Raw.
	Record *record.Record
	Raw    []byte
}

// Judge runs judge_path on req and reads back the record it sent, if any.
func (p *Programs) Judge(req Request) (Judged, error) {
	var in bpftestTestJudgeIn
	if err := putString(in.Path[:], req.Path, "path"); err != nil {
		return Judged{}, err
	}
	if err := putString(in.Path2[:], req.Path2, "path2"); err != nil {
		return Judged{}, err
	}
	if err := putString(in.Target[:], req.Target, "target"); err != nil {
		return Judged{}, err
	}
	in.Req = bpftestJudgeReq{
		Ret: req.Ret, Dev: req.Dev, Ino: req.Ino, MntId: req.MntID, Flags: req.Flags, Mode: req.Mode,
		Len: uint32(len(req.Path)), Len2: uint32(len(req.Path2)), Tlen: uint32(len(req.Target)),
		Op: req.Op, Hflags: req.HFlags, Always: b2u(req.Always), Taint: b2u(req.Taint), Pre: b2u(req.Pre),
		Trunc: uint32(b2u(req.Trunc)),
	}
	if err := p.objs.TestJudgeInMap.Put(uint32(0), &in); err != nil {
		return Judged{}, fmt.Errorf("write test_judge_in_map: %w", err)
	}
	if err := p.run(p.objs.TestJudge, "test_judge"); err != nil {
		return Judged{}, err
	}
	var out bpftestTestJudgeOut
	if err := p.objs.TestJudgeOutMap.Lookup(uint32(0), &out); err != nil {
		return Judged{}, fmt.Errorf("read test_judge_out_map: %w", err)
	}
	j := Judged{Verdict: out.Verdict, Taint: out.Taint != 0}
	raw, err := p.next()
	if err != nil || raw == nil {
		return j, err
	}
	j.Raw, j.Record = raw, &record.Record{}
	if err := record.Decode(raw, j.Record); err != nil {
		return j, fmt.Errorf("record judge_path sent: %w", err)
	}
	return j, nil
}

// ExecReasons returns exec_reasons (EX_*) for a file with identity (dev,
// ino) at path; unlinked < 0 asks code_reasons (mappings, scripts) instead.
func (p *Programs) ExecReasons(dev, ino uint64, path string, unlinked int) (uint32, error) {
	in := bpftestTestExecIn{Dev: dev, Ino: ino, Len: uint32(len(path)), Unlinked: int32(unlinked)}
	if err := putString(in.Path[:], path, "path"); err != nil {
		return 0, err
	}
	if err := p.objs.TestExecInMap.Put(uint32(0), &in); err != nil {
		return 0, fmt.Errorf("write test_exec_in_map: %w", err)
	}
	if err := p.run(p.objs.TestExecReasons, "test_exec_reasons"); err != nil {
		return 0, err
	}
	var out uint32
	if err := p.objs.TestExecOutMap.Lookup(uint32(0), &out); err != nil {
		return 0, fmt.Errorf("read test_exec_out_map: %w", err)
	}
	return out, nil
}

func (p *Programs) run(prog *ebpf.Program, name string) error {
	ret, err := prog.Run(&ebpf.RunOptions{})
	if err != nil {
		return fmt.Errorf("test run of %s: %w", name, err)
	}
	if ret != 0 {
		return fmt.Errorf("%s returned %d: a map lookup failed", name, ret)
	}
	return nil
}

// next returns the next record in the object's own ring buffer, nil when it
// holds none. The programs send synchronously: whatever a test run sent is
// there when Run returns, so nothing is waited for.
func (p *Programs) next() ([]byte, error) {
	if p.ring == nil {
		r, err := ringbuf.NewReader(p.objs.Events)
		if err != nil {
			return nil, fmt.Errorf("open the test object's ring buffer: %w", err)
		}
		p.ring = r
	}
	if p.ring.AvailableBytes() == 0 {
		return nil, nil
	}
	p.ring.SetDeadline(time.Now())
	rec, err := p.ring.Read()
	if err != nil {
		return nil, fmt.Errorf("read the test object's ring buffer: %w", err)
	}
	return rec.RawSample, nil
}

func putString(dst []int8, s, what string) error {
	if len(s) >= len(dst) {
		return fmt.Errorf("%s of %d bytes: at most %d fit", what, len(s), len(dst)-1)
	}
	for i := 0; i < len(s); i++ {
		dst[i] = int8(s[i])
	}
	return nil
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// OutputRing queues one record of words (8 bytes each, at most 8 of them)
// in ring, from a BPF program as the hooks do: user space cannot write a BPF
// ring buffer. Tests feed readers records they could not otherwise make.
func OutputRing(ring *ebpf.Map, words ...uint64) error {
	if len(words) == 0 || len(words) > 8 {
		return fmt.Errorf("bpftest: a record of %d words, want 1 to 8", len(words))
	}
	size := int16(8 * len(words))
	var insns asm.Instructions
	for i, w := range words {
		insns = append(insns, asm.LoadImm(asm.R0, int64(w), asm.DWord), asm.StoreMem(asm.RFP, -size+int16(8*i), asm.R0, asm.DWord))
	}
	insns = append(insns,
		asm.LoadMapPtr(asm.R1, ring.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -int32(size)),
		asm.Mov.Imm(asm.R3, int32(size)),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: insns})
	if err != nil {
		return fmt.Errorf("bpftest: load the ring writer: %w", err)
	}
	defer prog.Close()
	if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
		return fmt.Errorf("bpftest: run the ring writer: %w", err)
	}
	return nil
}

// Mapping is the mapping at an address of the calling thread's process as
// test_vma found it both ways: kernel addresses of struct vm_area_struct
// (and of the mapped struct file), 0 for none.
type Mapping struct {
	FindErr  int64  // bpf_find_vma's return: -EBUSY when it could not take the mmap lock
	Find     uint64 // the mapping bpf_find_vma found
	Walk     uint64 // the mapping vma_walk found, without the lock
	WalkFile uint64 // the file of that mapping
}

// VMA runs test_vma on addr. The caller locks its OS thread: the program
// runs in the calling thread, and looks up its process's mappings.
func (p *Programs) VMA(addr uintptr) (Mapping, error) {
	io := bpftestTestVmaIo{Addr: uint64(addr)}
	if err := p.objs.TestVmaMap.Put(uint32(0), &io); err != nil {
		return Mapping{}, fmt.Errorf("write test_vma_map: %w", err)
	}
	if ret, err := p.objs.TestVma.Run(&ebpf.RunOptions{}); err != nil || ret != 0 {
		return Mapping{}, fmt.Errorf("test run of test_vma: %d, %v", ret, err)
	}
	if err := p.objs.TestVmaMap.Lookup(uint32(0), &io); err != nil {
		return Mapping{}, fmt.Errorf("read test_vma_map: %w", err)
	}
	return Mapping{FindErr: io.FindErr, Find: io.FindVma, Walk: io.WalkVma, WalkFile: io.WalkFile}, nil
}
