#!/usr/bin/env bash
# Ship benchmark: push and pull of a ~210 MB image (busybox + 4 layers of 50 MB random data) on
# loopback, skiff (daemon + its registry) side by side with `docker push/pull` (dockerd 20.10)
# and `skopeo copy`, both against Debian's docker-registry (distribution 2.8).
#
#   skiff push (compress)  fresh layers each run: gzipped while uploaded (nothing kept locally)
#   skiff pull             a fresh daemon data root each run: download, verify, unpack
#   skiff push (held)      the pulled image, from that daemon to an empty registry: its blobs
#                          are held compressed, uploaded as they are
#   docker push / pull     fresh registry root and dockerd image store each run
#   skopeo push / pull     docker-archive → registry; registry → dir: (no unpack)
#
# Usage: bench/registry.sh [RUNS] (default 5). Prints a Markdown report on stdout. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${1:-5}
BIN="$PWD/target/release"
[ -x "$BIN/skiffd" ] || cargo build --release --locked --bins >&2

install_peers docker.io docker-registry skopeo busybox-static
DOCKER_CLI=$(command -v docker)
# Debian's docker-registry package starts a service on :5000; it is not ours to use.
systemctl stop docker-registry >/dev/null 2>&1 || true

W=$(mktemp -d /tmp/skr.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() {
    [ -n "${BENCH_RAW:-}" ] && cp "$W/skiffd.log" /tmp/bench-skiffd.log
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    stop_daemons_and_unmount
    rm -rf "$W"
}
trap cleanup EXIT

busybox_image_tar

# skiffd with its own registry.
RP=$(free_port)
"$BIN/skiffd" --config-file /dev/null -H "unix://$W/skiff.sock" --data-root "$W/skiff-data" --exec-root "$W/skiff-run" --log-level "${SKIFFD_LOG:-warn}" \
    -b skrb0 --bip 10.231.0.1/24 --registry-addr "127.0.0.1:$RP" --pidfile "$W/skiffd.pid" 2>"$W/skiffd.log" &
for _ in $(seq 100); do [ -S "$W/skiff.sock" ] && break; sleep 0.05; done
SK="unix://$W/skiff.sock"
# Logins (skiff's registries take pushes only with their generated login) stay in the work dir.
export DOCKER_CONFIG="$W/docker-config"
sk() { DOCKER_HOST=$SK "$DOCKER_CLI" "$@"; }
sk import "$W/busybox.tar" busybox >/dev/null
for _ in $(seq 100); do curl -s "http://127.0.0.1:$RP/v2/" >/dev/null && break; sleep 0.05; done
sk login -u skiff --password-stdin "127.0.0.1:$RP" < "$W/skiff-data/registry/auth/password" >/dev/null

# make_big NAME: busybox + 4 fresh layers of 50 MB random data.
make_big() {
    local img=busybox
    for i in 1 2 3 4; do
        sk rm -f skrbig >/dev/null 2>&1 || true
        sk run --name skrbig --network none "$img" sh -c "dd if=/dev/urandom of=/layer$i bs=1M count=50 2>/dev/null" >/dev/null
        sk commit skrbig "$1-$i" >/dev/null
        img="$1-$i"
    done
    sk rm -f skrbig >/dev/null
    sk tag "$img" "$1"
}

now() { date +%s%N; }
declare -A T
add() { T[$1]="${T[$1]:-} $2"; }

# Peers: a private dockerd and Debian's distribution.
have_docker=0
if [ "${SKIP_PEERS:-0}" != 1 ] && command -v dockerd >/dev/null; then
    dockerd -H "unix://$W/docker.sock" --data-root "$W/docker-data" --exec-root "$W/docker-exec" \
        --pidfile "$W/dockerd.pid" --iptables=false --bridge=none >"$W/dockerd.log" 2>&1 &
    for _ in $(seq 200); do DOCKER_HOST="unix://$W/docker.sock" "$DOCKER_CLI" version >/dev/null 2>&1 && { have_docker=1; break; }; sleep 0.1; done
fi
dk() { DOCKER_HOST="unix://$W/docker.sock" "$DOCKER_CLI" "$@"; }
have_dist=0
[ "${SKIP_PEERS:-0}" = 1 ] || { command -v docker-registry >/dev/null && have_dist=1; }
DP=$(free_port)
start_dist() {
    rm -rf "$W/dist-root"
    cat > "$W/dist.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $W/dist-root
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$DP
log:
  level: error
EOF
    docker-registry serve "$W/dist.yml" >"$W/dist.log" 2>&1 &
    echo $! > "$W/dist.pid"
    for _ in $(seq 100); do curl -s "http://127.0.0.1:$DP/v2/" >/dev/null && break; sleep 0.05; done
}
stop_dist() { kill "$(cat "$W/dist.pid")" 2>/dev/null || true; wait "$(cat "$W/dist.pid")" 2>/dev/null || true; rm -f "$W/dist.pid"; }

for run in $(seq "$RUNS"); do
    make_big "big$run"
    sync  # the 200 MB just written must not be flushed during the timed pushes
    bytes=$(sk image inspect -f '{{.Size}}' "big$run")
    # skiff push, compressing.
    sk tag "big$run" "127.0.0.1:$RP/bench/c$run"
    s=$(now); sk push "127.0.0.1:$RP/bench/c$run" >/dev/null; e=$(now); add "skiff push (must compress)" "$bytes:$((e - s))"
    # skiff pull into a fresh daemon.
    rm -rf "$W/pull-data" "$W/pull-run"
    "$BIN/skiffd" --config-file /dev/null -H "unix://$W/pull.sock" --data-root "$W/pull-data" --exec-root "$W/pull-run" --log-level warn \
        -b skrb1 --bip 10.231.1.1/24 --pidfile "$W/puller.pid" 2>"$W/puller.log" &
    for _ in $(seq 100); do [ -S "$W/pull.sock" ] && break; sleep 0.05; done
    s=$(now); DOCKER_HOST="unix://$W/pull.sock" "$DOCKER_CLI" pull "127.0.0.1:$RP/bench/c$run" >/dev/null; e=$(now)
    add "skiff pull (verify + unpack)" "$bytes:$((e - s))"
    # skiff push of layers held compressed (the pulled image's blobs) to another, empty, skiff
    # registry: every blob is uploaded as it is.
    RP2=$(free_port); rm -rf "$W/reg2"
    "$BIN/skiff" registry serve --addr "127.0.0.1:$RP2" --root "$W/reg2" --log-level warn 2>"$W/reg2.log" &
    reg2=$!; pids+=("$reg2")
    for _ in $(seq 100); do curl -s "http://127.0.0.1:$RP2/v2/" >/dev/null && break; sleep 0.05; done
    DOCKER_HOST="unix://$W/pull.sock" "$DOCKER_CLI" login -u skiff --password-stdin "127.0.0.1:$RP2" < "$W/reg2/auth/password" >/dev/null
    DOCKER_HOST="unix://$W/pull.sock" "$DOCKER_CLI" tag "127.0.0.1:$RP/bench/c$run" "127.0.0.1:$RP2/bench/h$run"
    sync
    s=$(now); DOCKER_HOST="unix://$W/pull.sock" "$DOCKER_CLI" push "127.0.0.1:$RP2/bench/h$run" >/dev/null; e=$(now)
    add "skiff push (held compressed)" "$bytes:$((e - s))"
    kill "$reg2"; wait "$reg2" 2>/dev/null || true
    kill "$(cat "$W/puller.pid")"; for _ in $(seq 100); do [ -S "$W/pull.sock" ] || break; sleep 0.05; done
    rm -f "$W/puller.pid"
    grep " $W/pull" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    sk save -o "$W/big.tar" "big$run"
    if [ $have_dist = 1 ]; then
        start_dist
        if [ $have_docker = 1 ]; then
            dk load -i "$W/big.tar" >/dev/null
            sync
            dk tag "big$run" "127.0.0.1:$DP/bench/d$run"
            s=$(now); dk push "127.0.0.1:$DP/bench/d$run" >/dev/null; e=$(now); add "docker push -> distribution" "$bytes:$((e - s))"
            dk rmi -f "big$run" "127.0.0.1:$DP/bench/d$run" >/dev/null
            dk image prune -af >/dev/null
            s=$(now); dk pull "127.0.0.1:$DP/bench/d$run" >/dev/null; e=$(now); add "docker pull <- distribution" "$bytes:$((e - s))"
            dk rmi -f "127.0.0.1:$DP/bench/d$run" >/dev/null; dk image prune -af >/dev/null
        fi
        s=$(now); skopeo copy -q --dest-tls-verify=false "docker-archive:$W/big.tar" "docker://127.0.0.1:$DP/bench/s$run" >/dev/null; e=$(now)
        add "skopeo copy -> distribution" "$bytes:$((e - s))"
        rm -rf "$W/skopeo-dir"
        s=$(now); skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$DP/bench/s$run" "dir:$W/skopeo-dir" >/dev/null; e=$(now)
        add "skopeo copy <- distribution (no unpack)" "$bytes:$((e - s))"
        stop_dist
    fi
    rm -f "$W/big.tar"
    sk rmi -f "big$run" "127.0.0.1:$RP/bench/c$run" >/dev/null 2>&1 || true
    sk image prune -f >/dev/null 2>&1 || true
done

[ -n "${BENCH_RAW:-}" ] && for k in "${!T[@]}"; do echo "$k: ${T[$k]}" >&2; done
args=()
for k in "${!T[@]}"; do args+=("$k=${T[$k]}"); done
python3 - "$RUNS" "${args[@]}" <<'PY'
import statistics, sys
runs = sys.argv[1]
rows = {}
for a in sys.argv[2:]:
    k, v = a.split("=", 1)
    xs = []
    for p in v.split():
        b, ns = p.split(":")
        xs.append((int(b), int(ns) / 1e9))
    rows[k] = xs
order = ["skiff push (must compress)", "docker push -> distribution", "skopeo copy -> distribution",
         "skiff push (held compressed)", "skiff pull (verify + unpack)", "docker pull <- distribution",
         "skopeo copy <- distribution (no unpack)"]
def rate(xs):
    return [b / 1e6 / t for b, t in xs]
med = {k: statistics.median(rate(xs)) for k, xs in rows.items()}
size = statistics.median([b for xs in rows.values() for b, _ in xs]) / 1e6 if rows else 0
print(f"### Push and pull of a {size:.0f} MB image, loopback (median of {runs}; MB/s of uncompressed image size)\n")
print("| what | median s | min–max s | MB/s median (min–max) | vs skiff |")
print("|---|---|---|---|---|")
for k in order:
    if k not in rows:
        continue
    xs = rows[k]
    ts = [t for _, t in xs]
    r = rate(xs)
    ref = None
    if "push" in k or "->" in k:
        ref = med.get("skiff push (must compress)") if "held" not in k else None
    else:
        ref = med.get("skiff pull (verify + unpack)")
    vs = f"skiff {ref / statistics.median(r):.1f}x" if ref and not k.startswith("skiff") else ""
    print(f"| {k} | {statistics.median(ts):.2f} | {min(ts):.2f}–{max(ts):.2f} | {statistics.median(r):.0f} ({min(r):.0f}–{max(r):.0f}) | {vs} |")
PY
