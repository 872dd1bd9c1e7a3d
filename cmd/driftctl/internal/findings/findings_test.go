package findings

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// TestTextLines: the text format of every kind of finding, line for line,
// colour off and on, host-controlled strings escaped.
func TestTextLines(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 4, 5, 123e6, time.UTC)
	proc := &event.Process{PID: 42, UID: 0, Comm: "sh", Ancestry: []event.Ancestor{{PID: 7, Comm: "sshd"}}}
	for _, c := range []struct {
		name string
		ev   event.Event
		want string
	}{
		{"file rename, failed", event.Event{Kind: event.KindFile, Action: "rename", Process: proc, Rule: "protect[0]=/",
			File: &event.File{Path: "/etc/a", NewPath: "/etc/b", Ret: -13}},
			"2026-03-01T12:04:05.123Z web-1 #9 file   rename /etc/a -> /etc/b ret=-13  sh[42] uid=0 parent=sshd[7] rule=protect[0]=/"},
		{"exec drift", event.Event{Kind: event.KindExec, Action: "exec", Process: proc, Reflex: []string{"killed"},
			Exec: &event.Exec{Path: "/tmp/.x/miner", Reasons: []string{"tainted", "outside_image"}}},
			"2026-03-01T12:04:05.123Z web-1 #9 exec   exec /tmp/.x/miner (tainted,outside_image)  sh[42] uid=0 parent=sshd[7] reflex=killed"},
		{"privileged operation with an argument", event.Event{Kind: event.KindExec, Action: "ptrace_attach", Process: proc,
			Exec: &event.Exec{Arg: 1234}},
			"2026-03-01T12:04:05.123Z web-1 #9 exec   ptrace_attach arg=1234  sh[42] uid=0 parent=sshd[7]"},
		{"bind, denied", event.Event{Kind: event.KindNet, Action: "bind", Process: proc, Denied: true,
			Net: &event.Net{Family: "inet6", Protocol: "tcp", Addr: "::", Port: 4444}},
			"2026-03-01T12:04:05.123Z web-1 #9 net    bind tcp [::]:4444  sh[42] uid=0 parent=sshd[7] DENIED"},
		{"listen", event.Event{Kind: event.KindNet, Action: "listen", Process: proc,
			Net: &event.Net{Family: "inet", Protocol: "tcp", Addr: "0.0.0.0", Port: 8080}},
			"2026-03-01T12:04:05.123Z web-1 #9 net    listen tcp 0.0.0.0:8080  sh[42] uid=0 parent=sshd[7]"},
		{"sensor blind spot", event.Event{Kind: event.KindSensor, Action: "lost_records",
			Health: &event.Health{LostRecords: 17, Detail: "ring buffer full"}},
			"2026-03-01T12:04:05.123Z web-1 #9 sensor lost_records lost=17 ring buffer full"},
		{"sensor detail escaped", event.Event{Kind: event.KindSensor, Action: "decode_error",
			Health: &event.Health{Detail: "bad \x1b[2J record"}},
			`2026-03-01T12:04:05.123Z web-1 #9 sensor decode_error bad \x1b[2J record`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev := c.ev
			ev.Schema, ev.ID, ev.Host, ev.Seq, ev.Time, ev.Backend = event.Schema, "id-"+c.name, "web-1", 9, at, "tracepoint"
			data, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			var out, warn strings.Builder
			p := &Printer{Out: &out, Warn: &warn, Format: FormatText}
			if ok, err := p.Handle(event.Subject("web-1", ev.Kind), data); !ok || err != nil {
				t.Fatalf("not printed: %v; warnings: %s", err, warn.String())
			}
			if got := strings.TrimSuffix(out.String(), "\n"); got != c.want {
				t.Errorf("text\n got %q\nwant %q", got, c.want)
			}
			out.Reset()
			p = &Printer{Out: &out, Warn: &warn, Format: FormatText, Color: true}
			p.Handle(event.Subject("web-1", ev.Kind), data)
			if plain := stripANSI(out.String()); strings.TrimSuffix(plain, "\n") != c.want {
				t.Errorf("coloured text without its colours\n got %q\nwant %q", plain, c.want)
			}
			if strings.Count(out.String(), "\x1b[") < 3 {
				t.Errorf("coloured text has no colours: %q", out.String())
			}
		})
	}
}

// stripANSI removes the colour sequences the printer writes.
func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] == ';' || (s[j] >= '0' && s[j] <= '9')) {
				j++
			}
			i = j // the final 'm'
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
