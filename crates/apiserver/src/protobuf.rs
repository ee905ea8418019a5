//! Decoding the Kubernetes protobuf encoding for the request bodies that
//! kubectl sends that way: its typed-client generators (`kubectl create
//! namespace|configmap|secret|service|serviceaccount`) post
//! `application/vnd.kubernetes.protobuf`. The envelope is the magic
//! `k8s\0` plus a `runtime.Unknown`; field numbers follow
//! k8s.io/api/core/v1/generated.proto. Answers are always JSON.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Map, Value};

const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtobufError {
    #[error("protobuf body does not start with the k8s magic number")]
    NoMagic,
    #[error("protobuf body is truncated or malformed")]
    Malformed,
    #[error("protobuf decoding of {0} is not supported; send application/json")]
    Unsupported(String),
}

type Result<T> = std::result::Result<T, ProtobufError>;

/// One field: number and payload.
enum Field<'a> {
    Varint(u32, u64),
    Bytes(u32, &'a [u8]),
}

fn varint(data: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*pos).ok_or(ProtobufError::Malformed)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ProtobufError::Malformed)
}

fn fields(data: &[u8]) -> Result<Vec<Field<'_>>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < data.len() {
        let key = varint(data, &mut pos)?;
        let number = u32::try_from(key >> 3).map_err(|_| ProtobufError::Malformed)?;
        match key & 7 {
            0 => out.push(Field::Varint(number, varint(data, &mut pos)?)),
            2 => {
                let len = usize::try_from(varint(data, &mut pos)?)
                    .map_err(|_| ProtobufError::Malformed)?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= data.len())
                    .ok_or(ProtobufError::Malformed)?;
                out.push(Field::Bytes(number, &data[pos..end]));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return Err(ProtobufError::Malformed),
        }
    }
    if pos > data.len() {
        return Err(ProtobufError::Malformed);
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::Malformed)
}

/// A map entry message: key = 1, value = 2.
fn map_entry(bytes: &[u8]) -> Result<(String, &[u8])> {
    let mut key = String::new();
    let mut value: &[u8] = &[];
    for field in fields(bytes)? {
        match field {
            Field::Bytes(1, k) => key = text(k)?,
            Field::Bytes(2, v) => value = v,
            _ => {}
        }
    }
    Ok((key, value))
}

fn object_meta(bytes: &[u8]) -> Result<Value> {
    let mut meta = Map::new();
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    let mut finalizers = Vec::new();
    for field in fields(bytes)? {
        match field {
            Field::Bytes(1, v) => {
                meta.insert("name".into(), json!(text(v)?));
            }
            Field::Bytes(2, v) => {
                meta.insert("generateName".into(), json!(text(v)?));
            }
            Field::Bytes(3, v) => {
                meta.insert("namespace".into(), json!(text(v)?));
            }
            Field::Bytes(6, v) => {
                meta.insert("resourceVersion".into(), json!(text(v)?));
            }
            Field::Bytes(11, v) => {
                let (k, val) = map_entry(v)?;
                labels.insert(k, text(val)?);
            }
            Field::Bytes(12, v) => {
                let (k, val) = map_entry(v)?;
                annotations.insert(k, text(val)?);
            }
            Field::Bytes(14, v) => finalizers.push(text(v)?),
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), json!(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), json!(annotations));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), json!(finalizers));
    }
    Ok(Value::Object(meta))
}

fn strings(values: &[&[u8]]) -> Result<Vec<String>> {
    values.iter().map(|v| text(v)).collect()
}

/// `intstr.IntOrString`: type = 1 (0 int, 1 string), intVal = 2, strVal = 3.
fn int_or_string(bytes: &[u8]) -> Result<Value> {
    let (mut is_string, mut number, mut string) = (false, 0u64, String::new());
    for field in fields(bytes)? {
        match field {
            Field::Varint(1, v) => is_string = v == 1,
            Field::Varint(2, v) => number = v,
            Field::Bytes(3, v) => string = text(v)?,
            _ => {}
        }
    }
    Ok(if is_string {
        json!(string)
    } else {
        json!(int32(number))
    })
}

/// A protobuf int32 (negative values come sign-extended to 64 bits).
fn int32(value: u64) -> i64 {
    i64::from(value as u32 as i32)
}

/// `ServicePort`: name 1, protocol 2, port 3, targetPort 4, nodePort 5,
/// appProtocol 6. Go writes zero values too; JSON omits them, so do we.
fn service_port(bytes: &[u8]) -> Result<Value> {
    let mut port = Map::new();
    for field in fields(bytes)? {
        match field {
            Field::Bytes(1, v) if !v.is_empty() => {
                port.insert("name".into(), json!(text(v)?));
            }
            Field::Bytes(2, v) if !v.is_empty() => {
                port.insert("protocol".into(), json!(text(v)?));
            }
            Field::Varint(3, v) if v != 0 => {
                port.insert("port".into(), json!(int32(v)));
            }
            Field::Bytes(4, v) => {
                port.insert("targetPort".into(), int_or_string(v)?);
            }
            Field::Varint(5, v) if v != 0 => {
                port.insert("nodePort".into(), json!(int32(v)));
            }
            Field::Bytes(6, v) if !v.is_empty() => {
                port.insert("appProtocol".into(), json!(text(v)?));
            }
            _ => {}
        }
    }
    Ok(Value::Object(port))
}

/// `ServiceSpec`, the fields `kubectl create service` sets and those a
/// client may: ports 1, selector 2, clusterIP 3, type 4, externalIPs 5,
/// sessionAffinity 7, externalName 10, externalTrafficPolicy 11,
/// publishNotReadyAddresses 13, clusterIPs 18, ipFamilies 19,
/// ipFamilyPolicy 17, internalTrafficPolicy 22.
fn service_spec(bytes: &[u8]) -> Result<Value> {
    let mut spec = Map::new();
    let mut ports = Vec::new();
    let mut selector = BTreeMap::new();
    let mut lists: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for field in fields(bytes)? {
        let string_field = |n: u32| match n {
            3 => Some("clusterIP"),
            4 => Some("type"),
            7 => Some("sessionAffinity"),
            10 => Some("externalName"),
            11 => Some("externalTrafficPolicy"),
            17 => Some("ipFamilyPolicy"),
            22 => Some("internalTrafficPolicy"),
            _ => None,
        };
        let list_field = |n: u32| match n {
            5 => Some("externalIPs"),
            18 => Some("clusterIPs"),
            19 => Some("ipFamilies"),
            _ => None,
        };
        match field {
            Field::Bytes(1, v) => ports.push(service_port(v)?),
            Field::Bytes(2, v) => {
                let (k, val) = map_entry(v)?;
                selector.insert(k, text(val)?);
            }
            Field::Bytes(n, v) if string_field(n).is_some() && !v.is_empty() => {
                spec.insert(string_field(n).unwrap_or_default().into(), json!(text(v)?));
            }
            Field::Bytes(n, v) if list_field(n).is_some() => {
                lists.entry(list_field(n).unwrap_or_default()).or_default().push(text(v)?);
            }
            Field::Varint(13, v) if v != 0 => {
                spec.insert("publishNotReadyAddresses".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    if !ports.is_empty() {
        spec.insert("ports".into(), Value::Array(ports));
    }
    if !selector.is_empty() {
        spec.insert("selector".into(), json!(selector));
    }
    for (name, list) in lists {
        spec.insert(name.into(), json!(list));
    }
    Ok(Value::Object(spec))
}

fn decode_kind(kind: &str, raw: &[u8]) -> Result<Value> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut object = Map::new();
    let mut string_map: BTreeMap<u32, BTreeMap<String, Value>> = BTreeMap::new();
    let mut repeated: BTreeMap<u32, Vec<&[u8]>> = BTreeMap::new();
    for field in fields(raw)? {
        match (kind, field) {
            (_, Field::Bytes(1, v)) => {
                object.insert("metadata".into(), object_meta(v)?);
            }
            ("ConfigMap", Field::Bytes(n @ (2 | 3), v)) => {
                let (k, val) = map_entry(v)?;
                let value = if n == 2 {
                    json!(text(val)?)
                } else {
                    json!(b64(val))
                };
                string_map.entry(n).or_default().insert(k, value);
            }
            ("ConfigMap", Field::Varint(4, v)) | ("Secret", Field::Varint(5, v)) => {
                object.insert("immutable".into(), json!(v != 0));
            }
            ("Secret", Field::Bytes(2, v)) => {
                let (k, val) = map_entry(v)?;
                string_map.entry(2).or_default().insert(k, json!(b64(val)));
            }
            ("Secret", Field::Bytes(3, v)) => {
                object.insert("type".into(), json!(text(v)?));
            }
            ("Secret", Field::Bytes(4, v)) => {
                let (k, val) = map_entry(v)?;
                string_map
                    .entry(4)
                    .or_default()
                    .insert(k, json!(text(val)?));
            }
            ("Namespace", Field::Bytes(2, v)) => {
                let finalizers: Vec<&[u8]> = fields(v)?
                    .into_iter()
                    .filter_map(|f| {
                        if let Field::Bytes(1, b) = f {
                            Some(b)
                        } else {
                            None
                        }
                    })
                    .collect();
                object.insert("spec".into(), json!({"finalizers": strings(&finalizers)?}));
            }
            ("Service", Field::Bytes(2, v)) => {
                object.insert("spec".into(), service_spec(v)?);
            }
            ("ServiceAccount", Field::Bytes(3, v)) => repeated.entry(3).or_default().push(v),
            ("ServiceAccount", Field::Varint(4, v)) => {
                object.insert("automountServiceAccountToken".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    let names = |kind: &str, n: u32| match (kind, n) {
        ("ConfigMap", 2) | ("Secret", 2) => "data",
        ("ConfigMap", 3) => "binaryData",
        _ => "stringData",
    };
    for (n, map) in string_map {
        object.insert(
            names(kind, n).into(),
            Value::Object(map.into_iter().collect()),
        );
    }
    if let Some(secrets) = repeated.get(&3) {
        let refs: Result<Vec<Value>> = secrets
            .iter()
            .map(|s| {
                let name = fields(s)?.into_iter().find_map(|f| {
                    if let Field::Bytes(1, n) = f {
                        Some(n)
                    } else {
                        None
                    }
                });
                Ok(json!({"name": text(name.unwrap_or_default())?}))
            })
            .collect();
        object.insert("imagePullSecrets".into(), Value::Array(refs?));
    }
    Ok(Value::Object(object))
}

/// Decodes a `application/vnd.kubernetes.protobuf` body into JSON.
pub fn decode(body: &[u8]) -> Result<Value> {
    let payload = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for field in fields(payload)? {
        match field {
            Field::Bytes(1, type_meta) => {
                for f in fields(type_meta)? {
                    match f {
                        Field::Bytes(1, v) => api_version = text(v)?,
                        Field::Bytes(2, v) => kind = text(v)?,
                        _ => {}
                    }
                }
            }
            Field::Bytes(2, bytes) => raw = bytes,
            _ => {}
        }
    }
    if api_version != "v1"
        || !matches!(
            kind.as_str(),
            "Namespace" | "ConfigMap" | "Secret" | "Service" | "ServiceAccount"
        )
    {
        return Err(ProtobufError::Unsupported(format!("{api_version}/{kind}")));
    }
    let mut object = decode_kind(&kind, raw)?;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![
            u8::try_from(number << 3 | 2).unwrap_or(0),
            u8::try_from(payload.len()).unwrap_or(0),
        ];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_namespace_like_kubectl_sends_it() -> Result<()> {
        let type_meta = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let label = [field(1, b"team"), field(2, b"a")].concat();
        let meta = [field(1, b"blue"), field(11, &label)].concat();
        let namespace = [field(1, &meta), field(2, &[]), field(3, &[])].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &namespace)].concat();
        let decoded = decode(&body)?;
        assert_eq!(
            decoded["metadata"],
            json!({"name": "blue", "labels": {"team": "a"}})
        );
        assert_eq!(decoded["kind"], "Namespace");
        Ok(())
    }

    #[test]
    fn decodes_configmap_data_and_refuses_other_kinds() -> Result<()> {
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let cm = [
            field(1, &field(1, b"cm")),
            field(2, &entry),
            field(3, &[field(1, b"b"), field(2, b"\x00\x01")].concat()),
        ]
        .concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &cm)].concat();
        let decoded = decode(&body)?;
        assert_eq!(decoded["data"], json!({"k": "v"}));
        assert_eq!(decoded["binaryData"], json!({"b": "AAE="}));
        let pod_meta = [field(1, b"v1"), field(2, b"Pod")].concat();
        let pod = [MAGIC.to_vec(), field(1, &pod_meta)].concat();
        assert_eq!(
            decode(&pod),
            Err(ProtobufError::Unsupported("v1/Pod".into()))
        );
        assert_eq!(decode(b"{}"), Err(ProtobufError::NoMagic));
        Ok(())
    }

    fn varint_field(number: u32, value: u64) -> Vec<u8> {
        let mut out = vec![u8::try_from(number << 3).unwrap_or(0)];
        let mut v = value;
        loop {
            let byte = u8::try_from(v & 0x7f).unwrap_or(0);
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    #[test]
    fn decodes_a_service_like_kubectl_create_service_sends_it() -> Result<()> {
        let target = [varint_field(1, 0), varint_field(2, 8080)].concat();
        let port = [field(1, b"5678-8080"), field(2, b"TCP"), varint_field(3, 5678), field(4, &target)].concat();
        let named_target = [varint_field(1, 1), field(3, b"http")].concat();
        let second = [field(2, b"UDP"), varint_field(3, 53), field(4, &named_target)].concat();
        let selector = [field(1, b"app"), field(2, b"web")].concat();
        let spec = [field(1, &port), field(1, &second), field(2, &selector), field(4, b"ClusterIP"), field(3, b"None")].concat();
        let service = [field(1, &field(1, b"web")), field(2, &spec), field(3, &[])].concat();
        let type_meta = [field(1, b"v1"), field(2, b"Service")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &service)].concat();
        let decoded = decode(&body)?;
        assert_eq!(
            decoded,
            json!({"metadata": {"name": "web"}, "spec": {
                "ports": [{"name": "5678-8080", "protocol": "TCP", "port": 5678, "targetPort": 8080},
                          {"protocol": "UDP", "port": 53, "targetPort": "http"}],
                "selector": {"app": "web"}, "type": "ClusterIP", "clusterIP": "None"},
                "apiVersion": "v1", "kind": "Service"})
        );
        Ok(())
    }
}
