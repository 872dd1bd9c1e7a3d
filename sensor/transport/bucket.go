package transport

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// StateBucket opens the host state bucket, creating it when missing.
func StateBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, event.StateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, StateBucketConfig(Settings{}))
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, event.StateBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w", event.StateBucket, err)
	}
	return kv, nil
}

// EntryState reads a state bucket entry; a deleted or purged key means mutable.
func EntryState(e jetstream.KeyValueEntry) (event.State, error) {
	if e == nil || e.Operation() != jetstream.KeyValuePut {
		return event.StateMutable, nil
	}
	return event.ParseState(string(e.Value()))
}
