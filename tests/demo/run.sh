#!/usr/bin/env bash
# The demo: a test host "web" (its own network namespace and cgroup, on a
# bridge of the demo's own, with a peer host "peer"), sealed by driftsensor,
# watched by driftresponder. Drift inside web is detected in the kernel,
# published over NATS, and the responder cordons web: the peer's probe stops
# passing. The machine's own interfaces, routes and firewall are never touched;
# everything the demo made is removed at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it loads eBPF programs and makes network namespaces)" >&2; exit 1; }
for b in driftsensor driftresponder; do
	[ -x "$BIN/$b" ] || { echo "demo: $BIN/$b missing: run make build" >&2; exit 1; }
done

id=$$
br=dsd$id
ns_web=dsd-web-$id
ns_peer=dsd-peer-$id
cgroot=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
[ -n "$cgroot" ] || { echo "demo: no cgroup v2 hierarchy mounted" >&2; exit 1; }
cg=$cgroot/dsdemo-$id
work=$(mktemp -d /tmp/driftsensor-demo.XXXXXX)
img=$work/img
pids=()
# kernel file systems driftsensor mounts when missing; the demo unmounts those it caused
kernel_fs="/sys/fs/bpf /sys/kernel/tracing /sys/kernel/security"
mounted_before=$(awk '{print $5}' /proc/self/mountinfo)

cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	for h in web peer; do
		[ -d "$cg/$h" ] && { echo 1 > "$cg/$h/cgroup.kill" 2>/dev/null || true; }
	done
	sleep 0.2
	for h in web peer; do rmdir "$cg/$h" 2>/dev/null || true; done
	rmdir "$cg" 2>/dev/null || true
	ip netns del "$ns_web" 2>/dev/null || true
	ip netns del "$ns_peer" 2>/dev/null || true
	ip link del "$br" 2>/dev/null || true
	for m in $kernel_fs; do
		grep -qx "$m" <<< "$mounted_before" || umount "$m" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

# Addresses for the test hosts: 192.0.2.0/24 (documentation range), skipping
# any this machine itself uses or routes through.
taken=$( { ip -4 -o addr show; ip -4 route show; } | grep -oE '192\.0\.2\.[0-9]+' | sort -u || true)
free=()
for n in $(seq 201 250); do
	grep -qx "192.0.2.$n" <<< "$taken" || free+=("192.0.2.$n")
	[ ${#free[@]} -ge 2 ] && break
done
web_ip=${free[0]}
peer_ip=${free[1]}

echo "== test bed: bridge $br, hosts web ($web_ip) and peer ($peer_ip), each a netns + cgroup"
ip link add "$br" type bridge
echo 8 > "/proc/sys/net/ipv4/conf/$br/arp_ignore"   # the root namespace never answers for the bed
echo 1 > "/proc/sys/net/ipv6/conf/$br/disable_ipv6"
ip link set "$br" up
mkdir -p "$cg/web" "$cg/peer"
for h in web peer; do
	ns=dsd-$h-$id
	ip=$([ $h = web ] && echo "$web_ip" || echo "$peer_ip")
	ip netns add "$ns"
	ip link add "dv$h$id" type veth peer name eth0 netns "$ns"
	ip link set "dv$h$id" master "$br" up
	ip -n "$ns" addr add "$ip/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
done
# in_host HOST CMD...: run CMD inside the host's cgroup and network namespace
# (nsenter switches only the network namespace: no mounts, which a sealed
# host would rightly report as drift).
in_host() {
	local h=$1; shift
	sh -c 'echo $$ > "$0/cgroup.procs" && ns=$1 && shift && exec nsenter --net="$ns" "$@"' "$cg/$h" "/var/run/netns/dsd-$h-$id" "$@"
}
sh -c 'echo $$ > "$0/cgroup.procs" && exec nsenter --net="$1" busybox nc -ll -p 7070 -e /bin/cat' "$cg/web" "/var/run/netns/$ns_web" &
pids+=($!)
probe() { [ "$(echo ping | in_host peer timeout 2 busybox nc -w 1 "$web_ip" 7070 2>/dev/null)" = ping ]; }
for _ in $(seq 50); do probe && break; sleep 0.1; done
probe || { echo "demo: peer cannot reach web's echo server" >&2; exit 1; }
echo "   peer -> web:7070 answers"

mkdir -p "$img/etc" "$img/var/log" "$img/usr/bin"
echo "root:x:0:0::/root:/bin/sh" > "$img/etc/passwd"
cat > "$work/policy.yaml" <<YAML
version: 1
protect: [$img]
exceptions: [$img/var/log]
exec:
  image_paths: [/usr, /bin, /sbin, /lib, /lib64, $img/usr]
net:
  allowed_ports: [7070]
  deny_binds: true
YAML

echo "== driftsensor seals web (scope: its cgroup; cordon gate on its interfaces; embedded NATS on loopback)"
"$BIN/driftsensor" --host web --policy "$work/policy.yaml" --scope-cgroup "${cg#$cgroot}/web" --seal \
	--gate --gate-netns "/var/run/netns/$ns_web" --embedded-port 0 --state-dir "$work/state" \
	--heartbeat 1s --ready-file "$work/sensor.ready" > "$work/findings.jsonl" 2> "$work/sensor.log" &
pids+=($!)
for _ in $(seq 100); do [ -f "$work/sensor.ready" ] && break; sleep 0.1; done
[ -f "$work/sensor.ready" ] || { echo "demo: driftsensor did not start:" >&2; cat "$work/sensor.log" >&2; exit 1; }
url=$(grep -o '"url":"nats://[^"]*"' "$work/sensor.log" | head -1 | cut -d'"' -f4)

echo "== driftresponder: file drift -> cordon, verified by a probe from peer"
# The embedded server is authenticated: the responder takes the seed the sensor made in its state directory.
DRIFT_STATE_DIR="$work/state" "$BIN/driftresponder" --nats "$url" --replica demo --rule 'kind=file,action=cordon' \
	--probe "$web_ip:7070" --probe-netns "/var/run/netns/$ns_peer" --heartbeat-interval 1s \
	--ready-file "$work/responder.ready" 2> "$work/responder.log" &
pids+=($!)
for _ in $(seq 100); do [ -f "$work/responder.ready" ] && break; sleep 0.1; done
[ -f "$work/responder.ready" ] || { echo "demo: driftresponder did not start:" >&2; cat "$work/responder.log" >&2; exit 1; }

echo "== inside web: benign work (no findings)"
in_host web sh -c "echo ok >> $img/var/log/app.log; cat $img/etc/passwd > /dev/null; /bin/true"
sleep 0.3
# The sensor's record of the state it sealed web with is not drift.
echo "   findings so far: $(grep -vc '"action":"state_applied"' "$work/findings.jsonl" || true)"

echo "== inside web: drift"
echo "   open a backdoor port (refused in the kernel; alert)"
in_host web timeout 2 busybox nc -l -p 4444 2>&1 | sed 's/^/     /' || true
echo "   drop and run a tool from /tmp (exec drift; alert)"
in_host web sh -c 'cp /bin/true /tmp/.implant-$$ && /tmp/.implant-$$; rm -f /tmp/.implant-$$'
echo "   edit $img/etc/passwd (file drift; cordon)"
in_host web sh -c "echo 'evil:x:0:0::/:/bin/sh' >> $img/etc/passwd"

cut=
for _ in $(seq 100); do probe || { cut=yes; break; }; sleep 0.05; done
sleep 0.5
echo "== findings published by driftsensor (JSON lines; also on drift.v1.web.<kind>)"
if command -v jq >/dev/null; then
	jq -c '{seq, kind, action, path: (.file.path // .exec.path // (if .net then "port " + (.net.port|tostring) else null end) // (if .health.applied then "state " + .health.applied.to else null end)), reasons: .exec.reasons, denied, pid: .process.pid, comm: .process.comm}' "$work/findings.jsonl"
else
	cat "$work/findings.jsonl"
fi
echo "== responder audit trail (stage, action)"
grep '"message":"audit"' "$work/responder.log" | sed -E 's/.*"stage":"([a-z_]+)".*"action":"([a-z]+)".*/   \1 \2/' | uniq || true
if [ -n "$cut" ]; then
	echo "== web is cordoned: peer -> web:7070 no longer answers. The machine's own network was never touched."
else
	echo "demo: web still answers after drift; responder log:" >&2
	cat "$work/responder.log" >&2
	exit 1
fi
