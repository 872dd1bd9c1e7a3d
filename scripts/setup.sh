#!/usr/bin/env bash
# Installs what driftsensor needs on a fresh Debian 12 machine, as root.
# Only Debian's packages and the Go module proxy are used.
set -euo pipefail
GO_VERSION=1.26.8

if [ "$(id -u)" != 0 ]; then
	echo "setup: run as root (it installs packages)" >&2
	exit 1
fi
need=()
for cmd in clang:clang llvm-strip:llvm bpftool:bpftool ip:iproute2 nsenter:util-linux qemu-system-x86_64:qemu-system-x86 cpio:cpio curl:curl unzip:unzip systemd-analyze:systemd dpkg-deb:dpkg xz:xz-utils mke2fs:e2fsprogs; do
	command -v "${cmd%%:*}" >/dev/null || need+=("${cmd##*:}")
done
[ -e /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
# promtool checks the alert rules and metrics (make check); it comes with Debian's prometheus, installed
# without its recommended node exporter. Nothing is started.
promtool_pkg=()
command -v promtool >/dev/null || promtool_pkg=(prometheus)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static) # the VM's initramfs has no libc
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm) # make vmtest-arm64: the arm64 sensor in an emulated arm64 VM
command -v chromium >/dev/null || need+=(chromium) # renders the drill's HTML report in a test, headless and offline
# make vmtest fetches its kernels through a private apt configuration of its
# own (tests/vmtest/kernel.sh): it needs Debian's archive keys, not the
# machine's package lists.
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ] || [ ${#promtool_pkg[@]} -gt 0 ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
	apt-get update -q
fi
if [ ${#need[@]} -gt 0 ]; then
	echo "setup: installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
if [ ${#promtool_pkg[@]} -gt 0 ]; then
	echo "setup: installing ${promtool_pkg[*]} (for promtool)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${promtool_pkg[@]}"
fi
# deploy/image's test loads the OCI image into podman and runs it with runc (crun, podman's default,
# refuses this machine's hybrid cgroup layout). Nothing is started.
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
	echo "setup: installing podman and runc (the image's load test)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends podman runc
fi
# make bench-peers compares with auditd and inotifywait. auditd is installed but neither started nor
# enabled: once auditing is on, every new process carries an audit context and is slower. The
# benchmark starts its own auditd and stops it. A policy-rc.d that refuses keeps the package's
# scripts from starting it (an existing one is left in place).
if ! command -v inotifywait >/dev/null; then
	echo "setup: installing inotify-tools (for make bench-peers)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends inotify-tools
fi
if ! command -v auditd >/dev/null; then
	echo "setup: installing auditd, not started (for make bench-peers)"
	own_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		own_policy=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends auditd
	[ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
	if command -v systemctl >/dev/null; then
		systemctl disable --quiet auditd.service 2>/dev/null || true
	fi
fi

# Go: keep a new enough one; otherwise fetch the toolchain from the module proxy.
have=$( { command -v go >/dev/null && go env GOVERSION; } || { [ -x /usr/local/go/bin/go ] && /usr/local/go/bin/go env GOVERSION; } || echo none)
if [ "$have" = none ] || [ "$(printf '%s\n' "go$GO_VERSION" "$have" | sort -V | head -1)" != "go$GO_VERSION" ]; then
	proxy=${GOPROXY:-https://proxy.golang.org}
	proxy=${proxy%%,*}
	url="$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-amd64.zip"
	echo "setup: Go $GO_VERSION from $url"
	tmp=$(mktemp -d)
	curl -fsSL -o "$tmp/go.zip" "$url"
	unzip -q "$tmp/go.zip" -d "$tmp"
	rm -rf /usr/local/go
	mv "$tmp/golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-amd64" /usr/local/go
	chmod +x /usr/local/go/bin/* /usr/local/go/pkg/tool/*/* 2>/dev/null || true
	rm -rf "$tmp"
fi
echo "setup: ok ($(/usr/local/go/bin/go version 2>/dev/null || go version))"
