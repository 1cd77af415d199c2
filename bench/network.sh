#!/usr/bin/env bash
# Network benchmark, skiff beside Docker on the same machine and busybox image:
# - published-port throughput: 100 MB from a container's httpd over 127.0.0.1, through skiff's
#   published port (kernel DNAT), straight to the container's address, and through Docker's
#   published port (docker-proxy, Docker's default for loopback);
# - network set-up cost: `run --rm busybox true` on the default bridge against `--network none`;
# - starts at once: 8 `run -d` in parallel on one user network, each publishing a port on
#   127.0.0.1, then `rm -f` of them all (what a compose project or a swarm node does).
#
# Usage: bench/network.sh [RUNS]   (default 20). Prints a Markdown report on stdout.
# Needs root. Traffic stays on loopback and on the benchmark's own bridges.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${1:-20}
XFERS=${XFERS:-15}
BIN="$PWD/target/release"
[ -x "$BIN/skiffd" ] || cargo build --release --locked --bins >&2

install_peers docker.io busybox-static curl iproute2 iptables
DOCKER_CLI=$(command -v docker)

W=$(mktemp -d /tmp/skn.XXXXXX)
SKBR=sknb0
DKBR=skndk0
cleanup() {
    set +e
    for s in skiff docker; do
        DOCKER_HOST="unix://$W/$s.sock" "$DOCKER_CLI" rm -f $(DOCKER_HOST="unix://$W/$s.sock" "$DOCKER_CLI" ps -aq 2>/dev/null) >/dev/null 2>&1
        # A user network's bridge outlives its daemon (as dockerd's does): removed with it here.
        DOCKER_HOST="unix://$W/$s.sock" "$DOCKER_CLI" network rm burst >/dev/null 2>&1
    done
    stop_daemons_and_unmount 2
    ip link del "$DKBR" 2>/dev/null
    # dockerd leaves its chains and a DROP policy on FORWARD behind: put the host back.
    if [ -f "$W/forward-policy" ]; then
        iptables -w -P FORWARD "$(cat "$W/forward-policy")"
        for t in filter nat; do
            iptables-save -t "$t" | grep -E "^-A [A-Z]+ .*(-j DOCKER|$DKBR)" | sed 's/^-A/-D/' | while read -r rule; do
                eval iptables -w -t "$t" "$rule"
            done
            for c in $(iptables-save -t "$t" | awk -F'[: ]' '/^:DOCKER/{print $2}'); do
                iptables -w -t "$t" -F "$c"; iptables -w -t "$t" -X "$c"
            done
        done
    fi
    rm -rf "$W"
}
trap cleanup EXIT

# The busybox image, the same bytes for everyone.
root="$W/bbroot"
busybox_rootfs "$root"
mkdir -p "$root/www"
head -c 100000000 /dev/urandom > "$root/www/big"
tar -C "$root" -cf "$W/busybox.tar" .

"$BIN/skiffd" --config-file /dev/null -H "unix://$W/skiff.sock" --data-root "$W/skiff-data" --exec-root "$W/skiff-run" --log-level warn \
    -b "$SKBR" --bip 10.231.0.1/24 --pidfile "$W/skiffd.pid" 2>"$W/skiffd.log" &
for _ in $(seq 100); do [ -S "$W/skiff.sock" ] && break; sleep 0.05; done
SK="unix://$W/skiff.sock"
DOCKER_HOST=$SK "$DOCKER_CLI" import "$W/busybox.tar" busybox >/dev/null

have_docker=0
if command -v dockerd >/dev/null; then
    iptables -w -S FORWARD | awk '/^-P FORWARD/{print $3}' > "$W/forward-policy"
    ip link add "$DKBR" type bridge && ip addr add 10.232.0.1/24 dev "$DKBR" && ip link set "$DKBR" up
    dockerd -H "unix://$W/docker.sock" --data-root "$W/docker-data" --exec-root "$W/docker-exec" \
        --pidfile "$W/dockerd.pid" --bridge "$DKBR" >"$W/dockerd.log" 2>&1 &
    for _ in $(seq 200); do DOCKER_HOST="unix://$W/docker.sock" "$DOCKER_CLI" version >/dev/null 2>&1 && { have_docker=1; break; }; sleep 0.1; done
    [ $have_docker = 1 ] && DOCKER_HOST="unix://$W/docker.sock" "$DOCKER_CLI" import "$W/busybox.tar" busybox >/dev/null
fi
DK="unix://$W/docker.sock"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# throughput LABEL_A URL_A LABEL_B URL_B: XFERS downloads of the 100 MB file from each URL,
# alternating (so the machine's drift hits both alike); prints "LABEL median_MBps min max" for each.
throughput() {
    local la=$1 ua=$2 lb=$3 ub=$4 xs=()
    for u in "$ua" "$ub"; do
        for _ in $(seq 50); do curl -s -o /dev/null -m 2 "$u" && break; sleep 0.1; done
    done
    for _ in $(seq "$XFERS"); do
        xs+=("a $(curl -s -o /dev/null -w '%{size_download} %{time_total}' "$ua")")
        xs+=("b $(curl -s -o /dev/null -w '%{size_download} %{time_total}' "$ub")")
    done
    python3 - "$la" "$lb" "${xs[@]}" <<'PY'
import statistics, sys
labels = {"a": sys.argv[1], "b": sys.argv[2]}
vals = {"a": [], "b": []}
for a in sys.argv[3:]:
    k, size, t = a.split()
    if int(size) == 100000000 and float(t) > 0:
        vals[k].append(int(size) / float(t) / 1e6)
for k in "ab":
    v = vals[k]
    print(f"{labels[k]}\t{statistics.median(v):.0f}\t{min(v):.0f}\t{max(v):.0f}" if v else f"{labels[k]}\tFAILED")
PY
}

HTTPD=(busybox httpd -f -p 80 -h /www)
xfer=()
p=$(free_port)
DOCKER_HOST=$SK "$DOCKER_CLI" run -d --name web -p "127.0.0.1:$p:80" "${HTTPD[@]}" >/dev/null
ip=$(DOCKER_HOST=$SK "$DOCKER_CLI" inspect -f '{{.NetworkSettings.IPAddress}}' web)
while IFS= read -r line; do xfer+=("$line"); done < <(throughput 'skiff, published port 127.0.0.1 (DNAT)' "http://127.0.0.1:$p/big" 'skiff, container address (direct)' "http://$ip/big")
if [ $have_docker = 1 ]; then
    p=$(free_port)
    DOCKER_HOST=$DK "$DOCKER_CLI" run -d --name web -p "127.0.0.1:$p:80" "${HTTPD[@]}" >/dev/null
    dip=$(DOCKER_HOST=$DK "$DOCKER_CLI" inspect -f '{{.NetworkSettings.IPAddress}}' web)
    while IFS= read -r line; do xfer+=("$line"); done < <(throughput 'Docker 20.10, published port 127.0.0.1 (docker-proxy)' "http://127.0.0.1:$p/big" 'Docker 20.10, container address (direct)' "http://$dip/big")
fi


runs=()
# Interleaved, so drift on the machine hits both alike.
runs+=("$(time_runs 'skiff, default bridge' "$BIN/skiff" -H "$SK" run --rm busybox true)")
runs+=("$(time_runs 'skiff, --network none' "$BIN/skiff" -H "$SK" run --rm --network none busybox true)")
runs+=("$(time_runs 'skiff, default bridge (again)' "$BIN/skiff" -H "$SK" run --rm busybox true)")
runs+=("$(time_runs 'skiff, --network none (again)' "$BIN/skiff" -H "$SK" run --rm --network none busybox true)")
if [ $have_docker = 1 ]; then
    runs+=("$(time_runs 'Docker 20.10, default bridge' env DOCKER_HOST="$DK" "$DOCKER_CLI" run --rm busybox true)")
    runs+=("$(time_runs 'Docker 20.10, --network none' env DOCKER_HOST="$DK" "$DOCKER_CLI" run --rm --network none busybox true)")
fi

# burst HOST: 8 containers started at once on network "burst", each with a published port,
# then all removed.
burst() {
    local host=$1 i pids=()
    for i in 1 2 3 4 5 6 7 8; do
        DOCKER_HOST=$host "$DOCKER_CLI" run -d --network burst -p 127.0.0.1::80 busybox sleep 60 >/dev/null &
        pids+=($!)
    done
    # Only these: the daemons are background jobs of this shell too.
    wait "${pids[@]}"
    DOCKER_HOST=$host "$DOCKER_CLI" rm -f $(DOCKER_HOST=$host "$DOCKER_CLI" ps -aq --filter network=burst) >/dev/null
}
bursts=()
DOCKER_HOST=$SK "$DOCKER_CLI" network create burst >/dev/null
bursts+=("$(time_runs 'skiff' burst "$SK")")
if [ $have_docker = 1 ]; then
    DOCKER_HOST=$DK "$DOCKER_CLI" network create burst >/dev/null
    bursts+=("$(time_runs 'Docker 20.10' burst "$DK")")
fi

python3 - "$RUNS" "${#bursts[@]}" "${bursts[@]}" <<'PY'
import sys
runs, n = sys.argv[1], int(sys.argv[2])
rows = [r.split("\t") for r in sys.argv[3:3 + n]]
print(f"### Starts at once: 8 × `run -d -p 127.0.0.1::80` in parallel on one user network, then `rm -f` of all (median of {runs}, seconds)\n")
print("| engine | median | min | max |")
print("|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | " + (" | ".join(r[1:4]) if len(r) >= 4 else "failed | | ") + " |")
xs = {r[0]: float(r[1]) for r in rows if len(r) >= 4}
if "skiff" in xs and "Docker 20.10" in xs:
    print(f"\nDocker / skiff: **{xs['Docker 20.10'] / xs['skiff']:.1f}x**\n")
PY

python3 - "$RUNS" "$XFERS" "${#xfer[@]}" "${xfer[@]}" "${runs[@]}" <<'PY'
import sys
runs, xfers, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
xfer = [r.split("\t") for r in sys.argv[4:4 + n]]
rows = [r.split("\t") for r in sys.argv[4 + n:]]
print(f"### Published-port throughput: 100 MB over HTTP from a container's busybox httpd (median of {xfers}, MB/s)\n")
print("| path | median | min | max |")
print("|---|---|---|---|")
for r in xfer:
    print(f"| {r[0]} | " + (" | ".join(r[1:4]) if len(r) >= 4 else "failed | | ") + " |")
def med(prefix):
    for r in xfer:
        if r[0].startswith(prefix) and len(r) >= 4:
            return float(r[1])
sk_pub, sk_dir = med("skiff, published"), med("skiff, container")
dk_pub = med("Docker 20.10, published")
if sk_pub and sk_dir:
    print(f"\nskiff published / direct: **{sk_pub / sk_dir:.2f}** (target ≥ 0.95)")
if sk_pub and dk_pub:
    print(f"skiff published / Docker published (docker-proxy): **{sk_pub / dk_pub:.2f}x**")
print(f"\n### Network set-up cost: `run --rm busybox true` (median of {runs}, seconds)\n")
print("| what | median | min | max |")
print("|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | " + (" | ".join(r[1:4]) if len(r) >= 4 else "failed | | ") + " |")
def m(label):
    xs = [float(r[1]) for r in rows if r[0].startswith(label) and len(r) >= 4]
    return sum(xs) / len(xs) if xs else None
b, nn = m("skiff, default bridge"), m("skiff, --network none")
if b and nn:
    print(f"\nskiff bridge set-up cost (bridge − none): **{(b - nn) * 1000:+.1f} ms** (target ≤ 5 ms)")
db, dn = m("Docker 20.10, default bridge"), m("Docker 20.10, --network none")
if db and dn:
    print(f"Docker 20.10 bridge set-up cost: **{(db - dn) * 1000:+.1f} ms**")
PY
