package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// BootIDFile names this boot of the kernel.
const BootIDFile = "/proc/sys/kernel/random/boot_id"

// runRecord is what a run leaves in its liveness file, rewritten at every
// beat: the next run reads it to say how long the host went unwatched.
type runRecord struct {
	Liveness event.Liveness `json:"liveness"`
	LastBeat time.Time      `json:"last_beat"`
	Clean    bool           `json:"clean"` // written at a clean stop
}

// newLiveness names this run: the boot it runs in, a random instance id
// and its start.
func newLiveness(start time.Time) event.Liveness {
	boot, err := os.ReadFile(BootIDFile)
	if err != nil {
		boot = []byte("unknown")
	}
	var id [12]byte
	rand.Read(id[:])
	return event.Liveness{BootID: strings.TrimSpace(string(boot)), Instance: hex.EncodeToString(id[:]), Started: start.UTC()}
}

// previousRun reads the record an earlier run left and turns it into a
// sensor_restart finding; nil when there was no earlier run.
func (d *Daemon) previousRun() *event.Event {
	path := d.cfg.LivenessFile
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ev := &event.Event{Schema: event.Schema, Host: d.cfg.Host, Kind: event.KindSensor, Action: event.ActionSensorRestart,
		Backend: d.cfg.Backend.Name(), Time: time.Now().UTC()}
	var prev runRecord
	if err == nil {
		err = json.Unmarshal(b, &prev)
	}
	if err != nil {
		ev.Health = &event.Health{Detail: fmt.Sprintf("the sensor restarted; its previous run's record %s is unreadable (%v): how long the host went unwatched is unknown", path, err)}
		return ev
	}
	r := &event.Restart{Previous: prev.Liveness, LastBeat: prev.LastBeat, Clean: prev.Clean,
		DownMs: d.start.Sub(prev.LastBeat).Milliseconds(), Reboot: prev.Liveness.BootID != d.live.BootID}
	how := "was killed or crashed (no clean stop recorded)"
	if r.Clean {
		how = "stopped cleanly"
	}
	if r.Reboot {
		how += "; the host rebooted meanwhile"
	}
	ev.Health = &event.Health{Restart: r, Detail: fmt.Sprintf(
		"the sensor restarted: the previous run (instance %s, started %s) %s; its last heartbeat was at %s, %s before this start: the host was unwatched meanwhile",
		prev.Liveness.Instance, prev.Liveness.Started.Format(time.RFC3339), how, prev.LastBeat.Format(time.RFC3339Nano),
		time.Duration(r.DownMs)*time.Millisecond)}
	return ev
}

// runRecordSize is the liveness file's fixed size: a record (about 250
// bytes) padded with spaces, which JSON ignores, so each record covers the
// whole of the one before it.
const runRecordSize = 512

// beat records that this run is alive now, in f.
func (d *Daemon) beat(f *os.File, clean bool) {
	b, err := json.Marshal(runRecord{Liveness: d.live, LastBeat: time.Now().UTC(), Clean: clean})
	if err == nil && len(b) > runRecordSize {
		err = fmt.Errorf("a record of %d bytes, over %d", len(b), runRecordSize)
	}
	if err == nil {
		b = append(b, bytes.Repeat([]byte{' '}, runRecordSize-len(b))...)
		// One write of less than a page at offset 0, over the old record:
		// the kernel copies a page whole or not at all, so a kill leaves
		// the old record or the new one, never half of one. This replaced a
		// new file renamed over the old every beat, which cost the idle
		// sensor more than anything else it does each second. No fsync:
		// the page cache survives a killed process, and a power loss is a
		// reboot, which the boot id shows.
		_, err = f.WriteAt(b, 0)
	}
	if err != nil && !d.beatErr {
		d.cfg.Log.Error().Err(err).Str("file", f.Name()).Msg("cannot record the heartbeat: the next start cannot say how long the sensor was down")
	}
	d.beatErr = err != nil
}

// recordBeats rewrites the liveness file every heartbeat interval until
// ctx ends, then once more as a clean stop.
func (d *Daemon) recordBeats(done <-chan struct{}) {
	if d.cfg.LivenessFile == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(d.cfg.LivenessFile), 0o700); err != nil {
		d.cfg.Log.Error().Err(err).Msg("liveness file directory")
	}
	// previousRun has read the old record; every record is runRecordSize
	// bytes (or less, before this format), so the first beat covers it all.
	f, err := os.OpenFile(d.cfg.LivenessFile, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		d.cfg.Log.Error().Err(err).Str("file", d.cfg.LivenessFile).Msg("cannot record the heartbeat: the next start cannot say how long the sensor was down")
		return
	}
	defer f.Close()
	t := time.NewTicker(d.cfg.Heartbeat)
	defer t.Stop()
	for {
		d.beat(f, false)
		select {
		case <-done:
			d.beat(f, true)
			return
		case <-t.C:
		}
	}
}
