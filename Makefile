# driftsensor. `make help` lists the targets.
SHELL := /bin/bash
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
PKGS := ./...
BIN := bin

# Release builds (make dist): static, stripped, reproducible. The same commit and VERSION give the same
# bytes: no cgo, no paths, no build id, no VCS stamp but the commit given here, files dated to the commit.
VERSION ?= $(shell cat VERSION)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
DIST ?= dist
VPKG := github.com/driftsensor/driftsensor/internal/version
DIST_FLAGS := -trimpath -buildvcs=false -ldflags '-s -w -buildid= -X $(VPKG).Version=$(VERSION) -X $(VPKG).Commit=$(COMMIT)'
# Every tool for both: the sensor's eBPF objects are generated per architecture (bpf2go -target amd64,arm64).
ARCHES := amd64 arm64
IMAGE ?= driftsensor-fleet:$(VERSION)
IMAGE_TAR = driftsensor-fleet_$(VERSION)_oci.tar
comma := ,
space := $(empty) $(empty)

.PHONY: help setup build generate vmlinux vmlinux-arm64 vmtest-arm64 check-generated check-tidy vet test vmtest vmbench check fuzz cover stress bench bench-peers demo clean dist dist-bin packages image pkgtest promcheck dashboard-shot e2e

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## install what a fresh Debian machine lacks (as root): clang, bpftool, iproute2, qemu, promtool, Go if missing
	scripts/setup.sh

build: ## build driftsensor, driftctl and driftresponder into bin/ (version and commit stamped; make dist for release builds)
	$(GO) build -ldflags '-X $(VPKG).Version=$(VERSION) -X $(VPKG).Commit=$(COMMIT)' -o $(BIN)/ ./cmd/...

generate: ## rebuild the committed eBPF objects from bpf/*.c (needs clang)
	$(GO) generate ./sensor/... ./responder/... ./tests/...

vmlinux: ## regenerate headers/amd64/vmlinux.h from this (x86-64) kernel's BTF (needs bpftool)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > headers/amd64/vmlinux.h

# The arm64 kernel the types come from: trixie's 6.12 (Debian's 7.x arm64 kernels, sid's and trixie-backports',
# embed anonymous structs that Debian's bpftool 7.1 dumps as bare declarations, which do not compile).
ARM64_BTF_SUITE ?= trixie
vmlinux-arm64: ## regenerate headers/arm64/vmlinux.h from the BTF of Debian's arm64 cloud kernel (ARM64_BTF_SUITE; needs bpftool)
	k=$$(VMTEST_ARCH=arm64 tests/vmtest/kernel.sh $(ARM64_BTF_SUITE)) && tests/vmtest/btf.sh "$$k/vmlinuz" > headers/arm64/vmlinux.h

vmtest-arm64: ## the lsm tests and the tracepoint hook table on Debian trixie's arm64 cloud kernel (qemu-system-aarch64, tcg, ~8 min; not part of check)
	VMTEST_ARCH=arm64 VMTEST_SUITES="$${VMTEST_SUITES:-trixie}" tests/vmtest/run.sh

check-generated: generate ## fail when the committed eBPF objects differ from a rebuild
	@git diff --exit-code --stat -- '*_bpfel.go' '*_bpfel.o' || { echo "generated eBPF objects are stale: run 'make generate' and commit the result" >&2; exit 1; }

vet: ## go vet
	$(GO) vet $(PKGS)

test: vet ## run every test; privileged packages one at a time (as root; DRIFT_REQUIRE_BPF=1 turns skips into failures)
	$(GO) test -p 1 -count=1 -timeout 20m -skip '^TestDrillCatalog$$' $(PKGS) # the drill is make e2e

check: check-generated check-tidy test e2e vmtest ## what CI runs: generated objects fresh, go.mod tidy, every test (the package install test and promtool checks among them), the drill, both backends in the VMs

e2e: ## the chaos drill: the whole technique catalog on 5 sealed test-bed hosts; every technique detected, every control silent (root)
	$(GO) test -count=1 -timeout 15m -run '^TestDrillCatalog$$' -v ./tests/drill/

vmtest: ## both backends' privileged tests on Debian's 6.1, 6.12 and newest cloud kernels, one qemu VM each (BPF-LSM on, tcg)
	tests/vmtest/run.sh

vmbench: ## BenchmarkLSM in the VM of Debian's 6.1 kernel (VMTEST_SUITES picks others; tcg: timings are indicative only)
	VMTEST_SUITES="$${VMTEST_SUITES:-bookworm}" VMTEST_RUN='^$$' VMTEST_TP_RUN='^$$' VMTEST_BENCH=BenchmarkLSM \
		VMTEST_SMP="$${VMTEST_SMP:-2}" VMTEST_TEST_TIMEOUT=25m VMTEST_TIMEOUT=1800 tests/vmtest/run.sh

fuzz: ## every fuzz target of the module, FUZZTIME (default 10s) each
	scripts/fuzz.sh

cover: ## statement coverage per package, binaries the tests start included (as root, like test)
	scripts/cover.sh

stress: ## the privileged packages 5 times under CPU load; lists every test that failed (as root)
	scripts/stress.sh

bench: build ## run the benchmarks and print the tables for BENCHMARKS.md
	scripts/bench.sh

bench-peers: build ## driftsensor (both modes) next to auditd and inotifywait on the same workloads; tables and docs/bench-peers.svg for BENCHMARKS.md (root; PEERS_FAST=1: quick)
	scripts/bench-peers.sh

demo: build ## two test hosts on a bridge of their own: drift in one is detected, published over NATS and cordoned by the responder
	$(GO) run ./tests/demo -bin $(BIN)

dist: dist-bin packages image ## release: static binaries, .deb packages, the OCI image archive, SHA256SUMS in dist/
	@cd $(DIST) && find . -type f ! -name SHA256SUMS | LC_ALL=C sort | xargs sha256sum > SHA256SUMS && cat SHA256SUMS

dist-bin: ## static, stripped, reproducible binaries in dist/linux_<arch>/ (amd64, arm64)
	@for a in $(ARCHES); do \
		echo "dist: linux/$$a driftsensor driftresponder driftctl $(VERSION) $(COMMIT)"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build $(DIST_FLAGS) -o $(DIST)/linux_$$a/ ./cmd/driftsensor ./cmd/driftresponder ./cmd/driftctl || exit 1; \
	done
	@find $(DIST)/linux_* -type f -exec touch -d @$(SOURCE_DATE_EPOCH) {} +

packages: dist-bin ## .deb packages in dist/ (nfpm): driftsensor and driftsensor-fleet, amd64 and arm64
	@for a in $(ARCHES); do \
		for p in driftsensor driftsensor-fleet; do \
			ARCH=$$a VERSION=$(VERSION) DIST=$(DIST) $(GO) tool nfpm package --config deploy/nfpm/$$p.yaml --packager deb --target $(DIST)/ || exit 1; \
		done; \
	done

image: dist-bin ## OCI image archive of driftresponder and driftctl (deploy/docker/Dockerfile; amd64+arm64), checked once written; loaded into docker or podman when present
	$(GO) run ./deploy/image --dist $(DIST) --arch $(subst $(space),$(comma),$(ARCHES)) --tag $(IMAGE) --out $(DIST)/$(IMAGE_TAR)
	$(GO) run ./deploy/image --verify $(DIST)/$(IMAGE_TAR) --arch $(subst $(space),$(comma),$(ARCHES)) --tag $(IMAGE)
	@engine=$$(command -v docker || command -v podman || true); \
	if [ -n "$$engine" ]; then \
		echo "image: loading $(DIST)/$(IMAGE_TAR) into $$engine"; $$engine load -i $(DIST)/$(IMAGE_TAR) || exit 1; \
	else echo "image: no docker or podman here: the archive is not loaded"; fi

pkgtest: ## install the packages on this machine, run the installed sensor on a test scope, purge (root; part of make test)
	$(GO) test -count=1 -v ./tests/pkg/

promcheck: ## promtool on the alert rules and on real scrapes; every metric the rules and the dashboard use exists (part of make test)
	$(GO) test -count=1 -v ./deploy/

dashboard-shot: ## docs/dashboard.png: the Grafana dashboard's panels and queries drawn by deploy/grafana/preview against Prometheus scraping a live test bed (root; also checks every panel query has data)
	DRIFT_REQUIRE_BPF=1 $(GO) test -count=1 -timeout 10m -run '^TestDashboardLive$$' -v ./deploy/grafana/preview/ -args -shot $(CURDIR)/docs/dashboard.png

check-tidy: ## fail when go.mod or go.sum are not tidy
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit the result" >&2; exit 1; }

clean: ## remove build output
	rm -rf $(BIN) $(DIST)
