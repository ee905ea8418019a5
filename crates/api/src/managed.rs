//! `metadata.managedFields`: which field manager set which fields, in
//! structured-merge-diff's `FieldsV1` form (`f:<field>`, `k:{<keys>}` for
//! items of keyed lists, `v:<value>` for set items, `.` for a node owned
//! as such). Every write records its manager: the fields it changed become
//! its own and leave the other managers, as upstream's field manager does.
//! Pure: the registry calls [`record`] with the object before and after.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::schema;

/// Fields no manager owns (upstream's `managedFieldsStripper`).
const STRIPPED_METADATA: &[&str] = &[
    "name", "namespace", "creationTimestamp", "selfLink", "uid", "generation",
    "managedFields", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
];

static NULL: Value = Value::Null;

/// A set of field paths, as a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// The path to this node is itself in the set.
    own: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.own && self.children.values().all(FieldSet::is_empty)
    }

    fn child(&mut self, element: &str) -> &mut FieldSet {
        self.children.entry(element.to_string()).or_default()
    }

    /// Everything in `self` but not in `other`.
    pub fn minus(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            own: self.own && !other.own,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => child.minus(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.own |= other.own;
        for (element, child) in &other.children {
            let merged = match out.children.get(element) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(element.clone(), merged);
        }
        out
    }

    /// The `fieldsV1` JSON.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.own && !self.children.is_empty() {
            map.insert(".".into(), json!({}));
        }
        for (element, child) in &self.children {
            if !child.is_empty() {
                map.insert(element.clone(), child.to_fields_v1());
            }
        }
        Value::Object(map)
    }

    /// Reads a `fieldsV1` JSON.
    pub fn from_fields_v1(value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        for (element, child) in value.as_object().into_iter().flatten() {
            if element == "." {
                set.own = true;
                continue;
            }
            let mut node = FieldSet::from_fields_v1(child);
            if child.as_object().is_some_and(|m| m.is_empty()) {
                node.own = true;
            }
            set.children.insert(element.clone(), node);
        }
        set
    }

    /// Every path in the set, as path elements.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.own && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.own,
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Whether the node at `path` has members of its own in the set.
    fn children_at(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => !self.children.is_empty(),
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.children_at(rest)),
        }
    }
}

/// How a value is merged and named, from its schema.
enum Shape {
    /// An object with declared fields (a Go struct).
    Struct(&'static Value),
    /// An object with arbitrary keys (labels); values of this schema.
    Map(Option<&'static Value>),
    /// A list whose items are identified by these keys.
    Keyed(Vec<String>, Option<&'static Value>),
    /// A list of unique scalars.
    Set,
    /// Replaced as a whole: scalars and atomic lists or maps.
    Atomic,
}

fn shape(schema: Option<&'static Value>, prop: Option<&'static Value>, value: &Value) -> Shape {
    let annotation = |key: &str| {
        prop.and_then(|p| p[key].as_str())
            .or_else(|| schema.and_then(|s| s[key].as_str()))
    };
    match value {
        Value::Array(_) => match annotation("x-kubernetes-list-type") {
            Some("map") => {
                let keys = prop
                    .and_then(|p| p["x-kubernetes-list-map-keys"].as_array())
                    .map(|k| k.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let items = prop.map(|p| schema::resolve(&p["items"]));
                Shape::Keyed(keys, items)
            }
            Some("set") => Shape::Set,
            _ => Shape::Atomic,
        },
        Value::Object(_) if annotation("x-kubernetes-map-type") == Some("atomic") => Shape::Atomic,
        Value::Object(_) => match schema {
            Some(s) if s.get("properties").is_some() => Shape::Struct(s),
            Some(s) => Shape::Map(s.get("additionalProperties").filter(|v| v.is_object()).map(schema::resolve)),
            None => Shape::Map(None),
        },
        _ => Shape::Atomic,
    }
}

/// `k:{"name":"c"}` for a keyed item, `v:"x"` for a set item.
fn item_element(item: &Value, keys: &[String]) -> Option<String> {
    let mut identity = BTreeMap::new();
    for key in keys {
        identity.insert(key.clone(), item.get(key)?.clone());
    }
    serde_json::to_string(&identity).ok().map(|k| format!("k:{k}"))
}

/// The item of `list` a path element names.
fn find_item<'a>(list: &'a [Value], element: &str, keys: &[String]) -> Option<&'a Value> {
    if let Some(value) = element.strip_prefix("v:") {
        let wanted: Value = serde_json::from_str(value).ok()?;
        return list.iter().find(|item| **item == wanted);
    }
    list.iter().find(|item| item_element(item, keys).as_deref() == Some(element))
}

/// The fields `value` sets (structured-merge-diff's `ToFieldSet`). With
/// `old` (compare mode) only what differs from it is kept, and nodes `old`
/// lacks are owned as such; without, everything is.
fn walk(value: &Value, old: Option<&Value>, schema: Option<&'static Value>, prop: Option<&'static Value>, set: &mut FieldSet) {
    let changed = old.is_none() || old != Some(value);
    match (shape(schema, prop, value), value) {
        (Shape::Struct(s), Value::Object(map)) => {
            for (key, child) in map {
                let (child_schema, child_prop) = match schema::property(s, key) {
                    Some((c, p)) => (Some(c), Some(p)),
                    None => (None, None),
                };
                member(key, child, old, child_schema, child_prop, set);
            }
        }
        (Shape::Map(values), Value::Object(map)) => {
            for (key, child) in map {
                member(key, child, old, values, None, set);
            }
        }
        (Shape::Keyed(keys, items), Value::Array(list)) => {
            let old_list = old.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let elements: Option<Vec<String>> = list.iter().map(|item| item_element(item, &keys)).collect();
            let Some(elements) = elements else {
                // Items without their keys cannot be told apart: atomic.
                set.own = changed;
                return;
            };
            for (item, element) in list.iter().zip(elements) {
                let old_item = old.map(|_| find_item(old_list, &element, &keys));
                let mut node = FieldSet::default();
                // A new item is compared with nothing: all of it is new.
                let against = old_item.map(|found| found.unwrap_or(&NULL));
                walk(item, against, items, None, &mut node);
                // A list item is in the set as such (when new to `old`).
                node.own = matches!(old_item, None | Some(None));
                if !node.is_empty() {
                    set.children.insert(element, node);
                }
            }
        }
        (Shape::Set, Value::Array(list)) => {
            let old_list = old.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for item in list {
                if old.is_none() || !old_list.contains(item) {
                    set.child(&format!("v:{item}")).own = true;
                }
            }
        }
        _ => set.own = changed,
    }
}

/// One member `key` of an object: its own fields, and the member itself
/// when it is null or an empty object (a leaf), or, in compare mode, when
/// the old object lacked it.
fn member(key: &str, child: &Value, old_parent: Option<&Value>, schema: Option<&'static Value>, prop: Option<&'static Value>, set: &mut FieldSet) {
    let old_child = old_parent.and_then(|o| o.get(key));
    let compare = old_parent.is_some();
    let mut node = FieldSet::default();
    walk(child, if compare { Some(old_child.unwrap_or(&NULL)) } else { None }, schema, prop, &mut node);
    let empty = child.is_null() || child.as_object().is_some_and(|m| m.is_empty());
    if empty {
        node.own = !compare || old_child != Some(child);
    } else if compare && old_child.is_none() && !node.children.is_empty() {
        node.own = true;
    }
    if !node.is_empty() {
        set.children.insert(format!("f:{key}"), node);
    }
}

/// What a manager may own of `object`: everything but identity metadata
/// (and status or spec, whichever the write could not change).
fn ownable(object: &Value, subresource: Option<&str>) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        match subresource {
            Some("status") => {
                map.remove("spec");
            }
            _ => {
                map.remove("status");
            }
        }
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in STRIPPED_METADATA {
            meta.remove(*key);
        }
    }
    // Metadata with nothing but identity is not a field anyone sets.
    if object["metadata"].as_object().is_some_and(|m| m.is_empty()) {
        if let Some(map) = object.as_object_mut() {
            map.remove("metadata");
        }
    }
    object
}

/// The fields `new` sets that `old` did not (all of them on create).
pub fn changed_fields(kind_schema: Option<&'static Value>, old: Option<&Value>, new: &Value, subresource: Option<&str>) -> FieldSet {
    let new = ownable(new, subresource);
    // A create compares against the empty object Go starts from, whose
    // metadata, spec and status always exist (and a Pod's `containers`,
    // which Go writes even when empty).
    let empty = if new["spec"].get("containers").is_some() {
        json!({"metadata": {}, "spec": {"containers": null}, "status": {}})
    } else {
        json!({"metadata": {}, "spec": {}, "status": {}})
    };
    let mut old = old.map(|o| ownable(o, subresource)).unwrap_or(empty);
    // Go's objects always have these (as structs, never absent).
    for key in ["metadata", "spec", "status"] {
        if old.get(key).is_none() {
            old[key] = json!({});
        }
    }
    let mut set = FieldSet::default();
    walk(&new, Some(&old), kind_schema, None, &mut set);
    set
}

/// The fields `old` set that `new` no longer does.
pub fn removed_fields(kind_schema: Option<&'static Value>, old: &Value, new: &Value, subresource: Option<&str>) -> FieldSet {
    let (old, new) = (ownable(old, subresource), ownable(new, subresource));
    let mut all_old = FieldSet::default();
    walk(&old, None, kind_schema, None, &mut all_old);
    let mut all_new = FieldSet::default();
    walk(&new, None, kind_schema, None, &mut all_new);
    all_old.minus(&all_new)
}

/// Who writes: the field manager and its operation (`Update` or `Apply`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    pub name: String,
    pub operation: &'static str,
    /// For `Apply`: the applied configuration, whose fields the manager
    /// owns from now on (all of them, changed or not).
    pub applied: Option<Value>,
}

impl Manager {
    /// Upstream's default manager: the user agent up to its first `/`.
    pub fn from_request(field_manager: Option<&str>, user_agent: Option<&str>, operation: &'static str) -> Manager {
        let name = field_manager
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| user_agent.unwrap_or("").split('/').next().unwrap_or("").to_string());
        Manager { name, operation, applied: None }
    }
}

/// Sets `new`'s managedFields after a write by `manager` (`old` is `None`
/// on create): its entry gains the fields it changed, every other entry
/// loses them and the fields the write removed; empty entries go. A
/// request that changed managedFields itself keeps them as sent.
pub fn record(kind_schema: Option<&'static Value>, old: Option<&Value>, new: &mut Value, manager: &Manager, api_version: &str, subresource: Option<&str>, now: &str) {
    let previous = old.map(|o| o["metadata"]["managedFields"].clone()).unwrap_or(Value::Null);
    // A request that leaves managedFields out leaves them as they were; one
    // that sends other ones means them (kubectl's migration to apply).
    if old.is_some() && !new["metadata"]["managedFields"].is_null() && new["metadata"]["managedFields"] != previous {
        return;
    }
    let changed = changed_fields(kind_schema, old, new, subresource);
    let removed = old.map(|o| removed_fields(kind_schema, o, new, subresource)).unwrap_or_default();
    // Others lose what this write changed or removed; fields it applied
    // with the values they had stay shared.
    let taken = changed.union(&removed);
    let applied = manager.applied.as_ref().map(|config| {
        let mut all = FieldSet::default();
        walk(&ownable(config, subresource), None, kind_schema, None, &mut all);
        all
    });
    let subresource = subresource.filter(|s| *s == "status").unwrap_or("");
    let mut entries = Vec::new();
    let mut mine: Option<FieldSet> = None;
    for entry in previous.as_array().into_iter().flatten() {
        let fields = FieldSet::from_fields_v1(&entry["fieldsV1"]);
        let same = entry["manager"] == manager.name.as_str()
            && entry["operation"] == manager.operation
            && entry["subresource"].as_str().unwrap_or("") == subresource;
        if same {
            mine = Some(fields);
            continue;
        }
        let left = fields.minus(&taken);
        if !left.is_empty() {
            let mut entry = entry.clone();
            entry["fieldsV1"] = left.to_fields_v1();
            entries.push(entry);
        }
    }
    // An applier owns exactly what it applied this time.
    let owned = match applied {
        Some(applied) => applied,
        None => mine.unwrap_or_default().minus(&removed).union(&changed),
    };
    if !owned.is_empty() {
        let mut entry = json!({"manager": manager.name, "operation": manager.operation,
            "apiVersion": api_version, "time": now, "fieldsType": "FieldsV1", "fieldsV1": owned.to_fields_v1()});
        if !subresource.is_empty() {
            entry["subresource"] = json!(subresource);
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        if let Some(meta) = new["metadata"].as_object_mut() {
            meta.remove("managedFields");
        }
    } else {
        new["metadata"]["managedFields"] = Value::Array(entries);
    }
}

/// Whether list item `item` is the one path element `element` names.
fn names_item(item: &Value, element: &str) -> bool {
    if let Some(keys) = element.strip_prefix("k:") {
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(keys) else { return false };
        return keys.iter().all(|(k, v)| item.get(k) == Some(v));
    }
    if let Some(value) = element.strip_prefix("v:") {
        return serde_json::from_str::<Value>(value).is_ok_and(|v| v == *item);
    }
    false
}

/// The value at `path` in `value`, if any.
fn value_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else { return Some(value) };
    let next = match first.strip_prefix("f:") {
        Some(key) => value.get(key)?,
        None => value.as_array()?.iter().find(|item| names_item(item, first))?,
    };
    value_at(next, rest)
}

/// Removes the node at `path` from `value`.
fn remove_at(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut node = value;
    for element in parents {
        let next = match element.strip_prefix("f:") {
            Some(key) => node.get_mut(key),
            None => node.as_array_mut().and_then(|items| items.iter_mut().find(|item| names_item(item, element))),
        };
        let Some(next) = next else { return };
        node = next;
    }
    match last.strip_prefix("f:") {
        Some(key) => {
            if let Some(map) = node.as_object_mut() {
                map.remove(key);
            }
        }
        None => {
            if let Some(items) = node.as_array_mut() {
                items.retain(|item| !names_item(item, last));
            }
        }
    }
}

/// A path as structured-merge-diff prints it: `.spec.containers[name="c"].image`.
pub fn path_text(path: &[String]) -> String {
    let mut text = String::new();
    for element in path {
        if let Some(key) = element.strip_prefix("f:") {
            text.push('.');
            text.push_str(key);
        } else if let Some(keys) = element.strip_prefix("k:") {
            let parts: Vec<String> = match serde_json::from_str::<Value>(keys) {
                Ok(Value::Object(map)) => map.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                _ => vec![keys.to_string()],
            };
            text.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            text.push_str(&format!("[={value}]"));
        }
    }
    text
}

/// One field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// As upstream prints it: `"kubectl-client-side-apply" using v1`.
    pub manager: String,
    pub path: String,
}

fn manager_text(entry: &Value) -> String {
    let mut text = format!("{:?}", entry["manager"].as_str().unwrap_or(""));
    if let Some(sub) = entry["subresource"].as_str().filter(|s| !s.is_empty()) {
        text = format!("{text} with subresource {sub:?}");
    }
    if entry["operation"] == "Update" {
        text = format!("{text} using {}", entry["apiVersion"].as_str().unwrap_or(""));
    }
    text
}

/// What server-side apply of `config` by `manager` does to `merged` (the
/// live object with the config merged in): the conflicts with other
/// managers' fields it would change (empty with `force`), after which the
/// fields this manager applied before and dropped now, and no one else
/// owns, are removed from `merged`.
pub fn apply(kind_schema: Option<&'static Value>, live: &Value, merged: &mut Value, config: &Value, manager: &str, force: bool) -> Vec<Conflict> {
    let mut applied = FieldSet::default();
    walk(&ownable(config, None), None, kind_schema, None, &mut applied);
    let entries = live["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    let mut conflicts = Vec::new();
    let mut others = FieldSet::default();
    let mut before = FieldSet::default();
    for entry in &entries {
        let fields = FieldSet::from_fields_v1(&entry["fieldsV1"]);
        if entry["manager"] == manager && entry["operation"] == "Apply" {
            before = fields;
            continue;
        }
        for path in fields.paths() {
            if !applied.contains(&path) {
                continue;
            }
            let (now, then) = (value_at(merged, &path), value_at(live, &path));
            // A node with members in either set is compared member by member.
            let intermediate = fields.children_at(&path) || applied.children_at(&path);
            if now != then && !intermediate {
                conflicts.push(Conflict { manager: manager_text(entry), path: path_text(&path) });
            }
        }
        others = others.union(&fields);
    }
    if !conflicts.is_empty() && !force {
        return conflicts;
    }
    let dropped = before.minus(&applied).minus(&others);
    let mut paths = dropped.paths();
    // Deepest first, so a removed item does not hide its fields.
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in paths {
        remove_at(merged, &path);
    }
    Vec::new()
}

/// Upstream's conflict message.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", only.manager, only.path);
    }
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for conflict in conflicts {
        by_manager.entry(&conflict.manager).or_default().push(&conflict.path);
    }
    let mut lines = Vec::new();
    for (manager, paths) in by_manager {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(paths.iter().map(|p| format!("- {p}")));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_schema() -> Option<&'static Value> {
        schema::for_kind("", "v1", "Pod")
    }

    #[test]
    fn a_create_owns_what_it_set_as_upstream_writes_it() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "nginx", "namespace": "default", "labels": {"run": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}, "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
                "dnsPolicy": "ClusterFirst", "securityContext": {}, "tolerations": [{"key": "k", "operator": "Exists"}]},
            "status": {"phase": "Pending"}});
        let fields = changed_fields(pod_schema(), None, &pod, None).to_fields_v1();
        assert_eq!(
            fields,
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:run": {}}},
                "f:spec": {
                    "f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}, "f:resources": {},
                        "f:ports": {".": {}, "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}}}},
                    "f:dnsPolicy": {}, "f:securityContext": {}, "f:tolerations": {}}
            })
        );
    }

    #[test]
    fn updates_move_ownership_and_removals_leave_everyone() {
        let schema = pod_schema();
        let mut pod = json!({"metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        let creator = Manager { name: "kubectl-create".into(), operation: "Update", applied: None };
        record(schema, None, &mut pod, &creator, "v1", None, "2026-12-02T00:00:00Z");
        let old = pod.clone();
        pod["spec"]["containers"][0]["image"] = json!("i:2");
        pod["metadata"]["labels"] = json!({"b": "2"});
        let editor = Manager { name: "kubectl-edit".into(), operation: "Update", applied: None };
        record(schema, Some(&old), &mut pod, &editor, "v1", None, "2026-12-02T00:01:00Z");
        let entries = pod["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(entries[0]["manager"], "kubectl-create");
        // The labels map stays the creator's; the label it set went away.
        assert_eq!(
            entries[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {}}, "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}}}}})
        );
        assert_eq!(entries[1]["manager"], "kubectl-edit");
        assert_eq!(
            entries[1]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:b": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {"f:image": {}}}}})
        );
        // A request that sets managedFields itself keeps them.
        let old = pod.clone();
        pod["metadata"]["managedFields"] = json!([]);
        record(schema, Some(&old), &mut pod, &editor, "v1", None, "2026-12-02T00:02:00Z");
        assert_eq!(pod["metadata"]["managedFields"], json!([]));
    }

    #[test]
    fn the_manager_defaults_to_the_user_agent() {
        assert_eq!(Manager::from_request(None, Some("kubectl/v1.32.5 (linux/amd64)"), "Update").name, "kubectl");
        assert_eq!(Manager::from_request(Some("kubectl-client-side-apply"), Some("kubectl/v1"), "Update").name, "kubectl-client-side-apply");
        assert_eq!(Manager::from_request(None, Some("OpenAPI-Generator/33.1.0/python"), "Update").name, "OpenAPI-Generator");
    }

    #[test]
    fn fields_v1_round_trips() {
        let value = json!({"f:metadata": {"f:labels": {".": {}, "f:run": {}}}, "f:spec": {"f:dnsPolicy": {}}});
        assert_eq!(FieldSet::from_fields_v1(&value).to_fields_v1(), value);
    }

    #[test]
    fn apply_conflicts_and_drops_what_it_no_longer_applies() {
        let schema = pod_schema();
        let mut live = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        let creator = Manager { name: "kubectl-create".into(), operation: "Update", applied: None };
        record(schema, None, &mut live, &creator, "v1", None, "t0");
        let config = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:2"}]}});
        let mut merged = json!({"metadata": live["metadata"].clone(), "spec": {"containers": [{"name": "c", "image": "i:2"}]}});
        let conflicts = apply(schema, &live, &mut merged, &config, "ci", false);
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 1 conflict: conflict with \"kubectl-create\" using v1: .spec.containers[name=\"c\"].image"
        );
        assert!(apply(schema, &live, &mut merged, &config, "ci", true).is_empty());
        let two = [
            Conflict { manager: "\"a\" using v1".into(), path: ".data.x".into() },
            Conflict { manager: "\"a\" using v1".into(), path: ".data.y".into() },
        ];
        assert_eq!(conflict_message(&two), "Apply failed with 2 conflicts: conflicts with \"a\" using v1:\n- .data.x\n- .data.y");
        assert_eq!(path_text(&["f:spec".into(), "f:ports".into(), "k:{\"containerPort\":80,\"protocol\":\"TCP\"}".into()]),
            ".spec.ports[containerPort=80,protocol=\"TCP\"]");
    }
}
