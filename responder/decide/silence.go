package decide

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/driftsensor/driftsensor/sensor/event"
)

// Silence is judged only when it means something about the host:
//
//   - never while the responder itself is disconnected, and silence is
//     counted from the reconnect, not across it: every host gets its
//     MissedBeats intervals (at least two) to be heard again;
//   - a host passing MissedBeats of its own intervals (carried in its
//     heartbeat) becomes a suspect, and is judged alone once it has been
//     one for SilenceWindow: its deadline is MissedBeats*interval + window;
//   - more than MassHosts suspects at once, or more than MassPercent of the
//     tracked fleet (at least two), is one infrastructure incident, which
//     alerts and cordons nobody; it ends when its hosts are heard again.
//     Hosts judged before (alone, or in an incident) do not count towards
//     another, so a few long-dead hosts never hold every later silence;
//   - hosts the control plane knows are tracked from the start, so a host
//     that died while the responder was away is judged too.

// connState is the responder's own NATS connection; guarded by Responder.mu.
type connState struct {
	up     bool
	since  time.Time // of the last (re)connect: silence before it does not count
	downAt time.Time
}

// infraIncident is many hosts silent at once, or the responder's own outage.
type infraIncident struct {
	id     string
	opened time.Time
	hosts  []string
}

// trackConn follows the responder's connection, keeping the handlers the
// caller set on it.
func (r *Responder) trackConn() {
	now := time.Now()
	r.conn = connState{up: r.nc.IsConnected(), since: now}
	prevDown, prevUp := r.nc.Opts.DisconnectedErrCB, r.nc.Opts.ReconnectedCB
	r.nc.SetDisconnectErrHandler(func(nc *nats.Conn, err error) {
		if !nc.IsClosed() {
			r.mu.Lock()
			r.conn.up, r.conn.downAt = false, time.Now()
			r.mu.Unlock()
			r.log.Warn().Err(err).Msg("disconnected from NATS: no host is judged silent until the connection is back")
		}
		if prevDown != nil {
			prevDown(nc, err)
		}
	})
	r.nc.SetReconnectHandler(func(nc *nats.Conn) {
		now := time.Now()
		r.mu.Lock()
		down := r.conn.downAt
		r.conn.up, r.conn.since = true, now
		r.mu.Unlock()
		gone := now.Sub(down).Round(time.Millisecond)
		r.log.Info().Str("url", nc.ConnectedUrlRedacted()).Dur("outage", gone).Msg("reconnected to NATS; silence is counted from now")
		if !down.IsZero() {
			r.stats.Infra.Add(1)
			r.audit(Record{Host: FleetHost, Incident: "infra-" + nuid.Next(), Stage: StageInfra, Action: ActAlert,
				Reason: fmt.Sprintf("driftresponder %s lost its NATS connection for %s (%s to %s); no host was judged silent meanwhile",
					r.cfg.Replica, gone, down.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))})
		}
		if prevUp != nil {
			prevUp(nc)
		}
	})
}

// trackHost makes a host the control plane knows judged for silence from
// now, or (destroyed, deleted) stops judging it.
func (r *Responder) trackHost(host string, st event.State) {
	if checkHost(host) != nil {
		return
	}
	hs := r.host(host)
	r.mu.Lock()
	defer r.mu.Unlock()
	hs.tracked = st != event.StateDestroyed
}

func (r *Responder) onHeartbeat(m *nats.Msg) {
	host, _, ok := subjectHost(m.Subject)
	if !ok {
		return
	}
	var hb event.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		r.reject(host, fmt.Sprintf("heartbeat on %s is not JSON: %v", m.Subject, err))
		return
	}
	if hb.Schema != event.HeartbeatSchema || hb.Host != host || checkHost(host) != nil {
		r.reject(host, fmt.Sprintf("heartbeat on %s for host %q with schema %q refused", m.Subject, hb.Host, hb.Schema))
		return
	}
	r.stats.Heartbeats.Add(1)
	now := time.Now()
	hs := r.host(host)
	var tamper []string
	restart := ""
	r.mu.Lock()
	first := hs.lastBeat.IsZero()
	newRun := !first && restarted(hs.live, hs.uptime, hb)
	switch {
	case newRun:
		restart = restartReason(hs.live, hs.lastBeat, hb, now)
		if hb.Seq < hs.beatSeq {
			restart += fmt.Sprintf("; its finding sequence started again at %d (was %d)", hb.Seq, hs.beatSeq)
			hs.seq.reset()
		}
		// Counters start again with the new run.
		hs.lost, hs.spoolLost = 0, 0
	case !first && hb.Seq < hs.beatSeq:
		tamper = append(tamper, fmt.Sprintf("heartbeat sequence went back from %d to %d within one sensor run", hs.beatSeq, hb.Seq))
	}
	if !first && !newRun && hb.Liveness.Instance != "" && hb.Liveness.KernelCounter < hs.live.KernelCounter {
		tamper = append(tamper, fmt.Sprintf("kernel liveness counter went back from %d to %d within sensor instance %s (replayed or forged heartbeat)",
			hs.live.KernelCounter, hb.Liveness.KernelCounter, hb.Liveness.Instance))
	}
	if hb.Counters.LostRecords > hs.lost {
		tamper = append(tamper, fmt.Sprintf("sensor lost %d kernel records", hb.Counters.LostRecords-hs.lost))
	}
	if hb.Counters.SpoolLost > hs.spoolLost {
		tamper = append(tamper, fmt.Sprintf("sensor dropped %d findings from a full spool", hb.Counters.SpoolLost-hs.spoolLost))
	}
	resumed := hs.silentFired
	hs.tracked = true
	hs.lastBeat, hs.beatSeq, hs.silentFired, hs.suspect = now, hb.Seq, false, time.Time{}
	hs.live, hs.uptime = hb.Liveness, hb.UptimeSec
	if hb.IntervalMs > 0 {
		hs.interval = time.Duration(hb.IntervalMs) * time.Millisecond
	}
	hs.lost = max(hs.lost, hb.Counters.LostRecords)
	hs.spoolLost = max(hs.spoolLost, hb.Counters.SpoolLost)
	// Findings not in the spool are in the stream (or about to be): the
	// gap check holds the stream to it.
	if hb.Transport == event.TransportJetStream && hb.Seq >= hb.Counters.SpoolDepth {
		hs.seq.claim(hb.Seq-hb.Counters.SpoolDepth, now)
	}
	r.mu.Unlock()
	if resumed {
		r.audit(Record{Host: host, Stage: StageAlert, Reason: "heartbeats resumed after the dead man's switch fired"})
	}
	if restart != "" {
		r.stats.Restarts.Add(1)
		r.audit(Record{Host: host, Stage: StageRestart, Action: r.cfg.Policy.SensorRestart, Reason: restart, Stages: Stages{Sensed: hb.Time, Received: now}})
		r.trigger(host, decision{act: r.cfg.Policy.SensorRestart, rule: "sensor_restart", reason: restart, st: Stages{Sensed: hb.Time, Received: now}})
	}
	if len(tamper) > 0 {
		r.deadMan(host, strings.Join(tamper, "; "), nil, Stages{Sensed: hb.Time, Received: now})
	}
}

// restarted reports whether hb comes from another sensor run than the
// previous heartbeat (liveness prev, uptime up). Sensors that do not fill
// liveness yet show a restart only by their uptime going back.
func restarted(prev event.Liveness, up float64, hb event.Heartbeat) bool {
	l := hb.Liveness
	if prev.Instance != "" || l.Instance != "" {
		return l.Instance != prev.Instance || l.BootID != prev.BootID || !l.Started.Equal(prev.Started)
	}
	return hb.UptimeSec+0.5 < up
}

func restartReason(prev event.Liveness, last time.Time, hb event.Heartbeat, now time.Time) string {
	started := hb.Liveness.Started
	if started.IsZero() {
		started = now.Add(-time.Duration(hb.UptimeSec * float64(time.Second)))
	}
	gone := started.Sub(last)
	if gone < 0 {
		gone = 0
	}
	what := "sensor restarted"
	if prev.BootID != "" && hb.Liveness.BootID != "" && prev.BootID != hb.Liveness.BootID {
		what = "host rebooted and its sensor restarted"
	}
	s := fmt.Sprintf("%s: gone %s (last heartbeat %s, new run started %s)", what, gone.Round(time.Millisecond),
		last.UTC().Format(time.RFC3339Nano), started.UTC().Format(time.RFC3339Nano))
	if hb.Liveness.Instance != "" {
		s += fmt.Sprintf(", instance %s -> %s", orNone(prev.Instance), hb.Liveness.Instance)
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// watchSilence judges silence and sequence holes until Close.
func (r *Responder) watchSilence() {
	defer r.watch.Done()
	tick := 100 * time.Millisecond
	if iv := r.cfg.HeartbeatInterval; iv > 0 && iv/4 < tick {
		tick = max(iv/4, 5*time.Millisecond)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-r.stopW:
			return
		case now := <-t.C:
			r.judgeSilence(now)
			r.checkGaps(now)
		}
	}
}

type silentHost struct {
	host  string
	since time.Duration
	limit time.Duration
}

func (r *Responder) judgeSilence(now time.Time) {
	var fire []silentHost
	var opened, closed *infraIncident
	var tracked int
	var fresh []string // silent, not yet judged: alone, or as part of an infrastructure incident
	var waiting []silentHost
	r.mu.Lock()
	if !r.conn.up {
		r.mu.Unlock()
		return
	}
	from := r.conn.since
	for h, hs := range r.hosts {
		if !hs.tracked {
			continue
		}
		tracked++
		iv := hs.interval
		if iv <= 0 {
			iv = r.cfg.HeartbeatInterval
		}
		if iv <= 0 {
			continue
		}
		ref := hs.lastBeat
		if ref.Before(from) {
			ref = from
		}
		limit := time.Duration(r.cfg.MissedBeats) * iv
		if now.Sub(ref) <= limit {
			hs.suspect, hs.inInfra = time.Time{}, false
			continue
		}
		if hs.suspect.IsZero() {
			hs.suspect = now
		}
		if hs.silentFired || hs.inInfra {
			continue // judged already
		}
		fresh = append(fresh, h)
		window := r.cfg.SilenceWindow
		if window <= 0 {
			window = iv
		}
		if now.Sub(hs.suspect) >= window {
			waiting = append(waiting, silentHost{h, now.Sub(hs.lastBeat), limit + window})
		}
	}
	// Hosts judged before (fired alone, or in an incident) do not count:
	// a few long-dead hosts must not hold every later silence as infrastructure.
	mass := len(fresh) >= 2 && ((r.cfg.MassHosts >= 0 && len(fresh) > r.cfg.MassHosts) ||
		(r.cfg.MassPercent > 0 && float64(len(fresh))*100 > r.cfg.MassPercent*float64(tracked)))
	if mass {
		if r.infra == nil {
			r.infra = &infraIncident{id: "infra-" + nuid.Next(), opened: now}
			opened = r.infra
		}
		r.infra.hosts = append(r.infra.hosts, fresh...)
		for _, h := range fresh {
			r.hosts[h].inInfra = true
		}
	} else {
		fire = waiting
		for _, f := range fire {
			r.hosts[f.host].silentFired = true
		}
	}
	if r.infra != nil && !mass {
		still := 0
		for _, h := range r.infra.hosts {
			if r.hosts[h].inInfra {
				still++
			}
		}
		if still == 0 {
			closed, r.infra = r.infra, nil
		}
	}
	r.mu.Unlock()
	if opened != nil {
		r.stats.Infra.Add(1)
		r.log.Error().Int("silent", len(fresh)).Int("fleet", tracked).Msg("many hosts silent at once: infrastructure incident, no host is cordoned for it")
		r.audit(Record{Host: FleetHost, Incident: opened.id, Stage: StageInfra, Action: ActAlert,
			Reason: fmt.Sprintf("%d of %d hosts silent at once (more than %d hosts or %.0f%%): infrastructure incident, nobody cordoned; silent: %s",
				len(fresh), tracked, r.cfg.MassHosts, r.cfg.MassPercent, short(fresh))})
	}
	if closed != nil {
		r.log.Info().Str("incident", closed.id).Msg("infrastructure incident over")
		r.audit(Record{Host: FleetHost, Incident: closed.id, Stage: StageInfra, Action: ActAlert,
			Reason: fmt.Sprintf("infrastructure incident over after %s: its %d hosts are heard again", now.Sub(closed.opened).Round(time.Millisecond), len(closed.hosts))})
	}
	for _, f := range fire {
		last := "never heard since this responder started"
		if f.since < 24*365*time.Hour {
			last = fmt.Sprintf("no heartbeat for %s", f.since.Round(time.Millisecond))
		}
		r.deadMan(f.host, fmt.Sprintf("%s (deadline %s from its interval)", last, f.limit), nil, Stages{Received: now})
	}
}

func short(hosts []string) string {
	if len(hosts) > 20 {
		return strings.Join(hosts[:20], ", ") + fmt.Sprintf(" and %d more", len(hosts)-20)
	}
	return strings.Join(hosts, ", ")
}
