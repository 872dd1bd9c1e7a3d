package event

import (
	"fmt"
	"time"
)

// StateTok is the last token of the subject that keeps host state changes,
// drift.v1.<host>.state, in the findings stream.
const StateTok = "state"

// StateSubject is where the audit record of a host's state change goes.
func StateSubject(host string) string { return SubjectRoot + "." + host + "." + StateTok }

// StateChangeSchema names the version of the state change audit record.
const StateChangeSchema = "driftsensor.state/v1"

// StateChange is the audit record of one change of a host's state.
type StateChange struct {
	Schema   string    `json:"schema"`
	Host     string    `json:"host"`
	From     State     `json:"from"`
	To       State     `json:"to"`
	By       string    `json:"by"` // who asked: a person, the responder
	Time     time.Time `json:"time"`
	Revision uint64    `json:"revision"` // KV revision holding the new state
}

// ParseState checks a state name.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case StateMutable, StateSealed, StateCordoned, StateDestroyed:
		return st, nil
	}
	return "", fmt.Errorf("host state %q (want mutable, sealed, cordoned or destroyed)", s)
}
