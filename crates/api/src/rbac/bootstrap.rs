//! upstream's bootstrap policy (plugin/pkg/auth/authorizer/rbac/
//! bootstrappolicy), the roles and bindings that matter for a cluster of
//! Pods: `cluster-admin` for `system:masters`, the user-facing `admin`,
//! `edit` and `view`, and what every user may ask about themselves and the
//! server. The API server writes them at start when they are missing, as
//! upstream's `rbac/bootstrap-roles` post-start hook does.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{json, Value};

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let strings = |values: &[&str]| values.iter().map(|v| (*v).to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule { resource_names: Some(names.iter().map(|n| (*n).to_string()).collect()), ..rule(verbs, groups, resources) }
}

fn urls(verbs: &[&str], paths: &[&str]) -> PolicyRule {
    let strings = |values: &[&str]| values.iter().map(|v| (*v).to_string()).collect::<Vec<_>>();
    PolicyRule {
        non_resource_urls: Some(strings(paths)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

pub fn cluster_admin_rules() -> Vec<PolicyRule> {
    vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])]
}

fn view_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                "services/status",
            ],
        ),
        rule(
            READ,
            &[""],
            &[
                "bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                "replicationcontrollers/status", "resourcequotas", "resourcequotas/status",
            ],
        ),
        rule(READ, &[""], &["namespaces"]),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
                "statefulsets/scale", "statefulsets/status",
            ],
        ),
        rule(READ, &["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
        rule(READ, &["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"]),
        rule(READ, &["events.k8s.io"], &["events"]),
        // metrics-server's aggregated-metrics-reader, aggregated to view.
        rule(READ, &["metrics.k8s.io"], &["pods", "nodes"]),
    ]
}

fn edit_rules() -> Vec<PolicyRule> {
    let mut rules = vec![
        rule(
            &["create", "delete", "deletecollection", "patch", "update", "get", "list", "watch"],
            &[""],
            &[
                "pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "pods/ephemeralcontainers",
            ],
        ),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            WRITE,
            &[""],
            &[
                "configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy",
            ],
        ),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(READ, &[""], &["secrets", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "services/proxy"]),
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(WRITE, &["discovery.k8s.io"], &["endpointslices"]),
        rule(WRITE, &[""], &["endpoints"]),
        rule(WRITE, &["coordination.k8s.io"], &["leases"]),
        rule(READ, &["coordination.k8s.io"], &["leases"]),
    ];
    rules.extend(view_rules());
    rules
}

fn admin_rules() -> Vec<PolicyRule> {
    let mut rules = vec![
        rule(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
        rule(
            &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
        ),
    ];
    rules.extend(edit_rules());
    rules
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>, aggregate_to: Option<&str>) -> Value {
    let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    if let Some(to) = aggregate_to {
        labels[format!("rbac.authorization.k8s.io/aggregate-to-{to}")] = json!("true");
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "rules": rules,
    })
}

/// `admin`, `edit` and `view` aggregate, as upstream's: a ClusterRole
/// labelled `rbac.authorization.k8s.io/aggregate-to-view: "true"` adds its
/// rules to `view` (and so on).
fn aggregated(name: &str, rules: Vec<PolicyRule>, aggregate_to: Option<&str>) -> Value {
    let mut role = cluster_role(name, rules, aggregate_to);
    role["aggregationRule"] = json!({"clusterRoleSelectors": [
        {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{name}"): "true"}}
    ]});
    role
}

/// kube-scheduler's own role (upstream's `system:kube-scheduler`).
fn kube_scheduler_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(&["get", "update"], &["coordination.k8s.io"], &["leases"], &["kube-scheduler"]),
        rule(READ, &[""], &["nodes"]),
        rule(&["delete", "get", "list", "watch"], &[""], &["pods"]),
        rule(&["create"], &[""], &["bindings", "pods/binding"]),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(READ, &[""], &["replicationcontrollers", "services"]),
        rule(READ, &["apps", "extensions"], &["replicasets"]),
        rule(READ, &["apps"], &["statefulsets"]),
        rule(READ, &["policy"], &["poddisruptionbudgets"]),
        rule(READ, &[""], &["persistentvolumeclaims", "persistentvolumes"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
        rule(READ, &["storage.k8s.io"], &["csinodes"]),
        rule(READ, &[""], &["namespaces"]),
        rule(READ, &["storage.k8s.io"], &["csidrivers"]),
        rule(READ, &["storage.k8s.io"], &["csistoragecapacities"]),
    ]
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<(&str, &str)> = groups.iter().map(|g| ("Group", *g)).collect();
    binding_to(name, role, &subjects)
}

/// A bootstrap binding of `role` to `subjects` (kind, name).
fn binding_to(name: &str, role: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, name)| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// The bootstrap ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    vec![
        cluster_role("cluster-admin", cluster_admin_rules(), None),
        aggregated("admin", admin_rules(), None),
        aggregated("edit", edit_rules(), Some("admin")),
        aggregated("view", view_rules(), Some("edit")),
        cluster_role(
            "system:discovery",
            vec![urls(
                &["get"],
                &[
                    "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
                    "/version", "/version/",
                ],
            )],
            None,
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                rule(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
            ],
            None,
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![urls(&["get"], &["/healthz", "/livez", "/readyz", "/version", "/version/"])],
            None,
        ),
        cluster_role("system:kube-scheduler", kube_scheduler_rules(), None),
        cluster_role(
            "system:auth-delegator",
            vec![
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
            ],
            None,
        ),
    ]
}

/// The bootstrap ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &[super::MASTERS]),
        binding("system:discovery", "system:discovery", &[super::AUTHENTICATED]),
        binding("system:basic-user", "system:basic-user", &[super::AUTHENTICATED]),
        binding_to("system:kube-scheduler", "system:kube-scheduler", &[("User", "system:kube-scheduler")]),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[super::AUTHENTICATED, super::UNAUTHENTICATED],
        ),
    ]
}
