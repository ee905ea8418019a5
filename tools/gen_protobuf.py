#!/usr/bin/env python3
"""Generate the protobuf field table Skiff decodes request bodies with.

Kubernetes' protobuf encoding numbers each field as k8s.io/api's
generated.proto does. Those numbers are taken from the prost bindings of
the `k8s-pb` crate (Apache-2.0, generated from the upstream protos); the
JSON name of each field comes from the vendored OpenAPI documents
(crates/api/openapi), so only the kinds Skiff serves are covered:

    curl -sSfLO https://static.crates.io/crates/k8s-pb/k8s-pb-0.9.0.crate
    tar xzf k8s-pb-0.9.0.crate
    python3 tools/gen_protobuf.py k8s-pb-0.9.0/src

Output: crates/apiserver/src/protobuf_fields.json, a map from message name
to [number, json name, type, repeated] rows; type is a scalar (string,
int32, int64, bool, bytes, double), `message:<name>`, or
`map:<value type>` (keys are strings).
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPENAPI = ROOT / "crates" / "api" / "openapi"
OUT = ROOT / "crates" / "apiserver" / "src" / "protobuf_fields.json"

STRUCT = re.compile(r"^pub struct (\w+) \{\n(.*?)^\}", re.M | re.S)
FIELD = re.compile(r"#\[prost\(([^\]]*)\)\]\s*pub (?:r#)?(\w+):\s*(.+?),\n(?=\s*(?:///|#\[|pub |$))", re.S)
TYPE_PATH = re.compile(r"((?:super::)*(?:[a-z_0-9]+::)*[A-Z]\w*)")
NOT_MESSAGES = {"String", "Vec", "Option", "BTreeMap"}


def schemas():
    names = {}
    for path in OPENAPI.glob("*.json"):
        doc = json.loads(path.read_text())
        for name, schema in doc["components"]["schemas"].items():
            names[name] = schema
    return names


def resolve(module, type_text):
    candidates = [t for t in TYPE_PATH.findall(type_text) if t.split("::")[-1] not in NOT_MESSAGES and not t.startswith("::")]
    if not candidates:
        return None
    path = candidates[-1].split("::")
    here = list(module)
    while path and path[0] == "super":
        path.pop(0)
        here.pop()
    return "io.k8s." + ".".join(here + path)


def kind_of(attr, module, type_text):
    kind = attr.split(",")[0].strip()
    if kind.startswith("btree_map"):
        value = re.search(r'btree_map = "string, (\w+)"', attr).group(1)
        if value == "message":
            value = "message:" + resolve(module, type_text)
        return "map:" + value
    if kind == "message":
        return "message:" + resolve(module, type_text)
    if kind.startswith("bytes"):
        return "bytes"
    return kind


def main():
    src = Path(sys.argv[1])
    known = schemas()
    # Every struct's fields: (tag, rust name, type, repeated).
    structs = {}
    for file in sorted(src.rglob("mod.rs")):
        module = list(file.relative_to(src).parent.parts)
        text = file.read_text()
        for struct in STRUCT.finditer(text):
            name = "io.k8s." + ".".join(module + [struct.group(1)])
            fields = []
            for attr, field, type_text in FIELD.findall(struct.group(2)):
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                fields.append((tag, field, kind_of(attr, module, type_text), "repeated" in attr))
            structs[name] = fields
    table = {}

    def emit(name, properties):
        """Rows of `name`, named by `properties` (its own, or the JSON
        object it is inlined into); an unnamed message field is an embedded
        Go struct, inlined in JSON: its row has an empty name."""
        by_normal = {p.replace("_", "").lower(): p for p in properties}
        rows = []
        for tag, field, kind, repeated in structs.get(name, []):
            json_name = by_normal.get(field.replace("_", "").lower())
            inner = kind.split(":", 1)[1] if kind.startswith("message:") else ""
            embedded = inner.rsplit(".", 1)[-1].lower() == field.replace("_", "").lower()
            if json_name is None and embedded and not repeated:
                if inner not in known:
                    emit(inner, properties)
                rows.append([tag, "", kind, False])
                continue
            if json_name is None:
                print(f"skipped {name}.{field}: no such OpenAPI property", file=sys.stderr)
                continue
            rows.append([tag, json_name, kind, repeated])
        table[name] = sorted(rows)

    for name in structs:
        if name in known:
            emit(name, known[name].get("properties", {}))
    OUT.write_text(json.dumps(table, separators=(",", ":"), sort_keys=True))
    print(f"{OUT.relative_to(ROOT)}: {len(table)} messages, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
