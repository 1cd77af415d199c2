#!/usr/bin/env bash
# Swarm-mode benchmark on a multi-host rig: N skiffd "hosts", each in its own network namespace
# (entered with nsenter --net) on a bridge of the root namespace, 3 managers and 1 worker, with
# default settings (5 s dispatcher heartbeat, as `docker swarm init` leaves it). Per round:
# - manager join: `docker swarm join --token MANAGER` until the command returns;
# - worker join;
# - leader failover: kill -9 the leader's skiffd → another manager shown Leader (`node ls` on a
#   surviving manager), then → the first write (`node update`) a surviving manager accepts;
# - killed manager shown Down (from the same kill);
# - killed worker shown Down;
# - root CA rotation: `docker swarm ca --rotate` until it returns (the CLI waits until every node
#   holds a certificate from the new root and trusts it alone), all 4 nodes Ready throughout.
# Docker Swarm 20.10's figures on the same kind of rig are in ../shared/PEERS.md (measured
# 2026-12-04 by the workplace with dockerd defaults); this script does not re-run them.
#
# Usage: bench/swarm.sh [ROUNDS] (default 5). Prints a Markdown section on stdout. Needs root;
# the hosts come from scripts/rig.sh, whose traffic stays on the rig's own bridge.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
BIN="$PWD/target/release"
[ -x "$BIN/skiffd" ] || cargo build --release --locked --bins >&2
DOCKER=${DOCKER_CLI:-$(command -v docker)}
W=$(mktemp -d /tmp/sksw.XXXXXX)
HOSTS=4
RIG="$PWD/scripts/rig.sh"
export SKIFF_BIN_DIR="$BIN" DOCKER_CLI="$DOCKER"
now() { date +%s%N; }
# The rig's layout (scripts/rig.sh): host K's socket is $W/rig/hK/s.sock.
dk() { local h=$1; shift; DOCKER_HOST="unix://$W/rig/h$h/s.sock" "$DOCKER" "$@"; }
addr() { "$RIG" addr "$W/rig" "$1"; }
stop() { "$RIG" kill "$W/rig" "$1"; }

cleanup() {
    set +e
    [ -f "$W/rig/rig.env" ] && "$RIG" down "$W/rig"
    rm -rf "$W"
}
trap cleanup EXIT

nodeid() { dk "$1" info -f '{{.Swarm.NodeID}}'; }
leader_host() {
    local ls; ls=$(dk "$1" node ls --format '{{.ID}} {{.ManagerStatus}}')
    for h in 1 2 3; do grep -q "^$(nodeid $h) Leader" <<<"$ls" && { echo "$h"; return; }; done
}
# seconds_until CMD...: polls CMD every 20 ms until it succeeds; prints the seconds it took from $T0.
seconds_until() {
    for _ in $(seq 1500); do "$@" >/dev/null 2>&1 && { echo "scale=3; ($(now) - T0) / 1000000000" | sed "s/T0/$T0/" | bc; return; }; sleep 0.02; done
    echo "timeout"
    dk "$other" node ls >&2 || true
}
new_leader() { dk "$1" node ls --format '{{.ID}} {{.ManagerStatus}}' | grep -v "^$2 " | grep -q ' Leader$'; }
down_on() { local on=$1 id=$2; dk "$on" node ls --format '{{.ID}} {{.Status}}' | grep -q "^$id Down"; }

declare -A R
round() {
    "$RIG" up "$W/rig" "$HOSTS" >/dev/null
    local a1; a1=$(addr 1)
    dk 1 swarm init --advertise-addr "$a1" >/dev/null
    local mt wt; mt=$(dk 1 swarm join-token -q manager); wt=$(dk 1 swarm join-token -q worker)
    local t0 t1
    t0=$(now); dk 2 swarm join --token "$mt" --advertise-addr "$(addr 2)" "$a1:2377" >/dev/null; t1=$(now)
    R[join_manager]+="$(echo "scale=3; ($t1 - $t0) / 1000000000" | bc) "
    dk 3 swarm join --token "$mt" --advertise-addr "$(addr 3)" "$a1:2377" >/dev/null
    local a4; a4=$(addr 4)
    t0=$(now); dk 4 swarm join --token "$wt" --advertise-addr "$a4" "$a1:2377" >/dev/null; t1=$(now)
    R[join_worker]+="$(echo "scale=3; ($t1 - $t0) / 1000000000" | bc) "
    # All three managers voting before the leader goes.
    for _ in $(seq 500); do [ "$(dk 1 node ls --format '{{.ManagerStatus}}' | grep -c 'Reachable\|Leader')" = 3 ] && break; sleep 0.02; done
    t0=$(now); dk 2 swarm ca --rotate -q >/dev/null; t1=$(now)
    R[ca_rotate]+="$(echo "scale=3; ($t1 - $t0) / 1000000000" | bc) "
    local l; l=$(leader_host 1)
    local lid; lid=$(nodeid "$l")
    local other; for other in 1 2 3; do [ "$other" != "$l" ] && break; done
    local me; me=$(nodeid "$other")
    T0=$(now); stop "$l"
    R[elected]+="$(seconds_until new_leader "$other" "$lid") "
    R[failover]+="$(seconds_until dk "$other" node update --label-add "round=$RANDOM" "$me") "
    R[manager_down]+="$(seconds_until down_on "$other" "$lid") "
    local wid; wid=$(nodeid 4)
    T0=$(now); stop 4
    R[worker_down]+="$(seconds_until down_on "$other" "$wid") "
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
echo "### Swarm mode: 3 managers + 1 worker on a rig of network namespaces (median of $ROUNDS rounds, seconds)"
echo
echo "| what | median | min | max |"
echo "|---|---|---|---|"
stats "manager join" "${R[join_manager]}"
stats "worker join" "${R[join_worker]}"
stats "leader killed → another manager shown Leader" "${R[elected]}"
stats "leader killed → a write accepted by another manager" "${R[failover]}"
stats "killed manager shown Down" "${R[manager_down]}"
stats "killed worker shown Down" "${R[worker_down]}"
stats "root CA rotation, 4 nodes (swarm ca --rotate returns)" "${R[ca_rotate]}"
