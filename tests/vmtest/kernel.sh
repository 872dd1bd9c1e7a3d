#!/bin/sh
# kernel.sh SUITE: fetch the Debian cloud kernel of one suite (bookworm,
# bookworm-backports, trixie, sid...) and print the directory it was unpacked
# in: its vmlinuz and config.
#
# apt runs with a private configuration under the cache (its own sources list,
# package lists, download cache and an empty dpkg status), so the machine's
# own sources and package lists are never read or changed. The archive is the
# one the machine's sources name for Debian (VMTEST_MIRROR overrides it). Once
# a suite's kernel is unpacked it is reused without asking the network again;
# VMTEST_REFRESH=1 asks the archive for the suite's current kernel.
#
# Debian packs the kernel image two ways: up to trixie, one
# linux-image-<version>-cloud-amd64-unsigned; later, linux-binary-unsigned-<version>
# (the image) beside linux-base-<version> (its config), with the modules in a
# package of their own, fetched too: the VM loads one module, loop (the raw
# block device case mounts a file system on a loop device), kept
# uncompressed in <dir>/modules.
#
# Environment:
#   VMTEST_CACHE    where downloads are kept (default: ~/.cache/driftsensor-vmtest)
#   VMTEST_MIRROR   Debian archive URI (default: the machine's, else http://deb.debian.org/debian)
#   VMTEST_REFRESH  1: update the suite's package lists and fetch its current kernel
#   VMTEST_ARCH     Debian architecture of the kernel (default amd64; arm64 for
#                   make vmtest-arm64 and make vmlinux-arm64): only the private
#                   configuration names it; for arm64, busybox-static of arm64 is
#                   unpacked beside the kernel (busybox), for the VM's initramfs
set -eu

suite=${1:?usage: kernel.sh SUITE}
cache=${VMTEST_CACHE:-${HOME:-/root}/.cache/driftsensor-vmtest}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

fail() {
	echo "vmtest: $suite: FAIL: $*" >&2
	exit 1
}

for t in apt-get apt-cache dpkg flock xz; do
	command -v "$t" >/dev/null || fail "$t not found"
done
[ -r "$keyring" ] || fail "no $keyring: apt-get install debian-archive-keyring"
case "$suite" in
*[!a-z0-9-]* | "") fail "suite \"$suite\" is not a Debian suite name (e.g. bookworm, trixie, sid)" ;;
esac

arch=${VMTEST_ARCH:-amd64}
case "$arch" in
amd64) tag=$suite ;;
arm64) tag=$suite-$arch ;;
*) fail "VMTEST_ARCH=$arch: want amd64 or arm64" ;;
esac
apt="$cache/apt/$tag"
mkdir -p "$apt/empty" "$apt/state/lists/partial" "$apt/cache/archives/partial" "$cache/debs" "$cache/kernel"

# One fetch at a time per cache: several worktrees may share it.
exec 9>"$cache/lock"
flock 9

chosen="$apt/kernel" # the unpacked kernel directory of the last fetch
if [ "${VMTEST_REFRESH:-0}" != 1 ] && [ -s "$chosen" ] && [ -f "$(cat "$chosen")/vmlinuz" ] && [ -d "$(cat "$chosen")/modules" ]; then
	cat "$chosen"
	exit 0
fi

mirror=${VMTEST_MIRROR:-}
if [ -z "$mirror" ]; then
	# The archive the machine's own sources use for Debian (not its security
	# archive): by its Release file's label, or by its path when the machine's
	# package lists were never fetched.
	# shellcheck disable=SC2016 # $(REPO_URI) is apt's format, not the shell's
	mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Origin: Debian' 'Label: Debian' 2>/dev/null | sort -u | head -n1)
	# shellcheck disable=SC2016
	[ -n "$mirror" ] || mirror=$(apt-get indextargets --no-release-info --format '$(REPO_URI)' 2>/dev/null | grep '/debian/$' | sort -u | head -n1)
	mirror=${mirror:-http://deb.debian.org/debian/}
fi
echo "deb [signed-by=$keyring] ${mirror%/} $suite main" >"$apt/sources.list"
# A backports suite holds the kernel, not busybox-static: its base suite too,
# below the backports (APT::Default-Release).
case "$suite" in
*-backports) [ "$arch" = amd64 ] || echo "deb [signed-by=$keyring] ${mirror%/} ${suite%-backports} main" >>"$apt/sources.list" ;;
esac
: >"$apt/status"

# Only what the private configuration names: no machine sources, preferences or
# dpkg state; no DEP-11 metadata (nothing here reads it); downloads land in
# a cache that apt's unprivileged _apt user cannot write, so no sandbox user.
aptopts="-q -o Dir::Etc::SourceList=$apt/sources.list -o Dir::Etc::SourceParts=$apt/empty
	-o Dir::Etc::Preferences=$apt/empty/none -o Dir::Etc::PreferencesParts=$apt/empty
	-o Dir::State=$apt/state -o Dir::State::status=$apt/status -o Dir::Cache=$apt/cache
	-o APT::Sandbox::User=root -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
	-o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
	-o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
	-o APT::Architecture=$arch -o APT::Architectures=$arch -o APT::Default-Release=$suite"

echo "vmtest: $suite: apt-get update (private configuration in $apt, archive $mirror)" >&2
# shellcheck disable=SC2086 # aptopts is a list of options
apt-get $aptopts update >&2 || fail "apt-get update of $suite from $mirror failed"

# shellcheck disable=SC2086
image=$(apt-cache $aptopts depends linux-image-cloud-$arch 2>/dev/null |
	sed -n "s/^ *Depends: linux-image-\\([0-9].*-cloud-$arch\\)\$/\\1/p" | head -n1)
[ -n "$image" ] || fail "linux-image-cloud-$arch of $suite depends on no linux-image-<version>-cloud-$arch"

has() {
	# shellcheck disable=SC2086
	apt-cache $aptopts show --no-all-versions "$1" >/dev/null 2>&1
}
if has "linux-image-$image-unsigned"; then
	pkgs="linux-image-$image-unsigned"
elif has "linux-binary-unsigned-$image" && has "linux-base-$image"; then
	pkgs="linux-binary-unsigned-$image linux-base-$image"
	! has "linux-modules-$image" || pkgs="$pkgs linux-modules-$image"
else
	fail "$suite has neither linux-image-$image-unsigned nor linux-binary-unsigned-$image with linux-base-$image"
fi

kdir="$cache/kernel/$suite-$image"
[ "$arch" = amd64 ] || pkgs="$pkgs busybox-static"
if [ ! -f "$kdir/vmlinuz" ] || [ ! -d "$kdir/modules" ]; then
	rm -rf "$kdir.tmp"
	mkdir -p "$kdir.tmp"
	for p in $pkgs; do
		# shellcheck disable=SC2086
		ver=$(apt-cache $aptopts show --no-all-versions "$p" | sed -n 's/^Version: //p' | head -n1)
		deb=$(ls "$cache/debs/${p}_$(echo "$ver" | sed 's/:/%3a/')_"*.deb 2>/dev/null | head -n1 || true)
		if [ -z "$deb" ]; then
			echo "vmtest: $suite: apt-get download $p ($ver)" >&2
			# shellcheck disable=SC2086
			(cd "$cache/debs" && apt-get $aptopts download "$p" >&2) || fail "apt-get download $p failed"
			deb=$(ls "$cache/debs/${p}_"*.deb 2>/dev/null | sort -V | tail -n1 || true)
			[ -n "$deb" ] || fail "apt-get download $p left no .deb in $cache/debs"
		fi
		dpkg -x "$deb" "$kdir.tmp" || fail "dpkg -x $deb failed"
	done
	# Where the image and its config are: boot/ up to trixie, the modules
	# directory later. Only these two are kept, and the loop module when the
	# kernel has it as one (decompressed: busybox insmod reads plain .ko).
	img=$(ls "$kdir.tmp"/boot/vmlinuz-* "$kdir.tmp"/usr/lib/modules/*/vmlinuz* 2>/dev/null | head -n1 || true)
	cfg=$(ls "$kdir.tmp"/boot/config-* "$kdir.tmp"/usr/lib/modules/*/config 2>/dev/null | head -n1 || true)
	[ -n "$img" ] || fail "no kernel image (boot/vmlinuz-*, usr/lib/modules/*/vmlinuz*) in $pkgs"
	[ -n "$cfg" ] || fail "no kernel config (boot/config-*, usr/lib/modules/*/config) in $pkgs"
	mv "$img" "$kdir.tmp/vmlinuz"
	mv "$cfg" "$kdir.tmp/config"
	keep=
	if [ "$arch" != amd64 ]; then
		bb=$(ls "$kdir.tmp"/bin/busybox "$kdir.tmp"/usr/bin/busybox 2>/dev/null | head -n1 || true)
		[ -n "$bb" ] || fail "no bin/busybox or usr/bin/busybox in busybox-static ($arch)"
		mv "$bb" "$kdir.tmp/busybox"
		keep=busybox
	fi
	mkdir "$kdir.tmp/modules"
	loop=$(find "$kdir.tmp" -path '*/kernel/drivers/block/loop.ko*' | head -n1)
	case "$loop" in
	"") grep -q '^CONFIG_BLK_DEV_LOOP=y' "$kdir.tmp/config" || fail "no loop module in $pkgs, and the kernel has none built in" ;;
	*.xz) xz -dc "$loop" >"$kdir.tmp/modules/loop.ko" || fail "xz -d $loop failed" ;;
	*.zst) zstd -qdc "$loop" >"$kdir.tmp/modules/loop.ko" || fail "zstd -d $loop failed" ;;
	*) cp "$loop" "$kdir.tmp/modules/loop.ko" ;;
	esac
	find "$kdir.tmp" -mindepth 1 -maxdepth 1 ! -name vmlinuz ! -name config ! -name modules ! -name "${keep:-config}" -exec rm -rf {} +
	rm -rf "$kdir"
	mv "$kdir.tmp" "$kdir"
fi
echo "$kdir" >"$chosen"
echo "$kdir"
