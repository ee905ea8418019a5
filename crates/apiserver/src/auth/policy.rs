//! The authorizer's view of RBAC: a snapshot of every Role, ClusterRole and
//! binding, loaded at start and kept by a watch of the store (upstream's
//! authorizer reads the same objects from informers), and the bootstrap
//! roles written at start as upstream's `rbac/bootstrap-roles` hook does.

use std::sync::RwLock;

use serde_json::Value;
use skiff_api::rbac::{bootstrap, Attributes, Decision, Policy, UserInfo};
use skiff_api::resources::ResourceInfo;
use skiff_store::EventKind;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, Result};
use crate::registry::{ListParams, Registry};

/// (kind, plural) of what the policy is made of.
const KINDS: &[(&str, &str)] = &[
    ("ClusterRole", "clusterroles"),
    ("Role", "roles"),
    ("ClusterRoleBinding", "clusterrolebindings"),
    ("RoleBinding", "rolebindings"),
];

fn rbac(plural: &str) -> Result<&'static ResourceInfo> {
    ApiError::served(skiff_api::rbac::GROUP, "v1", plural)
}

#[derive(Debug, Default)]
pub struct PolicyCache {
    policy: RwLock<Policy>,
}

impl PolicyCache {
    pub fn authorize(&self, user: &UserInfo, request: &Attributes) -> Decision {
        self.read(|policy| policy.authorize(user, request))
    }

    pub fn read<T>(&self, with: impl FnOnce(&Policy) -> T) -> T {
        with(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn replace(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    fn apply(&self, kind: &str, key: &str, event: EventKind, value: &[u8]) {
        let mut policy = self.policy.write().unwrap_or_else(|p| p.into_inner());
        match event {
            EventKind::Delete => {
                // /registry/<plural>/[<namespace>/]<name>
                let parts: Vec<&str> = key.trim_start_matches("/registry/").split('/').collect();
                let (namespace, name) = match parts.as_slice() {
                    [_, namespace, name] => (*namespace, *name),
                    [_, name] => ("", *name),
                    _ => return,
                };
                policy.remove(kind, namespace, name);
            }
            EventKind::Create | EventKind::Update => {
                let outcome = serde_json::from_slice::<Value>(value)
                    .map_err(|e| e.to_string())
                    .and_then(|object| policy.upsert(kind, &object));
                if let Err(error) = outcome {
                    tracing::warn!(key, %error, "an RBAC object was skipped by the authorizer");
                }
            }
        }
    }
}

/// Loads every RBAC object into a fresh policy.
async fn load(registry: &Registry) -> Result<Policy> {
    let mut policy = Policy::default();
    for (kind, plural) in KINDS {
        for object in registry.list(rbac(plural)?, None, &ListParams::default()).await?.items {
            if let Err(error) = policy.upsert(kind, &object) {
                tracing::warn!(kind, %error, "an RBAC object was skipped by the authorizer");
            }
        }
    }
    Ok(policy)
}

/// Writes the bootstrap roles and bindings that are missing, and brings
/// those marked `rbac.authorization.kubernetes.io/autoupdate: "true"` back
/// to upstream's rules (reconciliation); then fills `cache`.
pub async fn bootstrap(registry: &Registry, cache: &PolicyCache) -> Result<()> {
    let objects = bootstrap::cluster_roles()
        .into_iter()
        .map(|o| ("clusterroles", o))
        .chain(bootstrap::cluster_role_bindings().into_iter().map(|o| ("clusterrolebindings", o)));
    for (plural, wanted) in objects {
        let resource = rbac(plural)?;
        let name = wanted["metadata"]["name"].as_str().unwrap_or("").to_string();
        match registry.get(resource, None, &name).await {
            Ok(mut existing) => {
                let fields = ["rules", "aggregationRule", "roleRef", "subjects"];
                let auto = existing["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] == "true";
                if auto && fields.iter().any(|f| existing[f] != wanted[f]) {
                    for field in fields {
                        if let Some(value) = wanted.get(field) {
                            existing[field] = value.clone();
                        }
                    }
                    registry.update(resource, None, &name, existing, None, false, None).await?;
                    tracing::info!(plural, name, "reconciled a bootstrap RBAC object");
                }
            }
            Err(error) if error.code() == 404 => {
                match registry.create(resource, None, wanted, false, None).await {
                    Ok(_) => {}
                    Err(error) if error.code() == 409 => {}
                    Err(other) => return Err(other),
                }
            }
            Err(other) => return Err(other),
        }
    }
    cache.replace(load(registry).await?);
    Ok(())
}

fn kind_of(key: &str) -> Option<&'static str> {
    let plural = key.strip_prefix("/registry/")?.split('/').next()?;
    KINDS.iter().find(|(_, p)| *p == plural).map(|(kind, _)| *kind)
}

/// Keeps `cache` current until `shutdown`: watch the RBAC keys; after a
/// broken watch, load everything again.
pub async fn run(registry: Registry, cache: std::sync::Arc<PolicyCache>, shutdown: CancellationToken) {
    let reload = || {
        let (registry, cache) = (registry.clone(), cache.clone());
        async move {
            match load(&registry).await {
                Ok(policy) => cache.replace(policy),
                Err(error) => tracing::warn!(%error, "loading RBAC objects failed"),
            }
        }
    };
    let apply = |event: &skiff_store::Event| {
        if let Some(kind) = kind_of(&event.kv.key) {
            cache.apply(kind, &event.kv.key, event.kind, &event.kv.value);
        }
    };
    crate::follow::follow(&registry, "/registry/", "RBAC cache", &shutdown, reload, apply).await;
}
