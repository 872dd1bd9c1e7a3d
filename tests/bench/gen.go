// Package bench measures driftsensor: overhead on benign workloads against
// the floor any syscall tracepoint costs, record latency, and throughput.
// Everything runs in a cgroup of the benchmark's own; `scripts/bench.sh`
// runs it and prints the tables that go into BENCHMARKS.md.
package bench

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target bpfel floor ../../bpf/bench_floor.c -- -I../../headers -I../../bpf
