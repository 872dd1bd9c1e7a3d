// Package metrics is what the driftsensor daemons share for Prometheus: a
// registry with the Go runtime, process and build_info metrics, served on
// /metrics. Each daemon registers its own collectors on it.
package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/driftsensor/driftsensor/internal/version"
)

// NewRegistry returns a registry holding go_*, process_* and
// <program>_build_info{version,commit,goversion} (always 1).
func NewRegistry(program string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        program + "_build_info",
		Help:        "The running build: version, commit and Go release as labels; always 1.",
		ConstLabels: prometheus.Labels{"version": version.Version, "commit": version.Commit, "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info)
	return reg
}

// Serve serves reg on addr's /metrics until ctx ends and returns the address
// it listens on (addr may name port 0). flagName names the flag that gave
// addr, for the error.
func Serve(ctx context.Context, flagName, addr string, reg *prometheus.Registry) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flagName, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	go func() { <-ctx.Done(); srv.Close() }()
	return l.Addr(), nil
}
