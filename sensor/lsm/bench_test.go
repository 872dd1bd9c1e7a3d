package lsm

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/driftsensor/driftsensor/sensor"
	"github.com/driftsensor/driftsensor/sensor/backend"
	"github.com/driftsensor/driftsensor/sensor/hooktest"
	"github.com/driftsensor/driftsensor/sensor/policy"
	"github.com/driftsensor/driftsensor/sensor/sysfs"
	"github.com/driftsensor/driftsensor/sensor/testenv"
	"github.com/driftsensor/driftsensor/sensor/tracepoint"
)

// detach and attach take the programs off their hooks and put them back,
// so one loaded backend is measured attached or not without reloading.
func (b *Backend) detach() {
	for _, l := range b.links {
		l.Link.Close()
	}
	b.links = nil
}

func (b *Backend) attach() error {
	names := make([]string, 0, len(b.coll.Programs))
	for name := range b.coll.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		l, err := attach(b.coll.Programs[name])
		if err != nil {
			return fmt.Errorf("attach %s: %w", name, err)
		}
		b.links = append(b.links, backend.Link{Link: l, What: name})
	}
	return nil
}

func percents(ratios []float64) string {
	var out []string
	for _, r := range ratios {
		out = append(out, fmt.Sprintf("%+.1f%%", 100*(r-1)))
	}
	return strings.Join(out, " ")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// BenchmarkLSM measures the benign workloads on a sealed scope with no
// sensor, the lsm backend in detect and in enforce mode, and the tracepoint
// backend, interleaved round by round in one VM run (tcg timings drift, so
// only ratios within a round mean anything). Each metric is the median over
// the rounds of that round's ratio to no sensor, as an overhead in percent;
// none-*-ns/op is the median cost of one iteration with no sensor.
// DRIFT_BENCH_ROUNDS (default 9), DRIFT_BENCH_CHURN and DRIFT_BENCH_SYSCALLS
// (iterations per run) tune it.
func BenchmarkLSM(b *testing.B) {
	requireLSM(b)
	cgRoot, err := sysfs.CgroupRoot()
	if err != nil {
		b.Fatal(err)
	}
	cg := testenv.NewCgroup(b)
	rounds := testenv.EnvCount(b, "DRIFT_BENCH_ROUNDS", 9)
	iters := map[string]int{"churn": testenv.EnvCount(b, "DRIFT_BENCH_CHURN", 2000), "syscalls": testenv.EnvCount(b, "DRIFT_BENCH_SYSCALLS", 5000)}
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		b.Fatal(err)
	}
	dir, err := filepath.EvalSymlinks(b.TempDir()) // under /tmp: a writable exception of the default policy
	if err != nil {
		b.Fatal(err)
	}
	// The default policy (protect /, the usual exceptions), with this binary
	// as an image file so the workers' own exec is no finding.
	pol, err := policy.Parse("bench.yaml", []byte(`version: 1
protect: ["/"]
exceptions: ["/dev", "/proc", "/sys", "/run", "/tmp", "/var/tmp", "/var/log"]
exec:
  image_paths: ["/usr", "/bin", "/sbin", "/lib", "/lib64"]
  image_files: [`+self+`]
`))
	if err != nil {
		b.Fatal(err)
	}
	rules := sensor.RulesFor(pol)
	opts := backend.Options{Scope: []string{cg.Path}, CgroupRoot: cgRoot}

	lb, err := Load(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer lb.Close()
	lb.detach()
	if err := lb.SetSealed(true); err != nil {
		b.Fatal(err)
	}

	run := func(kind string) float64 {
		d, err := hooktest.RunWorkload(cg, kind, iters[kind], dir, self)
		if err != nil {
			b.Fatal(err)
		}
		return float64(d.Nanoseconds())
	}
	withLSM := func(enforce bool) func(string) float64 {
		return func(kind string) float64 {
			r := rules
			r.Enforce = enforce
			if err := lb.Apply(r); err != nil {
				b.Fatal(err)
			}
			if err := lb.attach(); err != nil {
				b.Fatal(err)
			}
			defer lb.detach()
			ns := run(kind)
			if fill := lb.RingFill(); fill != 0 {
				b.Fatalf("the benign %s workload produced findings (ring %.2g full)", kind, fill)
			}
			return ns
		}
	}
	withTracepoint := func(kind string) float64 {
		tb, err := tracepoint.Load(opts)
		if err != nil {
			b.Fatal(err)
		}
		defer tb.Close()
		if err := tb.Apply(rules); err != nil {
			b.Fatal(err)
		}
		if err := tb.SetSealed(true); err != nil {
			b.Fatal(err)
		}
		ns := run(kind)
		if n := tb.Reader().AvailableBytes(); n != 0 {
			b.Fatalf("the benign %s workload produced tracepoint findings (%d bytes in the ring)", kind, n)
		}
		return ns
	}
	configs := []struct {
		name string
		run  func(string) float64
	}{
		{"none", run},
		{"lsm-detect", withLSM(false)},
		{"lsm-enforce", withLSM(true)},
		{"tracepoint", withTracepoint},
	}

	b.ResetTimer()
	for _, kind := range []string{"churn", "syscalls"} {
		run(kind) // warm caches
		ns := map[string][]float64{}
		ratio := map[string][]float64{}
		for r := 0; r < rounds; r++ {
			// Rotate the order, so drift over the run hits every configuration alike.
			this := map[string]float64{}
			for i := range configs {
				c := configs[(i+r)%len(configs)]
				this[c.name] = c.run(kind)
				ns[c.name] = append(ns[c.name], this[c.name])
			}
			for _, c := range configs[1:] {
				ratio[c.name] = append(ratio[c.name], this[c.name]/this["none"])
			}
		}
		b.ReportMetric(median(ns["none"]), "none-"+kind+"-ns/op")
		for _, c := range configs[1:] {
			b.ReportMetric(100*(median(ratio[c.name])-1), c.name+"-"+kind+"-%")
			q := append([]float64(nil), ratio[c.name]...)
			sort.Float64s(q)
			b.Logf("%s %s: overhead per round, sorted: %s", kind, c.name, percents(q))
		}
		b.Logf("%s, %d rounds of %d iterations: median ns/op none %.0f, lsm-detect %.0f, lsm-enforce %.0f, tracepoint %.0f",
			kind, rounds, iters[kind], median(ns["none"]), median(ns["lsm-detect"]), median(ns["lsm-enforce"]), median(ns["tracepoint"]))
	}
	b.ReportMetric(0, "ns/op") // the run's wall time per b.N says nothing here
}
