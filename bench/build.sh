#!/usr/bin/env bash
# Build benchmark: a cold build (FROM busybox, COPY a 10 MB directory, RUN a shell step) and a
# fully cached rebuild of the same context, skiff side by side with dockerd 20.10's classic
# builder and its BuildKit (driven by Debian's docker CLI 20.10, which embeds the BuildKit client).
# RUN steps use --network=none everywhere (the private dockerd has no bridge).
#
# Usage: bench/build.sh [RUNS] (default 10). Prints a Markdown report on stdout. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${1:-10}
BIN="$PWD/target/release"
[ -x "$BIN/skiffd" ] || cargo build --release --locked --bins >&2
install_peers docker.io busybox-static
DOCKER_CLI=$(command -v docker)
DEBIAN_CLI=/usr/bin/docker

W=$(mktemp -d /tmp/skbld.XXXXXX)
cleanup() {
    set +e
    stop_daemons_and_unmount
    rm -rf "$W"
}
trap cleanup EXIT

busybox_image_tar

ctx="$W/ctx"
mkdir -p "$ctx/data"
for i in $(seq 10); do head -c 1048576 /dev/urandom > "$ctx/data/f$i"; done
printf 'FROM busybox\nCOPY data/ /data/\nRUN du -s /data > /size\n' > "$ctx/Dockerfile"

"$BIN/skiffd" --config-file /dev/null -H "unix://$W/skiff.sock" --data-root "$W/skiff-data" --exec-root "$W/skiff-run" --log-level warn \
    -b skbb0 --bip 10.232.0.1/24 --pidfile "$W/skiffd.pid" 2>"$W/skiffd.log" &
for _ in $(seq 100); do [ -S "$W/skiff.sock" ] && break; sleep 0.05; done
SK="unix://$W/skiff.sock"
DOCKER_HOST=$SK "$DOCKER_CLI" import "$W/busybox.tar" busybox >/dev/null

have_docker=0
if command -v dockerd >/dev/null; then
    dockerd -H "unix://$W/docker.sock" --data-root "$W/docker-data" --exec-root "$W/docker-exec" \
        --pidfile "$W/dockerd.pid" --iptables=false --bridge=none >"$W/dockerd.log" 2>&1 &
    for _ in $(seq 200); do DOCKER_HOST="unix://$W/docker.sock" "$DOCKER_CLI" version >/dev/null 2>&1 && { have_docker=1; break; }; sleep 0.1; done
    [ $have_docker = 1 ] && DOCKER_HOST="unix://$W/docker.sock" "$DOCKER_CLI" import "$W/busybox.tar" busybox >/dev/null
fi
DK="unix://$W/docker.sock"


rows=()
rows+=("$(time_runs 'skiff (docker CLI -> skiffd), cold' env DOCKER_HOST=$SK "$DOCKER_CLI" build --network=none --no-cache -q "$ctx")")
rows+=("$(time_runs 'skiff (docker CLI -> skiffd), cached' env DOCKER_HOST=$SK "$DOCKER_CLI" build --network=none -q "$ctx")")
rows+=("$(time_runs 'skiff build (skiff CLI), cached' "$BIN/skiff" -H "$SK" build --network=none -q "$ctx")")
if [ $have_docker = 1 ]; then
    rows+=("$(time_runs 'dockerd 20.10 classic, cold' env DOCKER_HOST=$DK DOCKER_BUILDKIT=0 "$DOCKER_CLI" build --network=none --no-cache -q "$ctx")")
    rows+=("$(time_runs 'dockerd 20.10 classic, cached' env DOCKER_HOST=$DK DOCKER_BUILDKIT=0 "$DOCKER_CLI" build --network=none -q "$ctx")")
    if [ -x "$DEBIAN_CLI" ]; then
        rows+=("$(time_runs 'dockerd 20.10 BuildKit, cold' env DOCKER_HOST=$DK DOCKER_BUILDKIT=1 "$DEBIAN_CLI" build --network=none --no-cache -q "$ctx")")
        rows+=("$(time_runs 'dockerd 20.10 BuildKit, cached' env DOCKER_HOST=$DK DOCKER_BUILDKIT=1 "$DEBIAN_CLI" build --network=none -q "$ctx")")
    fi
fi

python3 - "$RUNS" "${rows[@]}" <<'PY'
import sys
runs = sys.argv[1]
rows = [r.split("\t") for r in sys.argv[2:]]
print(f"### Build: FROM busybox, COPY a 10 MB directory, RUN a shell step (median of {runs}, seconds)\n")
print("| what | median | min | max |")
print("|---|---|---|---|")
for r in rows:
    if len(r) < 4:
        print(f"| {r[0]} | failed | | |")
    else:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")
med = {r[0]: float(r[1]) for r in rows if len(r) == 4}
for kind in ("cold", "cached"):
    sk = med.get(f"skiff (docker CLI -> skiffd), {kind}")
    for peer in ("classic", "BuildKit"):
        p = med.get(f"dockerd 20.10 {peer}, {kind}")
        if sk and p:
            print(f"\n{kind}: dockerd {peer} / skiff = **{p / sk:.1f}x**", end="")
print()
PY
