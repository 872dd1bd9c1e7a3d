package event

import (
	"fmt"
	"regexp"
	"strings"
)

// Subjects and buckets shared by the sensor, the responder and driftctl.
const (
	SubjectRoot  = "drift.v1"    // every subject starts with it
	StreamName   = "DRIFT"       // JetStream stream keeping findings and state changes
	StateBucket  = "drift_hosts" // KV bucket: host name -> State
	AuditStream  = "DRIFT_AUDIT" // responder decisions and actions
	AuditRoot    = "drift.audit" // audit records go to drift.audit.<host>
	HeartbeatTok = "heartbeat"   // last token of heartbeat subjects
	CtlTok       = "ctl"         // last token of command subjects
)

// State is a host's place in its life cycle; it lives in the control plane.
type State string

// Host states: mutable -> sealed -> cordoned -> destroyed, and sealed -> mutable by an authorised unseal.
const (
	StateMutable   State = "mutable"
	StateSealed    State = "sealed"
	StateCordoned  State = "cordoned"
	StateDestroyed State = "destroyed"
	// StateNone means the control plane holds no state for the host yet.
	StateNone State = ""
)

var hostName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// ReservedHosts are tokens the drift.v1 namespace uses in the host's place
// (drift.v1.ctl.approve) or after it (heartbeat, ctl, state, the kinds): a
// host so named would make its subjects collide with them or with the
// wildcards in credentials' permissions.
var ReservedHosts = []string{CtlTok, HeartbeatTok, "state", "audit",
	string(KindFile), string(KindExec), string(KindNet), string(KindSensor)}

// ValidHost reports whether name can be a subject token and a KV key.
func ValidHost(name string) error {
	if !hostName.MatchString(name) {
		return fmt.Errorf("host name %q: use 1-63 letters, digits, '-' or '_' (it becomes a NATS subject token; no dots, spaces, '*' or '>')", name)
	}
	for _, r := range ReservedHosts {
		if strings.EqualFold(name, r) {
			return fmt.Errorf("host name %q is reserved (the subjects use %s); pick another name", name, strings.Join(ReservedHosts, ", "))
		}
	}
	return nil
}

// Subject is where a host publishes findings of one kind.
func Subject(host string, kind Kind) string { return SubjectRoot + "." + host + "." + string(kind) }

// HeartbeatSubject is where a host publishes its heartbeats.
func HeartbeatSubject(host string) string { return SubjectRoot + "." + host + "." + HeartbeatTok }

// CtlSubject is where a host receives commands.
func CtlSubject(host string) string { return SubjectRoot + "." + host + "." + CtlTok }
