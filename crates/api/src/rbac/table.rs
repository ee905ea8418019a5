//! Table columns and cells of the RBAC kinds, as upstream's printers.

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::table::{col, since, text, Column, AGE_DOC, NAME_DOC};

pub(crate) fn columns(kind: &str) -> Option<Vec<Column>> {
    let name = col("Name", 0, NAME_DOC);
    match kind {
        "Role" | "ClusterRole" => Some(vec![
            name,
            Column { kind: "date", ..col("Created At", 0, AGE_DOC) },
        ]),
        "RoleBinding" | "ClusterRoleBinding" => Some(vec![
            name,
            col("Role", 0, "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error."),
            col("Age", 0, AGE_DOC),
            col("Users", 1, "Users in the binding"),
            col("Groups", 1, "Groups in the binding"),
            col("ServiceAccounts", 1, "ServiceAccounts in the binding"),
        ]),
        _ => None,
    }
}

fn subjects(binding: &Value, kind: &str) -> String {
    let names: Vec<String> = binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == kind)
        .map(|s| match kind {
            "ServiceAccount" => format!("{}/{}", text(&s["namespace"]), text(&s["name"])),
            _ => text(&s["name"]).to_string(),
        })
        .collect();
    names.join(", ")
}

pub(crate) fn cells(kind: &str, object: &Value, now: Timestamp) -> Option<Vec<Value>> {
    let name = json!(text(&object["metadata"]["name"]));
    match kind {
        "Role" | "ClusterRole" => Some(vec![name, object["metadata"]["creationTimestamp"].clone()]),
        "RoleBinding" | "ClusterRoleBinding" => Some(vec![
            name,
            json!(format!("{}/{}", text(&object["roleRef"]["kind"]), text(&object["roleRef"]["name"]))),
            json!(since(&object["metadata"]["creationTimestamp"], now)),
            json!(subjects(object, "User")),
            json!(subjects(object, "Group")),
            json!(subjects(object, "ServiceAccount")),
        ]),
        _ => None,
    }
}
