#!/usr/bin/env bash
# Engine benchmark: `run --rm busybox true` through skiff and the peers, side by side on the same
# busybox image, plus per-container helper RSS and idle daemon RSS.
#
# Usage: bench/engine.sh [RUNS]   (default 20). Prints a Markdown report on stdout.
# Needs root. Installs Debian's docker.io, crun and podman when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${1:-20}
BIN="$PWD/target/release"
[ -x "$BIN/skiffd" ] || cargo build --release --locked --bins >&2

install_peers docker.io crun podman busybox-static
DOCKER_CLI=$(command -v docker)

W=$(mktemp -d /tmp/skb.XXXXXX)
cleanup() {
    set +e
    DOCKER_HOST="unix://$W/skiff.sock" "$DOCKER_CLI" rm -f $(DOCKER_HOST="unix://$W/skiff.sock" "$DOCKER_CLI" ps -aq) >/dev/null 2>&1
    DOCKER_HOST="unix://$W/docker.sock" "$DOCKER_CLI" rm -f $(DOCKER_HOST="unix://$W/docker.sock" "$DOCKER_CLI" ps -aq) >/dev/null 2>&1
    podman --root "$W/podman" --runroot "$W/podman-run" rm -af >/dev/null 2>&1
    stop_daemons_and_unmount
    rm -rf "$W"
}
trap cleanup EXIT

# The busybox image, the same bytes for everyone.
busybox_image_tar

# skiffd
"$BIN/skiffd" --config-file /dev/null -H "unix://$W/skiff.sock" --data-root "$W/skiff-data" --exec-root "$W/skiff-run" --log-level warn -b skeb0 --bip 10.230.0.1/24 \
    --pidfile "$W/skiffd.pid" 2>"$W/skiffd.log" &
for _ in $(seq 100); do [ -S "$W/skiff.sock" ] && break; sleep 0.05; done
SK="unix://$W/skiff.sock"
DOCKER_HOST=$SK "$DOCKER_CLI" import "$W/busybox.tar" busybox >/dev/null

# crun refuses the hybrid layout while cgroup2 holds hugetlb (see ../shared/PEERS.md).
if [ -d /sys/fs/cgroup/unified ] && ! mountpoint -q /sys/fs/cgroup/hugetlb 2>/dev/null; then
    mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb 2>/dev/null || true
fi

# A private dockerd beside any other, with its own bridge-less default network; runc by default,
# crun as a second runtime.
have_docker=0
if command -v dockerd >/dev/null; then
    crun_arg=()
    command -v crun >/dev/null && crun_arg=(--add-runtime "crun=$(command -v crun)")
    dockerd -H "unix://$W/docker.sock" --data-root "$W/docker-data" --exec-root "$W/docker-exec" \
        --pidfile "$W/dockerd.pid" --iptables=false --bridge=none "${crun_arg[@]}" >"$W/dockerd.log" 2>&1 &
    for _ in $(seq 200); do DOCKER_HOST="unix://$W/docker.sock" "$DOCKER_CLI" version >/dev/null 2>&1 && { have_docker=1; break; }; sleep 0.1; done
    [ $have_docker = 1 ] && DOCKER_HOST="unix://$W/docker.sock" "$DOCKER_CLI" import "$W/busybox.tar" busybox >/dev/null
fi
DK="unix://$W/docker.sock"

# podman, with rlimits this VM allows.
have_podman=0
if command -v podman >/dev/null; then
    printf '[containers]\ndefault_ulimits = ["nofile=20000:20000","nproc=32768:32768"]\n' > "$W/containers.conf"
    export CONTAINERS_CONF="$W/containers.conf"
    PODMAN=(podman --root "$W/podman" --runroot "$W/podman-run" --storage-driver overlay)
    if "${PODMAN[@]}" import "$W/busybox.tar" busybox >/dev/null 2>&1 && "${PODMAN[@]}" run --rm busybox true >/dev/null 2>&1; then
        have_podman=1
    fi
fi


results=()
results+=("$(time_runs 'skiff run --rm busybox true' "$BIN/skiff" -H "$SK" run --rm busybox true)")
results+=("$(time_runs 'skiff run --rm --network none busybox true' "$BIN/skiff" -H "$SK" run --rm --network none busybox true)")
results+=("$(time_runs 'docker CLI -> skiffd' env DOCKER_HOST="$SK" "$DOCKER_CLI" run --rm busybox true)")
if [ $have_docker = 1 ]; then
    results+=("$(time_runs 'docker CLI -> dockerd 20.10 (runc, --network none)' env DOCKER_HOST="$DK" "$DOCKER_CLI" run --rm --network none busybox true)")
    if command -v crun >/dev/null; then
        results+=("$(time_runs 'docker CLI -> dockerd 20.10 (crun, --network none)' env DOCKER_HOST="$DK" "$DOCKER_CLI" run --rm --network none --runtime crun busybox true)")
    fi
fi
if [ $have_podman = 1 ]; then
    results+=("$(time_runs 'podman 4.3 (crun)' "${PODMAN[@]}" run --rm busybox true)")
    results+=("$(time_runs 'podman 4.3 (crun, --network none)' "${PODMAN[@]}" run --rm --network none busybox true)")
fi

rss_of() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# PSS: shared pages (the binary, libc) split between the processes mapping them.
pss_of() { awk '/^Pss:/{print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
median() { python3 -c 'import sys,statistics; xs=[int(x) for x in sys.stdin.read().split()]; print(statistics.median(xs) if xs else 0)'; }

# Per-container helper RSS: 5 running containers each.
DOCKER_HOST=$SK "$DOCKER_CLI" run -d busybox sleep 300 >/dev/null
for _ in 1 2 3 4; do DOCKER_HOST=$SK "$DOCKER_CLI" run -d busybox sleep 300 >/dev/null; done
sleep 1
mon=$(for p in $(pgrep -f "^$BIN/skiff-monitor $W"); do rss_of "$p"; done | median)
mon_pss=$(for p in $(pgrep -f "^$BIN/skiff-monitor $W"); do pss_of "$p"; done | median)
shim=0
shim_pss=0
if [ $have_docker = 1 ]; then
    for _ in 1 2 3 4 5; do DOCKER_HOST=$DK "$DOCKER_CLI" run -d --network none busybox sleep 300 >/dev/null; done
    sleep 1
    shims=$(pgrep -f "containerd-shim.*$W" || pgrep -f containerd-shim)
    shim=$(for p in $shims; do rss_of "$p"; done | median)
    shim_pss=$(for p in $shims; do pss_of "$p"; done | median)
fi
conmon=0
conmon_pss=0
if [ $have_podman = 1 ]; then
    for _ in 1 2 3 4 5; do "${PODMAN[@]}" run -d busybox sleep 300 >/dev/null; done
    sleep 1
    conmon=$(for p in $(pgrep -f "conmon.*$W"); do rss_of "$p"; done | median)
    conmon_pss=$(for p in $(pgrep -f "conmon.*$W"); do pss_of "$p"; done | median)
fi
# Idle daemon RSS (with the containers above running).
skiffd_rss=$(rss_of "$(cat "$W/skiffd.pid")")
dockerd_rss=0
[ $have_docker = 1 ] && dockerd_rss=$(rss_of "$(cat "$W/dockerd.pid")")

python3 - "$RUNS" "$mon" "$shim" "$conmon" "$skiffd_rss" "$dockerd_rss" "$mon_pss" "$shim_pss" "$conmon_pss" "${results[@]}" <<'PY'
import sys
runs, mon, shim, conmon, sk, dk, mon_pss, shim_pss, conmon_pss = sys.argv[1:10]
rows = [r.split("\t") for r in sys.argv[10:]]
def skiff_base(none):
    return next((float(r[1]) for r in rows if r[0].startswith("skiff run") and len(r) > 1
                 and ("--network none" in r[0]) == none), None)
print(f"### `run --rm busybox true` (median of {runs}, seconds)\n")
print("Ratios compare with `skiff run` in the same network mode (default bridge, or `--network none`).\n")
print("| what | median | min | max | ratio to `skiff run` |")
print("|---|---|---|---|---|")
for r in rows:
    if len(r) < 4:
        print(f"| {r[0]} | failed | | | |")
        continue
    base = skiff_base("--network none" in r[0])
    ratio = f"{float(r[1]) / base:.1f}x" if base else ""
    print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {ratio} |")
def mb(k): return f"{int(float(k)) / 1024:.1f} MB" if float(k) > 0 else "n/a"
print("\n### Memory (median per process; PSS splits pages shared between processes, such as the binary)\n")
print("| what | skiff | Docker 20.10 | Podman |")
print("|---|---|---|---|")
print(f"| per-container helper, RSS | skiff-monitor {mb(mon)} | containerd-shim {mb(shim)} | conmon {mb(conmon)} |")
print(f"| per-container helper, PSS (5 running) | skiff-monitor {mb(mon_pss)} | containerd-shim {mb(shim_pss)} | conmon {mb(conmon_pss)} |")
print(f"| daemon RSS, 5 containers running | skiffd {mb(sk)} | dockerd {mb(dk)} | — |")
PY
