#!/usr/bin/env bash
# The whole test suite: unit tests, then end-to-end tests that drive the real binaries with the
# real docker CLI and skiff. Needs root (namespaces, mounts, cgroups).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo fmt --all --check
cargo build --release --locked --bins
# Unit tests (the release profile reuses the build above).
cargo test --release --locked --workspace --exclude skiff-e2e
# End-to-end tests against the release binaries.
SKIFF_BIN_DIR="$PWD/target/release" cargo test --release --locked -p skiff-e2e -- --test-threads=2
# Lints last: they need their own build.
cargo clippy --locked --all-targets -- -D warnings
