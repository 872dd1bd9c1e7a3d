// Package findings reads findings for people: live from NATS (watch) or from
// the JetStream stream for a time range (replay), filtered by host and kind,
// printed one line each, as text (coloured on a terminal), JSON or OCSF.
package findings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// Kinds are the finding kinds, in subject order.
var Kinds = []event.Kind{event.KindFile, event.KindExec, event.KindNet, event.KindSensor}

// ParseKind checks a kind name; "" means every kind.
func ParseKind(s string) (event.Kind, error) {
	if s == "" {
		return "", nil
	}
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("kind %q (want file, exec, net or sensor)", s)
}

// Filter selects findings by host and kind; empty means any.
type Filter struct {
	Host string
	Kind event.Kind
}

// streamFilter is one subject filter covering the findings the filter
// selects in the stream; with no kind it also covers the host's state change
// records (drift.v1.<host>.state), which Replay skips. One filter, not one per
// kind: nats-server (2.15.2 here) skips the first matching message when a
// consumer has several filter subjects and starts by time.
func (f Filter) streamFilter() string {
	host, kind := f.Host, string(f.Kind)
	if host == "" {
		host = "*"
	}
	if kind == "" {
		kind = "*"
	}
	return event.SubjectRoot + "." + host + "." + kind
}

func isFindingSubject(subject string) bool {
	k, err := ParseKind(subject[strings.LastIndexByte(subject, '.')+1:])
	return err == nil && k != ""
}

// Subjects are the NATS subjects that carry the findings the filter selects.
func (f Filter) Subjects() []string {
	host := f.Host
	if host == "" {
		host = "*"
	}
	if f.Kind != "" {
		return []string{event.SubjectRoot + "." + host + "." + string(f.Kind)}
	}
	out := make([]string, len(Kinds))
	for i, k := range Kinds {
		out[i] = event.SubjectRoot + "." + host + "." + string(k)
	}
	return out
}

// Output formats.
const (
	FormatText = "text" // one line per finding, for people
	FormatJSON = "json" // the finding as published, one per line
	FormatOCSF = "ocsf" // event.ToOCSF, one per line
)

// ParseFormat checks an output format name.
func ParseFormat(s string) (string, error) {
	switch s {
	case FormatText, FormatJSON, FormatOCSF:
		return s, nil
	}
	return "", fmt.Errorf("format %q (want text, json or ocsf)", s)
}

// Printer writes findings. Warnings about messages it skips go to Warn.
type Printer struct {
	Out    io.Writer
	Warn   io.Writer
	Format string // FormatText, FormatJSON or FormatOCSF
	Color  bool   // ANSI colours in text

	seen dedup
}

// Decode reads a message as a finding and checks it against the subject it
// came on: a finding must name the host and kind of its subject.
func Decode(subject string, data []byte) (*event.Event, error) {
	var ev event.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("not a finding (%v)", err)
	}
	if ev.Schema != event.Schema {
		return nil, fmt.Errorf("schema %q (want %s)", ev.Schema, event.Schema)
	}
	tok := strings.Split(subject, ".")
	if len(tok) != 4 || tok[2] != ev.Host || tok[3] != string(ev.Kind) {
		return nil, fmt.Errorf("finding %s of host %q, kind %q does not belong on this subject", ev.ID, ev.Host, ev.Kind)
	}
	if ev.ID == "" {
		return nil, errors.New("finding without id")
	}
	return &ev, nil
}

// Handle decodes and prints one message; it returns whether a finding was
// printed. A message that is not a valid finding is reported on Warn and
// skipped; a finding already printed (same id: a resend) is skipped silently.
func (p *Printer) Handle(subject string, data []byte) (bool, error) {
	ev, err := Decode(subject, data)
	if err != nil {
		fmt.Fprintf(p.Warn, "driftctl: skipping a message on %s: %v\n", subject, err)
		return false, nil
	}
	if p.seen.check(ev.ID) {
		return false, nil
	}
	return true, p.print(ev, data)
}

func (p *Printer) print(ev *event.Event, raw []byte) error {
	line, err := p.render(ev, raw)
	if line == nil || err != nil {
		return err
	}
	_, err = p.Out.Write(append(line, '\n'))
	return err
}

// render is a finding's line in p's format, without the newline; nil (and
// a warning) for a finding that has no OCSF form.
func (p *Printer) render(ev *event.Event, raw []byte) ([]byte, error) {
	switch p.Format {
	case FormatJSON:
		// As published, fields this driftctl does not know included.
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	case FormatOCSF:
		o, err := event.ToOCSF(ev)
		if err != nil {
			fmt.Fprintf(p.Warn, "driftctl: finding %s: %v\n", ev.ID, err)
			return nil, nil
		}
		return json.Marshal(o)
	default:
		return []byte(p.text(ev)), nil
	}
}

// ANSI colours.
const (
	reset  = "\x1b[0m"
	bold   = "\x1b[1m"
	dim    = "\x1b[2m"
	red    = "\x1b[31m"
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	purple = "\x1b[35m"
	cyan   = "\x1b[36m"
)

var kindColor = map[event.Kind]string{event.KindFile: yellow, event.KindExec: bold + red, event.KindNet: purple, event.KindSensor: cyan}

func (p *Printer) paint(color, s string) string {
	if !p.Color || color == "" {
		return s
	}
	return color + s + reset
}

// text renders one line: time, host, seq, kind, action, what, who, and flags.
// Every string that comes from the host is escaped: a file name can hold
// terminal escape sequences.
func (p *Printer) text(ev *event.Event) string {
	var b strings.Builder
	b.WriteString(p.paint(dim, ev.Time.UTC().Format("2006-01-02T15:04:05.000Z")))
	b.WriteString(" " + p.paint(bold, clean(ev.Host)))
	b.WriteString(p.paint(dim, " #"+strconv.FormatUint(ev.Seq, 10)))
	b.WriteString(" " + p.paint(kindColor[ev.Kind], fmt.Sprintf("%-6s", clean(string(ev.Kind)))))
	b.WriteString(" " + clean(ev.Action))
	if what := describe(ev); what != "" {
		b.WriteString(" " + what)
	}
	if pr := ev.Process; pr != nil {
		fmt.Fprintf(&b, "  %s[%d] uid=%d", clean(pr.Comm), pr.PID, pr.UID)
		if len(pr.Ancestry) > 0 {
			fmt.Fprintf(&b, " parent=%s[%d]", clean(pr.Ancestry[0].Comm), pr.Ancestry[0].PID)
		}
		if pr.Container != "" {
			b.WriteString(" container=" + clean(pr.Container))
		}
	}
	if ev.Rule != "" {
		b.WriteString(p.paint(dim, " rule="+clean(ev.Rule)))
	}
	if ev.Denied {
		b.WriteString(" " + p.paint(bold+green, "DENIED"))
	}
	if len(ev.Reflex) > 0 {
		b.WriteString(" " + p.paint(bold+red, "reflex="+clean(strings.Join(ev.Reflex, ","))))
	}
	return b.String()
}

func describe(ev *event.Event) string {
	switch {
	case ev.File != nil:
		s := clean(ev.File.Path)
		if ev.File.NewPath != "" {
			s += " -> " + clean(ev.File.NewPath)
		}
		if ev.File.Target != "" {
			s += " (target " + clean(ev.File.Target) + ")"
		}
		if ev.File.Ret < 0 {
			s += " ret=" + strconv.FormatInt(ev.File.Ret, 10)
		}
		return s
	case ev.Exec != nil:
		s := clean(ev.Exec.Path)
		if len(ev.Exec.Reasons) > 0 {
			s += " (" + clean(strings.Join(ev.Exec.Reasons, ",")) + ")"
		}
		if ev.Exec.Arg != 0 {
			s += " arg=" + strconv.FormatUint(ev.Exec.Arg, 10)
		}
		return strings.TrimSpace(s)
	case ev.Net != nil:
		addr := ev.Net.Addr
		if strings.Contains(addr, ":") {
			addr = "[" + addr + "]"
		}
		return clean(fmt.Sprintf("%s %s:%d", ev.Net.Protocol, addr, ev.Net.Port))
	case ev.Health != nil:
		s := ""
		if ev.Health.LostRecords > 0 {
			s = "lost=" + strconv.FormatUint(ev.Health.LostRecords, 10) + " "
		}
		return strings.TrimSpace(s + clean(ev.Health.Detail))
	}
	return ""
}

// clean escapes what is not printable, so host-supplied text cannot drive the terminal.
func clean(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) || r == unicode.ReplacementChar {
			q := strconv.QuoteToGraphic(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// dedup remembers the last ids printed: a finding resent after a lost ack
// reaches core NATS subscribers twice (the stream drops the copy).
type dedup struct {
	ids  map[string]struct{}
	ring []string
	next int
}

const dedupSize = 8192

func (d *dedup) check(id string) bool {
	if d.ids == nil {
		d.ids = make(map[string]struct{}, dedupSize)
		d.ring = make([]string, dedupSize)
	}
	if _, ok := d.ids[id]; ok {
		return true
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.ids, old)
	}
	d.ring[d.next] = id
	d.next = (d.next + 1) % dedupSize
	d.ids[id] = struct{}{}
	return false
}

// flushTimeout bounds the round trip that makes a subscription effective.
const flushTimeout = 10 * time.Second

// Watch prints live findings matching f until ctx ends or, when count > 0,
// count findings have been printed. ready, if not nil, is called once the
// subscriptions are in place.
func Watch(ctx context.Context, nc *nats.Conn, f Filter, p *Printer, count int, ready func()) error {
	ch := make(chan *nats.Msg, 4096)
	for _, subj := range f.Subjects() {
		sub, err := nc.ChanSubscribe(subj, ch)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", subj, err)
		}
		defer sub.Unsubscribe()
	}
	if err := nc.FlushTimeout(flushTimeout); err != nil {
		return fmt.Errorf("subscribe %v: %w", f.Subjects(), err)
	}
	if ready != nil {
		ready()
	}
	printed := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			ok, err := p.Handle(m.Subject, m.Data)
			if err != nil {
				return err
			}
			if ok {
				printed++
				if count > 0 && printed >= count {
					return nil
				}
			}
		}
	}
}

// Replay prints the findings matching f that the stream stored from since
// up to until (zero: up to now), in stream order, and returns how many.
// Times are the server's store times: a finding spooled while the server was
// unreachable is stored, and found, later than its own time.
func Replay(ctx context.Context, js jetstream.JetStream, f Filter, since, until time.Time, p *Printer) (int, error) {
	s, err := js.Stream(ctx, event.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, fmt.Errorf("no stream %s on the server: nothing recorded yet, or the server has no JetStream (run driftctl init)", event.StreamName)
	}
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", event.StreamName, err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{f.streamFilter()},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
	})
	if err != nil {
		return 0, fmt.Errorf("replay consumer on %s: %w", event.StreamName, err)
	}
	printed := 0
	for {
		if err := ctx.Err(); err != nil {
			return printed, err
		}
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return printed, fmt.Errorf("read %s: %w", event.StreamName, err)
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			if done {
				continue // drain the batch
			}
			meta, err := m.Metadata()
			if err != nil {
				return printed, fmt.Errorf("read %s: %w", event.StreamName, err)
			}
			if !until.IsZero() && meta.Timestamp.After(until) {
				done = true
				continue
			}
			if isFindingSubject(m.Subject()) {
				ok, err := p.Handle(m.Subject(), m.Data())
				if err != nil {
					return printed, err
				}
				if ok {
					printed++
				}
			}
			if meta.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return printed, fmt.Errorf("read %s: %w", event.StreamName, err)
		}
		if done || got == 0 {
			return printed, nil
		}
	}
}
