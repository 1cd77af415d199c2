# Shared by the benchmarks (sourced): the busybox root filesystem every engine imports, and timed
# runs of a command.

# busybox_rootfs DIR: Debian's busybox-static with its applets and a root user and group.
busybox_rootfs() {
    local root=$1
    mkdir -p "$root"/{bin,etc,root,tmp,proc,sys,dev}
    cp /bin/busybox "$root/bin/busybox"
    for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
    printf 'root:x:0:\n' > "$root/etc/group"
}

# time_runs LABEL CMD...: $RUNS timed runs after one warm-up; prints "LABEL median min max" (seconds).
time_runs() {
    local label=$1; shift
    "$@" >/dev/null 2>&1 || { echo "$label FAILED"; return; }
    local ts=()
    for _ in $(seq "$RUNS"); do
        local s e
        s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
        ts+=($(( e - s )))
    done
    python3 - "$label" "${ts[@]}" <<'PY'
import statistics, sys
label, xs = sys.argv[1], [int(x) / 1e9 for x in sys.argv[2:]]
print(f"{label}\t{statistics.median(xs):.4f}\t{min(xs):.4f}\t{max(xs):.4f}")
PY
}

# install_peers PKG...: installs the Debian packages that are missing, without letting their
# maintainer scripts start services (docker.io would start a system dockerd that rewrites the
# FORWARD chain; docker-registry would take port 5000). The benchmarks start private instances.
install_peers() {
    local missing=() pkg
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    ((${#missing[@]})) || return 0
    local had_policy=0
    [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ $had_policy = 1 ] || printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
        || echo "could not install some of: ${missing[*]}" >&2
    [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
}

# stop_daemons_and_unmount [SECONDS]: kills every daemon whose pid file is in $W (skiffd,
# dockerd, …), gives them SECONDS (default 1) to go, and detaches what is still mounted below $W.
stop_daemons_and_unmount() {
    local p
    for p in "$W"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
    sleep "${1:-1}"
    # (grep finds nothing when nothing is left: not a failure under pipefail)
    { grep " $W" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
    return 0
}

# busybox_image_tar: the busybox image every engine imports, as $W/busybox.tar.
busybox_image_tar() {
    busybox_rootfs "$W/bbroot"
    tar -C "$W/bbroot" -cf "$W/busybox.tar" .
}
