#!/usr/bin/env python3
"""Generate the OpenAPI v3 documents Skiff serves at /openapi/v3/<group-version>.

Source: upstream's Kubernetes 1.32 JSON schemas as shipped in the PyPI wheel
`kubernetes-validate` (Apache-2.0). The output is vendored under crates/api/openapi/
and compiled into the binary, so this runs only when the served API changes:

    pip download --no-deps -d /tmp/kv kubernetes-validate
    python3 tools/gen_openapi.py /tmp/kv/kubernetes_validate-*.whl

What it does, to look like a real 1.32 apiserver to kubectl:
  * drops "null" from JSON-schema type lists, turns IntOrString into format int-or-string
    and Quantity into a plain string;
  * rewrites $ref to #/components/schemas/..., wrapping a $ref that has siblings in allOf;
  * keeps only the schemas reachable from the group-version's kinds;
  * adds paths whose PATCH operations carry x-kubernetes-group-version-kind (an object) and
    the fieldValidation parameter, which kubectl looks for before it sends fieldValidation=Strict.
"""
import json
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "crates" / "api" / "openapi"
DEFS = "kubernetes_validate/kubernetes-json-schema/v1.32.0-local/_definitions.json"

# (url prefix, group, version, [(plural, kind, namespaced, subresources)])
GROUP_VERSIONS = [
    ("api/v1", "", "v1", [
        ("pods", "Pod", True, ["status"]),
        ("namespaces", "Namespace", False, ["status"]),
        ("nodes", "Node", False, ["status"]),
        ("events", "Event", True, []),
        ("services", "Service", True, ["status"]),
        ("endpoints", "Endpoints", True, []),
        ("configmaps", "ConfigMap", True, []),
        ("secrets", "Secret", True, []),
        ("serviceaccounts", "ServiceAccount", True, []),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True, []),
        ("persistentvolumes", "PersistentVolume", False, []),
        ("replicationcontrollers", "ReplicationController", True, []),
    ]),
    ("apis/apps/v1", "apps", "v1", [
        ("daemonsets", "DaemonSet", True, []),
        ("deployments", "Deployment", True, []),
        ("replicasets", "ReplicaSet", True, []),
        ("statefulsets", "StatefulSet", True, []),
    ]),
    ("apis/batch/v1", "batch", "v1", [
        ("cronjobs", "CronJob", True, []),
        ("jobs", "Job", True, []),
    ]),
    ("apis/discovery.k8s.io/v1", "discovery.k8s.io", "v1", [
        ("endpointslices", "EndpointSlice", True, []),
    ]),
    ("apis/networking.k8s.io/v1", "networking.k8s.io", "v1", [
        ("ingresses", "Ingress", True, []),
    ]),
    ("apis/coordination.k8s.io/v1", "coordination.k8s.io", "v1", [
        ("leases", "Lease", True, []),
    ]),
    ("apis/events.k8s.io/v1", "events.k8s.io", "v1", [
        ("events", "Event", True, []),
    ]),
    ("apis/rbac.authorization.k8s.io/v1", "rbac.authorization.k8s.io", "v1", [
        ("clusterrolebindings", "ClusterRoleBinding", False, []),
        ("clusterroles", "ClusterRole", False, []),
        ("rolebindings", "RoleBinding", True, []),
        ("roles", "Role", True, []),
    ]),
    # Reviews are only created; their schemas serve kubectl explain and validation.
    ("apis/authorization.k8s.io/v1", "authorization.k8s.io", "v1", [
        ("localsubjectaccessreviews", "LocalSubjectAccessReview", True, []),
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", False, []),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", False, []),
        ("subjectaccessreviews", "SubjectAccessReview", False, []),
    ]),
    ("apis/authentication.k8s.io/v1", "authentication.k8s.io", "v1", [
        ("selfsubjectreviews", "SelfSubjectReview", False, []),
        ("tokenreviews", "TokenReview", False, []),
    ]),
]

# Schemas a group-version needs besides its kinds' (subresource bodies).
EXTRA_ROOTS = {"": ["io.k8s.api.authentication.v1.TokenRequest"]}

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
EXTRA_SCHEMAS = [META + "Status", META + "DeleteOptions", META + "Patch", META + "WatchEvent"]


def schema_name(group, version, kind):
    if group == "":
        return f"io.k8s.api.core.{version}.{kind}"
    return f"io.k8s.api.{group.split('.')[0]}.{version}.{kind}"


def convert(node):
    """Convert one JSON-schema node to OpenAPI v3 the way kube-openapi prints it."""
    if isinstance(node, list):
        return [convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out["type"] = types[0] if len(types) == 1 else types
        elif key == "$ref":
            out["$ref"] = value.replace("#/$defs/", "#/components/schemas/")
        else:
            out[key] = convert(value)
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
        if "description" in out and "default" not in out:
            out["default"] = {}
    return out


def fix_special(name, schema):
    if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
        return {"description": "IntOrString is a type that can hold an int32 or a string.",
                "type": "string", "format": "int-or-string"}
    if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
        return {"description": schema.get("description", "Quantity is a fixed-point representation of a number."),
                "type": "string"}
    props = schema.get("properties", {})
    for key in ("apiVersion", "kind"):
        if key in props:
            props[key].pop("enum", None)
    return schema


def refs_of(node, acc):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            acc.add(ref.rsplit("/", 1)[-1])
        for value in node.values():
            refs_of(value, acc)
    elif isinstance(node, list):
        for value in node:
            refs_of(value, acc)


def closure(defs, roots):
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        acc = set()
        refs_of(defs[name], acc)
        todo.extend(acc - seen)
    return seen


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def query(name, description, typ="string", unique=True):
    return {"name": name, "in": "query", "description": description,
            "schema": {"type": typ, "uniqueItems": unique}}


DRY_RUN = query("dryRun", "When present, indicates that modifications should not be persisted.")
FIELD_MANAGER = query("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes.")
FIELD_VALIDATION = query("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict")
FORCE = query("force", "Force is going to \"force\" Apply requests.", "boolean")
LIST_PARAMS = [query(n, d) for n, d in [
    ("continue", "The continue option should be set when retrieving more results from the server."),
    ("fieldSelector", "A selector to restrict the list of returned objects by their fields."),
    ("labelSelector", "A selector to restrict the list of returned objects by their labels."),
    ("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from."),
    ("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
]] + [query("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
      query("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
      query("watch", "Watch for changes to the described resources.", "boolean"),
      query("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\".", "boolean")]
JSON_TYPES = ["application/json", "application/yaml"]
PATCH_TYPES = ["application/apply-patch+yaml", "application/json-patch+json",
               "application/merge-patch+json", "application/strategic-merge-patch+json"]


def op(op_id, action, gvk, schema, kind_desc, params=(), body=None, body_types=JSON_TYPES, codes=("200",)):
    operation = {
        "tags": [gvk["group"].split(".")[0] + "_" + gvk["version"] if gvk["group"] else "core_v1"],
        "description": kind_desc,
        "operationId": op_id,
        "parameters": list(params),
        "responses": {code: {"description": "OK", "content": {t: {"schema": ref(schema)} for t in JSON_TYPES}}
                      for code in codes},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if body:
        operation["requestBody"] = {"content": {t: {"schema": ref(body)} for t in body_types}, "required": True}
    return operation


def paths_for(prefix, group, version, resources):
    paths = {}
    for plural, kind, namespaced, subresources in resources:
        gvk = {"group": group, "version": version, "kind": kind}
        schema = schema_name(group, version, kind)
        base = f"/{prefix}/namespaces/{{namespace}}/{plural}" if namespaced else f"/{prefix}/{plural}"
        ident = version.capitalize() + (f"{group.split('.')[0].capitalize()}" if group else "Core")
        scope = "Namespaced" if namespaced else ""
        common = [{"name": "pretty", "in": "query", "schema": {"type": "string", "uniqueItems": True}}]
        if namespaced:
            common.append({"name": "namespace", "in": "path", "required": True,
                           "schema": {"type": "string", "uniqueItems": True}})
        paths[base] = {
            "get": op(f"list{ident}{scope}{kind}", "list", gvk, schema + "List", f"list or watch objects of kind {kind}", LIST_PARAMS),
            "post": op(f"create{ident}{scope}{kind}", "post", gvk, schema, f"create a {kind}",
                       [DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION], schema, codes=("200", "201", "202")),
            "delete": op(f"deletecollection{ident}{scope}{kind}", "deletecollection", gvk, META + "Status",
                         f"delete collection of {kind}", LIST_PARAMS, META + "DeleteOptions"),
            "parameters": common,
        }
        named = common + [{"name": "name", "in": "path", "required": True, "description": f"name of the {kind}",
                           "schema": {"type": "string", "uniqueItems": True}}]
        for sub in [""] + subresources:
            path = f"{base}/{{name}}" + (f"/{sub}" if sub else "")
            suffix = sub.capitalize()
            what = f"{sub} of the specified {kind}" if sub else f"the specified {kind}"
            item = {
                "get": op(f"read{ident}{scope}{kind}{suffix}", "get", gvk, schema, f"read {what}"),
                "put": op(f"replace{ident}{scope}{kind}{suffix}", "put", gvk, schema, f"replace {what}",
                          [DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION], schema, codes=("200", "201")),
                "patch": op(f"patch{ident}{scope}{kind}{suffix}", "patch", gvk, schema, f"partially update {what}",
                            [DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE], META + "Patch", PATCH_TYPES,
                            codes=("200", "201")),
                "parameters": named,
            }
            if not sub:
                item["delete"] = op(f"delete{ident}{scope}{kind}", "delete", gvk, schema, f"delete a {kind}",
                                    [DRY_RUN], META + "DeleteOptions", codes=("200", "202"))
            paths[path] = item
    return paths


# --- OpenAPI v2 as gnostic protobuf (openapi.v2.Document), for kubectl <= 1.27 ---
# Older kubectl decides whether the server validates fields (fieldValidation)
# from the PATCH operations in /openapi/v2, which it reads only as protobuf.
# Only paths and their PATCH operations are emitted; schemas stay in v3.

def pb_varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_bytes(number, payload):
    return pb_varint(number << 3 | 2) + pb_varint(len(payload)) + payload


def pb_str(number, text):
    return pb_bytes(number, text.encode())


def pb_bool(number, value):
    return pb_varint(number << 3) + pb_varint(1 if value else 0)


def pb_named_any(name, yaml_text):
    any_msg = pb_str(2, yaml_text)               # Any.yaml
    return pb_str(1, name) + pb_bytes(2, any_msg)  # NamedAny


def pb_query_param(name):
    sub = pb_str(2, "query") + pb_str(4, name) + pb_str(6, "string") + pb_bool(20, True)
    non_body = pb_bytes(3, sub)                  # NonBodyParameter.query_parameter_sub_schema
    parameter = pb_bytes(2, non_body)            # Parameter.non_body_parameter
    return pb_bytes(1, parameter)                # ParametersItem.parameter


def pb_operation(op_id, action, gvk, consumes):
    out = pb_str(5, op_id)
    for media in ["application/json", "application/yaml"]:
        out += pb_str(6, media)
    for media in consumes:
        out += pb_str(7, media)
    for name in ["dryRun", "fieldManager", "fieldValidation", "force"]:
        out += pb_bytes(8, pb_query_param(name))
    out += pb_bytes(13, pb_named_any("x-kubernetes-action", action + "\n"))
    gvk_yaml = 'group: "%s"\nkind: %s\nversion: %s\n' % (gvk["group"], gvk["kind"], gvk["version"])
    out += pb_bytes(13, pb_named_any("x-kubernetes-group-version-kind", gvk_yaml))
    return out


def openapi_v2_protobuf():
    paths = b""
    for prefix, group, version, resources in GROUP_VERSIONS:
        for plural, kind, namespaced, subresources in resources:
            gvk = {"group": group, "version": version, "kind": kind}
            base = f"/{prefix}/namespaces/{{namespace}}/{plural}" if namespaced else f"/{prefix}/{plural}"
            for sub in [""] + subresources:
                path = f"{base}/{{name}}" + (f"/{sub}" if sub else "")
                op_id = f"patch{kind}{sub.capitalize()}"
                item = pb_bytes(8, pb_operation(op_id, "patch", gvk, PATCH_TYPES))  # PathItem.patch
                paths += pb_bytes(2, pb_str(1, path) + pb_bytes(2, item))          # Paths.path
    info = pb_str(1, "Kubernetes") + pb_str(2, "v1.32.0")
    return pb_str(1, "2.0") + pb_bytes(2, info) + pb_bytes(8, paths)


def main():
    with zipfile.ZipFile(sys.argv[1]) as wheel:
        defs = json.loads(wheel.read(DEFS))["$defs"]
    defs[META + "Patch"] = {"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.", "type": "object"}
    OUT.mkdir(parents=True, exist_ok=True)
    for prefix, group, version, resources in GROUP_VERSIONS:
        roots = set(EXTRA_SCHEMAS) | set(EXTRA_ROOTS.get(group, []))
        for _, kind, _, _ in resources:
            roots.add(schema_name(group, version, kind))
            roots.add(schema_name(group, version, kind) + "List")
        names = sorted(closure(defs, roots))
        schemas = {n: convert(fix_special(n, json.loads(json.dumps(defs[n])))) for n in names}
        doc = {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths_for(prefix, group, version, resources),
            "components": {"schemas": schemas,
                           "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}}},
        }
        target = OUT / (prefix.replace("/", "__") + ".json")
        target.write_text(json.dumps(doc, separators=(",", ":"), sort_keys=False))
        print(f"{target.relative_to(OUT.parent.parent.parent)}: {len(schemas)} schemas, {target.stat().st_size} bytes")
    v2 = OUT / "v2.pb"
    v2.write_bytes(openapi_v2_protobuf())
    print(f"{v2.relative_to(OUT.parent.parent.parent)}: {v2.stat().st_size} bytes")


if __name__ == "__main__":
    main()
