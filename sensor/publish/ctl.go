package publish

import (
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// onCtl answers one message on the host's ctl subject.
func (p *Publisher) onCtl(m *nats.Msg) {
	cmd, err := event.DecodeCtlCommand(m.Data)
	r := event.CtlReply{Schema: event.CtlSchema, ID: cmd.ID}
	if err == nil && cmd.Cmd != event.CmdPing {
		switch {
		case p.opts.Answer != nil:
			err = p.opts.Answer(cmd, &r)
		case p.opts.OnCommand != nil:
			err = p.opts.OnCommand(cmd)
		default:
			err = fmt.Errorf("ctl %s: this sensor takes no commands but ping", cmd.Cmd)
		}
	}
	r.OK = err == nil
	if err != nil {
		p.rejected.Add(1)
		r.Error = err.Error()
		p.log.Warn().Err(err).Int("bytes", len(m.Data)).Str("subject", m.Subject).Msg("ctl message rejected")
	}
	if m.Reply != "" {
		if err := m.Respond(r.Encode()); err != nil {
			p.log.Warn().Err(err).Msg("ctl reply")
		}
	}
}
