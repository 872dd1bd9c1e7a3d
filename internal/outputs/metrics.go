package outputs

import "github.com/prometheus/client_golang/prometheus"

// Collectors export the counts of outs as the counter name{output, result}:
// result is sent, acknowledged (of sent, those the receiver acknowledged:
// HTTP collectors only), retried (per attempt), refused, failed or dropped.
func Collectors(name string, outs []*Output) []prometheus.Collector {
	var cs []prometheus.Collector
	for _, o := range outs {
		for result, n := range map[string]func() uint64{
			"sent": o.Stats.Sent.Load, "acknowledged": o.Stats.Acked.Load, "retried": o.Stats.Retried.Load,
			"refused": o.Stats.Refused.Load, "failed": o.Stats.Failed.Load, "dropped": o.Stats.Dropped.Load,
		} {
			cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        name,
				Help:        "Records handed to an output, by what became of them: sent (syslog: written into the socket; HTTP: acknowledged), acknowledged by the receiver (HTTP only: syslog has no acknowledgement), retried (per attempt), refused by the receiver, failed after the last attempt, dropped by a full queue.",
				ConstLabels: prometheus.Labels{"output": o.Name, "result": result},
			}, func() float64 { return float64(n()) }))
		}
	}
	return cs
}
