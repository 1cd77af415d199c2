#!/usr/bin/env bash
# Quickstart for a fresh machine: install what is missing, build skiff, start skiffd with its
# built-in registry (docker.io names mapped to it), make the base images from Debian's packages,
# and run the seed's commands as written with the docker CLI — build, push, (remove, pull), run
# -p 80:80 — then fetch the page from the published port and print it.
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

# The registry takes pulls from anyone, pushes only with its login (user skiff, a password
# generated at its first start, readable by root only). docker.io lives there, so log in to it.
echo "--- docker login (docker.io is skiff's registry here)"
docker login -u skiff --password-stdin < /var/lib/skiff/registry/auth/password

echo "--- base images from Debian's packages (kept once made)"
"$BIN/skiff" image bootstrap busybox httpd:2.4

echo "--- docker run --rm busybox echo hello from skiff"
docker run --rm busybox echo hello from skiff

# The seed, as written: a Dockerfile, then build, push, run.
SEED=$(mktemp -d)
mkdir -p "$SEED/public-html"
cat > "$SEED/public-html/index.html" <<'HTML'
<html><body><h1>Hello from skiff</h1><p>Built from the seed's Dockerfile, pushed to skiff's registry, pulled back and run.</p></body></html>
HTML
cat > "$SEED/Dockerfile" <<'DOCKERFILE'
FROM httpd:2.4
COPY ./public-html/ /usr/local/apache2/htdocs/
DOCKERFILE
cd "$SEED"
echo "--- docker build . -t strongjz/example-httpd"
docker build . -t strongjz/example-httpd
echo "--- docker push strongjz/example-httpd"
docker push strongjz/example-httpd
echo "--- removing the local image, then pulling it back from the registry"
docker rm -f quickstart-web >/dev/null 2>&1 || true
docker rmi strongjz/example-httpd >/dev/null
docker pull strongjz/example-httpd
PORT=${PORT:-80}
echo "--- docker run -p $PORT:80 strongjz/example-httpd"
docker run -d --name quickstart-web -p "$PORT:80" strongjz/example-httpd >/dev/null
page=""
for _ in $(seq 100); do
    page=$(curl -sf "http://127.0.0.1:$PORT/" 2>/dev/null) && break
    sleep 0.1
done
echo "--- the page, from http://127.0.0.1:$PORT/"
echo "$page"
cd - >/dev/null
rm -rf "$SEED"
echo
echo "skiffd is running on $SOCK with its registry on $REGISTRY; the web server runs as quickstart-web"
echo "try: DOCKER_HOST=$DOCKER_HOST docker ps"
[ -n "$page" ]
