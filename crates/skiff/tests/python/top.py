"""The official Python client reads metrics.k8s.io like any custom API: the busy pod's containers have CPU and memory."""
import sys

from kubernetes import client, config

config.load_kube_config()
api = client.CustomObjectsApi()
pods = api.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods")
burner = [p for p in pods["items"] if p["metadata"]["name"] == "burner"]
if not burner:
    sys.exit(f"no metrics for burner: {pods}")
usage = {c["name"]: c["usage"] for c in burner[0]["containers"]}
if not usage["burn"]["cpu"].endswith("n") or not usage["burn"]["memory"].endswith("Ki"):
    sys.exit(f"unexpected usage: {usage}")
node = api.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", "skiff-e2e")
print(f"{sorted(usage)} {node['kind']}")
