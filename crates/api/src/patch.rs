//! Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! Kubernetes strategic merge patch, whose list merge keys and strategies come
//! from the vendored OpenAPI (`x-kubernetes-patch-merge-key`/`-strategy`).
//!
//! Strategic merge directives handled: `$patch: replace|merge|delete` on maps
//! and list items, `$retainKeys`, `$setElementOrder/<list>`,
//! `$deleteFromPrimitiveList/<list>`, and `null` to remove a key.

use serde_json::{Map, Value};

use crate::schema;

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    #[error("{0}")]
    Invalid(String),
    /// The patch would grow the object past a bound (upstream answers 413).
    #[error("{0}")]
    TooLarge(String),
}

/// Upstream's `maxJSONPatchOperations`.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;
/// Upstream's `JSONPatchMaxCopyBytes` (the CVE-2019-1002100 bound): the
/// total size that `copy` operations of one patch may add.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;
/// How deep a patched document may nest (the JSON decoder's own limit), so
/// that repeated `add`s cannot build a value too deep to encode.
pub const MAX_DEPTH: usize = 128;

/// RFC 7386 merge patch.
pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// RFC 6902 JSON patch, with upstream's bounds on the number of operations
/// and on the bytes that `copy` operations add.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Invalid(format!("invalid JSON patch: {e}")))?;
    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            ops.0.len()
        )));
    }
    let mut doc = original.clone();
    let mut copied = 0usize;
    for op in &ops.0 {
        if let json_patch::PatchOperation::Copy(copy) = op {
            if let Some(value) = doc.pointer(copy.from.as_str()) {
                copied = copied.saturating_add(encoded_len(value));
                if copied > MAX_JSON_PATCH_COPY_BYTES {
                    return Err(PatchError::TooLarge(format!(
                        "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}"
                    )));
                }
            }
        }
        // `doc` is our own copy: a failed patch is thrown away, no undo needed.
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op))
            .map_err(|e| PatchError::Invalid(e.to_string()))?;
    }
    if depth(&doc) > MAX_DEPTH {
        return Err(PatchError::Invalid(format!(
            "the patched object nests deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(doc)
}

/// The length of `value` encoded as JSON, without building the text.
fn encoded_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        // Encoding a Value to a counter cannot fail; count it as too big if it does.
        Err(_) => usize::MAX,
    }
}

/// How deeply `value` nests (a scalar is 0), computed without recursion.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, level)) = stack.pop() {
        deepest = deepest.max(level);
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, level + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, level + 1))),
            _ => {}
        }
    }
    deepest
}

/// Strategic merge patch of `original` with `patch`, for an object whose
/// schema is `schema` (`None` merges maps and replaces lists).
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: Option<&'static Value>,
) -> Result<Value, PatchError> {
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) => Ok(merge_map(o, p, schema)?
            .map(Value::Object)
            .unwrap_or(Value::Null)),
        (_, Value::Object(p)) => Ok(merge_map(&Map::new(), p, schema)?
            .map(Value::Object)
            .unwrap_or(Value::Null)),
        _ => Err(PatchError::Invalid(
            "strategic merge patch must be a JSON object".to_string(),
        )),
    }
}

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|item| item.get(PATCH).and_then(Value::as_str) != Some("delete"))
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Merges one map; `None` means the map itself is deleted.
fn merge_map(
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Option<&'static Value>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get(PATCH).and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            return match strip_directives(&Value::Object(patch.clone())) {
                Value::Object(m) => Ok(Some(m)),
                _ => Ok(Some(Map::new())),
            }
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError::Invalid(format!(
                "unknown patch type: {other:?} in map"
            )))
        }
    }
    let mut result = original.clone();
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        let (child_schema, prop) = match schema.and_then(|s| schema::property(s, key)) {
            Some((child, prop)) => (Some(child), Some(prop)),
            None => (schema.and_then(open_map_values), None),
        };
        if value.is_null() {
            result.remove(key);
            continue;
        }
        let merged = match (result.get(key), value) {
            (Some(Value::Object(o)), Value::Object(p)) => match merge_map(o, p, child_schema)? {
                Some(m) => Value::Object(m),
                None => {
                    result.remove(key);
                    continue;
                }
            },
            (current, Value::Array(items)) => {
                let current = match current {
                    Some(Value::Array(c)) => c.as_slice(),
                    _ => &[],
                };
                Value::Array(merge_list(current, items, prop, child_schema)?)
            }
            (_, Value::Object(p)) if p.get(PATCH).and_then(Value::as_str) == Some("delete") => {
                result.remove(key);
                continue;
            }
            (_, other) => strip_directives(other),
        };
        result.insert(key.clone(), merged);
    }
    for (key, value) in patch {
        if let Some(list) = key.strip_prefix(DELETE_PRIMITIVE) {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = result.get_mut(list) {
                items.retain(|item| !remove.contains(item));
            }
        }
    }
    for (key, order) in patch {
        if let Some(list) = key.strip_prefix(SET_ORDER) {
            let merge_key = schema
                .and_then(|s| schema::property(s, list))
                .and_then(|(_, prop)| prop["x-kubernetes-patch-merge-key"].as_str());
            if let (Some(Value::Array(items)), Some(order)) =
                (result.get_mut(list), order.as_array())
            {
                reorder(items, order, merge_key);
            }
        }
    }
    if let Some(Value::Array(retain)) = patch.get(RETAIN_KEYS) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        result.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(Some(result))
}

/// For maps of typed values (`additionalProperties`), the value schema.
fn open_map_values(schema: &'static Value) -> Option<&'static Value> {
    schema
        .get("additionalProperties")
        .filter(|v| v.is_object())
        .map(schema::resolve)
}

fn merge_list(
    original: &[Value],
    patch: &[Value],
    prop: Option<&'static Value>,
    list_schema: Option<&'static Value>,
) -> Result<Vec<Value>, PatchError> {
    let strategy = prop
        .and_then(|p| p["x-kubernetes-patch-strategy"].as_str())
        .unwrap_or("");
    let merge_key = prop.and_then(|p| p["x-kubernetes-patch-merge-key"].as_str());
    if patch
        .iter()
        .any(|item| item.get(PATCH).and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|item| item.get(PATCH).is_none())
            .map(strip_directives)
            .collect());
    }
    if !strategy.split(',').any(|s| s == "merge") {
        return Ok(patch.iter().map(strip_directives).collect());
    }
    let item_schema = list_schema
        .and_then(|s| s.get("items"))
        .map(schema::resolve);
    let Some(key) = merge_key else {
        // A merged list of primitives: union, keeping the original order.
        let mut result = original.to_vec();
        for item in patch {
            if !result.contains(item) {
                result.push(item.clone());
            }
        }
        return Ok(result);
    };
    let mut result = original.to_vec();
    for item in patch {
        let Some(wanted) = item.get(key) else {
            return Err(PatchError::Invalid(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        };
        let position = result
            .iter()
            .position(|existing| existing.get(key) == Some(wanted));
        let delete = item.get(PATCH).and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                result.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                let merged = match (&result[i], item) {
                    (Value::Object(o), Value::Object(p)) => {
                        merge_map(o, p, item_schema)?.map(Value::Object)
                    }
                    (_, other) => Some(strip_directives(other)),
                };
                match merged {
                    Some(value) => result[i] = value,
                    None => {
                        result.remove(i);
                    }
                }
            }
            (None, false) => result.push(strip_directives(item)),
        }
    }
    Ok(result)
}

/// Sorts `items` so that those named in `order` come first, in that order.
fn reorder(items: &mut [Value], order: &[Value], merge_key: Option<&str>) {
    let identity = |item: &Value| match merge_key {
        Some(key) => item.get(key).cloned(),
        None => Some(item.clone()),
    };
    let rank = |item: &Value| {
        identity(item)
            .and_then(|id| order.iter().position(|o| identity(o).as_ref() == Some(&id)))
            .unwrap_or(usize::MAX)
    };
    items.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod_schema() -> Option<&'static Value> {
        schema::for_kind("", "v1", "Pod")
    }

    #[test]
    fn containers_merge_by_name_and_lists_without_strategy_are_replaced() -> Result<(), PatchError>
    {
        let original = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "command": ["x", "y"], "env": [{"name": "A", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ], "tolerations": [{"key": "k"}]}});
        let patch = json!({"spec": {"containers": [
            {"name": "a", "image": "a:2", "command": ["z"], "env": [{"name": "B", "value": "2"}]}
        ], "tolerations": [{"key": "j"}]}});
        let out = strategic_merge_patch(&original, &patch, pod_schema())?;
        assert_eq!(out["spec"]["containers"][0]["image"], "a:2");
        assert_eq!(out["spec"]["containers"][0]["command"], json!(["z"]));
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(out["spec"]["containers"][1]["image"], "b:1");
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "j"}]));
        Ok(())
    }

    #[test]
    fn directives_delete_reorder_and_retain() -> Result<(), PatchError> {
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y", "z"]},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({
            "metadata": {"labels": {"a": null}, "$deleteFromPrimitiveList/finalizers": ["y"]},
            "spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                "containers": [{"name": "b", "$patch": "delete"}]
            }
        });
        let out = strategic_merge_patch(&original, &patch, pod_schema())?;
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "z"]));
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "c"}, {"name": "a"}])
        );

        let retain =
            json!({"spec": {"containers": [{"name": "a", "image": "i"}]}, "$retainKeys": ["spec"]});
        let out = strategic_merge_patch(
            &json!({"spec": {}, "status": {"phase": "x"}}),
            &retain,
            pod_schema(),
        )?;
        assert!(out.get("status").is_none());

        let replace = json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}});
        let out = strategic_merge_patch(&original, &replace, pod_schema())?;
        assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
        Ok(())
    }

    #[test]
    fn merge_and_json_patches() -> Result<(), PatchError> {
        let original = json!({"metadata": {"annotations": {"a": "1"}}});
        let merged = merge_patch(
            &original,
            &json!({"metadata": {"annotations": {"b": "2", "a": null}}}),
        );
        assert_eq!(merged["metadata"]["annotations"], json!({"b": "2"}));
        let patched = json_patch(
            &original,
            &json!([{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}]),
        )?;
        assert_eq!(patched["metadata"]["labels"]["x"], "y");
        assert!(json_patch(&original, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        Ok(())
    }

    #[test]
    fn copies_that_amplify_are_refused() {
        // CVE-2019-1002100's shape: each copy doubles the annotations.
        let original = json!({"metadata": {"annotations": {"a": "x".repeat(1000)}}});
        let ops: Vec<Value> = (0..30)
            .map(|i| json!({"op": "copy", "from": "/metadata/annotations", "path": format!("/metadata/annotations/k{i}")}))
            .collect();
        match json_patch(&original, &Value::Array(ops)) {
            Err(PatchError::TooLarge(message)) => {
                assert!(message.contains("exceeding the limit 3145728"), "{message}")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let many = vec![json!({"op": "test", "path": "/metadata", "value": null}); 10_001];
        assert!(matches!(
            json_patch(&original, &Value::Array(many)),
            Err(PatchError::TooLarge(_))
        ));
    }

    #[test]
    fn patches_cannot_nest_past_the_depth_limit() {
        let mut deep = json!("leaf");
        for _ in 0..100 {
            deep = json!({ "x": deep });
        }
        let ops = json!([
            {"op": "add", "path": "/a", "value": deep},
            {"op": "copy", "from": "/a", "path": "/a/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x/x"}
        ]);
        assert!(matches!(
            json_patch(&json!({}), &ops),
            Err(PatchError::Invalid(_))
        ));
        assert_eq!(depth(&json!({"a": [1, {"b": 2}]})), 3);
    }
}
