package control

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/sensor/transport"
)

// Setup creates the findings stream and the host state bucket when they are
// missing, and leaves them as they are otherwise. Sensors whose credentials
// may not create them (driftctl creds) need an administrator to run it once
// (driftctl init) before their findings can be kept and their state watched.
func (c *Client) Setup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := transport.EnsureStream(ctx, c.js, zerolog.Nop(), true); err != nil {
		return err
	}
	_, err := transport.StateBucket(ctx, c.js)
	return err
}
