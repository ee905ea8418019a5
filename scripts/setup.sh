#!/usr/bin/env bash
# Installs what building and testing Skiff needs on a fresh Debian machine
# (root, package registries reachable). Idempotent: skips what is present.
set -euo pipefail

need_apt=()
command -v kubectl >/dev/null 2>&1 || echo "warning: kubectl is not installed; the acceptance tests drive the real kubectl" >&2
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# Images for tests are built from busybox-static and served by a local registry.
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || need_apt+=(busybox-static)
command -v docker-registry >/dev/null 2>&1 || need_apt+=(docker-registry)
# Containers run under a real OCI runtime: crun where it works, else runc.
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
command -v crun >/dev/null 2>&1 || need_apt+=(crun)
# Pod networking uses the real CNI plugins; tests run pods inside their own network namespaces.
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
# The benchmark's peers: podman kube play (with catatonit for its infra
# container) and a bare runc run of a bundle unpacked by umoci.
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v catatonit >/dev/null 2>&1 || need_apt+=(catatonit)
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
command -v umoci >/dev/null 2>&1 || need_apt+=(umoci)
# The etcd datastore is tested against a real etcd and read back by etcdctl.
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The web view's test drives a real headless Chromium; script(1) gives a test a terminal.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v script >/dev/null 2>&1 || need_apt+=(bsdutils)
if [ "${#need_apt[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The second real client used by the tests: the official Kubernetes Python client.
if ! python3 -c 'import kubernetes' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check kubernetes \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages kubernetes
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
