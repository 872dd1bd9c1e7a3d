package publish

import (
	"encoding/json"
	"time"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// StartHeartbeat publishes a heartbeat on drift.v1.<host>.heartbeat every
// interval (1s when interval <= 0) until Close. fn supplies what the sensor
// knows (backend, policy hash, version, state, findings, lost records, ring
// fill); the publisher sets schema, host and seq, fills time, uptime and
// findings when fn leaves them zero, and always the spool and ctl counters,
// the transport and the state watch's health, which it owns.
// Heartbeats are not spooled: a late heartbeat is no heartbeat.
func (p *Publisher) StartHeartbeat(interval time.Duration, fn func() event.Heartbeat) {
	if interval <= 0 {
		interval = time.Second
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			p.beat(fn)
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
}

func (p *Publisher) beat(fn func() event.Heartbeat) {
	var hb event.Heartbeat
	if fn != nil {
		hb = fn()
	}
	hb.Schema = event.HeartbeatSchema
	hb.Host = p.host
	hb.Seq = p.num.Last()
	if hb.Time.IsZero() {
		hb.Time = time.Now().UTC()
	}
	if hb.UptimeSec == 0 {
		hb.UptimeSec = time.Since(p.start).Seconds()
	}
	c := p.Counters()
	if hb.Counters.Findings == 0 {
		for i := range p.findings {
			hb.Counters.Findings += p.findings[i].Load()
		}
	}
	// Queued findings are not in the stream yet either: the responder's gap
	// check counts on every seq up to Seq - SpoolDepth being there.
	hb.Counters.SpoolDepth = c.SpoolDepth + c.Queued
	hb.Counters.SpoolLost = c.SpoolOverflow
	hb.Counters.Rejected = c.Rejected
	if hb.StateWatch == "" {
		hb.StateWatch = p.StateWatch()
	}
	data, err := json.Marshal(withTransport(hb, c.Transport))
	if err != nil {
		p.log.Error().Err(err).Msg("encode heartbeat")
		return
	}
	if !p.nc.IsConnected() {
		return
	}
	if err := p.nc.Publish(event.HeartbeatSubject(p.host), data); err != nil {
		p.log.Debug().Err(err).Msg("heartbeat not sent")
	}
}

func withTransport(hb event.Heartbeat, t string) event.Heartbeat {
	hb.Transport = t
	return hb
}
