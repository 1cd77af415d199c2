#!/usr/bin/env bash
# Runs docker-py's own integration tests (tests/integration of a docker-py checkout, e.g. tag
# 7.1.0) against Debian's dockerd 20.10 and against skiffd, one after the other, and prints
# passed/failed/skipped/errors for each daemon plus the tests that pass on dockerd but not on
# skiffd.
#
#   scripts/compat-dockerpy.sh DOCKER_PY_CHECKOUT [OUTPUT_DIR]   (OUTPUT_DIR defaults to /tmp/compat-dockerpy)
#
# Environment knobs (all optional):
#   COMPAT_WORK=/tmp/cdpy           scratch dir: daemon roots, sockets, containerd, test image
#   COMPAT_DAEMONS="dockerd skiffd"
#   COMPAT_API_VERSION=1.41         DOCKER_TEST_API_VERSION for both daemons: the API version the
#                                   tests speak and the one requires_api_version() compares with.
#                                   1.41 is the newest dockerd 20.10 serves (docker-py 7.1.0
#                                   defaults to 1.44, which 20.10 refuses), so both daemons are
#                                   measured on the same tests at the same version.
#   COMPAT_TIMEOUT=120              pytest-timeout per test, seconds
#   COMPAT_SUITE_TIMEOUT=90m        limit for one whole pytest run
#   COMPAT_K=EXPR                   extra pytest -k filter (e.g. "ExecTest or test_run")
#   COMPAT_EXPERIMENTAL=1           start both daemons with --experimental (docker-py's CI does;
#                                   default off: then requires_experimental tests skip on both)
#   COMPAT_DEBUG=1                  start both daemons with -D (debug logs in <daemon>-daemon.log)
#
# Outputs in OUTPUT_DIR: <daemon>-junit.xml and <daemon>-pytest.log (pytest -rA output),
# <daemon>-daemon.log, summary.txt (the table), failures.txt (every failing test per daemon with
# the first lines of its message, then the dockerd-pass/skiffd-fail list), timings.txt.
#
# Tests left out (documented in DESELECT/IGNORE below): swarm (services, secrets, configs, nodes,
# overlay networks), plugins, anything pulling from Docker Hub or fetching from the internet, and
# the credential-helper tests (they need docker-credential-* binaries and never talk to a daemon).
#
# It stops everything it started (containerd, dockerd, skiffd, containers' shims and monitors),
# and removes the bridges, mounts and firewall chains its daemons made, also when it fails or is
# interrupted. It never binds to a non-loopback address: dockerd and skiffd get --ip 127.0.0.1,
# dockerd --iptables=false --ip-forward=false. Images come from Debian's busybox-static (no
# registry is reachable): the rootfs is imported under every name the tests use.
#
# Needs root, Debian 12 (docker.io 20.10, containerd, busybox-static from apt), PyPI (pytest,
# pytest-timeout, paramiko) and skiff's release binaries in target/release (built beforehand).
set -euo pipefail

DPY=${1:?usage: $0 DOCKER_PY_CHECKOUT [OUTPUT_DIR]}
DPY=$(cd "$DPY" && pwd)
OUT=${2:-/tmp/compat-dockerpy}
WORK=${COMPAT_WORK:-/tmp/cdpy}
DAEMONS=${COMPAT_DAEMONS:-dockerd skiffd}
API_VERSION=${COMPAT_API_VERSION:-1.41}
TEST_TIMEOUT=${COMPAT_TIMEOUT:-120}
SUITE_TIMEOUT=${COMPAT_SUITE_TIMEOUT:-90m}
K_FILTER=${COMPAT_K:-}
SKIFF_REPO=$(cd "$(dirname "$0")/.." && pwd)
SKIFF_REL="$SKIFF_REPO/target/release"
DOCKERD_REAL=/usr/sbin/dockerd     # Debian docker.io's daemon
CONTAINERD_REAL=/usr/bin/containerd

# Names of what we create, so cleanup touches nothing else on the machine. The subnets must not
# be in use (checked below): other daemons may run on this machine.
DK_BRIDGE=dkdpy0   DK_BIP=10.236.0.1/24   DK_POOL=base=10.237.0.0/16,size=24
SK_BRIDGE=skdpy0   SK_BIP=10.238.0.1/24   SK_POOL=base=10.239.0.0/16,size=24
# Every image name the tests use (tests/integration/base.py TEST_IMG = alpine:3.10; "alpine",
# "alpine:latest", "busybox" in Dockerfiles and run(); hello-world:latest in image tests).
IMAGES="alpine:3.10 alpine:latest busybox:latest hello-world:latest"

# Left out, and why (pytest node ids relative to the checkout):
IGNORE=(
    # swarm mode: neither daemon is run as a swarm manager (and skiffd has no swarm)
    tests/integration/api_swarm_test.py tests/integration/models_swarm_test.py
    tests/integration/models_nodes_test.py tests/integration/api_service_test.py
    tests/integration/models_services_test.py tests/integration/api_secret_test.py
    tests/integration/api_config_test.py
    # managed plugins: installs vieux/sshfs from Docker Hub
    tests/integration/api_plugin_test.py
    # credential helpers (docker-credential-pass/secretservice), no daemon involved
    tests/integration/credentials
)
DESELECT=(
    # swarm: init_swarm() / overlay networks
    tests/integration/api_network_test.py::TestNetworks::test_create_network_attachable
    tests/integration/api_network_test.py::TestNetworks::test_create_network_ingress
    tests/integration/api_network_test.py::TestNetworks::test_create_inspect_network_with_scope
    # internet: pulls from Docker Hub
    tests/integration/api_image_test.py::PullImageTest::test_pull
    tests/integration/api_image_test.py::PullImageTest::test_pull_streaming
    tests/integration/api_image_test.py::PullImageTest::test_pull_invalid_platform
    tests/integration/api_image_test.py::ImportImageTest::test_get_load_image
    tests/integration/api_image_test.py::PruneImagesTest::test_prune_images
    tests/integration/api_image_test.py::InspectDistributionTest::test_inspect_distribution
    # internet: run() of a missing image pulls it and expects Docker Hub's "not found" answer
    tests/integration/models_containers_test.py::ContainerCollectionTest::test_run_with_image_that_does_not_exist
    tests/integration/models_images_test.py::ImageCollectionTest::test_list
    tests/integration/models_images_test.py::ImageCollectionTest::test_list_with_repository
    tests/integration/models_images_test.py::ImageCollectionTest::test_pull
    tests/integration/models_images_test.py::ImageCollectionTest::test_pull_with_tag
    tests/integration/models_images_test.py::ImageCollectionTest::test_pull_with_sha
    tests/integration/models_images_test.py::ImageCollectionTest::test_pull_multiple
    tests/integration/models_images_test.py::ImageTest::test_tag_and_remove
    # internet: Dockerfile ADDs an https URL (dl.dropboxusercontent.com)
    tests/integration/api_build_test.py::BuildTest::test_build_streaming
    # client-side: attach over websocket needs a tcp:// DOCKER_HOST; over a unix socket
    # websocket-client fails before any request ("scheme http+docker is invalid") on any daemon
    tests/integration/api_container_test.py::AttachContainerTest::test_run_container_reading_socket_ws
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (daemons, bridges, mounts)"
[ -f "$DPY/tests/integration/base.py" ] && [ -d "$DPY/docker" ] ||
    die "$DPY does not look like a docker-py checkout (expects docker/ and tests/integration/base.py)"
case "$WORK" in /tmp/*|/var/tmp/*|/srv/*|/work/*) ;; *) die "COMPAT_WORK must be a scratch dir (it is wiped)";; esac

mkdir -p "$WORK" "$OUT"
rm -f "$OUT"/*-junit.xml "$OUT"/*-pytest.log "$OUT"/*-daemon.log "$OUT"/containerd.log \
    "$OUT/summary.txt" "$OUT/failures.txt" "$OUT/timings.txt"
LINKS_BEFORE=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1)
STARTED_PIDS=()     # containerd, dockerd, skiffd: stopped in cleanup, last started first
MADE_LINKS=()       # bridges we created ourselves
POLICY_RC_MADE=0

# ---------------------------------------------------------------------------------------------
# Cleanup: runs on any exit. Remove containers/networks through the API while the daemons are up
# (so they undo their own veths/rules), stop the daemons, then sweep what they left: containerd
# shims and skiff monitors of ours, mounts under $WORK, our bridges, skiff's chains for our bridge.
# ---------------------------------------------------------------------------------------------
api_cleanup() {   # $1 = socket path
    local sock=$1 h="docker -H unix://$1"
    [ -S "$sock" ] || return 0
    curl -sf -m 5 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1 || return 0
    timeout 60 $h ps -aq 2>/dev/null | xargs -r timeout 120 $h rm -f -v >/dev/null 2>&1 || true
    timeout 60 $h network ls -q --filter type=custom 2>/dev/null | xargs -r timeout 60 $h network rm >/dev/null 2>&1 || true
    return 0
}

stop_pid() {   # $1 = pid; SIGTERM, wait up to 45s, then SIGKILL
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 90); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    log "pid $pid ignored SIGTERM; killing"
    kill -KILL "$pid" 2>/dev/null || true
}

kill_leftovers() {
    # skiff-monitor processes run from our copy of the binaries (each holds one container), and
    # containerd shims that talk to our containerd (their -address names our socket).
    local pid exe args
    for pid in $(pgrep -x skiff-monitor || true); do
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
        [ "${exe% (deleted)}" = "$WORK/skiff-bin/skiff-monitor" ] || continue
        pkill -KILL -P "$pid" || true; kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in $(pgrep -f '^/usr/bin/containerd-shim' || true); do
        args=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || continue
        [[ $args == *"-address $WORK/containerd.sock "* ]] || continue
        pkill -KILL -P "$pid" || true; kill -KILL "$pid" 2>/dev/null || true
    done
    sleep 1
    return 0
}

unmount_under() {   # $1 = dir: lazily unmount everything mounted below it, deepest first
    findmnt -rn -o TARGET | awk -v d="$1/" 'index($0, d) == 1' | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    return 0
}

sweep_links() {
    # Our bridges, and br-<id> bridges that appeared while we ran and belong to a network recorded
    # in one of our daemons' stores (dockerd: network/files/local-kv.db; skiffd: metadata.redb).
    local l hits
    for l in "${MADE_LINKS[@]}" "$SK_BRIDGE"; do
        grep -qxF "$l" <<<"$LINKS_BEFORE" && continue
        ip link del "$l" 2>/dev/null || true
    done
    for l in $(ip -o link show type bridge | awk -F': ' '{print $2}' | cut -d@ -f1); do
        grep -qxF "$l" <<<"$LINKS_BEFORE" && continue
        case "$l" in br-*) ;; *) continue ;; esac
        hits=$(find "$WORK/docker-data" "$WORK/skiff-data" -xdev -type f \
                 \( -name local-kv.db -o -name metadata.redb \) \
                 -exec grep -qaF "${l#br-}" {} \; -print 2>/dev/null || true)
        [ -n "$hits" ] && ip link del "$l" 2>/dev/null
    done
    return 0
}

drop_skiff_chains() {   # skiffd names its chains after its default bridge: SKIFF-<BRIDGE>-...
    local t ch up
    up=$(echo "$SK_BRIDGE" | tr a-z A-Z)
    for t in filter nat; do
        iptables -t $t -S 2>/dev/null | grep -E -- "-j SKIFF-$up-" | sed 's/^-A/-D/' |
            while read -r rule; do eval iptables -t $t "$rule" || true; done
        for ch in $(iptables -t $t -S 2>/dev/null | awk -v p="SKIFF-$up-" '$1=="-N" && index($2,p)==1 {print $2}'); do
            iptables -t $t -F "$ch" || true; iptables -t $t -X "$ch" || true
        done
    done
    return 0
}

cleanup() {
    local rc=$? i
    set +e
    trap - INT TERM
    log "cleaning up"
    api_cleanup "$WORK/docker.sock"
    api_cleanup "$WORK/skiff.sock"
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${STARTED_PIDS[i]}"; done
    kill_leftovers
    unmount_under "$WORK"
    sweep_links
    drop_skiff_chains
    [ "$POLICY_RC_MADE" = 1 ] && rm -f /usr/sbin/policy-rc.d
    log "cleanup done (exit $rc)"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# 1. Packages: Debian's dockerd 20.10 and containerd (their services must not start: we run
#    private instances only), busybox-static for the image; pytest & co. from PyPI.
# ---------------------------------------------------------------------------------------------
need=()
for pkg in docker.io containerd busybox-static iproute2 iptables curl python3 python3-pip; do
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
[ -x "$CONTAINERD_REAL" ] || die "$CONTAINERD_REAL missing after installing containerd"
command -v docker >/dev/null || die "no docker CLI on PATH (docker.io provides /usr/bin/docker)"

# The interpreter itself, not a pyenv shim (we set no HOME, but be explicit anyway).
PY=$(python3 -c 'import sys; print(sys.executable)')
# docker-py's CI installs .[dev,ssh,websockets]: pytest, pytest-timeout, paramiko, websocket-client.
PY_DEPS="pytest pytest-timeout paramiko websocket-client requests"
if ! "$PY" -c 'import pytest, pytest_timeout, paramiko, websocket, requests' 2>/dev/null; then
    log "installing $PY_DEPS from PyPI"
    "$PY" -m pip install -q $PY_DEPS 2>/dev/null ||
        "$PY" -m pip install -q --break-system-packages $PY_DEPS
fi
# The tests import the `docker` package of the checkout (pytest puts its root first on sys.path).
DPY_VERSION=$(cd "$DPY" && "$PY" -c 'import docker, os; print(docker.__version__, os.path.dirname(docker.__file__))')
log "docker-py under test: $DPY_VERSION; pytest $("$PY" -m pytest --version 2>&1 | awk '{print $2}')"
case "$DPY_VERSION" in *" $DPY/docker") ;; *) die "the tests would not import $DPY/docker ($DPY_VERSION)";; esac

# ---------------------------------------------------------------------------------------------
# 2. skiff: a snapshot of the built binaries (target/ may be rebuilt while the tests run).
#    skiffd finds skiff-monitor and skiff-create beside itself.
# ---------------------------------------------------------------------------------------------
rm -rf "$WORK/skiff-bin"; mkdir -p "$WORK/skiff-bin"
for b in skiffd skiff-monitor skiff-create; do
    [ -x "$SKIFF_REL/$b" ] || die "$SKIFF_REL/$b missing: build skiff first (cargo build --release)"
    cp "$SKIFF_REL/$b" "$WORK/skiff-bin/$b"
done
SKIFFD="$WORK/skiff-bin/skiffd"

# ---------------------------------------------------------------------------------------------
# 3. Checks before touching anything: our sockets free, our bridge names and subnets unused.
# ---------------------------------------------------------------------------------------------
for s in "$WORK/docker.sock" "$WORK/skiff.sock" "$WORK/containerd.sock"; do
    if [ -S "$s" ] && curl -sf -m 3 --unix-socket "$s" http://d/_ping >/dev/null 2>&1; then
        die "a daemon already answers on $s (left from an earlier run?); stop it first"
    fi
done
if pgrep -f -- "--address $WORK/containerd.sock" >/dev/null || pgrep -f -- "-a $WORK/containerd.sock" >/dev/null; then
    die "a containerd on $WORK/containerd.sock is already running; stop it first"
fi
for br in $DK_BRIDGE $SK_BRIDGE; do
    ! grep -qxF "$br" <<<"$LINKS_BEFORE" || die "bridge $br exists already (left from an earlier run?); remove it first"
done
for net in ${DK_BIP%.*} ${DK_POOL#base=} ${SK_BIP%.*} ${SK_POOL#base=}; do
    pfx=${net%%/*}; pfx=${pfx%.0}; pfx=${pfx%.0}   # 10.236.0 / 10.237
    ! ip -4 route | grep -qE "^${pfx//./\\.}\." || die "subnet ${pfx}.* is in use on this machine: change the names/subnets at the top"
done

# ---------------------------------------------------------------------------------------------
# 4. The test image: a busybox-static rootfs (as scripts/compat-moby.sh makes it), imported under
#    every name the tests use, with alpine's CMD.
# ---------------------------------------------------------------------------------------------
ALPINE_USERS='root:0:0:/root:/bin/ash bin:1:1:/bin daemon:2:2:/sbin adm:3:4:/var/adm lp:4:7:/var/spool/lpd
sync:5:0:/sbin:/bin/sync shutdown:6:0:/sbin:/sbin/shutdown halt:7:0:/sbin:/sbin/halt
mail:8:12:/var/spool/mail news:9:13:/usr/lib/news uucp:10:14:/var/spool/uucppublic operator:11:0:/root
man:13:15:/usr/man postmaster:14:12:/var/spool/mail cron:16:16:/var/spool/cron ftp:21:21:/var/lib/ftp
sshd:22:22:/dev/null at:25:25:/var/spool/cron/atjobs squid:31:31:/var/cache/squid xfs:33:33:/etc/X11/fs
games:35:35:/usr/games postgres:70:70:/var/lib/postgresql:/bin/sh cyrus:85:12:/usr/cyrus
vpopmail:89:89:/var/vpopmail ntp:123:123:/var/empty smmsp:209:209:/var/spool/mqueue guest:405:100:/dev/null
nobody:65534:65534:/'
ALPINE_GROUPS='root:0:root bin:1:root,bin,daemon daemon:2:root,bin,daemon sys:3:root,bin,adm adm:4:root,adm,daemon
tty:5 disk:6:root,adm lp:7:lp mem:8 kmem:9 wheel:10:root floppy:11:root mail:12:mail news:13:news uucp:14:uucp
man:15:man cron:16:cron console:17 audio:18 cdrom:19 dialout:20:root ftp:21 sshd:22 input:23 at:25:at tape:26:root
video:27:root netdev:28 readproc:30 squid:31:squid xfs:33:xfs kvm:34:kvm games:35 shadow:42 postgres:70 cdrw:80
usb:85 vpopmail:89 users:100:games ntp:123 nofiles:200 smmsp:209:smmsp locate:245 abuild:300 utmp:406 ping:999
nogroup:65533 nobody:65534'
make_rootfs_tar() {
    # Alpine's layout, users and groups (alpine-baselayout), since the tests name alpine: they exec
    # `whoami` as postgres, use workdir /var/opt, ... The binaries are busybox's applets, as in
    # alpine. (Everything is written below $root, which is never empty.)
    local root="$WORK/busybox-rootfs" a e name uid gid home shell
    [ -n "$WORK" ] || die "empty WORK"
    rm -rf "$root"
    mkdir -p "$root"/{bin,sbin,etc,dev,proc,sys,tmp,root,home,lib,mnt,opt,run,srv,media/cdrom,media/usb} \
        "$root"/usr/{bin,sbin,lib,share,local/bin,local/lib,local/share} \
        "$root"/var/{cache,empty,lib,local,lock,log,opt,spool/cron/crontabs,spool/mail,tmp}
    ln -s /run "$root/var/run"
    cp /bin/busybox "$root/bin/busybox"
    for a in $("$root/bin/busybox" --list-full); do      # e.g. bin/sh, usr/bin/env, sbin/ip
        [ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
    done
    for e in $ALPINE_USERS; do
        IFS=: read -r name uid gid home shell <<<"$e"
        printf '%s:x:%s:%s:%s:%s:%s\n' "$name" "$uid" "$gid" "$name" "$home" "${shell:-/sbin/nologin}"
    done > "$root/etc/passwd"
    for e in $ALPINE_GROUPS; do
        IFS=: read -r name gid a <<<"$e"
        printf '%s:x:%s:%s\n' "$name" "$gid" "$a"
    done > "$root/etc/group"
    echo alpine > "$root/etc/hostname"
    chmod 1777 "$root/tmp" "$root/var/tmp"; chmod 700 "$root/root"
    tar -C "$root" --numeric-owner -cf "$WORK/busybox.tar" .
}
# The image the suite's session fixture would pull when missing: make sure we import it.
test_img=$(sed -n "s/^TEST_IMG = '\(.*\)'/\1/p" "$DPY/tests/integration/base.py")
[ -n "$test_img" ] && [[ " $IMAGES " != *" $test_img "* ]] && IMAGES="$IMAGES $test_img"
import_images() {   # $1 = socket
    local img
    for img in $IMAGES; do
        docker -H "unix://$1" import -c 'CMD ["/bin/sh"]' "$WORK/busybox.tar" "$img" >/dev/null
    done
}
make_rootfs_tar

# ---------------------------------------------------------------------------------------------
# 5. The daemons, each with private roots, socket and bridge.
# ---------------------------------------------------------------------------------------------
wipe_dir() {   # rm -rf that first unmounts what a dead daemon left mounted below the dir
    local dir=$1
    [ -e "$dir" ] || return 0
    unmount_under "$dir"
    if findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0, d) == 1' | grep -q .; then
        die "mounts remain under $dir; not deleting it"
    fi
    rm -rf --one-file-system "$dir"
}
wait_sock() {   # $1 = socket, $2 = pid, $3 = log; containerd has no /_ping: then only the socket
    for _ in $(seq 120); do
        if [ "${4:-}" = plain ]; then [ -S "$1" ] && return 0
        else curl -sf -m 3 --unix-socket "$1" http://d/_ping >/dev/null 2>&1 && return 0; fi
        kill -0 "$2" 2>/dev/null || { tail -20 "$3" >&2; die "daemon exited at start (log: $3)"; }
        sleep 0.5
    done
    tail -20 "$3" >&2; die "daemon did not answer on $1 (log: $3)"
}
EXP=(); [ "${COMPAT_EXPERIMENTAL:-0}" = 1 ] && EXP=(--experimental)
[ "${COMPAT_DEBUG:-0}" = 1 ] && EXP+=(-D)

start_dockerd() {
    # containerd: our own, not the machine's (dockerd would use a system containerd found at
    # /run/containerd/containerd.sock). The config mirrors the one dockerd writes for the
    # containerd it manages itself: no CRI plugin (it would listen on TCP), no metrics/debug TCP.
    wipe_dir "$WORK/containerd-root"; wipe_dir "$WORK/containerd-state"
    mkdir -p "$WORK/containerd-root" "$WORK/containerd-state"
    cat > "$WORK/containerd.toml" <<EOF
version = 2
root = "$WORK/containerd-root"
state = "$WORK/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$WORK/containerd.sock"
[ttrpc]
  address = "$WORK/containerd.sock.ttrpc"
[debug]
  address = "$WORK/containerd-debug.sock"
[metrics]
  address = ""
EOF
    rm -f "$WORK/containerd.sock" "$WORK/containerd.sock.ttrpc" "$WORK/containerd-debug.sock"
    "$CONTAINERD_REAL" --config "$WORK/containerd.toml" >"$OUT/containerd.log" 2>&1 &
    STARTED_PIDS+=($!)
    wait_sock "$WORK/containerd.sock" $! "$OUT/containerd.log" plain

    ip link add "$DK_BRIDGE" type bridge && MADE_LINKS+=("$DK_BRIDGE")
    ip addr add "$DK_BIP" dev "$DK_BRIDGE"
    ip link set "$DK_BRIDGE" up
    wipe_dir "$WORK/docker-data"; wipe_dir "$WORK/docker-exec"
    # --iptables=false/--ip-forward=false: leave the host's firewall and sysctls alone;
    # --ip 127.0.0.1: published ports (userland proxy) listen on loopback only.
    "$DOCKERD_REAL" -H "unix://$WORK/docker.sock" --data-root "$WORK/docker-data" \
        --exec-root "$WORK/docker-exec" --pidfile "$WORK/docker.pid" -b "$DK_BRIDGE" \
        --default-address-pool "$DK_POOL" --containerd "$WORK/containerd.sock" \
        --iptables=false --ip-forward=false --ip 127.0.0.1 --config-file "$WORK/dockerd.json" \
        "${EXP[@]}" >"$OUT/dockerd-daemon.log" 2>&1 &
    STARTED_PIDS+=($!)
    wait_sock "$WORK/docker.sock" $! "$OUT/dockerd-daemon.log"
}

start_skiffd() {
    wipe_dir "$WORK/skiff-data"; wipe_dir "$WORK/skiff-run"
    # --config-file /dev/null and an empty registries config: nothing from the machine's
    # /etc/skiff (which may remap docker.io to a local registry) changes what the tests see.
    # --live-restore=false: dockerd's default (containers stop with the daemon).
    : > "$WORK/registries.toml"
    "$SKIFFD" --config-file /dev/null --registries-config "$WORK/registries.toml" \
        -H "unix://$WORK/skiff.sock" --data-root "$WORK/skiff-data" --exec-root "$WORK/skiff-run" \
        -p "$WORK/skiff.pid" -b "$SK_BRIDGE" --bip "$SK_BIP" --default-address-pool "$SK_POOL" \
        --ip 127.0.0.1 --live-restore=false "${EXP[@]}" >"$OUT/skiffd-daemon.log" 2>&1 &
    STARTED_PIDS+=($!)
    wait_sock "$WORK/skiff.sock" $! "$OUT/skiffd-daemon.log"
}
echo '{}' > "$WORK/dockerd.json"   # never read the machine's /etc/docker/daemon.json

declare -A SOCK=([dockerd]="$WORK/docker.sock" [skiffd]="$WORK/skiff.sock")
for d in $DAEMONS; do
    [ -n "${SOCK[$d]:-}" ] || die "unknown daemon $d (COMPAT_DAEMONS: dockerd skiffd)"
    log "starting $d"
    "start_$d"
    import_images "${SOCK[$d]}"
    log "$d: $(docker -H "unix://${SOCK[$d]}" version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
done

# ---------------------------------------------------------------------------------------------
# 6. The suite against each daemon in turn. Each gets a fresh DOCKER_CONFIG (context tests write
#    contexts next to config.json: never into ~/.docker or the checkout).
# ---------------------------------------------------------------------------------------------
unset DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_CONTEXT DOCKER_API_VERSION DOCKER_TEST_API_VERSION
# The tests' temp dirs (tempfile.mkdtemp: they become bind-mount sources) live on a shared mount
# of our own: test_create_with_binds_rw_rshared needs its source on a shared mount, and / may be
# private (it is in this VM). A bind mount under $WORK, unmounted at cleanup, leaves / alone.
TESTTMP="$WORK/testtmp"
mkdir -p "$TESTTMP"
mountpoint -q "$TESTTMP" || mount --bind "$TESTTMP" "$TESTTMP"
mount --make-shared "$TESTTMP"
pytest_args=(tests/integration -p no:cacheprovider "--timeout=$TEST_TIMEOUT" -rA -v)
for f in "${IGNORE[@]}"; do pytest_args+=("--ignore=$f"); done
for t in "${DESELECT[@]}"; do pytest_args+=("--deselect=$t"); done
[ -n "$K_FILTER" ] && pytest_args+=(-k "$K_FILTER")
for d in $DAEMONS; do
    cfg="$WORK/dockercfg-$d"; rm -rf "$cfg"; mkdir -p "$cfg"; echo '{}' > "$cfg/config.json"
    log "docker-py tests against $d (API $API_VERSION)"
    t0=$SECONDS
    set +e
    (cd "$DPY" && env DOCKER_HOST="unix://${SOCK[$d]}" DOCKER_TEST_API_VERSION="$API_VERSION" \
        DOCKER_CONFIG="$cfg" TMPDIR="$TESTTMP" PYTHONDONTWRITEBYTECODE=1 \
        timeout -k 60 "$SUITE_TIMEOUT" "$PY" -m pytest "${pytest_args[@]}" \
            --junitxml="$OUT/$d-junit.xml" -o junit_suite_name="docker-py-$d") >"$OUT/$d-pytest.log" 2>&1
    rc=$?
    set -e
    echo "run $d $((SECONDS - t0))s pytest-exit=$rc" >> "$OUT/timings.txt"
    log "$d: $(tail -1 "$OUT/$d-pytest.log") ($((SECONDS - t0))s)"
    if ! curl -sf -m 5 --unix-socket "${SOCK[$d]}" http://d/_ping >/dev/null 2>&1; then
        echo "$d was not answering after its run" >> "$OUT/timings.txt"
    fi
    api_cleanup "${SOCK[$d]}"
done

# ---------------------------------------------------------------------------------------------
# 7. Summary from the junit files: one status per test (failed > error > skipped > passed; a
#    test that passed and then failed in teardown counts as an error, as pytest reports it);
#    xfailed/xpassed (junit says skipped/passed) from the -rA lines of the pytest log.
# ---------------------------------------------------------------------------------------------
"$PY" - "$OUT" "$DAEMONS" <<'PY'
import os, sys, xml.etree.ElementTree as ET
out, daemons = sys.argv[1], sys.argv[2].split()
res, msg = {}, {}
for d in daemons:
    path = f"{out}/{d}-junit.xml"
    st, ms = {}, {}
    if os.path.exists(path):
        for tc in ET.parse(path).getroot().iter("testcase"):
            cls = tc.get("classname", "")
            tid = f"{cls}::{tc.get('name')}"
            kinds = {c.tag: c for c in tc}
            if "failure" in kinds: s, el = "failed", kinds["failure"]
            elif "error" in kinds: s, el = "error", kinds["error"]
            elif "skipped" in kinds: s, el = "skipped", kinds["skipped"]
            else: s, el = "passed", None
            # several entries for one test (call failure + teardown error): keep the worst
            rank = {"failed": 3, "error": 2, "skipped": 1, "passed": 0}
            if tid in st and rank[st[tid]] >= rank[s]: continue
            st[tid] = s
            if el is not None:
                text = (el.get("message") or "") + "\n" + (el.text or "")
                ms[tid] = text
    # xfail/xpass: junit records them as skipped/passed; pytest's -rA summary names them.
    logp = f"{out}/{d}-pytest.log"
    if os.path.exists(logp):
        for line in open(logp, errors="replace"):
            if line.startswith(("XFAIL ", "XPASS ")):
                node = line.split()[1]                  # tests/integration/x.py::Class::test
                path_, _, rest = node.partition("::")
                cls, _, name = rest.rpartition("::")
                tid = path_[:-3].replace("/", ".") + ("." + cls if cls else "") + "::" + name
                if tid in st: st[tid] = "xfailed" if line.startswith("XFAIL") else "xpassed"
    res[d], msg[d] = st, ms

def first_lines(text, n=4):
    """The assertion/exception lines, not the traceback framing."""
    lines = [l.rstrip() for l in text.splitlines() if l.strip()]
    pick = [l for l in lines if l.lstrip().startswith("E ")]
    head = lines[:1]
    body = pick[:n] if pick else lines[1:n]
    seen, outl = set(), []
    for l in head + body:
        k = l.strip()
        if k in seen: continue
        seen.add(k); outl.append(k[:300])
    return outl

rows = [f"{'daemon':<8} | {'passed':>6} | {'failed':>6} | {'skipped':>7} | {'errors':>6} | {'xfailed':>7} | {'xpassed':>7} | {'total':>5}"]
for d in daemons:
    c = {k: 0 for k in ("passed", "failed", "skipped", "error", "xfailed", "xpassed")}
    for s in res[d].values(): c[s] += 1
    rows.append(f"{d:<8} | {c['passed']:>6} | {c['failed']:>6} | {c['skipped']:>7} | {c['error']:>6} | {c['xfailed']:>7} | {c['xpassed']:>7} | {len(res[d]):>5}")
summary = "\n".join(rows)

fl = []
for d in daemons:
    bad = sorted(t for t, s in res[d].items() if s in ("failed", "error"))
    fl.append(f"##### {len(bad)} failing on {d}")
    for t in bad:
        fl.append(f"  {res[d][t].upper():<6} {t}")
        fl.extend(f"        {l}" for l in first_lines(msg[d].get(t, "")))
diff = []
if set(daemons) >= {"dockerd", "skiffd"}:
    a, b = res["dockerd"], res["skiffd"]
    diff = sorted(t for t, s in a.items() if s == "passed" and b.get(t) in ("failed", "error"))
    fl.append(f"##### {len(diff)} pass on dockerd, fail on skiffd")
    for t in diff:
        fl.append(f"  {t}")
        fl.extend(f"        {l}" for l in first_lines(msg["skiffd"].get(t, "")))
    rev = sorted(t for t, s in b.items() if s == "passed" and a.get(t) in ("failed", "error"))
    fl.append(f"##### {len(rev)} pass on skiffd, fail on dockerd")
    fl.extend(f"  {t}" for t in rev)
    summary += f"\n\npass on dockerd, fail on skiffd: {len(diff)}\n" + "\n".join(f"  {t}" for t in diff)
open(f"{out}/failures.txt", "w").write("\n".join(fl) + "\n")
open(f"{out}/summary.txt", "w").write(summary + "\n")
print(summary)
PY
log "junit/pytest logs: $OUT/<daemon>-{junit.xml,pytest.log}, failure messages: $OUT/failures.txt, daemon logs: $OUT/<daemon>-daemon.log, timings: $OUT/timings.txt"
