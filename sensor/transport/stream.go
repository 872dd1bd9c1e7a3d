package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// StreamSubjects are the subjects the findings stream keeps: every kind of
// finding and every host state change, for all hosts.
var StreamSubjects = []string{
	event.SubjectRoot + ".*." + string(event.KindFile),
	event.SubjectRoot + ".*." + string(event.KindExec),
	event.SubjectRoot + ".*." + string(event.KindNet),
	event.SubjectRoot + ".*." + string(event.KindSensor),
	event.SubjectRoot + ".*." + event.StateTok,
}

// DedupWindow is how long the findings stream remembers a Nats-Msg-Id, so a
// finding sent again is stored once. A finding is sent again only when its
// ack was lost: it was in flight (at most one batch, maxBatch findings) when
// the connection dropped, or the sensor died between the ack and the spool's
// acknowledgement. It goes again first thing after the reconnect or restart,
// so its longest wait in the spool is the outage itself. The window covers
// outages up to 15 minutes; after a longer one those few findings may be
// stored twice, with the same id and seq, and consumers drop the second by id
// (the event schema says so). driftctl init --dedup-window changes it; the
// server keeps every id of the window in memory, so longer costs memory at
// high finding rates.
const DedupWindow = 15 * time.Minute

// Settings size the findings stream, the audit stream and the state bucket
// (driftctl init). Zero values mean: one replica, no age or size limit, the
// DedupWindow.
type Settings struct {
	Replicas int           // copies on a cluster: 1, 3 or 5
	MaxAge   time.Duration // drop findings and audit records older than this; 0 keeps them
	MaxBytes int64         // per stream and bucket: drop the oldest past this size; 0 is unlimited
	Dedup    time.Duration // the findings stream's duplicate window; default DedupWindow
}

// Check reports a setting that cannot work, naming the flag.
func (s Settings) Check() error {
	switch {
	case s.Replicas < 0 || s.Replicas > 5:
		return fmt.Errorf("--replicas %d: want 1 to 5 (3 on a three-node cluster)", s.Replicas)
	case s.MaxAge < 0:
		return fmt.Errorf("--max-age %v: must not be negative (0 keeps everything)", s.MaxAge)
	case s.MaxAge > 0 && s.MaxAge < time.Minute:
		return fmt.Errorf("--max-age %v: under a minute would drop findings before anyone reads them", s.MaxAge)
	case s.MaxBytes < 0:
		return fmt.Errorf("--max-bytes %d: must not be negative (0 is unlimited)", s.MaxBytes)
	case s.Dedup < 0:
		return fmt.Errorf("--dedup-window %v: must not be negative", s.Dedup)
	case s.MaxAge > 0 && s.dedup() > s.MaxAge:
		return fmt.Errorf("--dedup-window %v is longer than --max-age %v: the server refuses that", s.dedup(), s.MaxAge)
	}
	return nil
}

func (s Settings) replicas() int {
	if s.Replicas == 0 {
		return 1
	}
	return s.Replicas
}

func (s Settings) maxBytes() int64 {
	if s.MaxBytes == 0 {
		return -1
	}
	return s.MaxBytes
}

func (s Settings) dedup() time.Duration {
	if s.Dedup == 0 {
		return DedupWindow
	}
	return s.Dedup
}

// FindingsStreamConfig is the findings stream DRIFT under s.
func FindingsStreamConfig(s Settings) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        event.StreamName,
		Description: "driftsensor findings and host state changes, for audit and replay",
		Subjects:    StreamSubjects,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Replicas:    s.replicas(),
		MaxAge:      s.MaxAge,
		MaxBytes:    s.maxBytes(),
		// Resends of a finding (after a lost ack or a restart) carry the
		// same Nats-Msg-Id and are dropped within this window.
		Duplicates:  s.dedup(),
		AllowDirect: true,
	}
}

// AuditStreamConfig is the responder's audit trail DRIFT_AUDIT under s. It is
// append-only: the server refuses to delete or purge its records, to anyone.
func AuditStreamConfig(s Settings) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        event.AuditStream,
		Description: "driftresponder decisions and actions (append-only)",
		Subjects:    []string{event.AuditRoot + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Replicas:    s.replicas(),
		MaxAge:      s.MaxAge,
		MaxBytes:    s.maxBytes(),
		DenyDelete:  true,
		DenyPurge:   true,
	}
}

// StateBucketConfig is the host state bucket under s. Its values are never
// aged out: a host's state lasts as long as the host.
func StateBucketConfig(s Settings) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      event.StateBucket,
		Description: "driftsensor host states: host name -> mutable|sealed|cordoned|destroyed",
		History:     16,
		Storage:     jetstream.FileStorage,
		Replicas:    s.replicas(),
		MaxBytes:    s.maxBytes(),
	}
}

// EnsureStream creates the findings stream when it is missing and create is
// set, with one replica and no limits (driftctl init sizes it for
// production); without create, a missing stream is an error that says to
// run driftctl init (per-host credentials may not create it). An existing
// stream is left as its operators configured it; a gap in its subjects is
// logged, since findings on a subject it does not cover would not be kept.
func EnsureStream(ctx context.Context, js jetstream.JetStream, log zerolog.Logger, create bool) (*jetstream.StreamInfo, error) {
	s, err := js.Stream(ctx, event.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) && !create {
		return nil, fmt.Errorf("JetStream stream %s: %w (driftctl init creates it; findings spool meanwhile)", event.StreamName, err)
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, FindingsStreamConfig(Settings{}))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, event.StreamName) // created by another sensor meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("create JetStream stream %s on %v: %w (driftctl init creates it)", event.StreamName, StreamSubjects, err)
		}
		log.Info().Str("stream", event.StreamName).Strs("subjects", StreamSubjects).Msg("created JetStream stream")
		return s.CachedInfo(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("JetStream stream %s: %w (the credentials need $JS.API.STREAM.INFO.%s; driftctl init creates it)", event.StreamName, err, event.StreamName)
	}
	info := s.CachedInfo()
	have := info.Config.Subjects
	for _, want := range StreamSubjects {
		if !covered(have, want) {
			log.Warn().Str("stream", event.StreamName).Strs("subjects", have).Str("missing", want).
				Msg("the stream does not keep these subjects; add them to its configuration")
		}
	}
	return info, nil
}

// covered reports whether one of the filters in have matches every subject want matches.
func covered(have []string, want string) bool {
	w := strings.Split(want, ".")
	for _, h := range have {
		f := strings.Split(h, ".")
		ok := true
		for i := 0; ok && i < len(w); i++ {
			switch {
			case i >= len(f):
				ok = false
			case f[i] == ">":
				i = len(w)
			case f[i] == "*":
				ok = w[i] != ">"
			default:
				ok = f[i] == w[i]
			}
		}
		if ok && (len(f) == len(w) || f[len(f)-1] == ">") {
			return true
		}
	}
	return false
}
