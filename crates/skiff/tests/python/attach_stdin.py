"""The official Python client's attach: str input reaches a container started with stdin, twice (stdinOnce is off)."""
import sys
import time

from kubernetes import client, config
from kubernetes.stream import stream

config.load_kube_config()
v1 = client.CoreV1Api()
for attempt in ("one", "two"):
    resp = stream(v1.connect_get_namespaced_pod_attach, "echoer", "default", container="echoer",
                  stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
    resp.write_stdin(f"hello {attempt}\n")
    output = ""
    deadline = time.monotonic() + 20
    while resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=5)
        output += resp.read_stdout()
        if f"got:hello {attempt}\n" in output:
            break
    resp.close()
    if f"got:hello {attempt}" not in output:
        sys.exit(f"attach {attempt}: stdin did not arrive: {output!r}")
print("attached twice")
