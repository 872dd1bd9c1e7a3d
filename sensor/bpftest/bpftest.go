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

	"github.com/cilium/ebpf"
)

// Programs is the loaded test object.
type Programs struct {
	objs bpftestObjects
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
func (p *Programs) Close() error { return p.objs.Close() }

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
