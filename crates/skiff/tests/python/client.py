"""The official Kubernetes Python client against Skiff: list, create, patch, watch, delete."""
import json
import sys
import threading

from kubernetes import client, config, dynamic, watch

config.load_kube_config()
v1 = client.CoreV1Api()

names = [ns.metadata.name for ns in v1.list_namespace().items]
assert "default" in names and "kube-system" in names, names

pods = v1.list_namespaced_pod("default")
start = pods.metadata.resource_version
events = []
done = threading.Event()


def follow():
    w = watch.Watch()
    for event in w.stream(v1.list_namespaced_pod, "default", resource_version=start, timeout_seconds=20):
        events.append((event["type"], event["object"].metadata.name, event["object"].metadata.labels))
        if event["type"] == "DELETED":
            w.stop()
    done.set()


thread = threading.Thread(target=follow)
thread.start()

body = client.V1Pod(
    metadata=client.V1ObjectMeta(name="py-pod", labels={"app": "py"}),
    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]),
)
created = v1.create_namespaced_pod("default", body)
assert created.spec.restart_policy == "Always"
assert created.status.phase == "Pending"

patched = v1.patch_namespaced_pod("py-pod", "default", {"metadata": {"labels": {"patched": "yes"}}})
assert patched.metadata.labels == {"app": "py", "patched": "yes"}, patched.metadata.labels

listed = v1.list_namespaced_pod("default", label_selector="patched=yes")
assert [p.metadata.name for p in listed.items] == ["py-pod"]

try:
    v1.read_namespaced_pod("nope", "default")
    sys.exit("expected a 404")
except client.exceptions.ApiException as error:
    assert error.status == 404, error.status

# A misspelt field under Strict validation: upstream's message, then the field meant.
typo = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "typo"},
        "spec": {"initContainters": [], "containers": [{"name": "c", "image": "busybox:1.36"}]}}
# The typed API refuses the typo itself (pydantic); the dynamic client sends it as written.
try:
    v1.create_namespaced_pod("default", typo, field_validation="Strict")
    sys.exit("the typed client sent a field its model lacks")
except ValueError:
    pass
raw = dynamic.DynamicClient(client.ApiClient())
try:
    raw.request("post", "/api/v1/namespaces/default/pods?fieldValidation=Strict", body=typo)
    sys.exit("expected a 400")
except client.exceptions.ApiException as error:
    assert error.status == 400, error.status
    message = json.loads(error.body)["message"]
    expected = ('Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
                'unknown field "spec.initContainters"; did you mean "spec.initContainers"?')
    assert message == expected, message
    print("strict error with hint")

v1.delete_namespaced_pod("py-pod", "default")
done.wait(20)
thread.join(5)
for kind, name, _ in events:
    print(f"watched {kind} {name}")
