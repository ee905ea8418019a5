"""The official Python client as an in-cluster program: the token and CA
read out of a pod's /var/run/secrets/kubernetes.io/serviceaccount, loaded by
load_incluster_config's loader. Prints who it is and the pods it can list,
or the HTTP status it was refused with."""
import os

from kubernetes import client, config
from kubernetes.client.rest import ApiException

host, port = os.environ["SERVER"].removeprefix("https://").rsplit(":", 1)
config.incluster_config.InClusterConfigLoader(
    token_filename=os.environ["TOKEN_FILE"],
    cert_filename=os.environ["CA_FILE"],
    environ={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port},
).load_and_set()
try:
    review = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview())
    pods = client.CoreV1Api().list_namespaced_pod("default")
    print(review.status.user_info.username, " ".join(sorted(p.metadata.name for p in pods.items)))
except ApiException as error:
    print("refused", error.status)
