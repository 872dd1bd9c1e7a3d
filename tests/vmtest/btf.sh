#!/bin/sh
# btf.sh IMAGE: print, as C (bpftool btf dump ... format c), the kernel types of
# an arm64 kernel Image (Debian's vmlinuz: the raw Image, or gzip'ed). The
# kernel keeps its BTF, the blob /sys/kernel/btf/vmlinux serves, verbatim in
# its image: found by its header (magic 0xeb9f, version 1, flags 0, 24-byte
# header, types first), cut at the header's type and string lengths, and
# checked by bpftool parsing it whole. `make vmlinux-arm64` writes
# headers/arm64/vmlinux.h with it; make vmtest-arm64 boots the same kernel.
set -eu
img=${1:?usage: btf.sh IMAGE}
fail() {
	echo "btf.sh: $img: $*" >&2
	exit 1
}
command -v bpftool >/dev/null || fail "bpftool not found: apt-get install bpftool"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "$(od -An -tx1 -N2 "$img" | tr -d ' ')" = 1f8b ]; then
	gzip -dc "$img" >"$tmp/image" || fail "not a gzip'ed image"
else
	cp "$img" "$tmp/image"
fi
off=$(LC_ALL=C grep -obUaP '\x9f\xeb\x01\x00\x18\x00\x00\x00\x00\x00\x00\x00' "$tmp/image" | head -n1 | cut -d: -f1)
[ -n "$off" ] || fail "no BTF header in the image (a kernel without CONFIG_DEBUG_INFO_BTF?)"
# type_len, str_off, str_len: the header's words at 12, 16 and 20.
set -- $(od -An -tu4 -j $((off + 12)) -N 12 "$tmp/image")
[ "$1" = "$2" ] || fail "BTF at $off: strings (at $2) do not follow the types ($1 bytes)"
tail -c +$((off + 1)) "$tmp/image" | head -c $((24 + $2 + $3)) >"$tmp/btf"
bpftool btf dump file "$tmp/btf" format c || fail "bpftool cannot read the BTF found at $off"
