package transport

import (
	"context"

	"github.com/rs/zerolog"
)

// Setup creates the findings stream and the host state bucket when they are
// missing, and leaves them as they are otherwise. Sensors whose credentials
// may not create them (driftctl creds) need an administrator to run it once
// (driftctl init) before their findings can be kept and their state watched.
func (c *Control) Setup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := ensureStream(ctx, c.js, zerolog.Nop(), true); err != nil {
		return err
	}
	_, err := stateBucket(ctx, c.js)
	return err
}
