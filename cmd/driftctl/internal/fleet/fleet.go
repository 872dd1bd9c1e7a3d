// Package fleet gathers the state of every host for driftctl status: its
// state in the control plane (the KV bucket) and what its sensor says in
// heartbeats.
package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// Host is one row of the fleet.
type Host struct {
	Host string `json:"host"`
	// State is the host's state in the control plane; "" when it has none
	// (the sensor keeps what it booted with).
	State         event.State `json:"state"`
	StateRevision uint64      `json:"state_revision,omitempty"`
	// Heartbeat is the last one received while listening, nil when none came.
	Heartbeat *event.Heartbeat `json:"heartbeat,omitempty"`
	// HeartbeatAgeSec is how long before the report the last heartbeat
	// arrived (measured on this machine's clock, not the sensor's).
	HeartbeatAgeSec *float64 `json:"heartbeat_age_sec,omitempty"`
	// Mismatch says why the state the sensor applies is not the control
	// plane's, or why its watch on it is down; "" when all is well.
	Mismatch string `json:"mismatch,omitempty"`
}

// mismatch compares the host's state in the control plane with what its
// last heartbeat says the sensor applies, and looks at the sensor's watch.
func (h *Host) mismatch() string {
	hb := h.Heartbeat
	if hb == nil {
		return ""
	}
	var why []string
	if h.State != event.StateNone && hb.State != h.State {
		why = append(why, fmt.Sprintf("the control plane says %s, the sensor applies %s", h.State, orDash(string(hb.State))))
	}
	if hb.StateWatch != "" && hb.StateWatch != "ok" {
		why = append(why, "state watch: "+hb.StateWatch)
	}
	if hb.Transport == "unauthorized" {
		why = append(why, "the server refuses the sensor's credentials or their permissions")
	}
	return strings.Join(why, "; ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Status is the whole fleet as seen during one listen.
type Status struct {
	Time    time.Time `json:"time"`
	WaitSec float64   `json:"wait_sec"` // how long heartbeats were listened for
	// NoStateBucket is set when the control plane has no state bucket yet.
	NoStateBucket bool   `json:"no_state_bucket,omitempty"`
	Hosts         []Host `json:"hosts"`
	// Rejected counts messages on heartbeat subjects that were not valid heartbeats.
	Rejected int `json:"rejected,omitempty"`
}

// Collect listens to every heartbeat for wait (two intervals of the
// default 1s heartbeat is enough to hear every live sensor) and reads every
// host's state from the KV bucket meanwhile.
func Collect(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, wait time.Duration) (*Status, error) {
	type beat struct {
		hb  event.Heartbeat
		at  time.Time
		bad bool
	}
	ch := make(chan beat, 1024)
	subj := event.SubjectRoot + ".*." + event.HeartbeatTok
	sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
		var hb event.Heartbeat
		bad := json.Unmarshal(m.Data, &hb) != nil || hb.Schema != event.HeartbeatSchema ||
			m.Subject != event.HeartbeatSubject(hb.Host) || event.ValidHost(hb.Host) != nil
		select {
		case ch <- beat{hb: hb, at: time.Now(), bad: bad}:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subj, err)
	}
	defer sub.Unsubscribe()
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subj, err)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()

	st := &Status{WaitSec: wait.Seconds()}
	hosts := map[string]*Host{}
	get := func(name string) *Host {
		h, ok := hosts[name]
		if !ok {
			h = &Host{Host: name}
			hosts[name] = h
		}
		return h
	}
	states, err := readStates(ctx, js)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		st.NoStateBucket = true
	case err != nil:
		return nil, err
	}
	for name, s := range states {
		h := get(name)
		h.State, h.StateRevision = s.state, s.rev
	}

	received := map[string]time.Time{}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			done = true
		case b := <-ch:
			if b.bad {
				st.Rejected++
				continue
			}
			h := get(b.hb.Host)
			if h.Heartbeat == nil || !b.hb.Time.Before(h.Heartbeat.Time) {
				hb := b.hb
				h.Heartbeat = &hb
				received[b.hb.Host] = b.at
			}
		}
	}
	st.Time = time.Now().UTC()
	for name, at := range received {
		age := st.Time.Sub(at).Seconds()
		hosts[name].HeartbeatAgeSec = &age
	}
	st.Hosts = make([]Host, 0, len(hosts))
	for _, h := range hosts {
		h.Mismatch = h.mismatch()
		st.Hosts = append(st.Hosts, *h)
	}
	sort.Slice(st.Hosts, func(i, j int) bool { return st.Hosts[i].Host < st.Hosts[j].Host })
	return st, nil
}

type kvState struct {
	state event.State
	rev   uint64
}

// readStates reads every key of the state bucket.
func readStates(ctx context.Context, js jetstream.JetStream) (map[string]kvState, error) {
	kv, err := js.KeyValue(ctx, event.StateBucket)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("KV bucket %s: %w", event.StateBucket, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", event.StateBucket, err)
	}
	out := map[string]kvState{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read %s/%s: %w", event.StateBucket, k, err)
		}
		out[k] = kvState{state: event.State(e.Value()), rev: e.Revision()}
	}
	return out, nil
}

// WriteTable prints the fleet as an aligned table, one host a line.
func (s *Status) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tBACKEND\tHEARTBEAT\tFINDINGS\tLOST\tTRANSPORT\tVERSION")
	for _, h := range s.Hosts {
		state := string(h.State)
		if state == "" {
			state = "-"
		}
		backend, age, findings, lost, transport, version := "-", "none in "+strconv.FormatFloat(s.WaitSec, 'f', -1, 64)+"s", "-", "-", "-", "-"
		if hb := h.Heartbeat; hb != nil {
			backend = hb.Backend
			if h.HeartbeatAgeSec != nil {
				age = (time.Duration(*h.HeartbeatAgeSec * float64(time.Second))).Round(time.Millisecond).String() + " ago"
			}
			findings = strconv.FormatUint(hb.Counters.Findings, 10)
			// Both are findings that never reached the stream.
			lost = strconv.FormatUint(hb.Counters.LostRecords+hb.Counters.SpoolLost, 10)
			transport = hb.Transport
			version = buildOf(hb)
			if hb.State != h.State && hb.State != "" {
				state += " (sensor: " + string(hb.State) + ")"
			}
			if h.Mismatch != "" {
				state += " !"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Host, state, backend, age, findings, lost, transport, version)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, h := range s.Hosts {
		if h.Mismatch != "" {
			notes = append(notes, "! "+h.Host+": "+h.Mismatch)
		}
		if hb := h.Heartbeat; hb != nil && hb.BackendWhy != "" {
			notes = append(notes, h.Host+": backend "+hb.Backend+" ("+hb.BackendWhy+")")
		}
	}
	if s.NoStateBucket {
		notes = append(notes, "no host state bucket yet (driftctl init creates it)")
	}
	if s.Rejected > 0 {
		notes = append(notes, fmt.Sprintf("%d invalid heartbeat messages ignored", s.Rejected))
	}
	if len(s.Hosts) == 0 {
		notes = append(notes, "no hosts: no state in the control plane and no heartbeat heard")
	}
	for _, n := range notes {
		if _, err := fmt.Fprintln(w, "# "+strings.TrimSpace(n)); err != nil {
			return err
		}
	}
	return nil
}

// buildOf names the sensor's build: its version and the short commit.
func buildOf(hb *event.Heartbeat) string {
	v := hb.Version
	if v == "" {
		v = "-"
	}
	if hb.Commit != "" {
		c, dirty := strings.CutSuffix(hb.Commit, "-dirty")
		if len(c) > 12 {
			c = c[:12]
		}
		if dirty {
			c += "-dirty"
		}
		v += " (" + c + ")"
	}
	return v
}
