package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
	event.SubjectRoot + ".*." + StateTok,
}

// ensureStream creates the findings stream when it is missing. An existing
// stream is left as its operators configured it; a gap in its subjects is
// logged, since findings on a subject it does not cover would not be kept.
func ensureStream(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) error {
	s, err := js.Stream(ctx, event.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        event.StreamName,
			Description: "driftsensor findings and host state changes, for audit and replay",
			Subjects:    StreamSubjects,
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			// Resends of a finding (after a lost ack or a restart) carry the
			// same Nats-Msg-Id and are dropped within this window.
			Duplicates:  dedupWindow,
			AllowDirect: true,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil // created by another sensor meanwhile
		}
		if err != nil {
			return fmt.Errorf("create JetStream stream %s on %v: %w", event.StreamName, StreamSubjects, err)
		}
		log.Info().Str("stream", event.StreamName).Strs("subjects", StreamSubjects).Msg("created JetStream stream")
		return nil
	}
	if err != nil {
		return fmt.Errorf("JetStream stream %s: %w (the credentials need $JS.API.STREAM.INFO.%s)", event.StreamName, err, event.StreamName)
	}
	have := s.CachedInfo().Config.Subjects
	for _, want := range StreamSubjects {
		if !covered(have, want) {
			log.Warn().Str("stream", event.StreamName).Strs("subjects", have).Str("missing", want).
				Msg("the stream does not keep these subjects; add them to its configuration")
		}
	}
	return nil
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
