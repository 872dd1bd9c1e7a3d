package event

import "time"

// Evidence is what the responder keeps of an incident before it destroys the
// host (the containment ladder: cordon, evidence, destroy). It is stored as
// one JSON object named by the incident id in the EvidenceBucket object
// store; driftctl evidence INCIDENT shows it.
type Evidence struct {
	Schema   string    `json:"schema"` // EvidenceSchema
	Incident string    `json:"incident"`
	Host     string    `json:"host"`
	Replica  string    `json:"replica"`         // the responder replica that kept it
	Drill    string    `json:"drill,omitempty"` // the drill marker id, for a drill's incident
	Started  time.Time `json:"started"`         // capture began
	Finished time.Time `json:"finished"`        // capture ended (stored right after)
	// Chain is the incident's findings as the findings stream holds them,
	// in stream order; each carries its process and that process's
	// ancestry (Process.Ancestry).
	Chain []Event `json:"chain"`
	// Missing are ids of the incident's findings the stream no longer had
	// within the window read (older, or dropped by its limits).
	Missing []string `json:"missing,omitempty"`
	// Recent are the host's last findings in the stream (at most
	// RecentLimit of the last RecentWindow), the chain's among them.
	Recent       []Event       `json:"recent"`
	RecentWindow time.Duration `json:"recent_window_ns"`
	RecentLimit  int           `json:"recent_limit"`
	// Files are the files the chain names, as the host's sensor read them.
	Files []FileEvidence `json:"files,omitempty"`
}

// EvidenceSchema names the version of the Evidence format.
const EvidenceSchema = "driftsensor.evidence/v1"

// EvidenceBucket is the JetStream object store holding evidence, one object
// per incident, named by its id.
const EvidenceBucket = "drift_evidence"

// FileHead is how much of a file's beginning evidence keeps.
const FileHead = 4096

// MaxHashBytes bounds how much of a file the sensor hashes: a larger file
// gets its size and head, not its hash (Hashed false).
const MaxHashBytes = 256 << 20

// FileEvidence is one file as the host's sensor read it on request (ctl
// evidence), or why it could not.
type FileEvidence struct {
	Path   string    `json:"path"`
	Size   int64     `json:"size"`
	Mode   string    `json:"mode,omitempty"` // e.g. -rwxr-xr-x
	MTime  time.Time `json:"mtime,omitzero"`
	Hashed bool      `json:"hashed,omitempty"` // SHA256 covers the whole file
	SHA256 string    `json:"sha256,omitempty"` // hex
	Head   []byte    `json:"head,omitempty"`   // the first FileHead bytes (base64 in JSON)
	// Error says why the file could not be read (gone, not a regular
	// file, the sensor did not answer); what was learnt is kept.
	Error string    `json:"error,omitempty"`
	Read  time.Time `json:"read,omitzero"` // when the sensor read it
}
