"""The official Python client's exec: str input (sent as WebSocket text frames) reaches the process."""
import sys
import time

from kubernetes import client, config
from kubernetes.stream import stream

config.load_kube_config()
v1 = client.CoreV1Api()
resp = stream(v1.connect_get_namespaced_pod_exec, "web", "default", container="web",
              command=["sh", "-c", "read line; echo got:$line"],
              stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
resp.write_stdin("hello from python\n")
output = ""
deadline = time.monotonic() + 20
while resp.is_open() and time.monotonic() < deadline:
    resp.update(timeout=5)
    output += resp.read_stdout()
    if "got:" in output and output.endswith("\n"):
        break
resp.close()
if "got:hello from python" not in output:
    sys.exit(f"stdin did not arrive: {output!r}")
print(output.strip())
