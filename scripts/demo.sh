#!/usr/bin/env bash
# Sets up, builds and runs the main job: `skiff server` plus a demo pod,
# driven with the real kubectl. Ctrl-C stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked --bin skiff

data_dir="${SKIFF_DATA_DIR:-/var/lib/skiff}"
./target/release/skiff server --data-dir "$data_dir" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null' EXIT

export KUBECONFIG="$data_dir/kubeconfig.yaml" KUBECACHEDIR="$(mktemp -d)"
for _ in $(seq 100); do
    [ -f "$KUBECONFIG" ] && kubectl get --raw /readyz >/dev/null 2>&1 && break
    sleep 0.1
done

kubectl apply -f examples/demo-pod.yaml
kubectl get pods -o wide
kubectl describe pod demo
echo
echo "skiff is running; try: KUBECONFIG=$KUBECONFIG kubectl get pods --watch   (Ctrl-C here stops the server)"
wait "$server"
