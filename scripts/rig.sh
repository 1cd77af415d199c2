#!/usr/bin/env bash
# A multi-host rig on one machine: N skiffd "hosts", each in its own network namespace (entered
# with nsenter --net, so the daemon keeps the host's /sys and cgroup hierarchy) with its own
# data root, exec root, socket and container bridge, joined by a bridge of the root namespace.
# Host K (1..N) is 10.220.S.K/24 on its eth0, where S is the rig's slot; the addresses live only
# inside the namespaces, so rigs never see each other or the machine's networks.
#
#   scripts/rig.sh up DIR N          start N hosts under DIR (a new directory); prints their sockets
#   scripts/rig.sh addr DIR K        host K's address
#   scripts/rig.sh docker DIR K ...  the docker CLI against host K
#   scripts/rig.sh kill DIR K        kill -9 host K's skiffd (its namespace stays)
#   scripts/rig.sh start DIR K       start host K's skiffd again
#   scripts/rig.sh down DIR          stop every daemon and remove namespaces, links, mounts and DIR
#
# Needs root. Binaries: $SKIFF_BIN_DIR (default target/release of this checkout); CLI: $DOCKER_CLI
# (default: docker on PATH). Used by bench/swarm.sh and by the e2e test tests/e2e/tests/swarm.rs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SKIFF_BIN_DIR:-$ROOT/target/release}
DOCKER=${DOCKER_CLI:-$(command -v docker || echo /usr/local/bin/docker)}

usage() { sed -n '2,16p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dir=$2
shift 2

load() {
    [ -f "$dir/rig.env" ] || { echo "no rig in $dir" >&2; exit 1; }
    # shellcheck disable=SC1091
    . "$dir/rig.env"
}
ns() { echo "${TAG}h$1"; }
addr() { echo "10.220.$SLOT.$1"; }
sock() { echo "$dir/h$1/s.sock"; }

start_host() {
    local k=$1 h="$dir/h$1"
    mkdir -p "$h"
    [ -f "$h/daemon.json" ] || echo '{}' > "$h/daemon.json"
    rm -f "$(sock "$k")"
    nsenter --net="/run/netns/$(ns "$k")" "$BIN/skiffd" -H "unix://$(sock "$k")" --data-root "$h/data" \
        --exec-root "$h/run" --config-file "$h/daemon.json" -b "${TAG}b$k" --bip "10.221.$k.1/24" \
        >>"$h/log" 2>&1 &
    echo $! > "$h/pid"
    for _ in $(seq 500); do
        DOCKER_HOST="unix://$(sock "$k")" "$DOCKER" version >/dev/null 2>&1 && return
        sleep 0.02
    done
    echo "skiffd on host $k did not start; its log: $h/log" >&2
    exit 1
}

kill_host() {
    local pid; pid=$(cat "$dir/h$1/pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 100); do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
    rm -f "$dir/h$1/pid"
}

case "$cmd" in
up)
    [ $# -eq 1 ] && [[ $1 =~ ^[1-9][0-9]?$ ]] || usage
    n=$1
    [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ] && { echo "$dir is not empty" >&2; exit 1; }
    mkdir -p "$dir"
    # A tag from the directory: names stay short (interface names fit in 15 bytes) and unique.
    TAG="skg$(echo -n "$(realpath "$dir")" | sha256sum | cut -c1-5)"
    SLOT=$(( 0x$(echo -n "$TAG" | sha256sum | cut -c1-2) % 250 + 1 ))
    printf 'TAG=%s\nSLOT=%s\nN=%s\n' "$TAG" "$SLOT" "$n" > "$dir/rig.env"
    ip link add "${TAG}br" type bridge
    ip link set "${TAG}br" up
    for k in $(seq 1 "$n"); do
        ip netns add "$(ns "$k")"
        ip link add "${TAG}v$k" type veth peer name eth0 netns "$(ns "$k")"
        ip link set "${TAG}v$k" master "${TAG}br" up
        ip -n "$(ns "$k")" addr add "$(addr "$k")/24" dev eth0
        ip -n "$(ns "$k")" link set eth0 up
        ip -n "$(ns "$k")" link set lo up
    done
    for k in $(seq 1 "$n"); do start_host "$k"; done
    for k in $(seq 1 "$n"); do echo "host $k: $(addr "$k") DOCKER_HOST=unix://$(sock "$k")"; done
    ;;
addr) load; addr "$1" ;;
docker) load; k=$1; shift; DOCKER_HOST="unix://$(sock "$k")" exec "$DOCKER" "$@" ;;
kill) load; kill_host "$1" ;;
start) load; start_host "$1" ;;
down)
    load
    set +e
    for k in $(seq 1 "$N"); do
        # Containers go through their daemon (started again if it was killed), then it stops.
        pid=$(cat "$dir/h$k/pid" 2>/dev/null)
        { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || start_host "$k" 2>/dev/null
        ids=$(DOCKER_HOST="unix://$(sock "$k")" "$DOCKER" ps -aq 2>/dev/null)
        # shellcheck disable=SC2086
        [ -n "$ids" ] && DOCKER_HOST="unix://$(sock "$k")" "$DOCKER" rm -f $ids >/dev/null 2>&1
        pid=$(cat "$dir/h$k/pid" 2>/dev/null)
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 250); do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break; sleep 0.04; done
        kill_host "$k"
        # Whatever is left of containers: their monitors, and processes by cgroup.
        for c in "$dir/h$k/run/containers"/*; do
            [ -d "$c" ] || continue
            [ -f "$c/monitor.pid" ] && kill -9 "$(cat "$c/monitor.pid")" 2>/dev/null
            for cg in /sys/fs/cgroup/*/skiff/"$(basename "$c")" /sys/fs/cgroup/skiff/"$(basename "$c")"; do
                [ -f "$cg/cgroup.procs" ] || continue
                xargs -r kill -9 <"$cg/cgroup.procs" 2>/dev/null
                rmdir "$cg" 2>/dev/null
            done
        done
    done
    for k in $(seq 1 "$N"); do
        # Whatever the daemons left mounted (overlays, shm) under their roots, deepest first.
        awk -v d="$dir/h$k/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
            umount -l "$m"
        done
        ip link del "${TAG}v$k" 2>/dev/null
        ip netns del "$(ns "$k")" 2>/dev/null
    done
    ip link del "${TAG}br" 2>/dev/null
    rm -rf "$dir"
    ;;
*) usage ;;
esac
