#!/usr/bin/env bash
# Runs Skiff's benchmark on this machine (root): builds it in release mode,
# starts a real `skiff server` in a network namespace of its own, measures,
# runs the same pods under `podman kube play` and a bare `runc run` for
# comparison, prints the table and writes target/bench/pods.json.
# Arguments go to the benchmark: --smoke (5 pods, seconds), --no-podman,
# --density N (only N pods up and down, for a quick look at one change),
# --json PATH. See BENCHMARKS.md for what each figure means.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo bench --locked -p skiff --bench pods -- "$@"
