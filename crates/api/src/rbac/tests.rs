use serde_json::json;

use super::*;

fn policy(objects: &[(&str, Value)]) -> Policy {
    let mut policy = Policy::default();
    for object in bootstrap::cluster_roles() {
        assert_eq!(policy.upsert("ClusterRole", &object), Ok(()));
    }
    for object in bootstrap::cluster_role_bindings() {
        assert_eq!(policy.upsert("ClusterRoleBinding", &object), Ok(()));
    }
    for (kind, object) in objects {
        assert_eq!(policy.upsert(kind, object), Ok(()));
    }
    policy
}

fn sa_view_binding() -> Value {
    json!({
        "metadata": {"name": "read", "namespace": "default"},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}],
    })
}

#[test]
fn rules_match_verbs_groups_resources_subresources_and_names() {
    let rule = |verbs: &[&str], resources: &[&str], names: &[&str]| PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(resources.iter().map(|r| (*r).to_string()).collect()),
        resource_names: Some(names.iter().map(|r| (*r).to_string()).collect()),
        verbs: verbs.iter().map(|r| (*r).to_string()).collect(),
        non_resource_urls: None,
    };
    let get_log = Attributes::resource("get", "", "pods", "default").with_subresource("log");
    let cases = [
        (rule(&["get"], &["pods"], &[]), Attributes::resource("get", "", "pods", "default"), true),
        (rule(&["get"], &["pods"], &[]), Attributes::resource("list", "", "pods", "default"), false),
        (rule(&["*"], &["pods"], &[]), Attributes::resource("delete", "", "pods", "default"), true),
        (rule(&["get"], &["pods"], &[]), get_log.clone(), false),
        (rule(&["get"], &["pods/log"], &[]), get_log.clone(), true),
        (rule(&["get"], &["*/log"], &[]), get_log.clone(), true),
        (rule(&["get"], &["*/status"], &[]), get_log, false),
        (rule(&["get"], &["pods"], &["web"]), Attributes::resource("get", "", "pods", "default").with_name("web"), true),
        (rule(&["get"], &["pods"], &["web"]), Attributes::resource("get", "", "pods", "default").with_name("db"), false),
        (rule(&["get"], &["pods"], &[]), Attributes::resource("get", "apps", "pods", "default"), false),
    ];
    for (rule, request, allowed) in cases {
        assert_eq!(rule_allows(&rule, &request), allowed, "{rule:?} {request:?}");
    }
    let discovery = &bootstrap::cluster_roles()[4];
    let rules: Vec<PolicyRule> = serde_json::from_value(discovery["rules"].clone()).unwrap_or_default();
    assert!(rule_allows(&rules[0], &Attributes::path("get", "/apis/apps/v1")));
    assert!(!rule_allows(&rules[0], &Attributes::path("get", "/metrics")));
}

#[test]
fn service_accounts_get_what_their_bindings_grant_and_masters_everything() {
    let sa = UserInfo::service_account("default", "default", "uid-1");
    let list_pods = Attributes::resource("list", "", "pods", "default");
    assert!(!policy(&[]).authorize(&sa, &list_pods).allowed);
    let granted = policy(&[("RoleBinding", sa_view_binding())]);
    assert!(granted.authorize(&sa, &list_pods).allowed);
    assert!(!granted.authorize(&sa, &Attributes::resource("list", "", "pods", "other")).allowed);
    assert!(!granted.authorize(&sa, &Attributes::resource("list", "", "secrets", "default")).allowed);
    assert!(!granted.authorize(&sa, &Attributes::resource("create", "", "pods", "default").with_subresource("exec")).allowed);
    // Every authenticated user may discover and ask about themselves.
    assert!(granted.authorize(&sa, &Attributes::path("get", "/api")).allowed);
    assert!(granted
        .authorize(&sa, &Attributes::resource("create", "authorization.k8s.io", "selfsubjectaccessreviews", ""))
        .allowed);
    let admin = UserInfo::authenticated("system:admin", &[MASTERS]);
    assert!(policy(&[]).authorize(&admin, &Attributes::resource("delete", "", "nodes", "")).allowed);
    assert!(!policy(&[]).authorize(&UserInfo::anonymous(), &Attributes::path("get", "/api")).allowed);
    assert!(policy(&[]).authorize(&UserInfo::anonymous(), &Attributes::path("get", "/version")).allowed);
}

#[test]
fn aggregated_roles_take_the_rules_of_labelled_roles() {
    let extra = json!({
        "metadata": {"name": "widgets", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}],
    });
    let sa = UserInfo::service_account("default", "default", "");
    let widgets = Attributes::resource("get", "example.com", "widgets", "default");
    let policy = policy(&[("ClusterRole", extra), ("RoleBinding", sa_view_binding())]);
    assert!(policy.authorize(&sa, &widgets).allowed);
}

#[test]
fn forbidden_messages_are_upstreams() {
    let sa = UserInfo::service_account("default", "default", "");
    assert_eq!(
        forbidden_message(&sa, &Attributes::resource("list", "", "pods", "default")),
        "User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(
        forbidden_message(&sa, &Attributes::resource("list", "", "nodes", "")),
        "User \"system:serviceaccount:default:default\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
    );
    assert_eq!(
        forbidden_message(&UserInfo::anonymous(), &Attributes::path("get", "/api")),
        "User \"system:anonymous\" cannot get path \"/api\""
    );
}

#[test]
fn a_user_cannot_grant_what_they_do_not_hold() {
    let sa = UserInfo::service_account("default", "default", "");
    let policy = policy(&[("RoleBinding", sa_view_binding())]);
    let held = policy.rules_for(&sa, "default");
    let pods_get = vec![PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["pods".into(), "pods/log".into()]),
        verbs: vec!["get".into(), "list".into()],
        ..PolicyRule::default()
    }];
    assert_eq!(uncovered(&held, &pods_get), Vec::new());
    let pods_delete = vec![PolicyRule {
        verbs: vec!["delete".into()],
        ..pods_get[0].clone()
    }];
    let missing = uncovered(&held, &pods_delete);
    assert_eq!(missing.len(), 2);
    assert_eq!(rule_text(&missing[0]), "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}");
    assert!(uncovered(&bootstrap::cluster_admin_rules(), &pods_delete).is_empty());
}

#[test]
fn rbac_objects_are_validated_as_upstream() {
    let role = json!({"rules": [{"verbs": [], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/x"]}]});
    let errors: Vec<String> = validation::validate_rules(&role, true).iter().map(|e| e.field.clone()).collect();
    assert_eq!(errors, ["rules[0].verbs", "rules[0].apiGroups", "rules[1].nonResourceURLs"]);
    let mut binding = json!({
        "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "d"}],
    });
    validation::default_subjects(&mut binding);
    assert!(validation::validate_binding(&binding, false).is_empty());
    let errors: Vec<String> = validation::validate_binding(&binding, true).iter().map(|e| e.field.clone()).collect();
    assert_eq!(errors, ["roleRef.kind", "subjects[1].namespace"]);
}
