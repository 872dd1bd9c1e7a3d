package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
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
)

var commands = map[string]bool{CmdPing: true, CmdSeal: true, CmdUnseal: true, CmdCordon: true, CmdUncordon: true}

// MaxCommand bounds a ctl message; anything longer is rejected unread.
const MaxCommand = 1024

// Command is one decoded ctl message.
type Command struct {
	Schema string `json:"schema"`
	Cmd    string `json:"cmd"`
	ID     string `json:"id"` // chosen by the sender, echoed in the reply
}

// Reply answers a ctl request that carried a reply subject.
type Reply struct {
	Schema string `json:"schema"`
	ID     string `json:"id,omitempty"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// DecodeCommand parses a ctl message strictly: one JSON object with exactly
// the keys schema, cmd and id, each once, each a string, matched exactly (not
// case-folded, unlike encoding/json), and nothing after it. A message two
// parsers could read differently is rejected rather than guessed at.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if len(b) > MaxCommand {
		return c, fmt.Errorf("ctl message of %d bytes (max %d)", len(b), MaxCommand)
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
		default:
			return c, fmt.Errorf("ctl message: unknown key %q (want schema, cmd, id)", key)
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
	if c.Schema != CtlSchema {
		return c, fmt.Errorf("ctl message: schema %q (want %q)", c.Schema, CtlSchema)
	}
	if !commands[c.Cmd] {
		return c, fmt.Errorf("ctl message: unknown cmd %q (want ping, seal, unseal, cordon, uncordon)", c.Cmd)
	}
	if err := validID(c.ID); err != nil {
		return c, err
	}
	return c, nil
}

func validID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("ctl message: id must be 1-64 characters, got %d", len(id))
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' || ch == ':') {
			return fmt.Errorf("ctl message: id %q: use letters, digits and - _ . :", id)
		}
	}
	return nil
}

// onCtl answers one message on the host's ctl subject.
func (p *Publisher) onCtl(m *nats.Msg) {
	cmd, err := DecodeCommand(m.Data)
	if err == nil && cmd.Cmd != CmdPing {
		if h := p.opts.OnCommand; h == nil {
			err = fmt.Errorf("ctl %s: this sensor takes no commands but ping", cmd.Cmd)
		} else {
			err = h(cmd)
		}
	}
	r := Reply{Schema: CtlSchema, ID: cmd.ID, OK: err == nil}
	if err != nil {
		p.rejected.Add(1)
		r.Error = err.Error()
		p.log.Warn().Err(err).Int("bytes", len(m.Data)).Str("subject", m.Subject).Msg("ctl message rejected")
	}
	if m.Reply != "" {
		data, _ := json.Marshal(r)
		if err := m.Respond(data); err != nil {
			p.log.Warn().Err(err).Msg("ctl reply")
		}
	}
}
