#!/usr/bin/env bash
# Sets up, builds and runs the main job: `skiff server` (API server,
# scheduler and node agent) plus a real demo pod, offline, driven with the
# real kubectl. Ctrl-C stops the server (pods keep running, as with k3s;
# the next start cleans them up).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked --bin skiff

data_dir="${SKIFF_DATA_DIR:-/var/lib/skiff}"
./target/release/skiff image pack-busybox --name skiff.local/busybox:demo --data-dir "$data_dir"
./target/release/skiff server --data-dir "$data_dir" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null' EXIT

export KUBECONFIG="$data_dir/kubeconfig.yaml" KUBECACHEDIR="$(mktemp -d)"
for _ in $(seq 100); do
    [ -f "$KUBECONFIG" ] && kubectl get --raw /readyz >/dev/null 2>&1 && break
    sleep 0.1
done

kubectl apply -f examples/demo-pod.yaml
kubectl wait --for=condition=Ready pod/demo --timeout=60s
kubectl get pods -o wide
ip=$(kubectl get pod demo -o jsonpath='{.status.podIP}')
echo "--- GET http://$ip:8080/ from the node:"
busybox wget -q -O - "http://$ip:8080/"
echo "--- kubectl logs demo:"
kubectl logs demo
kubectl describe pod demo | sed -n '/^Events:/,$p'
echo
echo "skiff is running; try: KUBECONFIG=$KUBECONFIG kubectl get pods --watch   (Ctrl-C here stops the server)"
[ -f "$data_dir/web-view.url" ] && echo "the web view, in a browser on this machine: $(cat "$data_dir/web-view.url")"
wait "$server"
