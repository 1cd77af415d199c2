#!/usr/bin/env bash
# Installs what building and testing skiff needs on a fresh Debian machine of this kind.
set -euo pipefail

need=()
for pkg in busybox-static libseccomp-dev pkg-config iproute2 iptables kmod curl tini bsdutils jq docker-compose skopeo openssl python3-docker python3-prometheus-client debootstrap; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# A docker CLI drives the end-to-end tests; Debian's docker.io brings one if none is here.
command -v docker >/dev/null 2>&1 || need+=(docker.io)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust toolchain) is required" >&2; exit 1; }
echo "dependencies ready"
