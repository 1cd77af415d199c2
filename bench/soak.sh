#!/usr/bin/env bash
# Soak: many `run --rm` and build/push/pull cycles against one skiffd (with its registry), and
# what the daemon and the host hold before and after: skiffd's RSS, open descriptors and
# threads, mounts, veths, firewall rules and monitors. Leaks show as growth. Not in CI (about a
# quarter of an hour); prints a Markdown section for bench/RESULTS.md.
#
#   bench/soak.sh [RUNS] [CYCLES]      (defaults 2000 and 500)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${1:-2000}
CYCLES=${2:-500}
BIN=$PWD/target/release
[ -x "$BIN/skiffd" ] || cargo build --release --locked --bins >&2
DOCKER_CLI=${DOCKER_CLI:-$(command -v docker)}
W=$(mktemp -d /tmp/skiff-soak.XXXXXX)
cleanup() {
    stop_daemons_and_unmount 2
    # skiffd may still be writing its last records: wait for it before removing its roots.
    for _ in $(seq 50); do kill -0 "${PID:-0}" 2>/dev/null || break; sleep 0.2; done
    rm -rf "$W"
}
trap cleanup EXIT
busybox_image_tar

RP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BR=sksoak0
"$BIN/skiffd" --config-file /dev/null -H "unix://$W/s.sock" --data-root "$W/data" --exec-root "$W/run" \
    --log-level warn -b $BR --bip 10.232.0.1/24 --registry-addr "127.0.0.1:$RP" --pidfile "$W/skiffd.pid" \
    2>"$W/skiffd.log" &
export DOCKER_HOST="unix://$W/s.sock" DOCKER_CONFIG="$W/docker-config"
for _ in $(seq 200); do "$DOCKER_CLI" version >/dev/null 2>&1 && break; sleep 0.05; done
dk() { "$DOCKER_CLI" "$@"; }
dk import "$W/busybox.tar" busybox >/dev/null
dk login -u skiff --password-stdin "127.0.0.1:$RP" < "$W/data/registry/auth/password" >/dev/null

PID=$(cat "$W/skiffd.pid")
probe() {
    local rss fds threads mounts veths rules monitors
    rss=$(awk '/VmRSS/{print $2}' "/proc/$PID/status")
    fds=$(ls "/proc/$PID/fd" | wc -l)
    threads=$(awk '/Threads/{print $2}' "/proc/$PID/status")
    mounts=$(grep -c " $W" /proc/self/mountinfo || true)
    veths=$(ip -o link show master $BR 2>/dev/null | wc -l)
    rules=$(iptables-save | grep -c "SKIFF-SKSOAK0" || true)
    monitors=$(pgrep -f "skiff-monitor $W/run" | wc -l || true)
    echo "$rss $fds $threads $mounts $veths $rules $monitors"
}
# A steady state first: one of everything, so first-use allocations do not count as growth.
dk run --rm busybox true
mkdir -p "$W/ctx"
printf 'FROM busybox\nARG N\nRUN echo "$N" > /n\n' > "$W/ctx/Dockerfile"
dk build -q --build-arg N=warm -t "127.0.0.1:$RP/soak/img:warm" "$W/ctx" >/dev/null
before=$(probe)
t0=$(date +%s)
for i in $(seq "$RUNS"); do
    dk run --rm busybox true
done
t1=$(date +%s)
after_runs=$(probe)
for i in $(seq "$CYCLES"); do
    tag="127.0.0.1:$RP/soak/img:$i"
    dk build -q --build-arg "N=$i" -t "$tag" "$W/ctx" >/dev/null
    dk push "$tag" >/dev/null
    dk rmi "$tag" >/dev/null
    dk pull "$tag" >/dev/null
    dk rmi "$tag" >/dev/null
done
t2=$(date +%s)
sleep 6 # exited monitors linger a few seconds for their clients
after=$(probe)

read -r r0 f0 th0 m0 v0 ru0 mo0 <<<"$before"
read -r r1 f1 th1 m1 v1 ru1 mo1 <<<"$after_runs"
read -r r2 f2 th2 m2 v2 ru2 mo2 <<<"$after"
echo "Soak: $RUNS \`run --rm\` ($((t1 - t0)) s), then $CYCLES build/push/rmi/pull cycles ($((t2 - t1)) s), one skiffd with its registry; $(date -u +%Y-%m-%d), skiff $(git rev-parse --short HEAD 2>/dev/null)."
echo
echo "| | before | after the runs | after the cycles |"
echo "|---|---|---|---|"
echo "| skiffd RSS (kB) | $r0 | $r1 | $r2 |"
echo "| skiffd open descriptors | $f0 | $f1 | $f2 |"
echo "| skiffd threads | $th0 | $th1 | $th2 |"
echo "| mounts under the data and exec roots | $m0 | $m1 | $m2 |"
echo "| veths on the bridge | $v0 | $v1 | $v2 |"
echo "| firewall rules of the daemon | $ru0 | $ru1 | $ru2 |"
echo "| monitors | $mo0 | $mo1 | $mo2 |"
