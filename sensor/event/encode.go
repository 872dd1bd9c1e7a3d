package event

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Encoder writes findings in JSON, byte for byte what encoding/json's
// Marshal writes for them (TestEncoderMatchesMarshal), without reflection: a
// storm of findings is encoded at the rate the kernel makes them. It keeps
// the encoding of the last process context it wrote, since a storm comes
// from few processes. An Encoder is not safe for concurrent use.
type Encoder struct {
	proc     Process // a copy of the last process encoded
	procJSON []byte  // and its encoding; nil when none
}

// Append appends the JSON of ev to b.
func (e *Encoder) Append(b []byte, ev *Event) ([]byte, error) {
	if ev.Health != nil || !strictTime(ev.Time) {
		// Sensor health findings are rare and nest further; a time
		// encoding/json refuses must be refused the same way.
		data, err := json.Marshal(ev)
		return append(b, data...), err
	}
	b = strField(b, `{"schema":`, ev.Schema)
	b = strField(b, `,"id":`, ev.ID)
	b = strField(b, `,"host":`, ev.Host)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, ev.Seq, 10)
	b = append(b, `,"ktime_ns":`...)
	b = strconv.AppendUint(b, ev.KTimeNS, 10)
	b = append(b, `,"time":"`...)
	b = ev.Time.AppendFormat(b, time.RFC3339Nano)
	b = strField(b, `","kind":`, string(ev.Kind))
	b = strField(b, `,"action":`, ev.Action)
	b = strField(b, `,"backend":`, ev.Backend)
	b = optString(b, `,"rule":`, ev.Rule)
	if ev.Denied {
		b = append(b, `,"denied":true`...)
	}
	if len(ev.Reflex) > 0 {
		b = append(b, `,"reflex":`...)
		b = appendStrings(b, ev.Reflex)
	}
	if f := ev.File; f != nil {
		b = strField(b, `,"file":{"path":`, f.Path)
		b = optString(b, `,"new_path":`, f.NewPath)
		b = optString(b, `,"target":`, f.Target)
		b = optUint(b, `,"dev":`, f.Dev)
		b = optUint(b, `,"ino":`, f.Ino)
		b = optUint(b, `,"mount_id":`, uint64(f.MountID))
		b = optUint(b, `,"flags":`, uint64(f.Flags))
		b = optUint(b, `,"mode":`, uint64(f.Mode))
		b = append(b, `,"ret":`...)
		b = strconv.AppendInt(b, f.Ret, 10)
		if f.Unresolved {
			b = append(b, `,"unresolved":true`...)
		}
		b = append(b, '}')
	}
	if x := ev.Exec; x != nil {
		b = append(b, `,"exec":{`...)
		n := len(b)
		b = optString(b, `,"path":`, x.Path)
		if len(x.Reasons) > 0 {
			b = append(b, `,"reasons":`...)
			b = appendStrings(b, x.Reasons)
		}
		b = optUint(b, `,"dev":`, x.Dev)
		b = optUint(b, `,"ino":`, x.Ino)
		b = optUint(b, `,"mount_id":`, uint64(x.MountID))
		b = optUint(b, `,"arg":`, x.Arg)
		b = append(b, `,"ret":`...)
		b = strconv.AppendInt(b, x.Ret, 10)
		b = append(b[:n], b[n+1:]...) // the first field's comma
		b = append(b, '}')
	}
	if n := ev.Net; n != nil {
		b = strField(b, `,"net":{"family":`, n.Family)
		b = strField(b, `,"protocol":`, n.Protocol)
		b = strField(b, `,"addr":`, n.Addr)
		b = append(b, `,"port":`...)
		b = strconv.AppendUint(b, uint64(n.Port), 10)
		b = append(b, '}')
	}
	if p := ev.Process; p != nil {
		b = append(b, `,"process":`...)
		b = e.appendProcess(b, p)
	}
	b = optUint(b, `,"emit_ktime_ns":`, ev.EmitKTimeNS)
	return append(b, '}'), nil
}

// appendProcess appends p's JSON, from the cache when p is the process
// encoded last.
func (e *Encoder) appendProcess(b []byte, p *Process) []byte {
	if e.procJSON != nil && sameProcess(&e.proc, p) {
		return append(b, e.procJSON...)
	}
	n := len(b)
	b = append(b, `{"pid":`...)
	b = strconv.AppendUint(b, uint64(p.PID), 10)
	b = append(b, `,"tid":`...)
	b = strconv.AppendUint(b, uint64(p.TID), 10)
	b = append(b, `,"ppid":`...)
	b = strconv.AppendUint(b, uint64(p.PPID), 10)
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(p.UID), 10)
	b = append(b, `,"gid":`...)
	b = strconv.AppendUint(b, uint64(p.GID), 10)
	b = strField(b, `,"comm":`, p.Comm)
	b = optString(b, `,"exe":`, p.Exe)
	if len(p.Argv) > 0 {
		b = append(b, `,"argv":`...)
		b = appendStrings(b, p.Argv)
	}
	b = append(b, `,"cgroup_id":`...)
	b = strconv.AppendUint(b, p.CgroupID, 10)
	b = optString(b, `,"cgroup":`, p.Cgroup)
	b = optString(b, `,"container":`, p.Container)
	if len(p.Ancestry) > 0 {
		b = append(b, `,"ancestry":[`...)
		for i, a := range p.Ancestry {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"pid":`...)
			b = strconv.AppendUint(b, uint64(a.PID), 10)
			b = optString(b, `,"comm":`, a.Comm)
			b = optString(b, `,"exe":`, a.Exe)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	// A copy: the caller may change its Process after this.
	e.proc = *p
	e.proc.Argv = slices.Clone(p.Argv)
	e.proc.Ancestry = slices.Clone(p.Ancestry)
	e.procJSON = append(e.procJSON[:0], b[n:]...)
	return b
}

func sameProcess(a, b *Process) bool {
	return a.PID == b.PID && a.TID == b.TID && a.PPID == b.PPID && a.UID == b.UID && a.GID == b.GID &&
		a.CgroupID == b.CgroupID && a.Comm == b.Comm && a.Exe == b.Exe && a.Cgroup == b.Cgroup &&
		a.Container == b.Container && slices.Equal(a.Argv, b.Argv) && slices.Equal(a.Ancestry, b.Ancestry)
}

// strictTime says whether encoding/json encodes t (RFC 3339 has a four-digit
// year and a zone offset under 24 hours), as AppendFormat writes it.
func strictTime(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	return off > -24*3600 && off < 24*3600
}

// strField appends key (`,"name":`) and s quoted.
func strField(b []byte, key, s string) []byte {
	return appendString(append(b, key...), s)
}

func optString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, key...), s)
}

func optUint(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(append(b, key...), v, 10)
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does by default: HTML characters,
// control characters, U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
