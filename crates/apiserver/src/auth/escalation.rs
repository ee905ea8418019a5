//! upstream's RBAC escalation prevention: a user may write a Role or
//! ClusterRole only with rules they hold themselves (or the `escalate`
//! verb), and a binding only to a role whose rules they hold (or the
//! `bind` verb on that role). An aggregated ClusterRole may gather
//! anything, so writing one takes full authority.

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
use serde_json::Value;
use skiff_api::rbac::{self, bootstrap, Attributes, UserInfo};
use skiff_api::resources::ResourceInfo;

use crate::error::Result;
use crate::handlers::AppState;

fn rules(object: &Value) -> Vec<PolicyRule> {
    serde_json::from_value(object["rules"].clone()).unwrap_or_default()
}

/// Refuses the write of `object` (of `resource` in `namespace`) when it
/// would grant `user` more than they hold.
pub fn check(state: &AppState, user: &UserInfo, resource: &ResourceInfo, namespace: Option<&str>, object: &Value) -> Result<()> {
    if resource.group != rbac::GROUP || user.in_group(rbac::MASTERS) {
        return Ok(());
    }
    let namespace = namespace.filter(|_| resource.namespaced).unwrap_or("");
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let allowed = |verb: &str, plural: &str, object: &str| {
        let request = Attributes::resource(verb, rbac::GROUP, plural, namespace).with_name(object);
        state.policy.authorize(user, &request).allowed
    };
    let wanted = match resource.kind {
        "Role" | "ClusterRole" => {
            if allowed("escalate", resource.plural, name) {
                return Ok(());
            }
            if object["aggregationRule"].is_object() {
                bootstrap::cluster_admin_rules()
            } else {
                rules(object)
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let Ok(role_ref) = serde_json::from_value::<RoleRef>(object["roleRef"].clone()) else {
                // Validation answers for a broken roleRef.
                return Ok(());
            };
            let plural = if role_ref.kind == "Role" { "roles" } else { "clusterroles" };
            if allowed("bind", plural, &role_ref.name) {
                return Ok(());
            }
            match state.policy.read(|p| p.rules_of(&role_ref, namespace)) {
                Some(rules) => rules,
                None => {
                    let missing = format!("{plural}.{} {:?} not found", rbac::GROUP, role_ref.name);
                    return Err(refusal(resource, namespace, name, &missing));
                }
            }
        }
        _ => return Ok(()),
    };
    let held = state.policy.read(|p| p.rules_for(user, namespace));
    let missing = rbac::uncovered(&held, &wanted);
    if missing.is_empty() {
        return Ok(());
    }
    Err(refusal(resource, namespace, name, &rbac::escalation_message(user, &missing)))
}

fn refusal(resource: &ResourceInfo, namespace: &str, name: &str, reason: &str) -> crate::ApiError {
    let request = Attributes::resource("create", resource.group, resource.plural, namespace).with_name(name);
    super::forbidden_status(&request, reason)
}
