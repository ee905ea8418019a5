"""The official Python client's port-forward (WebSocket v4.channel.k8s.io) against Skiff."""
import sys

from kubernetes import client, config
from kubernetes.stream import portforward

config.load_kube_config()
v1 = client.CoreV1Api()
for attempt in range(2):
    pf = portforward(v1.connect_get_namespaced_pod_portforward, "web", "default", ports="80")
    sock = pf.socket(80)
    sock.settimeout(10)
    sock.sendall(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
    reply = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    sock.close()
    error = pf.error(80)
    pf.close()
    if b"hello from web" not in reply:
        sys.exit(f"no page through the forward (error {error!r}): {reply!r}")
print("forwarded")
