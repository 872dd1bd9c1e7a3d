# driftsensor. `make help` lists the targets.
SHELL := /bin/bash
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
PKGS := ./...
BIN := bin

.PHONY: help setup build generate vmlinux check-generated vet test vmtest vmbench check fuzz bench demo clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## install what a fresh Debian machine lacks (as root): clang, bpftool, iproute2, qemu, Go if missing
	scripts/setup.sh

build: ## build driftsensor, driftctl and driftresponder into bin/
	$(GO) build -o $(BIN)/ ./cmd/...

generate: ## rebuild the committed eBPF objects from bpf/*.c (needs clang)
	$(GO) generate ./sensor/... ./responder/... ./tests/...

vmlinux: ## regenerate headers/vmlinux.h from this kernel's BTF (needs bpftool)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > headers/vmlinux.h

check-generated: generate ## fail when the committed eBPF objects differ from a rebuild
	@git diff --exit-code --stat -- '*_bpfel.go' '*_bpfel.o' || { echo "generated eBPF objects are stale: run 'make generate' and commit the result" >&2; exit 1; }

vet: ## go vet
	$(GO) vet $(PKGS)

test: vet ## run every test; privileged packages one at a time (as root; DRIFT_REQUIRE_BPF=1 turns skips into failures)
	$(GO) test -p 1 -count=1 -timeout 20m $(PKGS)

check: check-generated test vmtest ## what CI runs: generated objects fresh, every test, the lsm tests in the VM

vmtest: ## run the lsm backend's privileged tests in a qemu VM with BPF-LSM on (Debian cloud kernel, tcg)
	tests/vmtest/run.sh

vmbench: ## BenchmarkLSM inside that VM (tcg: timings are indicative only)
	VMTEST_RUN='^$$' VMTEST_BENCH=BenchmarkLSM tests/vmtest/run.sh

fuzz: ## short runs of every fuzz target
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=20s ./sensor/policy/
	$(GO) test -run=NONE -fuzz=FuzzDecode -fuzztime=20s ./sensor/record/

bench: build ## run the benchmarks and print the tables for BENCHMARKS.md
	scripts/bench.sh

demo: build ## two test hosts on a bridge of their own: drift in one is detected, published over NATS and cordoned by the responder
	tests/demo/run.sh

clean: ## remove build output
	rm -rf $(BIN)
