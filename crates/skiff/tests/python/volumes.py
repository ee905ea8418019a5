"""The official Kubernetes Python client feeding a pod from a ConfigMap and a Secret on Skiff."""
import base64
import os
import sys
import time

from kubernetes import client, config

config.load_kube_config()
v1 = client.CoreV1Api()
image = os.environ["TEST_IMAGE"]

v1.create_namespaced_config_map("default", client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="py-settings"), data={"color": "blue"}))
v1.create_namespaced_secret("default", client.V1Secret(
    metadata=client.V1ObjectMeta(name="py-creds"),
    data={"password": base64.b64encode(b"hunter2").decode()}))

script = "echo password=$PASSWORD; while true; do echo color=$(cat /cfg/color); sleep 0.2; done"
pod = client.V1Pod(
    metadata=client.V1ObjectMeta(name="py-reader"),
    spec=client.V1PodSpec(
        volumes=[client.V1Volume(name="cfg", config_map=client.V1ConfigMapVolumeSource(name="py-settings"))],
        containers=[client.V1Container(
            name="c", image=image, command=["sh", "-c", script],
            env=[client.V1EnvVar(name="PASSWORD", value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name="py-creds", key="password")))],
            volume_mounts=[client.V1VolumeMount(name="cfg", mount_path="/cfg")])]))
v1.create_namespaced_pod("default", pod)


def wait(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


wait("Running", lambda: v1.read_namespaced_pod("py-reader", "default").status.phase == "Running")
logs = lambda: v1.read_namespaced_pod_log("py-reader", "default")
wait("the first log lines", lambda: "color=blue" in logs())
assert "password=hunter2" in logs(), logs()

v1.patch_namespaced_config_map("py-settings", "default", {"data": {"color": "red"}})
wait("the update in the pod", lambda: "color=red" in logs(), timeout=20)
print("updated")
