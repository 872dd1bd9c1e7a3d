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
for cmd in clang:clang llvm-strip:llvm bpftool:bpftool ip:iproute2 qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio curl:curl unzip:unzip; do
	command -v "${cmd%%:*}" >/dev/null || need+=("${cmd##*:}")
done
if [ ! -e /usr/include/bpf/bpf_helpers.h ]; then need+=(libbpf-dev); fi
if [ ${#need[@]} -gt 0 ]; then
	echo "setup: installing ${need[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
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
