// Package evidence reads what driftresponder kept of an incident from the
// evidence object store, shows it, and saves it to a directory, for
// driftctl evidence.
package evidence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// ErrUnknown is an incident with no evidence kept.
var ErrUnknown = errors.New("no evidence kept")

// Fetch reads the evidence of incident: the stored bytes and their reading.
func Fetch(ctx context.Context, js jetstream.JetStream, incident string) (*event.Evidence, []byte, error) {
	store, err := js.ObjectStore(ctx, event.EvidenceBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil, fmt.Errorf("incident %s: %w: the bucket %s does not exist (driftresponder keeps evidence with --evidence, the default, for cordoned and destroyed incidents)", incident, ErrUnknown, event.EvidenceBucket)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("evidence bucket %s: %w", event.EvidenceBucket, err)
	}
	raw, err := store.GetBytes(ctx, incident)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil, fmt.Errorf("incident %s: %w in %s (driftctl incidents lists incidents; evidence is kept for cordoned and destroyed ones)", incident, ErrUnknown, event.EvidenceBucket)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("evidence of %s: %w", incident, err)
	}
	var ev event.Evidence
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, nil, fmt.Errorf("evidence of %s in %s is not JSON: %w", incident, event.EvidenceBucket, err)
	}
	if ev.Schema != event.EvidenceSchema {
		return nil, nil, fmt.Errorf("evidence of %s: schema %q (this driftctl reads %q)", incident, ev.Schema, event.EvidenceSchema)
	}
	return &ev, raw, nil
}

// WriteText shows ev for a person: the incident's findings with their
// process ancestry, the files, the host's recent findings.
func WriteText(w io.Writer, ev *event.Evidence) error {
	var b strings.Builder
	fmt.Fprintf(&b, "incident %s  host %s", ev.Incident, ev.Host)
	if ev.Drill != "" {
		fmt.Fprintf(&b, "  drill %s", ev.Drill)
	}
	fmt.Fprintf(&b, "\nkept by %s at %s (capture took %s)\n", ev.Replica, ev.Finished.UTC().Format(time.RFC3339Nano), ev.Finished.Sub(ev.Started).Round(time.Microsecond))
	fmt.Fprintf(&b, "\nfindings of the incident (%d):\n", len(ev.Chain))
	for i := range ev.Chain {
		finding(&b, &ev.Chain[i], true)
	}
	if len(ev.Missing) > 0 {
		fmt.Fprintf(&b, "  not in the stream any more: %s\n", strings.Join(ev.Missing, ", "))
	}
	fmt.Fprintf(&b, "\nfiles (%d), as the host's sensor read them:\n", len(ev.Files))
	for _, f := range ev.Files {
		fmt.Fprintf(&b, "  %s\n", f.Path)
		if f.Mode != "" || f.Size > 0 {
			fmt.Fprintf(&b, "    %s  %d bytes  modified %s\n", f.Mode, f.Size, f.MTime.UTC().Format(time.RFC3339))
		}
		if f.Hashed {
			fmt.Fprintf(&b, "    sha256 %s\n", f.SHA256)
		}
		if f.Head != nil {
			show := f.Head
			if len(show) > 64 {
				show = show[:64]
			}
			fmt.Fprintf(&b, "    first %d bytes: %s", len(f.Head), strconv.Quote(string(show)))
			if len(show) < len(f.Head) {
				b.WriteString(" ... (all of them with --out)")
			}
			b.WriteString("\n")
		}
		if f.Error != "" {
			fmt.Fprintf(&b, "    not read: %s\n", f.Error)
		}
	}
	fmt.Fprintf(&b, "\nrecent findings of %s (%d, at most %d of the last %s):\n", ev.Host, len(ev.Recent), ev.RecentLimit, ev.RecentWindow)
	for i := range ev.Recent {
		finding(&b, &ev.Recent[i], false)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func finding(b *strings.Builder, e *event.Event, ancestry bool) {
	fmt.Fprintf(b, "  %s  seq %d  %s %s", e.Time.UTC().Format(time.RFC3339Nano), e.Seq, e.Kind, e.Action)
	for _, p := range paths(e) {
		fmt.Fprintf(b, " %s", p)
	}
	fmt.Fprintf(b, "  [%s]\n", e.ID)
	p := e.Process
	if !ancestry || p == nil {
		return
	}
	fmt.Fprintf(b, "    process %d %s", p.PID, p.Comm)
	if p.Exe != "" {
		fmt.Fprintf(b, " (%s)", p.Exe)
	}
	fmt.Fprintf(b, " uid %d", p.UID)
	if len(p.Argv) > 0 {
		fmt.Fprintf(b, "  argv %q", p.Argv)
	}
	b.WriteString("\n")
	for _, a := range p.Ancestry {
		fmt.Fprintf(b, "      <- %d %s", a.PID, a.Comm)
		if a.Exe != "" {
			fmt.Fprintf(b, " (%s)", a.Exe)
		}
		b.WriteString("\n")
	}
}

func paths(e *event.Event) []string {
	var out []string
	if e.File != nil {
		out = append(out, e.File.Path)
		if e.File.NewPath != "" {
			out = append(out, "-> "+e.File.NewPath)
		}
	}
	if e.Exec != nil && e.Exec.Path != "" {
		out = append(out, e.Exec.Path)
	}
	return out
}

// Save writes the evidence into dir (created, mode 0700): evidence.json as
// stored, and each file's first bytes as files/<n>-<name>.head. It returns
// the files written.
func Save(dir string, ev *event.Evidence, raw []byte) ([]string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "files"), 0o700); err != nil {
		return nil, fmt.Errorf("--out %s: %w", dir, err)
	}
	write := func(name string, data []byte) (string, error) {
		p := filepath.Join(dir, name)
		// O_EXCL: never overwrite what an earlier save (or anything else) left there.
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("--out: %w (save into a new or empty directory)", err)
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return "", fmt.Errorf("--out: write %s: %w", p, err)
		}
		return p, f.Close()
	}
	var out []string
	p, err := write("evidence.json", raw)
	if err != nil {
		return nil, err
	}
	out = append(out, p)
	for i, f := range ev.Files {
		if f.Head == nil {
			continue
		}
		if p, err = write(filepath.Join("files", fmt.Sprintf("%d-%s.head", i+1, filepath.Base(f.Path))), f.Head); err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}
