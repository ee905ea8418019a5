"""The official Python client adds an ephemeral container through pods/ephemeralcontainers, waits for it to end, and reads its log."""
import os
import sys
import time

from kubernetes import client, config

config.load_kube_config()
v1 = client.CoreV1Api()
pod = v1.read_namespaced_pod_ephemeralcontainers("app", "default")
assert pod.spec.ephemeral_containers, "kubectl debug's container is listed"
# A strategic merge patch adds by name, as kubectl debug does.
body = {"spec": {"ephemeralContainers": [
    {"name": "pydebug", "image": os.environ["IMAGE"], "command": ["sh", "-c", "echo from python debug"], "targetContainerName": "app"}]}}
v1.patch_namespaced_pod_ephemeralcontainers("app", "default", body, _content_type="application/strategic-merge-patch+json")
deadline = time.monotonic() + 30
state = None
while time.monotonic() < deadline:
    statuses = v1.read_namespaced_pod("app", "default").status.ephemeral_container_statuses or []
    state = next((s.state for s in statuses if s.name == "pydebug"), None)
    if state is not None and state.terminated is not None:
        break
    time.sleep(0.2)
if state is None or state.terminated is None or state.terminated.exit_code != 0:
    sys.exit(f"pydebug did not end well: {state}")
print(v1.read_namespaced_pod_log("app", "default", container="pydebug").strip())
