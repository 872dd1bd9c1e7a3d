#!/bin/sh
# make vmtest: run the lsm backend's privileged tests in a VM whose kernel has
# BPF-LSM on. Debian's cloud kernel (apt-get download), an initramfs of
# busybox-static plus the statically built test binary, qemu with software
# emulation (-accel tcg; nested KVM is not usable on the development machines).
# The VM's /init prints DRIFT-VMTEST-EXIT=<status>; this script exits with it.
# Anything missing (kernel package, qemu, busybox-static) fails the run.
#
# Environment:
#   VMTEST_KERNEL_PKG  linux-image-<version>-cloud-amd64-unsigned to use
#                      (default: the one linux-image-cloud-amd64 depends on)
#   VMTEST_RUN         -test.run regexp inside the VM (default: all tests)
#   VMTEST_BENCH       -test.bench regexp inside the VM (default: none)
#   VMTEST_BENCHTIME   -test.benchtime inside the VM (default: 1x: BenchmarkLSM
#                      sets its own iterations and rounds)
#   VMTEST_ENV         NAME=value ... exported to the tests inside the VM
#                      (e.g. DRIFT_BENCH_ROUNDS=15)
#   VMTEST_TIMEOUT     seconds before the VM is killed (default: 1800)
#   VMTEST_SMP         virtual CPUs (default: 2)
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cache="$root/.vmtest"
timeout_s=${VMTEST_TIMEOUT:-1800}

fail() {
	echo "vmtest: FAIL: $*" >&2
	exit 1
}

command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
dpkg -s busybox-static >/dev/null 2>&1 && [ -x /bin/busybox ] ||
	fail "no static busybox (the initramfs has no libc): apt-get install busybox-static"
for t in apt-get apt-cache dpkg cpio gzip go timeout; do
	command -v "$t" >/dev/null || fail "$t not found"
done

mkdir -p "$cache/debs"

# The kernel: the cloud flavour's current version, unsigned (same binary).
pkg=${VMTEST_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
	signed=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
	[ -n "$signed" ] || fail "cannot find the Debian cloud kernel: apt-cache depends linux-image-cloud-amd64 names no linux-image-<version>-cloud-amd64 (run apt-get update, or set VMTEST_KERNEL_PKG)"
	pkg="$signed-unsigned"
fi
deb=$(ls "$cache/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
	echo "vmtest: downloading $pkg"
	(cd "$cache/debs" && apt-get download "$pkg") || fail "apt-get download $pkg failed"
	deb=$(ls "$cache/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
	[ -n "$deb" ] || fail "apt-get download $pkg left no .deb in $cache/debs"
fi
kdir="$cache/kernel/$pkg"
if [ ! -d "$kdir/boot" ]; then
	rm -rf "$kdir"
	mkdir -p "$kdir"
	dpkg -x "$deb" "$kdir" || fail "dpkg -x $deb failed"
fi
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* 2>/dev/null | head -n1 || true)
[ -n "$vmlinuz" ] || fail "no boot/vmlinuz-* in $deb"
grep -q '^CONFIG_BPF_LSM=y' "$kdir"/boot/config-* || fail "$pkg is built without CONFIG_BPF_LSM"

# The tests, static so the initramfs needs no libc.
echo "vmtest: building the lsm tests"
(cd "$root" && CGO_ENABLED=0 go test -c -o "$cache/drift.test" ./sensor/lsm/) || fail "building the lsm test binary failed"

# The initramfs.
stage="$cache/initramfs"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/proc" "$stage/sys" "$stage/dev" "$stage/tmp" "$stage/run"
cp /bin/busybox "$stage/bin/busybox"
cp "$root/tests/vmtest/init" "$stage/init"
cp "$cache/drift.test" "$stage/drift.test"
chmod 0755 "$stage/init" "$stage/drift.test"
(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) >"$cache/initrd.gz" || fail "packing the initramfs failed"

extra=""
[ -n "${VMTEST_RUN:-}" ] && extra="$extra drift.run=$VMTEST_RUN"
[ -n "${VMTEST_BENCH:-}" ] && extra="$extra drift.bench=$VMTEST_BENCH"
[ -n "${VMTEST_BENCHTIME:-}" ] && extra="$extra drift.benchtime=$VMTEST_BENCHTIME"
for kv in ${VMTEST_ENV:-}; do
	case "$kv" in
	[A-Z_]*=*) extra="$extra drift.env.$kv" ;;
	*) fail "VMTEST_ENV: $kv is not NAME=value" ;;
	esac
done

log="$cache/console.log"
echo "vmtest: booting $(basename "$vmlinuz") under qemu (tcg), log in $log"
start=$(date +%s)
set +e
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -smp "${VMTEST_SMP:-2}" -m 1G -nographic -no-reboot \
	-kernel "$vmlinuz" -initrd "$cache/initrd.gz" \
	-append "console=ttyS0 lsm=lockdown,capability,bpf rdinit=/init panic=-1 quiet$extra" \
	</dev/null 2>&1 | tee "$log"
qrc=$?
set -e
end=$(date +%s)

status=$(tr -d '\r' <"$log" | sed -n 's/^DRIFT-VMTEST-EXIT=\([0-9]*\)$/\1/p' | tail -n1)
if [ -z "$status" ]; then
	fail "the VM printed no DRIFT-VMTEST-EXIT line within ${timeout_s}s (qemu exit $qrc): see $log"
fi
echo "vmtest: tests exited $status after $((end - start))s in the VM"
exit "$status"
