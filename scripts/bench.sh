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
cargo bench --locked -p skiff --bench pods --no-run
# Start from the same kernel state every run: the memory cgroups of an
# earlier run's pods linger (dying) while page cache still points at them,
# thousands after a density run, and slow every cgroup and memory operation
# of the next (seen here: 1,000 pods up 86.7 s after dropping them, 113 s
# without).
sync
echo 3 > /proc/sys/vm/drop_caches
exec cargo bench --locked -p skiff --bench pods -- "$@"
