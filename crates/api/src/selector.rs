//! Label and field selectors: parsing (`app=web,tier in (a,b),!canary`,
//! `metadata.name=x,status.phase!=Running`) and matching.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::resources::ResourceInfo;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<LabelRequirement>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_./".contains(&c))
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let bad = || format!("unable to parse requirement: {part:?}");
            let requirement = if let Some(key) = part.strip_prefix('!') {
                LabelRequirement::NotExists(key.trim().to_string())
            } else if let Some((key, value)) = part.split_once("!=") {
                LabelRequirement::NotEquals(key.trim().to_string(), value.trim().to_string())
            } else if let Some((key, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                LabelRequirement::Equals(key.trim().to_string(), value.trim().to_string())
            } else if let Some((key, rest)) = part.split_once(" notin ") {
                LabelRequirement::NotIn(key.trim().to_string(), parse_set(rest).ok_or_else(bad)?)
            } else if let Some((key, rest)) = part.split_once(" in ") {
                LabelRequirement::In(key.trim().to_string(), parse_set(rest).ok_or_else(bad)?)
            } else {
                LabelRequirement::Exists(part.to_string())
            };
            let key = match &requirement {
                LabelRequirement::Exists(k)
                | LabelRequirement::NotExists(k)
                | LabelRequirement::Equals(k, _)
                | LabelRequirement::NotEquals(k, _)
                | LabelRequirement::In(k, _)
                | LabelRequirement::NotIn(k, _) => k,
            };
            if !valid_key(key) {
                return Err(bad());
            }
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            LabelRequirement::Exists(k) => labels.contains_key(k),
            LabelRequirement::NotExists(k) => !labels.contains_key(k),
            LabelRequirement::Equals(k, v) => labels.get(k) == Some(v),
            LabelRequirement::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelRequirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelRequirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
        })
    }

    /// Matches the labels of a JSON object.
    pub fn matches_object(&self, object: &Value) -> bool {
        if self.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = object["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }
}

/// One field requirement: `label=value` or `label!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub equal: bool,
}

/// A parsed field selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

/// Splits on `sep` not preceded by a backslash, then unescapes.
fn split_escaped(text: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    if let Some(last) = parts.last_mut() {
                        if next != sep {
                            last.push('\\');
                        }
                        last.push(next);
                    }
                }
            }
            c if c == sep => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    parts
}

fn unescape(value: &str) -> String {
    value.replace("\\=", "=").replace("\\\\", "\\")
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter and checks every label is
    /// supported by `resource`.
    pub fn parse(text: &str, resource: &ResourceInfo) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_escaped(text, ',') {
            if part.trim().is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, v, true)
            } else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                ));
            };
            let field = field.trim();
            if !resource.supports_field_label(field) {
                return Err(format!("field label not supported: {field}"));
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                value: unescape(value),
                equal,
            });
        }
        Ok(Self(requirements))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches_object(&self, object: &Value) -> bool {
        self.0
            .iter()
            .all(|r| (field_value(object, &r.field) == r.value) == r.equal)
    }

    /// The name this selector pins with `metadata.name=`, if any.
    pub fn exact_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.equal && r.field == "metadata.name")
            .map(|r| r.value.as_str())
    }
}

/// The string a field selector compares for `label` (missing is "", booleans
/// are "true"/"false", `source` is `source.component`).
pub fn field_value(object: &Value, label: &str) -> String {
    let path = if label == "source" {
        "source.component"
    } else {
        label
    };
    let mut node = object;
    for segment in path.split('.') {
        node = &node[segment];
    }
    match node {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null if label == "spec.hostNetwork" || label == "spec.unschedulable" => {
            "false".to_string()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources;

    #[test]
    fn label_selectors_parse_and_match() -> Result<(), String> {
        let selector = LabelSelector::parse("app=web,tier in (front, back),!canary,env!=prod")?;
        assert_eq!(selector.0.len(), 4);
        let object = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        assert!(selector.matches_object(&object));
        let canary =
            json!({"metadata": {"labels": {"app": "web", "tier": "front", "canary": "1"}}});
        assert!(!selector.matches_object(&canary));
        assert!(LabelSelector::parse("x notin (a)")?.matches_object(&json!({})));
        assert!(LabelSelector::parse("a b c").is_err());
        Ok(())
    }

    #[test]
    fn field_selectors_check_labels_and_match() -> Result<(), String> {
        let pods = resources::core("pods").ok_or("pods")?;
        let selector = FieldSelector::parse("metadata.name=web,status.phase!=Running", pods)?;
        assert_eq!(selector.exact_name(), Some("web"));
        assert!(selector
            .matches_object(&json!({"metadata": {"name": "web"}, "status": {"phase": "Pending"}})));
        assert!(!selector
            .matches_object(&json!({"metadata": {"name": "web"}, "status": {"phase": "Running"}})));
        assert_eq!(
            FieldSelector::parse("spec.foo=x", pods),
            Err("field label not supported: spec.foo".to_string())
        );
        let events = resources::core("events").ok_or("events")?;
        let by_object = FieldSelector::parse(
            "involvedObject.name=web,involvedObject.namespace=default,involvedObject.uid=u1",
            events,
        )?;
        let event = json!({"involvedObject": {"name": "web", "namespace": "default", "uid": "u1"}});
        assert!(by_object.matches_object(&event));
        assert!(FieldSelector::parse("spec.hostNetwork=false", pods)?.matches_object(&json!({})));
        Ok(())
    }
}
