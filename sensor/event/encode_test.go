package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// Strings that encoding/json escapes in every way it can.
var oddStrings = []string{
	"", "/etc/passwd", `quote " and \ back`, "<script>&amp;</script>", "tab\tnew\nline\rcr\bbs\fff",
	"\x00\x01\x1f\x7f", "caf\u00e9 \u2028 \u2029 \U0001F600", "bad \xff\xfe utf8 \xc3", "\xe2\x80", "日本語",
}

func randString(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		return ""
	}
	if r.IntN(2) == 0 {
		return oddStrings[r.IntN(len(oddStrings))]
	}
	b := make([]byte, r.IntN(12))
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return string(b)
}

func randStrings(r *rand.Rand) []string {
	switch r.IntN(3) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	ss := make([]string, 1+r.IntN(3))
	for i := range ss {
		ss[i] = randString(r)
	}
	return ss
}

func randUint(r *rand.Rand) uint64 {
	switch r.IntN(3) {
	case 0:
		return 0
	case 1:
		return r.Uint64()
	}
	return uint64(r.IntN(1000))
}

// randEvent fills every field of an Event the encoder writes itself, each
// present or not, zero or not.
func randEvent(r *rand.Rand) *Event {
	ev := &Event{Schema: Schema, ID: randString(r), Host: randString(r), Seq: randUint(r), KTimeNS: randUint(r),
		Time: time.Unix(r.Int64N(1<<34), r.Int64N(1e9)*int64(r.IntN(2))).UTC(), Kind: Kind(randString(r)),
		Action: randString(r), Backend: randString(r), Rule: randString(r), Denied: r.IntN(2) == 0,
		Reflex: randStrings(r), EmitKTimeNS: randUint(r)}
	if r.IntN(4) == 0 {
		ev.Time = ev.Time.In(time.FixedZone("x", r.IntN(48*3600)-24*3600+1))
	}
	if r.IntN(2) == 0 {
		ev.File = &File{Path: randString(r), NewPath: randString(r), Target: randString(r), Dev: randUint(r), Ino: randUint(r),
			MountID: uint32(randUint(r)), Flags: uint32(randUint(r)), Mode: uint32(randUint(r)), Ret: int64(randUint(r)), Unresolved: r.IntN(2) == 0}
	}
	if r.IntN(2) == 0 {
		ev.Exec = &Exec{Path: randString(r), Reasons: randStrings(r), Dev: randUint(r), Ino: randUint(r),
			MountID: uint32(randUint(r)), Arg: randUint(r), Ret: -int64(randUint(r) % 4096)}
	}
	if r.IntN(3) == 0 {
		ev.Net = &Net{Family: randString(r), Protocol: randString(r), Addr: randString(r), Port: uint16(randUint(r))}
	}
	if r.IntN(5) == 0 {
		ev.Health = &Health{LostRecords: randUint(r), Detail: randString(r)}
	}
	if r.IntN(4) != 0 {
		ev.Process = &Process{PID: uint32(randUint(r)), TID: uint32(randUint(r)), PPID: uint32(randUint(r)), UID: uint32(randUint(r)),
			GID: uint32(randUint(r)), Comm: randString(r), Exe: randString(r), Argv: randStrings(r), CgroupID: randUint(r),
			Cgroup: randString(r), Container: randString(r)}
		for range r.IntN(3) {
			ev.Process.Ancestry = append(ev.Process.Ancestry, Ancestor{PID: uint32(randUint(r)), Comm: randString(r), Exe: randString(r)})
		}
	}
	return ev
}

func checkSame(t *testing.T, e *Encoder, ev *Event) {
	t.Helper()
	want, werr := json.Marshal(ev)
	got, gerr := e.Append(nil, ev)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("encoding/json error %v, Encoder error %v", werr, gerr)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("Encoder wrote\n%s\nencoding/json\n%s", got, want)
	}
}

// TestEncoderMatchesMarshal: the wire format is encoding/json's; the
// Encoder writes the same bytes for findings of every shape, with strings
// that need every kind of escape, through its process cache (the same
// process in a row, then a changed one in the same memory).
func TestEncoderMatchesMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var e Encoder
	for range 20000 {
		ev := randEvent(r)
		checkSame(t, &e, ev)
		if ev.Process != nil && r.IntN(2) == 0 {
			checkSame(t, &e, ev) // from the cache
			ev.Process.Comm += "x"
			if len(ev.Process.Ancestry) > 0 {
				ev.Process.Ancestry[0].PID++
			}
			checkSame(t, &e, ev) // changed in place: not from the cache
		}
	}
}

// TestEncoderRefusesWhatMarshalRefuses: a time RFC 3339 cannot hold is an
// error, as with encoding/json.
func TestEncoderRefusesWhatMarshalRefuses(t *testing.T) {
	var e Encoder
	for _, tm := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if _, err := e.Append(nil, &Event{Time: tm}); err == nil {
			t.Errorf("time %v encoded; encoding/json refuses it", tm)
		}
	}
}

func FuzzEncoder(f *testing.F) {
	for _, s := range oddStrings {
		f.Add(s, uint64(7))
	}
	var e Encoder
	f.Fuzz(func(t *testing.T, s string, n uint64) {
		ev := &Event{Schema: Schema, ID: s, Seq: n, Action: s, File: &File{Path: s, Dev: n},
			Process: &Process{PID: uint32(n), Comm: s, Argv: []string{s, s}, Ancestry: []Ancestor{{Exe: s}}}}
		checkSame(t, &e, ev)
	})
}

func BenchmarkEncode(b *testing.B) {
	ev := &Event{Schema: Schema, ID: "Pu2vPQdvmx5dY0GhqZxxxx", Host: "web-1", Seq: 123456, KTimeNS: 98765432101234,
		Time: time.Now().UTC(), Kind: KindFile, Action: "open_write", Backend: "tracepoint",
		File:    &File{Path: "/etc/passwd", Dev: 2049, Ino: 131, MountID: 25, Flags: 0o1101},
		Process: &Process{PID: 4242, TID: 4242, PPID: 1, Comm: "bash", Exe: "/usr/bin/bash", CgroupID: 7, Ancestry: []Ancestor{{PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd"}}}}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := json.Marshal(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoder", func(b *testing.B) {
		var e Encoder
		var buf []byte
		b.ReportAllocs()
		for range b.N {
			var err error
			if buf, err = e.Append(buf[:0], ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestEncoderCoversEveryField: a field added to a finding but not to the
// Encoder, or not to its process cache's comparison, fails here whatever
// randEvent knows of: every field is set by reflection, then each of the
// process's fields is changed on its own after a cached encoding.
func TestEncoderCoversEveryField(t *testing.T) {
	ev := &Event{}
	fillAll(t, reflect.ValueOf(ev).Elem(), 1)
	ev.Health = nil // health findings are encoding/json's own
	var e Encoder
	checkSame(t, &e, ev)
	pv := reflect.ValueOf(ev.Process).Elem()
	for i := range pv.NumField() {
		checkSame(t, &e, ev) // from the cache
		fillAll(t, pv.Field(i), 2)
		checkSame(t, &e, ev) // one field changed: not from the cache
	}
}

// fillAll sets every exported field under v to a value other than its zero
// and other than the one the previous fill with another n gave it.
func fillAll(t *testing.T, v reflect.Value, n int) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(int64(n), int64(n)).UTC()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillAll(t, v.Field(i), n)
			}
		}
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		fillAll(t, v.Elem(), n)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fillAll(t, s.Index(i), n)
		}
		v.Set(s)
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d\"", n))
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(n))
	default:
		t.Fatalf("fillAll: a %s field: teach the test (and the Encoder) this kind", v.Type())
	}
}
