//! Role-based access control as upstream's RBAC authorizer evaluates it:
//! who a request comes from ([`UserInfo`]), what it asks for
//! ([`Attributes`]), the rules roles grant ([`PolicyRule`] matching), which
//! bindings apply to a user, the escalation check (a user may grant only
//! what they hold) and upstream's forbidden texts.
//!
//! Pure: the API server keeps a [`Policy`] snapshot of the stored roles and
//! bindings and asks it; this module reads nothing itself.

pub mod bootstrap;
pub mod table;
pub mod validation;

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::Value;

pub const GROUP: &str = "rbac.authorization.k8s.io";
/// Every authenticated user is in this group.
pub const AUTHENTICATED: &str = "system:authenticated";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";
/// Holders of this group may do anything (upstream's privileged group).
pub const MASTERS: &str = "system:masters";
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// An authenticated identity, as `authentication.k8s.io/v1` `UserInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user of the given name and groups; `system:authenticated` is added
    /// as upstream's authenticators do.
    pub fn authenticated(username: &str, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_string()).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        Self {
            username: username.to_string(),
            groups,
            ..Self::default()
        }
    }

    pub fn anonymous() -> Self {
        Self {
            username: ANONYMOUS.to_string(),
            groups: vec![UNAUTHENTICATED.to_string()],
            ..Self::default()
        }
    }

    /// A service account's identity: its user name and its groups.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> Self {
        let namespace_group = format!("system:serviceaccounts:{namespace}");
        let mut user = Self::authenticated(
            &format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
            &["system:serviceaccounts", &namespace_group],
        );
        user.uid = uid.to_string();
        user
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// `authentication.k8s.io/v1` `UserInfo` JSON.
    pub fn to_json(&self) -> Value {
        let mut info = serde_json::json!({"username": self.username, "groups": self.groups});
        if !self.uid.is_empty() {
            info["uid"] = Value::from(self.uid.clone());
        }
        if !self.extra.is_empty() {
            info["extra"] = serde_json::json!(self.extra);
        }
        info
    }
}

/// What a request asks to do, as upstream's `authorizer.Attributes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Resource {
        group: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
    },
    /// A non-resource URL path (`/api`, `/healthz`).
    Path(String),
}

impl Attributes {
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str) -> Self {
        Self {
            verb: verb.to_string(),
            target: Target::Resource {
                group: group.to_string(),
                resource: resource.to_string(),
                subresource: String::new(),
                namespace: namespace.to_string(),
                name: String::new(),
            },
        }
    }

    pub fn path(verb: &str, path: &str) -> Self {
        Self {
            verb: verb.to_string(),
            target: Target::Path(path.to_string()),
        }
    }

    pub fn with_subresource(mut self, sub: &str) -> Self {
        if let Target::Resource { subresource, .. } = &mut self.target {
            *subresource = sub.to_string();
        }
        self
    }

    pub fn with_name(mut self, object: &str) -> Self {
        if let Target::Resource { name, .. } = &mut self.target {
            *name = object.to_string();
        }
        self
    }

    fn namespace(&self) -> &str {
        match &self.target {
            Target::Resource { namespace, .. } => namespace,
            Target::Path(_) => "",
        }
    }
}

fn has(values: &[String], wanted: &str) -> bool {
    values.iter().any(|v| v == wanted)
}

fn list(values: &Option<Vec<String>>) -> &[String] {
    values.as_deref().unwrap_or(&[])
}

/// upstream's `RuleAllows`.
pub fn rule_allows(rule: &PolicyRule, request: &Attributes) -> bool {
    if !(has(&rule.verbs, "*") || has(&rule.verbs, &request.verb)) {
        return false;
    }
    match &request.target {
        Target::Resource {
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            let groups = list(&rule.api_groups);
            let names = list(&rule.resource_names);
            (has(groups, "*") || has(groups, group))
                && resource_matches(list(&rule.resources), resource, subresource)
                && (names.is_empty() || has(names, name))
        }
        Target::Path(path) => list(&rule.non_resource_urls)
            .iter()
            .any(|url| url_matches(url, path)),
    }
}

fn resource_matches(rule_resources: &[String], resource: &str, subresource: &str) -> bool {
    let combined = if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    };
    rule_resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!subresource.is_empty()
                && r.len() == subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(subresource))
    })
}

fn url_matches(rule_url: &str, path: &str) -> bool {
    rule_url == "*"
        || rule_url == path
        || rule_url
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// upstream's `appliesTo`: whether a binding's subject names this user.
pub fn subject_applies(subject: &Subject, user: &UserInfo, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.username == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let namespace = subject.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_namespace);
            !namespace.is_empty()
                && user.username == format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{}", subject.name)
        }
        _ => false,
    }
}

/// The decision and upstream's reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// A snapshot of every role and binding.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    cluster_roles: HashMap<String, ClusterRole>,
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    role_bindings: HashMap<String, Vec<RoleBinding>>,
}

fn object_name(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    metadata.name.clone().unwrap_or_default()
}

impl Policy {
    /// Adds or replaces one stored RBAC object (`kind` as stored); objects
    /// that do not decode are skipped (the caller logs them).
    pub fn upsert(&mut self, kind: &str, object: &Value) -> Result<(), String> {
        let decode_error = |e: serde_json::Error| format!("{kind} does not decode: {e}");
        match kind {
            "ClusterRole" => {
                let role: ClusterRole = serde_json::from_value(object.clone()).map_err(decode_error)?;
                self.cluster_roles.insert(object_name(&role.metadata), role);
            }
            "Role" => {
                let role: Role = serde_json::from_value(object.clone()).map_err(decode_error)?;
                let key = (role.metadata.namespace.clone().unwrap_or_default(), object_name(&role.metadata));
                self.roles.insert(key, role.rules.unwrap_or_default());
            }
            "ClusterRoleBinding" => {
                let binding: ClusterRoleBinding = serde_json::from_value(object.clone()).map_err(decode_error)?;
                let name = object_name(&binding.metadata);
                self.cluster_role_bindings.retain(|b| object_name(&b.metadata) != name);
                self.cluster_role_bindings.push(binding);
            }
            "RoleBinding" => {
                let binding: RoleBinding = serde_json::from_value(object.clone()).map_err(decode_error)?;
                let namespace = binding.metadata.namespace.clone().unwrap_or_default();
                let name = object_name(&binding.metadata);
                let bindings = self.role_bindings.entry(namespace).or_default();
                bindings.retain(|b| object_name(&b.metadata) != name);
                bindings.push(binding);
            }
            _ => {}
        }
        Ok(())
    }

    pub fn remove(&mut self, kind: &str, namespace: &str, name: &str) {
        match kind {
            "ClusterRole" => {
                self.cluster_roles.remove(name);
            }
            "Role" => {
                self.roles.remove(&(namespace.to_string(), name.to_string()));
            }
            "ClusterRoleBinding" => self.cluster_role_bindings.retain(|b| object_name(&b.metadata) != name),
            "RoleBinding" => {
                if let Some(bindings) = self.role_bindings.get_mut(namespace) {
                    bindings.retain(|b| object_name(&b.metadata) != name);
                }
            }
            _ => {}
        }
    }

    /// A ClusterRole's rules with those it aggregates (its
    /// `aggregationRule` selects other ClusterRoles by label).
    fn cluster_role_rules(&self, name: &str) -> Vec<&PolicyRule> {
        let Some(role) = self.cluster_roles.get(name) else {
            return Vec::new();
        };
        let mut rules: Vec<&PolicyRule> = role.rules.iter().flatten().collect();
        let selectors = role
            .aggregation_rule
            .as_ref()
            .and_then(|a| a.cluster_role_selectors.as_ref());
        for selector in selectors.into_iter().flatten() {
            let wanted = selector.match_labels.clone().unwrap_or_default();
            if wanted.is_empty() && selector.match_expressions.as_ref().is_none_or(Vec::is_empty) {
                continue;
            }
            for (other_name, other) in &self.cluster_roles {
                let labels = other.metadata.labels.clone().unwrap_or_default();
                if other_name != name && wanted.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                    rules.extend(other.rules.iter().flatten());
                }
            }
        }
        rules
    }

    fn role_ref_rules(&self, role_ref: &RoleRef, namespace: &str) -> Vec<&PolicyRule> {
        match role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_role_rules(&role_ref.name),
            "Role" => self
                .roles
                .get(&(namespace.to_string(), role_ref.name.clone()))
                .map(|rules| rules.iter().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The bindings that apply to `user` — cluster role bindings, then the
    /// role bindings of `namespace` — each with the rules its role grants,
    /// in upstream's order (lazily, so a decision stops at the first grant).
    fn applicable<'a>(&'a self, user: &'a UserInfo, namespace: &'a str) -> impl Iterator<Item = (Via<'a>, Vec<&'a PolicyRule>)> + 'a {
        let cluster = self
            .cluster_role_bindings
            .iter()
            .filter(move |b| b.subjects.iter().flatten().any(|s| subject_applies(s, user, "")))
            .map(move |b| (Via::Cluster(b), self.cluster_role_rules(&b.role_ref.name)));
        let namespaced = self
            .role_bindings
            .get(namespace)
            .filter(|_| !namespace.is_empty())
            .into_iter()
            .flatten()
            .filter(move |b| b.subjects.iter().flatten().any(|s| subject_applies(s, user, namespace)))
            .map(move |b| (Via::Namespaced(b, namespace), self.role_ref_rules(&b.role_ref, namespace)));
        cluster.chain(namespaced)
    }

    /// upstream's `RBACAuthorizer.Authorize`.
    pub fn authorize(&self, user: &UserInfo, request: &Attributes) -> Decision {
        if user.in_group(MASTERS) {
            return Decision { allowed: true, reason: String::new() };
        }
        for (via, rules) in self.applicable(user, request.namespace()) {
            if rules.into_iter().any(|rule| rule_allows(rule, request)) {
                return Decision { allowed: true, reason: via.reason(user) };
            }
        }
        Decision { allowed: false, reason: String::new() }
    }

    /// Every rule the user holds in `namespace` (cluster-wide rules too),
    /// as upstream's `RulesFor` (SelfSubjectRulesReview, escalation).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
        if user.in_group(MASTERS) {
            return bootstrap::cluster_admin_rules();
        }
        self.applicable(user, namespace)
            .flat_map(|(_, rules)| rules.into_iter().cloned())
            .collect()
    }

    /// The rules a binding's role grants (escalation check on bindings);
    /// `None` when the role does not exist.
    pub fn rules_of(&self, role_ref: &RoleRef, namespace: &str) -> Option<Vec<PolicyRule>> {
        let exists = match role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_roles.contains_key(&role_ref.name),
            _ => self.roles.contains_key(&(namespace.to_string(), role_ref.name.clone())),
        };
        exists.then(|| self.role_ref_rules(role_ref, namespace).into_iter().cloned().collect())
    }
}

/// The binding a grant comes through.
enum Via<'a> {
    Cluster(&'a ClusterRoleBinding),
    Namespaced(&'a RoleBinding, &'a str),
}

impl Via<'_> {
    /// upstream's allow reason.
    fn reason(&self, user: &UserInfo) -> String {
        match self {
            Via::Cluster(binding) => format!(
                "RBAC: allowed by ClusterRoleBinding \"{}\" of ClusterRole \"{}\" to {}",
                object_name(&binding.metadata),
                binding.role_ref.name,
                describe_user(user)
            ),
            Via::Namespaced(binding, namespace) => format!(
                "RBAC: allowed by RoleBinding \"{}/{namespace}\" of {} \"{}\" to {}",
                object_name(&binding.metadata),
                binding.role_ref.kind,
                binding.role_ref.name,
                describe_user(user)
            ),
        }
    }
}

fn describe_user(user: &UserInfo) -> String {
    match user.username.strip_prefix(SERVICE_ACCOUNT_PREFIX) {
        Some(rest) => {
            let (namespace, name) = rest.split_once(':').unwrap_or(("", rest));
            format!("ServiceAccount \"{name}/{namespace}\"")
        }
        None => format!("User \"{}\"", user.username),
    }
}

/// upstream's `forbiddenMessage` (without the leading `<resource> "<name>"
/// is forbidden: `, which the Status adds).
pub fn forbidden_message(user: &UserInfo, request: &Attributes) -> String {
    let verb = &request.verb;
    match &request.target {
        Target::Path(path) => format!("User {:?} cannot {verb} path {path:?}", user.username),
        Target::Resource {
            group,
            resource,
            subresource,
            namespace,
            ..
        } => {
            let resource = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            if namespace.is_empty() {
                format!(
                    "User {:?} cannot {verb} resource {resource:?} in API group {group:?} at the cluster scope",
                    user.username
                )
            } else {
                format!(
                    "User {:?} cannot {verb} resource {resource:?} in API group {group:?} in the namespace {namespace:?}",
                    user.username
                )
            }
        }
    }
}

/// One verb on one resource (or URL): what [`covers`] compares.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut single = Vec::new();
    let names = list(&rule.resource_names);
    for group in list(&rule.api_groups) {
        for resource in list(&rule.resources) {
            for verb in &rule.verbs {
                let one = |name: Option<&String>| PolicyRule {
                    api_groups: Some(vec![group.clone()]),
                    resources: Some(vec![resource.clone()]),
                    verbs: vec![verb.clone()],
                    resource_names: name.map(|n| vec![n.clone()]),
                    non_resource_urls: None,
                };
                if names.is_empty() {
                    single.push(one(None));
                } else {
                    single.extend(names.iter().map(|n| one(Some(n))));
                }
            }
        }
    }
    for url in list(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            single.push(PolicyRule {
                non_resource_urls: Some(vec![url.clone()]),
                verbs: vec![verb.clone()],
                ..PolicyRule::default()
            });
        }
    }
    single
}

fn has_all(owner: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(owner, w))
}

/// upstream's `ruleCovers`.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(list(&owner.api_groups), "*") || has_all(list(&owner.api_groups), list(&sub.api_groups));
    let resources = {
        let owned = list(&owner.resources);
        has(owned, "*")
            || list(&sub.resources).iter().all(|path| {
                has(owned, path)
                    || path
                        .split_once('/')
                        .is_some_and(|(_, sub)| has(owned, &format!("*/{sub}")))
            })
    };
    let urls = list(&sub.non_resource_urls).iter().all(|wanted| {
        list(&owner.non_resource_urls).iter().any(|o| url_matches(o, wanted))
    });
    let owner_names = list(&owner.resource_names);
    let names = owner_names.is_empty() || has_all(owner_names, list(&sub.resource_names));
    verbs && groups && resources && names && urls
}

/// upstream's `Covers`: the rules of `wanted` that `owner` does not cover
/// (empty when the owner holds everything).
pub fn uncovered(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    wanted
        .iter()
        .flat_map(breakdown)
        .filter(|single| !owner.iter().any(|o| rule_covers(o, single)))
        .collect()
}

/// upstream's compact rule text: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
pub fn rule_text(rule: &PolicyRule) -> String {
    let quoted = |values: &[String]| -> String {
        values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(" ")
    };
    let mut parts = Vec::new();
    if let Some(groups) = &rule.api_groups {
        parts.push(format!("APIGroups:[{}]", quoted(groups)));
    }
    if let Some(resources) = &rule.resources {
        parts.push(format!("Resources:[{}]", quoted(resources)));
    }
    if let Some(names) = rule.resource_names.as_ref().filter(|n| !n.is_empty()) {
        parts.push(format!("ResourceNames:[{}]", quoted(names)));
    }
    if let Some(urls) = &rule.non_resource_urls {
        parts.push(format!("NonResourceURLs:[{}]", quoted(urls)));
    }
    parts.push(format!("Verbs:[{}]", quoted(&rule.verbs)));
    format!("{{{}}}", parts.join(", "))
}

/// upstream's escalation refusal text (after `<resource> "<name>" is forbidden: `).
pub fn escalation_message(user: &UserInfo, missing: &[PolicyRule]) -> String {
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let rules: Vec<String> = missing.iter().map(rule_text).collect();
    format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.username,
        groups.join(" "),
        rules.join("\n")
    )
}


/// The identity a client certificate claims, as upstream's x509
/// authenticator reads it: the subject's common name is the user, its
/// organizations are the groups. `None` for a certificate that does not
/// parse or names no user (the TLS layer has already verified it).
pub fn certificate_identity(der: &[u8]) -> Option<UserInfo> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = certificate.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    if name.is_empty() {
        return None;
    }
    let groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    Some(UserInfo::authenticated(&name, &groups))
}

#[cfg(test)]
mod tests;
