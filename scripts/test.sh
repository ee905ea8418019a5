#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: unit tests, the store
# conformance suite, and the integration tests that drive the real `skiff`
# binary with the real kubectl and the official Python client, then the
# benchmark's smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --all-targets --locked
# Lints are errors here (unwrap/expect outside tests among them).
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --profile ci --locked
# The benchmark's smoke run: a few pods through every measurement and the
# podman/runc peers, so the benchmark cannot rot (figures are not judged here).
cargo test --locked -p skiff --bench pods -- --smoke --json target/bench/smoke.json
