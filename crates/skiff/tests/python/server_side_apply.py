"""The official Python client applies server-side as its own manager and reads the ownership back; a conflicting apply gets upstream's 409."""
import json
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException

config.load_kube_config()
v1 = client.CoreV1Api()
body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"x": "python"}}
v1.patch_namespaced_config_map("owned", "default", body, field_manager="py-apply",
                               _content_type="application/apply-patch+yaml")
cm = v1.read_namespaced_config_map("owned", "default")
entry = next(e for e in cm.metadata.managed_fields if e.manager == "py-apply")
body["data"]["x"] = "kubectl wants this"
try:
    v1.patch_namespaced_config_map("owned", "default", body, field_manager="second",
                                   _content_type="application/apply-patch+yaml")
    sys.exit("the conflicting apply was accepted")
except ApiException as error:
    status = json.loads(error.body)
    print(entry.operation, json.dumps(entry.fields_v1, sort_keys=True), error.status, status["details"]["causes"][0]["field"])
