// Package actuator carries out what the responder decided: cordon a host from
// outside it (netlink on the machine holding its link), destroy it (command
// hook, webhook, test-bed destroy), and verify a cordon with a probe.
package actuator

import (
	"context"
	"time"
)

// Target is what an action is about: the host, the incident, and the
// findings that led to it. It is also the JSON body of a webhook.
type Target struct {
	Schema   string    `json:"schema"` // TargetSchema
	Host     string    `json:"host"`
	Incident string    `json:"incident"`
	Action   string    `json:"action"` // cordon, destroy
	Reason   string    `json:"reason,omitempty"`
	Events   []string  `json:"events,omitempty"` // ids of the triggering findings
	Time     time.Time `json:"time"`
}

// TargetSchema names the version of Target's JSON form.
const TargetSchema = "driftsensor.action/v1"

// Cordoner cuts a host off the network but for its management channel.
type Cordoner interface {
	Name() string
	Cordon(ctx context.Context, t Target) error
}

// Uncordoner undoes a cordon (driftctl uncordon).
type Uncordoner interface {
	Uncordon(ctx context.Context, t Target) error
}

// Destroyer removes a host for good.
type Destroyer interface {
	Name() string
	Destroy(ctx context.Context, t Target) error
}
