#!/usr/bin/env bash
# The whole test suite: unit tests, then end-to-end tests that drive the real binaries with the
# real docker CLI and skiff. Needs root (namespaces, mounts, cgroups).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo fmt --all --check
# Boundaries: the API crate talks to the engine's public surface only — no filesystem, image
# store, database or layer access of its own (docs/ARCHITECTURE.md); skiff-build never needs the
# engine.
if grep -rnE 'std::fs::|\.store\b|\.db\b|skiff_(image|runtime|distribution|net)::' crates/api/src; then
    echo "crates/api reaches below the engine (see above)" >&2
    exit 1
fi
# Of the workspace's crates, the API depends on the engine and skiff-common only.
api_deps=$(cargo tree --locked -p skiff-api -e normal --depth 1 | grep -oE 'skiff-[a-z]+' | sort -u | tr '\n' ' ')
if [ "$api_deps" != "skiff-api skiff-common skiff-engine " ]; then
    echo "skiff-api depends on more than skiff-engine and skiff-common: $api_deps" >&2
    exit 1
fi
build_deps=$(cargo tree --locked -p skiff-build -e normal)
if grep -q skiff-engine <<<"$build_deps"; then
    echo "skiff-build depends on skiff-engine" >&2
    exit 1
fi
cargo build --release --locked --bins
# Unit tests (the release profile reuses the build above).
cargo test --release --locked --workspace --exclude skiff-e2e
# End-to-end tests against the release binaries.
SKIFF_BIN_DIR="$PWD/target/release" cargo test --release --locked -p skiff-e2e -- --test-threads=2
# Lints last: they need their own build.
cargo clippy --locked --all-targets -- -D warnings
