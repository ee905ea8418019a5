//! Decoding request bodies the way the apiserver does for
//! `fieldValidation=Strict|Warn`: unknown fields (checked against the
//! OpenAPI schema) and duplicate fields (checked while parsing).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::{hint, schema};

/// Parses JSON, recording `duplicate field "path"` for repeated keys.
pub fn parse_json_checking_duplicates(
    body: &[u8],
) -> Result<(Value, Vec<String>), serde_json::Error> {
    let mut problems = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Seed {
        path: String::new(),
        problems: &mut problems,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok((value, problems))
}

struct Seed<'a> {
    path: String,
    problems: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            match seq.next_element_seed(Seed {
                path,
                problems: &mut *self.problems,
            })? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if object.contains_key(&key) {
                self.problems.push(format!("duplicate field {path:?}"));
            }
            let value = map.next_value_seed(Seed {
                path,
                problems: &mut *self.problems,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A field the schema lacks, and the schema's field at the same place it
/// most likely meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    pub path: String,
    pub did_you_mean: Option<String>,
}

impl UnknownField {
    /// Upstream's words: `unknown field "spec.initContainters"`.
    pub fn problem(&self) -> String {
        format!("unknown field {:?}", self.path)
    }

    /// `did you mean "spec.initContainers"?`, when there is a close field.
    pub fn hint(&self) -> Option<String> {
        self.did_you_mean
            .as_ref()
            .map(|meant| format!("did you mean {meant:?}?"))
    }
}

/// Every field of `value` the schema lacks, by path.
pub fn unknown_fields(value: &Value, schema: &'static Value) -> Vec<UnknownField> {
    let mut found = Vec::new();
    walk(value, schema, "", &mut found);
    found
}

fn walk(value: &Value, schema: &'static Value, path: &str, found: &mut Vec<UnknownField>) {
    match value {
        Value::Object(map) => {
            if schema::is_open(schema) {
                if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                    let values = schema::resolve(values);
                    for (key, item) in map {
                        walk(item, values, &join(path, key), found);
                    }
                }
                return;
            }
            for (key, item) in map {
                match schema::property(schema, key) {
                    Some((child, _)) => walk(item, child, &join(path, key), found),
                    None => {
                        let known = schema["properties"]
                            .as_object()
                            .into_iter()
                            .flat_map(|properties| properties.keys().map(String::as_str));
                        found.push(UnknownField {
                            path: join(path, key),
                            did_you_mean: hint::closest(key, known).map(|meant| join(path, meant)),
                        });
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                let item_schema = schema::resolve(item_schema);
                for (i, item) in items.iter().enumerate() {
                    walk(item, item_schema, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_fields_are_named_by_path_with_the_field_meant() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"anything": "goes"}},
            "spec": {"initContainters": [], "containers": [{"name": "c", "image": "i", "imagePullPolicyy": "x",
                     "env": [{"name": "A", "valueForm": {}}], "zzz": 1,
                     "resources": {"limits": {"cpu": "1"}}}]}
        });
        let mut found = schema::for_kind("", "v1", "Pod")
            .map(|s| unknown_fields(&pod, s))
            .unwrap_or_default();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        let described: Vec<(String, Option<String>)> =
            found.iter().map(|f| (f.problem(), f.hint())).collect();
        assert_eq!(
            described,
            vec![
                (
                    "unknown field \"spec.containers[0].env[0].valueForm\"".to_string(),
                    Some("did you mean \"spec.containers[0].env[0].valueFrom\"?".to_string())
                ),
                (
                    "unknown field \"spec.containers[0].imagePullPolicyy\"".to_string(),
                    Some("did you mean \"spec.containers[0].imagePullPolicy\"?".to_string())
                ),
                ("unknown field \"spec.containers[0].zzz\"".to_string(), None),
                (
                    "unknown field \"spec.initContainters\"".to_string(),
                    Some("did you mean \"spec.initContainers\"?".to_string())
                ),
            ]
        );
    }

    #[test]
    fn duplicates_are_found_while_parsing() -> Result<(), serde_json::Error> {
        let (value, problems) = parse_json_checking_duplicates(
            br#"{"spec":{"containers":[{"name":"a","name":"b"}]}}"#,
        )?;
        assert_eq!(value["spec"]["containers"][0]["name"], "b");
        assert_eq!(
            problems,
            vec!["duplicate field \"spec.containers[0].name\"".to_string()]
        );
        Ok(())
    }
}
