#!/usr/bin/env bash
# The demo: seal a scratch cgroup (never the whole machine), make drift inside
# it, and show the findings driftsensor reports. It touches no network
# interface and removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it loads eBPF programs)" >&2; exit 1; }

cgroot=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
[ -n "$cgroot" ] || { echo "demo: no cgroup v2 hierarchy mounted" >&2; exit 1; }
work=$(mktemp -d /tmp/driftsensor-demo.XXXXXX)
cg="$cgroot/driftsensor-demo-$$"
img="$work/img"
out="$work/findings.jsonl"
sensor_pid=

cleanup() {
	[ -n "$sensor_pid" ] && kill -INT "$sensor_pid" 2>/dev/null && wait "$sensor_pid" 2>/dev/null || true
	[ -d "$cg" ] && { echo 1 > "$cg/cgroup.kill" 2>/dev/null || true; sleep 0.2; rmdir "$cg" 2>/dev/null || true; }
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$img/etc" "$img/var/log" "$img/usr/bin" "$cg"
echo "root:x:0:0::/root:/bin/sh" > "$img/etc/passwd"
cp /bin/true "$img/usr/bin/app"
cat > "$work/policy.yaml" <<YAML
version: 1
protect: [$img]
exceptions: [$img/var/log]
exec:
  image_paths: [/usr, /bin, /sbin, /lib, /lib64, $img/usr]
net:
  allowed_ports: [8443]
  deny_binds: true
YAML

echo "== sealing a scratch scope: cgroup ${cg#$cgroot}, image $img"
"$BIN/driftsensor" --policy "$work/policy.yaml" --scope-cgroup "${cg#$cgroot}" --seal --host demo \
	--ready-file "$work/ready" > "$out" 2> "$work/sensor.log" &
sensor_pid=$!
for _ in $(seq 100); do [ -f "$work/ready" ] && break; kill -0 "$sensor_pid" 2>/dev/null || break; sleep 0.1; done
[ -f "$work/ready" ] || { echo "demo: driftsensor did not start:" >&2; cat "$work/sensor.log" >&2; exit 1; }

echo "== inside the sealed scope: benign work, then drift"
sh -c '
	echo $$ > "$1/cgroup.procs"
	img=$2
	echo "benign: a log line"        ; echo ok >> "$img/var/log/app.log"
	echo "benign: read a config"     ; cat "$img/etc/passwd" > /dev/null
	echo "benign: run the image app" ; "$img/usr/bin/app"
	echo "DRIFT: edit /etc/passwd"   ; echo "evil:x:0:0::/:/bin/sh" >> "$img/etc/passwd"
	echo "DRIFT: drop and run a tool"; cp /bin/true /tmp/.implant-$$ && /tmp/.implant-$$; rm -f /tmp/.implant-$$
	echo "DRIFT: open a backdoor port (refused in the kernel)"
	timeout 2 busybox nc -l -p 4444 2>&1 | sed "s/^/  nc: /" || true
' demo "$cg" "$img"
sleep 0.5
kill -INT "$sensor_pid"; wait "$sensor_pid" || true; sensor_pid=

echo "== findings (JSON lines, one per drift)"
if command -v jq >/dev/null; then
	jq -c '{seq, kind, action, path: (.file.path // .exec.path // ("port " + (.net.port|tostring))), reasons: .exec.reasons, denied, pid: .process.pid, comm: .process.comm, rule}' "$out"
else
	cat "$out"
fi
n=$(wc -l < "$out")
echo "== $n findings; benign activity produced none"
[ "$n" -gt 0 ]
