package peers

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// ParseFinding reads one line of driftsensor's JSON output (or one NATS
// message): the finding's path and pid, and the loss it reports when it is
// the sensor's own health finding.
func ParseFinding(line []byte) (Obs, error) {
	// Only the fields the benchmark matches on: decoding the whole finding
	// (times, argv, ancestry) made the benchmark's parsing slower than the
	// sensor's writing in a storm.
	var ev struct {
		Kind event.Kind `json:"kind"`
		File *struct {
			Path string `json:"path"`
		} `json:"file"`
		Exec *struct {
			Path string `json:"path"`
		} `json:"exec"`
		Process *struct {
			PID uint32 `json:"pid"`
		} `json:"process"`
		Health *struct {
			LostRecords uint64 `json:"lost_records"`
		} `json:"health"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		return Obs{}, fmt.Errorf("driftsensor output %.80q: %v", line, err)
	}
	var o Obs
	switch {
	case ev.File != nil:
		o.Path = ev.File.Path
	case ev.Exec != nil:
		o.Path = ev.Exec.Path
	}
	if ev.Process != nil {
		o.PID = int(ev.Process.PID)
	}
	o.Exec = ev.Kind == event.KindExec
	if ev.Kind == event.KindSensor && ev.Health != nil {
		o.Lost = ev.Health.LostRecords
	}
	return o, nil
}

// AuditExecKey is the key of AuditRules' exec rule.
const AuditExecKey = "drift-exec"

// ParseAudit reads one line of auditd's log. A PATH record gives the path of
// an object the syscall touched (its parent directory's record is skipped);
// any record with a pid (SYSCALL, URINGOP, SOCKADDR's syscall...) gives the
// pid. ok is false for lines that name neither.
func ParseAudit(line string) (o Obs, ok bool, err error) {
	// ENRICHED logs append the translated fields after a GS (0x1d) byte.
	if i := strings.IndexByte(line, 0x1d); i >= 0 {
		line = line[:i]
	}
	typ, rest, found := strings.Cut(line, " ")
	if !found || !strings.HasPrefix(typ, "type=") {
		return Obs{}, false, fmt.Errorf("audit log line %.80q: no type= field", line)
	}
	_, body, found := strings.Cut(rest, "): ")
	if !found {
		return Obs{}, false, fmt.Errorf("audit log line %.80q: no msg=audit(...): header", line)
	}
	fields := map[string]string{}
	for _, f := range strings.Fields(body) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	if typ == "type=PATH" {
		if fields["nametype"] == "PARENT" {
			return Obs{}, false, nil
		}
		name, err := auditValue(fields["name"])
		if err != nil {
			return Obs{}, false, fmt.Errorf("audit log line %.80q: name: %v", line, err)
		}
		return Obs{Path: name}, name != "", nil
	}
	if p, found := fields["pid"]; found {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return Obs{}, false, fmt.Errorf("audit log line %.80q: pid %q: %v", line, p, err)
		}
		return Obs{PID: pid, Exec: fields["key"] == `"`+AuditExecKey+`"`}, true, nil
	}
	return Obs{}, false, nil
}

// auditValue decodes a logged string: quoted as is, or hex when it holds a
// space, a quote or a control character; (null) is none.
func auditValue(v string) (string, error) {
	switch {
	case v == "" || v == "(null)":
		return "", nil
	case strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`) && len(v) >= 2:
		return v[1 : len(v)-1], nil
	}
	b, err := hex.DecodeString(v)
	return string(b), err
}

// ParseInotify reads one line of inotifywait run with --format '%e %w%f':
// the events, then the path. An overflow of the kernel's queue (Q_OVERFLOW)
// is a loss of unknown size, reported as 1.
func ParseInotify(line string) (Obs, error) {
	events, path, found := strings.Cut(line, " ")
	if strings.Contains(events, "Q_OVERFLOW") {
		return Obs{Lost: 1}, nil
	}
	if !found || path == "" {
		return Obs{}, fmt.Errorf("inotifywait output %.80q: want events, a space and a path", line)
	}
	return Obs{Path: path}, nil
}
