#!/bin/sh
# make vmtest: run both backends' privileged tests on several Debian cloud
# kernels, each in a VM of its own with BPF-LSM on: the lsm backend's tests
# (detect and enforce) and the tracepoint backend's hook table and its walk of
# a process's mappings (sensor/bpftest TestVMAWalkAgreesWithFindVMA). The kernels
# come from kernel.sh (apt-get download through a private apt configuration);
# the initramfs holds busybox-static and the statically built test binaries,
# and each kernel's VM gets its loop module appended (a second cpio archive:
# the kernel unpacks both) for the raw block device case;
# qemu runs with software emulation (-accel tcg; nested KVM is not usable on
# the development machines). Each VM's /init prints its kernel (uname -r) and
# the status of each test binary on the serial console; this script reports
# them per kernel and fails when any kernel failed, after all have run.
# Anything missing (a kernel package, qemu, busybox-static) fails the run.
#
# Environment:
#   VMTEST_SUITES     Debian suites whose cloud kernel to boot, one VM each
#                     (default: bookworm trixie sid, i.e. 6.1, 6.12 and the newest)
#   VMTEST_JOBS       VMs run at once (default: 2, one per core; 1 shows each
#                     console as it runs, the others print theirs when done)
#   VMTEST_RUN        -test.run regexp for the lsm tests (default: all of them)
#   VMTEST_TP_RUN     -test.run regexp for the tracepoint tests (default: the hook table, TestChmodsJudgedUnderContention and TestMprotectsJudgedWhileMappingsChange)
#   VMTEST_TP_SKIP    suites whose VM does not run the tracepoint tests (default:
#                     none). The report says "not run" for them.
#   VMTEST_BENCH      -test.bench regexp for the lsm tests (default: none)
#   VMTEST_BENCHTIME  -test.benchtime (default: 1x: BenchmarkLSM sets its own
#                     iterations and rounds)
#   VMTEST_ENV        NAME=value ... exported to the tests inside the VM
#                     (e.g. DRIFT_BENCH_ROUNDS=15)
#   VMTEST_TEST_TIMEOUT  -test.timeout of each test binary in the VM (default:
#                     10m for the lsm tests, 3m for each tracepoint one)
#   VMTEST_TIMEOUT    seconds before a VM is killed (default: 1020: the binaries'
#                     timeouts and the boot; three hung VMs stay within CI's hour)
#   VMTEST_SMP        virtual CPUs per VM (default: 1: with several, tcg can run
#                     a vCPU's stale copy of kernel text the kernel has just
#                     patched, as when a tracepoint is switched on: seen on 7.2
#                     as an int3 Oops in trace_syscall_exit. One vCPU is no
#                     slower for these tests)
#   VMTEST_ARCH       amd64 (default) or arm64 (make vmtest-arm64): Debian's
#                     arm64 cloud kernels in qemu-system-aarch64 (virt machine,
#                     tcg), test binaries built with GOARCH=arm64, busybox-static
#                     of arm64 fetched by kernel.sh beside each kernel; work
#                     files in .vmtest-arm64
#   VMTEST_CACHE, VMTEST_MIRROR, VMTEST_REFRESH: see kernel.sh
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
arch=${VMTEST_ARCH:-amd64}
export VMTEST_ARCH="$arch"
case "$arch" in
amd64) work="$root/.vmtest" qemu=qemu-system-x86_64 qemupkg=qemu-system-x86 console=ttyS0 ;;
arm64) work="$root/.vmtest-arm64" qemu=qemu-system-aarch64 qemupkg=qemu-system-arm console=ttyAMA0 ;;
*)
	echo "vmtest: FAIL: VMTEST_ARCH=$arch: want amd64 or arm64" >&2
	exit 1
	;;
esac
suites=${VMTEST_SUITES:-bookworm trixie sid}
jobs=${VMTEST_JOBS:-2}
timeout_s=${VMTEST_TIMEOUT:-1020}

fail() {
	echo "vmtest: FAIL: $*" >&2
	exit 1
}

command -v $qemu >/dev/null || fail "$qemu not found: apt-get install $qemupkg"
[ "$arch" != amd64 ] || { dpkg -s busybox-static >/dev/null 2>&1 && [ -x /bin/busybox ]; } ||
	fail "no static busybox (the initramfs has no libc): apt-get install busybox-static"
for t in cpio gzip go timeout awk; do
	command -v "$t" >/dev/null || fail "$t not found"
done
case "$jobs" in [1-9]) ;; *) fail "VMTEST_JOBS=$jobs: want 1 to 9 VMs at once" ;; esac
[ -n "$suites" ] || fail "VMTEST_SUITES is empty: name at least one Debian suite (e.g. bookworm)"

mkdir -p "$work"
rm -f "$work"/result-* "$work"/console-*.log

# The kernels first: a suite whose kernel cannot be had fails, the others run.
kernels=""
for s in $suites; do
	if kdir=$("$root/tests/vmtest/kernel.sh" "$s"); then
		if grep -q '^CONFIG_BPF_LSM=y' "$kdir/config"; then
			kernels="$kernels $s=$kdir"
			continue
		fi
		echo "vmtest: $s: FAIL: $kdir/vmlinuz is built without CONFIG_BPF_LSM" >&2
	fi
	echo "$s - fetch fetch 0" >"$work/result-$s"
done

# The tests, static so the initramfs needs no libc; one initramfs for every
# kernel (nothing in it depends on the kernel's version).
echo "vmtest: building the lsm tests and the tracepoint hook table"
(cd "$root" && CGO_ENABLED=0 GOARCH=$arch go test -c -o "$work/lsm.test" ./sensor/lsm/ &&
	CGO_ENABLED=0 GOARCH=$arch go test -c -o "$work/sensor.test" ./sensor/ &&
	CGO_ENABLED=0 GOARCH=$arch go test -c -o "$work/bpftest.test" ./sensor/bpftest/) || fail "building the test binaries failed"
stage="$work/initramfs"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/proc" "$stage/sys" "$stage/dev" "$stage/tmp" "$stage/run"
busybox=/bin/busybox
if [ "$arch" != amd64 ]; then
	# kernel.sh unpacked the suite's busybox-static beside its kernel.
	first=${kernels# }
	first=${first%% *}
	busybox=${first#*=}/busybox
	[ -n "$first" ] && [ -x "$busybox" ] || fail "no $arch busybox: no kernel was fetched, or kernel.sh left none beside it"
fi
cp "$busybox" "$stage/bin/busybox"
cp "$root/tests/vmtest/init" "$stage/init"
cp "$work/lsm.test" "$work/sensor.test" "$work/bpftest.test" "$stage/"
chmod 0755 "$stage/init" "$stage/lsm.test" "$stage/sensor.test" "$stage/bpftest.test"
(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz" || fail "packing the initramfs failed"

extra=""
[ -n "${VMTEST_RUN:-}" ] && extra="$extra drift.run=$VMTEST_RUN"
[ -n "${VMTEST_TP_RUN:-}" ] && extra="$extra drift.tprun=$VMTEST_TP_RUN"
[ -n "${VMTEST_BENCH:-}" ] && extra="$extra drift.bench=$VMTEST_BENCH"
[ -n "${VMTEST_BENCHTIME:-}" ] && extra="$extra drift.benchtime=$VMTEST_BENCHTIME"
[ -n "${VMTEST_TEST_TIMEOUT:-}" ] && extra="$extra drift.timeout=$VMTEST_TEST_TIMEOUT"
for kv in ${VMTEST_ENV:-}; do
	case "$kv" in
	[A-Z_]*=*) extra="$extra drift.env.$kv" ;;
	*) fail "VMTEST_ENV: $kv is not NAME=value" ;;
	esac
done

# counts LOG NAME: "passed failed skipped status" of one test binary's run in
# the VM (status "none" when it never finished).
counts() {
	tr -d '\r' <"$1" | awk -v n="$2" '
		$0 == "DRIFT-VMTEST-BEGIN=" n { on = 1; next }
		index($0, "DRIFT-VMTEST-END=" n " ") == 1 { on = 0; rc = substr($0, length("DRIFT-VMTEST-END=" n " ") + 1); next }
		on && /^ *--- PASS/ { p++ }
		on && /^ *--- FAIL/ { f++ }
		on && /^ *--- SKIP/ { s++ }
		END { printf "%d %d %d %s\n", p, f, s, (rc == "" ? "none" : rc) }'
}

# boot KDIR EXTRA: one VM on that kernel, its console on stdout; its
# initramfs is the common one plus the kernel's modules (KDIR/modules, loaded
# by /init).
boot() {
	machine=
	# cortex-a72: no pointer authentication, which tcg emulates slowly.
	[ "$arch" = amd64 ] || machine="-M virt -cpu cortex-a72"
	initrd="$work/initrd-$(basename "$1").gz"
	(cd "$1" && find modules | cpio -o -H newc --quiet | gzip -1) | cat "$work/initrd.gz" - >"$initrd" ||
		fail "packing the modules of $1 failed"
	# shellcheck disable=SC2086 # machine is a list of options
	timeout "$timeout_s" $qemu $machine -accel tcg -smp "${VMTEST_SMP:-1}" -m 1G -nographic -no-reboot -nic none \
		-kernel "$1/vmlinuz" -initrd "$initrd" \
		-append "console=$console lsm=lockdown,capability,bpf rdinit=/init panic=-1 quiet$extra$2" </dev/null 2>&1
}

# vm SUITE KDIR: boot one kernel, run the tests, write result-SUITE as
# "suite kernel lsm-counts tracepoint-counts seconds" (see report below).
vm() {
	s=$1
	log="$work/console-$s.log"
	start=$(date +%s)
	vmextra=""
	case " ${VMTEST_TP_SKIP-} " in *" $s "*) vmextra=" drift.notp=1" ;; esac
	set +e
	if [ "$jobs" = 1 ]; then
		boot "$2" "$vmextra" | tee "$log"
	else
		boot "$2" "$vmextra" >"$log"
	fi
	set -e
	end=$(date +%s)
	kernel=$(tr -d '\r' <"$log" | sed -n 's/^DRIFT-VMTEST-KERNEL=//p' | tail -n1)
	tp=$(counts "$log" tracepoint | tr ' ' /)
	[ -z "$vmextra" ] || tp=not-run
	echo "$s ${kernel:-unknown} $(counts "$log" lsm | tr ' ' /) $tp $((end - start))" >"$work/result-$s"
	[ "$jobs" = 1 ] || { echo "vmtest: $s finished, console:"; cat "$log"; }
}

# Boot the kernels, VMTEST_JOBS at a time.
began=$(date +%s)
# shellcheck disable=SC2086 # one word per suite=kernel-dir
set -- $kernels
while [ $# -gt 0 ]; do
	n=0
	while [ $# -gt 0 ] && [ "$n" -lt "$jobs" ]; do
		s=${1%%=*}
		echo "vmtest: $s: booting $(basename "${1#*=}") under qemu (tcg), log in $work/console-$s.log"
		if [ "$jobs" = 1 ]; then
			vm "$s" "${1#*=}"
		else
			vm "$s" "${1#*=}" &
		fi
		n=$((n + 1))
		shift
	done
	wait
done

# The report: one line per kernel, every result named by the kernel it ran on.
echo
echo "vmtest: results (passed/failed/skipped/exit status of each test binary; subtests counted)"
printf '%-20s %-28s %-22s %-22s %s\n' suite "kernel (uname -r)" lsm tracepoint seconds
bad=0
passed=0
failed=0
for s in $suites; do
	read -r suite kernel lsm tp secs <"$work/result-$s" || { suite=$s kernel=- lsm=- tp=- secs=0; }
	printf '%-20s %-28s %-22s %-22s %s\n' "$suite" "$kernel" "$lsm" "$tp" "$secs"
	for r in "$lsm" "$tp"; do
		case "$r" in
		*/*/*/0 | not-run) ;;
		*) bad=1 ;;
		esac
		case "$r" in
		*/*/*/*)
			passed=$((passed + ${r%%/*}))
			f=${r#*/}
			failed=$((failed + ${f%%/*}))
			;;
		esac
	done
done
# Which lsm programs each kernel left out (the lsm tests log it: the variants
# the run proved), and any kernel panic (why a VM died).
for s in $suites; do
	[ -f "$work/console-$s.log" ] || continue
	m=$(tr -d '\r' <"$work/console-$s.log" | sed -n 's/.*hooks missing on this kernel: \(\[.*\]\)$/\1/p' | head -n1)
	[ -z "$m" ] || echo "vmtest: $s: LSM hooks this kernel lacks (their programs not loaded): $m"
	! grep -q 'Kernel panic - not syncing' "$work/console-$s.log" ||
		echo "vmtest: $s: FAIL: the kernel panicked (see its Oops in $work/console-$s.log)" >&2
done
for s in ${VMTEST_TP_SKIP-}; do
	echo "vmtest: $s: tracepoint tests not run (VMTEST_TP_SKIP): see README, Known limits"
done
if [ "$bad" != 0 ]; then
	echo "vmtest: FAIL: a kernel failed, its tests failed or did not finish within ${timeout_s}s: see $work/console-<suite>.log" >&2
fi
echo "vmtest: $(echo $kernels | wc -w) VMs, $jobs at a time, in $(($(date +%s) - began))s"
echo "vmtest: $passed passed, $failed failed"
exit "$bad"
