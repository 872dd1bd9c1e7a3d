package event

import "time"

// AuditSchema names the version of audit records.
const AuditSchema = "driftsensor.audit/v1"

// AuditSubject is where the responder's records about host go: drift.audit.<host>.
func AuditSubject(host string) string { return AuditRoot + "." + host }

// Action is what the responder does about an incident, in rising severity:
// alert, cordon, destroy.
type Action string

// AuditStages are the times an incident went through; zero means not reached.
type AuditStages struct {
	Sensed   time.Time `json:"sensed,omitzero"`   // the sensor's time of the triggering finding
	Received time.Time `json:"received,omitzero"` // the responder read it
	Decided  time.Time `json:"decided,omitzero"`
	Acted    time.Time `json:"acted,omitzero"`    // the actuator returned
	Verified time.Time `json:"verified,omitzero"` // the first probe that did not pass was sent
	Evidence time.Time `json:"evidence,omitzero"` // evidence stored
	Released time.Time `json:"released,omitzero"` // a drill's cordon lifted
}

// AuditRecord is one entry of the responder's audit trail (stream
// DRIFT_AUDIT). Stage names the step (decision, action, verify...); the
// responder's package lists them.
type AuditRecord struct {
	Schema   string      `json:"schema"`
	Time     time.Time   `json:"time"`
	Replica  string      `json:"replica"`
	Host     string      `json:"host"`
	Incident string      `json:"incident,omitempty"`
	Stage    string      `json:"stage"`
	Action   Action      `json:"action,omitempty"`
	Actuator string      `json:"actuator,omitempty"`
	Rule     string      `json:"rule,omitempty"`
	Reason   string      `json:"reason,omitempty"`
	DryRun   bool        `json:"dry_run,omitempty"`
	Events   []string    `json:"events,omitempty"` // ids of the triggering findings
	Stages   AuditStages `json:"stages,omitzero"`
	Error    string      `json:"error,omitempty"`
	Drill    string      `json:"drill,omitempty"` // the drill marker id, for a drill's records
}
