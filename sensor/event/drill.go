package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

// A drill on a live host is declared by a marker the operator signs with
// their nkey (driftctl drill --host H). The responder trusts only the
// operator public keys of its configuration; a host's own key, an unsigned
// marker or an expired one declares nothing, so drift on a host can never be
// passed off as a drill by the host itself.

// DrillSchema names the version of the drill marker format.
const DrillSchema = "driftsensor.drill/v1"

// DrillBucket is the KV bucket of drill markers: host name -> SignedMarker.
const DrillBucket = "drift_drills"

// DrillArmSubject is where driftctl asks the responder whether it holds
// and trusts a marker before the drill starts (a request; the reply is a
// CtlReply).
const DrillArmSubject = SubjectRoot + "." + CtlTok + ".drill"

// Drill modes.
const (
	DrillRecord = "record" // decide and record, never act
	DrillCordon = "cordon" // cordon for real, keep evidence, then release
)

// MaxDrillTTL bounds a marker's validity: a drill marker is short-lived.
const MaxDrillTTL = 10 * time.Minute

// DrillDirPrefix starts the name of the directory a drill works in, inside
// the sensor's drill directory: driftsensor-drill-<marker id>.
const DrillDirPrefix = "driftsensor-drill-"

// DrillTechniques are the harmless techniques a sensor performs in a drill
// (its drill directory only), with the kinds of finding each produces.
var DrillTechniques = map[string][]Kind{
	// T1565.001 (stored data manipulation): a file written.
	"file": {KindFile},
	// T1105 + T1204 (tool transferred and run): /bin/true copied in and run.
	"exec": {KindFile, KindExec},
}

// DrillMarker declares a drill on one host.
type DrillMarker struct {
	Schema     string    `json:"schema"` // DrillSchema
	ID         string    `json:"id"`     // random; names the drill's directory on the host
	Host       string    `json:"host"`
	Mode       string    `json:"mode"`       // DrillRecord or DrillCordon
	Techniques []string  `json:"techniques"` // keys of DrillTechniques
	By         string    `json:"by,omitempty"`
	Issued     time.Time `json:"issued"`
	Expires    time.Time `json:"expires"`
}

// SignedMarker is a marker with its signature, as stored in DrillBucket.
type SignedMarker struct {
	Marker []byte `json:"marker"` // the DrillMarker's JSON, exactly as signed
	Signer string `json:"signer"` // the signer's public nkey (U...)
	Sig    []byte `json:"sig"`    // ed25519 over Marker
}

// DrillRun is the sensor's answer to a drill command.
type DrillRun struct {
	Dir        string   `json:"dir"`        // where it worked
	Techniques []string `json:"techniques"` // performed, in order
	PID        int      `json:"pid"`        // the process that performed them
}

// DrillDir is the directory name of the drill with marker id.
func DrillDir(id string) string { return DrillDirPrefix + id }

// CheckTechniques refuses unknown technique names and repeats.
func CheckTechniques(names []string) error {
	if len(names) == 0 {
		return errors.New("no technique (want one or more of " + strings.Join(TechniqueNames(), ", ") + ")")
	}
	for i, n := range names {
		if _, ok := DrillTechniques[n]; !ok {
			return fmt.Errorf("unknown technique %q (want %s)", n, strings.Join(TechniqueNames(), ", "))
		}
		if slices.Contains(names[:i], n) {
			return fmt.Errorf("technique %q given twice", n)
		}
	}
	return nil
}

// TechniqueNames lists the drill techniques, sorted.
func TechniqueNames() []string {
	var out []string
	for n := range DrillTechniques {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (m DrillMarker) check() error {
	switch {
	case m.Schema != DrillSchema:
		return fmt.Errorf("schema %q (want %q)", m.Schema, DrillSchema)
	case m.ID == "" || len(m.ID) > 64 || strings.ContainsAny(m.ID, "/. \x00"):
		return fmt.Errorf("id %q: want 1-64 characters, no '/', '.' or spaces", m.ID)
	case ValidHost(m.Host) != nil:
		return ValidHost(m.Host)
	case m.Mode != DrillRecord && m.Mode != DrillCordon:
		return fmt.Errorf("mode %q (want %s or %s)", m.Mode, DrillRecord, DrillCordon)
	case !m.Expires.After(m.Issued):
		return errors.New("expires before it is issued")
	case m.Expires.Sub(m.Issued) > MaxDrillTTL:
		return fmt.Errorf("valid for %s (at most %s)", m.Expires.Sub(m.Issued), MaxDrillTTL)
	}
	return CheckTechniques(m.Techniques)
}

// SignMarker checks m and signs it with kp (the operator's seed).
func SignMarker(m DrillMarker, kp nkeys.KeyPair) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("drill marker: %w", err)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("drill marker: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("drill marker: signing key: %w", err)
	}
	sig, err := kp.Sign(body)
	if err != nil {
		return nil, fmt.Errorf("drill marker: sign: %w", err)
	}
	return json.Marshal(SignedMarker{Marker: body, Signer: pub, Sig: sig})
}

// Marker skew tolerated between the operator's clock and the responder's.
const markerSkew = 5 * time.Second

// VerifyMarker reads a signed marker and returns it only if one of the
// trusted public keys signed it, it is well formed, and now is within its
// validity. Its error says which of these failed.
func VerifyMarker(b []byte, trusted []string, now time.Time) (DrillMarker, error) {
	var m DrillMarker
	var sm SignedMarker
	if err := json.Unmarshal(b, &sm); err != nil {
		return m, fmt.Errorf("drill marker is not a signed marker: %w", err)
	}
	if len(sm.Sig) == 0 || sm.Signer == "" {
		return m, errors.New("drill marker is unsigned")
	}
	if !slices.Contains(trusted, sm.Signer) {
		return m, fmt.Errorf("drill marker signed by %s, which is not an operator key this responder trusts", sm.Signer)
	}
	kp, err := nkeys.FromPublicKey(sm.Signer)
	if err != nil {
		return m, fmt.Errorf("drill marker signer %s: %w", sm.Signer, err)
	}
	if err := kp.Verify(sm.Marker, sm.Sig); err != nil {
		return m, fmt.Errorf("drill marker: bad signature by %s", sm.Signer)
	}
	if err := json.Unmarshal(sm.Marker, &m); err != nil {
		return m, fmt.Errorf("drill marker: %w", err)
	}
	if err := m.check(); err != nil {
		return m, fmt.Errorf("drill marker %s: %w", m.ID, err)
	}
	if now.Before(m.Issued.Add(-markerSkew)) {
		return m, fmt.Errorf("drill marker %s: issued in the future (%s)", m.ID, m.Issued.Format(time.RFC3339))
	}
	if !now.Before(m.Expires) {
		return m, fmt.Errorf("drill marker %s: expired at %s", m.ID, m.Expires.Format(time.RFC3339))
	}
	return m, nil
}
