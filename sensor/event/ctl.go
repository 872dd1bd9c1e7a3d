package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// CtlSchema names the version of the command format on drift.v1.<host>.ctl.
const CtlSchema = "driftsensor.ctl/v1"

// Ctl commands. Sealing authority is the KV bucket, not these messages:
// seal and unseal ask the sensor to re-read it, and the server's permissions
// keep a host's own credentials from sending them.
const (
	CmdPing     = "ping"
	CmdSeal     = "seal"
	CmdUnseal   = "unseal"
	CmdCordon   = "cordon"
	CmdUncordon = "uncordon"
	// CmdEvidence asks for the evidence of a file the sensor reported
	// (Arg: its path): size, hash and first bytes, read on the host.
	CmdEvidence = "evidence"
	// CmdDrill asks the sensor to perform harmless versions of techniques
	// (Arg: their names, comma-separated) in its drill directory; ID is
	// the drill marker's id, which names the directory.
	CmdDrill = "drill"
)

var ctlCommands = map[string]bool{CmdPing: true, CmdSeal: true, CmdUnseal: true, CmdCordon: true, CmdUncordon: true,
	CmdEvidence: true, CmdDrill: true}

// argCommands take an argument; the others take none.
var argCommands = map[string]bool{CmdEvidence: true, CmdDrill: true}

// MaxCtlCommand bounds a ctl message; anything longer is rejected unread.
// It leaves room for an evidence command's path (PATH_MAX, 4096).
const MaxCtlCommand = 5120

// MaxCtlArg bounds a command's argument.
const MaxCtlArg = 4096

// CtlCommand is one request on a host's ctl subject (driftctl, the responder).
type CtlCommand struct {
	Schema string `json:"schema"`
	Cmd    string `json:"cmd"`
	ID     string `json:"id"`            // chosen by the sender, echoed in the reply
	Arg    string `json:"arg,omitempty"` // evidence: an absolute path; drill: technique names
}

// CtlReply answers a ctl request that carried a reply subject.
type CtlReply struct {
	Schema string        `json:"schema"`
	ID     string        `json:"id,omitempty"`
	OK     bool          `json:"ok"`
	Error  string        `json:"error,omitempty"`
	File   *FileEvidence `json:"file,omitempty"`  // the answer to evidence
	Drill  *DrillRun     `json:"drill,omitempty"` // the answer to drill
}

// NewCtlCommand builds a command and checks it as the sensor will.
func NewCtlCommand(cmd, id string) (CtlCommand, error) {
	return NewCtlCommandArg(cmd, id, "")
}

// NewCtlCommandArg builds a command with an argument (evidence, drill).
func NewCtlCommandArg(cmd, id, arg string) (CtlCommand, error) {
	c := CtlCommand{Schema: CtlSchema, Cmd: cmd, ID: id, Arg: arg}
	return c, c.check()
}

// Encode is the command on the wire.
func (c CtlCommand) Encode() []byte {
	b, _ := json.Marshal(c) // three strings: cannot fail
	return b
}

// DecodeCtlReply reads a sensor's answer.
func DecodeCtlReply(b []byte) (CtlReply, error) {
	var r CtlReply
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("ctl reply %q: %w", b, err)
	}
	if r.Schema != CtlSchema {
		return r, fmt.Errorf("ctl reply: schema %q (want %q)", r.Schema, CtlSchema)
	}
	return r, nil
}

// DecodeCtlCommand parses a ctl message strictly: one JSON object with
// the keys schema, cmd and id (and arg, for the commands that take one), each once, each a string, matched
// exactly (not case-folded, unlike encoding/json), and nothing after it. A
// message two parsers could read differently is rejected rather than guessed at.
func DecodeCtlCommand(b []byte) (CtlCommand, error) {
	var c CtlCommand
	if len(b) > MaxCtlCommand {
		return c, fmt.Errorf("ctl message of %d bytes (max %d)", len(b), MaxCtlCommand)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return c, errors.New("ctl message is not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return c, fmt.Errorf("ctl message: %w", err)
		}
		key, _ := t.(string)
		if seen[key] {
			return c, fmt.Errorf("ctl message: key %q given twice", key)
		}
		seen[key] = true
		var dst *string
		switch key {
		case "schema":
			dst = &c.Schema
		case "cmd":
			dst = &c.Cmd
		case "id":
			dst = &c.ID
		case "arg":
			dst = &c.Arg
		default:
			return c, fmt.Errorf("ctl message: unknown key %q (want schema, cmd, id, arg)", key)
		}
		v, err := dec.Token()
		if err != nil {
			return c, fmt.Errorf("ctl message: %w", err)
		}
		s, ok := v.(string)
		if !ok {
			return c, fmt.Errorf("ctl message: %q must be a string", key)
		}
		*dst = s
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return c, errors.New("ctl message: unterminated object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, errors.New("ctl message: data after the object")
	}
	return c, c.check()
}

func (c CtlCommand) check() error {
	if c.Schema != CtlSchema {
		return fmt.Errorf("ctl message: schema %q (want %q)", c.Schema, CtlSchema)
	}
	if !ctlCommands[c.Cmd] {
		return fmt.Errorf("ctl message: unknown cmd %q (want ping, seal, unseal, cordon, uncordon, evidence, drill)", c.Cmd)
	}
	switch {
	case !argCommands[c.Cmd] && c.Arg != "":
		return fmt.Errorf("ctl message: %s takes no arg", c.Cmd)
	case argCommands[c.Cmd] && c.Arg == "":
		return fmt.Errorf("ctl message: %s needs an arg", c.Cmd)
	case len(c.Arg) > MaxCtlArg:
		return fmt.Errorf("ctl message: arg of %d bytes (max %d)", len(c.Arg), MaxCtlArg)
	case c.Cmd == CmdEvidence && (!path.IsAbs(c.Arg) || path.Clean(c.Arg) != c.Arg || strings.ContainsRune(c.Arg, 0)):
		return fmt.Errorf("ctl message: evidence path %q: want a clean absolute path, as the sensor reported it", c.Arg)
	}
	if c.ID == "" || len(c.ID) > 64 {
		return fmt.Errorf("ctl message: id must be 1-64 characters, got %d", len(c.ID))
	}
	for i := 0; i < len(c.ID); i++ {
		ch := c.ID[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' || ch == ':') {
			return fmt.Errorf("ctl message: id %q: use letters, digits and - _ . :", c.ID)
		}
	}
	return nil
}

// Encode is the reply on the wire.
func (r CtlReply) Encode() []byte {
	b, _ := json.Marshal(r) // strings and a bool: cannot fail
	return b
}
