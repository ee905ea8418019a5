//! Decoding request bodies the way the apiserver does for
//! `fieldValidation=Strict|Warn`: unknown fields (checked against the
//! OpenAPI schema) and duplicate fields (checked while parsing).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::schema;

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

/// `unknown field "spec.initContainters"` for every field the schema lacks.
pub fn unknown_fields(value: &Value, schema: &'static Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk(value, schema, "", &mut problems);
    problems
}

fn walk(value: &Value, schema: &'static Value, path: &str, problems: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if schema::is_open(schema) {
                if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                    let values = schema::resolve(values);
                    for (key, item) in map {
                        walk(item, values, &join(path, key), problems);
                    }
                }
                return;
            }
            for (key, item) in map {
                match schema::property(schema, key) {
                    Some((child, _)) => walk(item, child, &join(path, key), problems),
                    None => problems.push(format!("unknown field {:?}", join(path, key))),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                let item_schema = schema::resolve(item_schema);
                for (i, item) in items.iter().enumerate() {
                    walk(item, item_schema, &format!("{path}[{i}]"), problems);
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
    fn unknown_fields_are_named_by_path() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"anything": "goes"}},
            "spec": {"initContainters": [], "containers": [{"name": "c", "image": "i", "imagePullPolicyy": "x",
                     "resources": {"limits": {"cpu": "1"}}}]}
        });
        let mut found = schema::for_kind("", "v1", "Pod")
            .map(|s| unknown_fields(&pod, s))
            .unwrap_or_default();
        found.sort();
        assert_eq!(
            found,
            vec![
                "unknown field \"spec.containers[0].imagePullPolicyy\"".to_string(),
                "unknown field \"spec.initContainters\"".to_string()
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
