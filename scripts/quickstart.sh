#!/usr/bin/env bash
# Quickstart for a fresh machine: install what is missing, build skiff, start skiffd with its
# built-in registry (docker.io names mapped to it), make a busybox image from Debian's
# busybox-static, and run containers with the real docker CLI: ship an image through the
# registry (push, remove, pull), publish it on a port and fetch the page.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo build --release --locked --bins
BIN="$PWD/target/release"
SOCK=/run/skiff.sock
export DOCKER_HOST="unix://$SOCK"

REGISTRY=${REGISTRY:-127.0.0.1:5000}
# No Docker Hub here: names without a registry (docker.io/...) live in skiff's own registry.
if [ ! -e /etc/skiff/registries.toml ]; then
    mkdir -p /etc/skiff
    printf '[[registry]]\nprefix = "docker.io"\nlocation = "%s"\n' "$REGISTRY" > /etc/skiff/registries.toml
fi
if ! curl -sf --unix-socket "$SOCK" http://skiff/_ping >/dev/null 2>&1; then
    echo "starting skiffd with its registry on $REGISTRY (log: /var/log/skiffd.log)"
    nohup "$BIN/skiffd" -H "unix://$SOCK" --registry-addr "$REGISTRY" >/var/log/skiffd.log 2>&1 &
    for _ in $(seq 100); do
        curl -sf --unix-socket "$SOCK" http://skiff/_ping >/dev/null 2>&1 && break
        sleep 0.1
    done
fi

if ! docker image inspect busybox >/dev/null 2>&1; then
    echo "making the busybox image from Debian's busybox-static"
    root=$(mktemp -d)
    mkdir -p "$root"/{bin,etc,root,tmp,proc,sys,dev,var/www}
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
    tar -C "$root" -c . | docker import --change 'CMD ["sh"]' - busybox
    rm -rf "$root"
fi

echo "--- docker run --rm busybox echo hello from skiff"
docker run --rm busybox echo hello from skiff
PORT=${PORT:-18080}
echo "--- build an image with a web page, then ship it through the registry: push, remove, pull"
ctx=$(mktemp -d)
mkdir -p "$ctx/public-html"
echo "<h1>served by skiff</h1>" > "$ctx/public-html/index.html"
printf 'FROM busybox\nCOPY ./public-html/ /www/\nEXPOSE 80\nCMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n' > "$ctx/Dockerfile"
docker build "$ctx" -t strongjz/example-httpd
rm -rf "$ctx"
docker push strongjz/example-httpd
docker rmi strongjz/example-httpd >/dev/null
docker pull strongjz/example-httpd
echo "--- the pulled image, published on 127.0.0.1:$PORT, fetched with curl"
docker rm -f quickstart-web >/dev/null 2>&1 || true
docker run -d --name quickstart-web -p "127.0.0.1:$PORT:80" strongjz/example-httpd >/dev/null
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
echo "--- and from another container, by name, on a user network"
docker network rm quickstart-net >/dev/null 2>&1 || true
docker network create quickstart-net >/dev/null
docker network connect quickstart-net quickstart-web
docker run --rm --network quickstart-net busybox wget -qO- http://quickstart-web/
docker rm -f quickstart-web >/dev/null
docker network rm quickstart-net >/dev/null
echo
echo "skiffd is running on $SOCK; try: DOCKER_HOST=$DOCKER_HOST docker ps -a"
