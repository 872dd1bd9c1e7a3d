package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/transport"
)

// Init creates the findings stream, the audit stream and the state bucket
// with s, or updates them to s when they exist (replicas, limits, dedup
// window), so that running it again after a change of flags applies them.
// It says what it did, one line per object.
func (c *Client) Init(ctx context.Context, s transport.Settings) ([]string, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 4*c.timeout)
	defer cancel()
	// verb says whether the stream behind name is there already.
	verb := func(name string) (string, error) {
		_, err := c.js.Stream(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return "created", nil
		case err != nil:
			return "", fmt.Errorf("stream %s: %w", name, err)
		}
		return "updated", nil
	}
	var done []string
	for _, cfg := range []jetstream.StreamConfig{transport.FindingsStreamConfig(s), transport.AuditStreamConfig(s)} {
		v, err := verb(cfg.Name)
		if err == nil {
			_, err = c.js.CreateOrUpdateStream(ctx, cfg)
		}
		if err != nil {
			return done, fmt.Errorf("stream %s (replicas %d, max age %v, max bytes %d): %w", cfg.Name, cfg.Replicas, cfg.MaxAge, cfg.MaxBytes, err)
		}
		done = append(done, fmt.Sprintf("stream %s %s: replicas %d, max age %s, max bytes %s, dedup window %v", cfg.Name, v, cfg.Replicas, orUnlimited(cfg.MaxAge), bytesOrUnlimited(cfg.MaxBytes), cfg.Duplicates))
	}
	kcfg := transport.StateBucketConfig(s)
	v, err := verb("KV_" + kcfg.Bucket)
	if err == nil {
		_, err = c.js.CreateOrUpdateKeyValue(ctx, kcfg)
	}
	if err != nil {
		return done, fmt.Errorf("KV bucket %s (replicas %d, max bytes %d): %w", kcfg.Bucket, kcfg.Replicas, kcfg.MaxBytes, err)
	}
	done = append(done, fmt.Sprintf("bucket %s %s: replicas %d, max bytes %s", kcfg.Bucket, v, kcfg.Replicas, bytesOrUnlimited(kcfg.MaxBytes)))
	return done, nil
}

func orUnlimited(d time.Duration) string {
	if d == 0 {
		return "unlimited"
	}
	return d.String()
}

func bytesOrUnlimited(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}
