package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/driftsensor/driftsensor/internal/outputs"
	"github.com/driftsensor/driftsensor/responder/decide"
)

// destinations is -alert-to, repeatable.
type destinations []string

func (d *destinations) String() string     { return strings.Join(*d, ",") }
func (d *destinations) Set(s string) error { *d = append(*d, s); return nil }

// alertOutputs opens every -alert-to destination in queue mode: the
// responder never waits on them; what a full queue drops is counted.
func alertOutputs(dests []string, log zerolog.Logger) ([]*outputs.Output, error) {
	var outs []*outputs.Output
	for _, d := range dests {
		o, err := outputs.Open(d, outputs.Config{Warn: func(msg string, err error) {
			log.Warn().Err(err).Msg(msg)
		}})
		if err != nil {
			return nil, fmt.Errorf("-alert-to: %w", err)
		}
		o.Start()
		outs = append(outs, o)
	}
	return outs, nil
}

// alertSeverity is the syslog severity of an audit record: what needs a
// person is an alert (1), a failed action an error (3), a cordon or destroy
// decided or done critical (2), the rest a notice (5).
func alertSeverity(rec decide.Record) int {
	switch {
	case rec.Stage == decide.StageAlert || rec.Stage == decide.StageHold || rec.Stage == decide.StageDeadMan || rec.Stage == decide.StageInfra:
		return 1
	case rec.Error != "":
		return 3
	case rec.Action == decide.ActCordon || rec.Action == decide.ActDestroy:
		return 2
	}
	return 5
}

// notify hands every audit record to every output.
func notify(outs []*outputs.Output) func(decide.Record) {
	return func(rec decide.Record) {
		doc, err := json.Marshal(rec)
		if err != nil {
			return
		}
		// The record has no id of its own: replica, time and stage make one
		// that a receiver (Elastic's _id) can deduplicate on.
		id := fmt.Sprintf("%s-%s-%s-%d", rec.Replica, rec.Host, rec.Stage, rec.Time.UnixNano())
		r := outputs.Record{ID: id, Time: rec.Time, Host: rec.Host, Source: "alert", Severity: alertSeverity(rec), Doc: doc}
		for _, o := range outs {
			o.Enqueue(r)
		}
	}
}

// closeOutputs sends what the queues hold, for at most a few seconds.
func closeOutputs(outs []*outputs.Output) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, o := range outs {
		o.Close(ctx)
	}
}

// outputCollectors export each output's counts:
// driftresponder_alert_output_records_total{output, result}.
func outputCollectors(outs []*outputs.Output) []prometheus.Collector {
	return outputs.Collectors("driftresponder_alert_output_records_total", outs)
}
