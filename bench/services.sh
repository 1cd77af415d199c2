#!/usr/bin/env bash
# Swarm services benchmark on a multi-host rig (scripts/rig.sh): 1 manager + 3 workers, default
# settings (5 s dispatcher heartbeat). Per round, from the command's start until `docker
# service ls` (on the manager) shows the state reached:
# - `service create -d --replicas 10` → 10/10 running;
# - `service scale -d 10→30` → 30/30;
# - a worker's skiffd killed (kill -9) → 30 running again, none on the lost node;
# - `service update -d --image` of a 10-replica service (parallelism 1, stop-first, Docker's
#   defaults) → all 10 running the new image.
# Docker Swarm 20.10's node-loss figure on the same kind of rig (32–34 s) is in issue 15 and
# ../shared/PEERS.md; this script does not re-run dockerd.
#
# Usage: bench/services.sh [ROUNDS] (default 3). Prints a Markdown section on stdout. Needs root
# and busybox-static (the image is a busybox rootfs imported on every host).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
BIN="$PWD/target/release"
[ -x "$BIN/skiffd" ] || cargo build --release --locked --bins >&2
DOCKER=${DOCKER_CLI:-$(command -v docker)}
W=$(mktemp -d /tmp/sksv.XXXXXX)
HOSTS=4
RIG="$PWD/scripts/rig.sh"
export SKIFF_BIN_DIR="$BIN" DOCKER_CLI="$DOCKER"
now() { date +%s%N; }
dk() { local h=$1; shift; DOCKER_HOST="unix://$W/rig/h$h/s.sock" "$DOCKER" "$@"; }

cleanup() {
    set +e
    [ -f "$W/rig/rig.env" ] && "$RIG" down "$W/rig"
    rm -rf "$W"
}
trap cleanup EXIT

# A busybox rootfs to import on every host.
mkdir -p "$W/rootfs/bin"
cp "$(command -v busybox)" "$W/rootfs/bin/busybox"
for t in sh sleep httpd; do ln -s busybox "$W/rootfs/bin/$t"; done
tar -C "$W/rootfs" -cf "$W/busybox.tar" .

secs() { echo "scale=3; ($(now) - $1) / 1000000000" | bc; }
# until_secs T0 CMD...: polls CMD every 50 ms; prints the seconds since T0 once it succeeds.
until_secs() {
    local t0=$1; shift
    for _ in $(seq 1200); do "$@" >/dev/null 2>&1 && { secs "$t0"; return; }; sleep 0.05; done
    echo "timeout"
}
replicas() { [ "$(dk 1 service ls --filter "name=$1" --format '{{.Replicas}}')" = "$2" ]; }
# All of SERVICE's wanted tasks running, N of them, none on NODE.
moved() {
    local ids; ids=$(dk 1 service ps -q -f desired-state=running "$1")
    [ "$(wc -w <<<"$ids")" = "$2" ] || return 1
    # shellcheck disable=SC2086
    ! dk 1 inspect --type task --format '{{.NodeID}} {{.Status.State}}' $ids | grep -v " running$" | grep -q . &&
        ! dk 1 inspect --type task --format '{{.NodeID}}' $ids | grep -q "^$3$"
}
updated() {
    local ids; ids=$(dk 1 service ps -q -f desired-state=running "$1")
    [ "$(wc -w <<<"$ids")" = "$2" ] || return 1
    # shellcheck disable=SC2086
    [ "$(dk 1 inspect --type task --format '{{.Status.State}} {{.Spec.ContainerSpec.Image}}' $ids | grep -c "^running $3")" = "$2" ]
}

declare -A R
round() {
    "$RIG" up "$W/rig" "$HOSTS" >/dev/null
    for h in $(seq "$HOSTS"); do
        dk "$h" import "$W/busybox.tar" bench-svc:1 >/dev/null
        dk "$h" tag bench-svc:1 bench-svc:2
    done
    local a1; a1=$("$RIG" addr "$W/rig" 1)
    dk 1 swarm init --advertise-addr "$a1" >/dev/null
    local wt; wt=$(dk 1 swarm join-token -q worker)
    for h in $(seq 2 "$HOSTS"); do
        dk "$h" swarm join --token "$wt" --advertise-addr "$("$RIG" addr "$W/rig" "$h")" "$a1:2377" >/dev/null
    done
    for _ in $(seq 500); do [ "$(dk 1 node ls --format '{{.Status}}' | grep -c Ready)" = "$HOSTS" ] && break; sleep 0.02; done
    local t0
    t0=$(now); dk 1 service create -d -q --name web --replicas 10 bench-svc:1 sleep 1000000 >/dev/null 2>&1
    R[create]+="$(until_secs "$t0" replicas web 10/10) "
    t0=$(now); dk 1 service scale -d web=30 >/dev/null
    R[scale]+="$(until_secs "$t0" replicas web 30/30) "
    local lost; lost=$(dk 4 info -f '{{.Swarm.NodeID}}')
    t0=$(now); "$RIG" kill "$W/rig" 4
    R[lost]+="$(until_secs "$t0" moved web 30 "$lost") "
    dk 1 service create -d -q --name upd --replicas 10 bench-svc:1 sleep 1000000 >/dev/null 2>&1
    until_secs "$(now)" replicas upd 10/10 >/dev/null
    t0=$(now); dk 1 service update -d -q --image bench-svc:2 upd >/dev/null 2>&1
    R[update]+="$(until_secs "$t0" updated upd 10 bench-svc:2) "
    "$RIG" down "$W/rig"
}

for _ in $(seq "$ROUNDS"); do round; done

stats() {
    python3 - "$1" $2 <<'PY'
import statistics, sys
label, xs = sys.argv[1], [float(x) for x in sys.argv[2:] if x != "timeout"]
t = len(sys.argv[2:]) - len(xs)
print(f"| {label} | {statistics.median(xs):.2f} | {min(xs):.2f} | {max(xs):.2f} |" + (f" ({t} timed out)" if t else ""))
PY
}
echo "### Swarm services: 1 manager + 3 workers on a rig of network namespaces (median of $ROUNDS rounds, seconds)"
echo
echo "| what | median | min | max |"
echo "|---|---|---|---|"
stats "service create --replicas 10 → 10/10 running" "${R[create]}"
stats "service scale 10 → 30 → 30/30 running" "${R[scale]}"
stats "worker's skiffd killed → its tasks running on the other nodes" "${R[lost]}"
stats "rolling update of 10 tasks (parallelism 1, stop-first) → all on the new image" "${R[update]}"
