//! Object CRUD over the store, with upstream's semantics: system metadata,
//! namespace lifecycle checks, optimistic concurrency on resourceVersion,
//! no-op updates, graceful pod deletion and finalizers.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::{object, Status};
use skiff_store::{KeyValue, ListOptions, Predicate, Store, StoreError};

use crate::clock::Clock;
use skiff_api::managed::Manager;
use crate::error::{ApiError, Result};
use crate::strategy::{self, format_time};

mod cluster_ip;

/// Selection and paging for list, watch and deletecollection.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

impl ListParams {
    /// No label or field selector: every object is in the set.
    pub fn selects_all(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches_object(object)
    }

    fn predicate(&self) -> Option<Predicate> {
        if self.selects_all() {
            return None;
        }
        let params = self.clone();
        Some(Arc::new(move |kv: &KeyValue| {
            serde_json::from_slice::<Value>(&kv.value).is_ok_and(|object| params.matches(&object))
        }))
    }
}

/// A page of objects.
#[derive(Debug)]
pub struct ObjectList {
    pub items: Vec<Value>,
    pub revision: u64,
    pub continue_token: Option<String>,
}

/// A list as stored: each item is decoded when it is used ([`decode`]).
pub struct StoredList {
    pub items: Vec<KeyValue>,
    pub revision: u64,
    pub continue_token: Option<String>,
}

/// `DeleteOptions`, from the body and the query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// The registry: every object read and write goes through here.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Held while a Service's cluster IP is chosen and stored, so two
    /// creates never pick the same address.
    cluster_ips: Arc<tokio::sync::Mutex<()>>,
}

/// Namespaces that always exist and cannot be deleted.
pub const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// etcd's default request limit (`--max-request-bytes`), which bounds every
/// object kube-apiserver stores; Skiff holds every backend to it.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

fn encode(object: &Value) -> Result<Bytes> {
    let mut object = object.clone();
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    let bytes = serde_json::to_vec(&object).map_err(|source| ApiError::Encode {
        what: "object",
        source,
    })?;
    if bytes.len() > MAX_OBJECT_BYTES {
        // What kube-apiserver passes on from etcd for an object this big.
        return Err(Status::request_entity_too_large_raw("etcdserver: request is too large").into());
    }
    Ok(Bytes::from(bytes))
}

/// Decodes a stored value and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value> {
    decode_at(&kv.value, kv.mod_revision)
}

pub fn decode_at(value: &[u8], revision: u64) -> Result<Value> {
    let mut object: Value = serde_json::from_slice(value)
        .map_err(|e| Status::internal(format!("stored object is not valid JSON: {e}")))?;
    object["metadata"]["resourceVersion"] = json!(revision.to_string());
    Ok(object)
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn parse_rv(value: &Value) -> Option<u64> {
    value
        .as_str()
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
}

fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    start: String,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            cluster_ips: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Records `manager`'s write in `new`'s managedFields.
    fn record_manager(&self, resource: &ResourceInfo, old: Option<&Value>, new: &mut Value, manager: &Manager, subresource: Option<&str>) {
        let schema = skiff_api::schema::for_kind(resource.group, resource.version, resource.kind);
        let now = format_time(self.clock.now());
        skiff_api::managed::record(schema, old, new, manager, &resource.api_version(), subresource, &now);
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn key(resource: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
        resource.storage_key(namespace, name)
    }

    async fn current(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<KeyValue> {
        self.store
            .get(&Self::key(resource, namespace, name))
            .await?
            .ok_or_else(|| ApiError::from(Status::not_found(resource, name)))
    }

    pub async fn get(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        decode(&self.current(resource, namespace, name).await?)
    }

    pub async fn list(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList> {
        let list = self.list_stored(resource, namespace, params).await?;
        Ok(ObjectList {
            items: list.items.iter().map(decode).collect::<Result<_>>()?,
            revision: list.revision,
            continue_token: list.continue_token,
        })
    }

    /// [`Registry::list`] without decoding the items.
    pub async fn list_stored(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<StoredList> {
        let prefix = resource.storage_prefix(namespace);
        // A list pinned to one name (kubectl's delete/wait reflector) is one read.
        if let (Some(name), Some(_)) = (
            params.fields.exact_name(),
            namespace.filter(|_| resource.namespaced),
        ) {
            let revision = self.store.current_revision().await?;
            let items = match self.store.get(&format!("{prefix}{name}")).await? {
                Some(kv) if params.matches(&decode(&kv)?) => vec![kv],
                _ => Vec::new(),
            };
            return Ok(StoredList {
                items,
                revision,
                continue_token: None,
            });
        }
        let start_after = match &params.continue_token {
            Some(token) => {
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(token)
                    .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
                let token: ContinueToken = serde_json::from_slice(&bytes)
                    .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
                Some(token.start)
            }
            None => None,
        };
        let result = self
            .store
            .list(
                &prefix,
                ListOptions {
                    start_after,
                    limit: params.limit,
                    predicate: params.predicate(),
                },
            )
            .await?;
        let continue_token = match (result.more, result.items.last()) {
            (true, Some(last)) => {
                let token = ContinueToken {
                    rv: result.revision,
                    start: last.key.clone(),
                };
                let bytes = serde_json::to_vec(&token).map_err(|source| ApiError::Encode {
                    what: "continue token",
                    source,
                })?;
                Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
            }
            _ => None,
        };
        Ok(StoredList {
            items: result.items,
            revision: result.revision,
            continue_token,
        })
    }

    /// Refuses new objects in a missing or terminating namespace.
    async fn check_namespace(
        &self,
        resource: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<()> {
        let Some(namespaces) = resources::core("namespaces") else {
            return Ok(());
        };
        let ns = match self
            .store
            .get(&namespaces.storage_key(None, namespace))
            .await?
        {
            Some(kv) => decode(&kv)?,
            None => return Err(Status::namespace_not_found(namespace).into()),
        };
        if !ns["metadata"]["deletionTimestamp"].is_null() {
            let message = format!(
                "{} {name:?} is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                resource.plural
            );
            let mut status = Status::new(403, "Forbidden", message.clone());
            status.details = Some(json!({"name": name, "kind": resource.plural, "causes": [
                {"reason": "NamespaceTerminating", "message": format!("namespace {namespace} is being terminated"), "field": "metadata.namespace"}
            ]}));
            return Err(status.into());
        }
        Ok(())
    }

    pub async fn create(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        mut object: Value,
        dry_run: bool,
        manager: Option<&Manager>,
    ) -> Result<Value> {
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        if resource.namespaced {
            let namespace = namespace.unwrap_or("default");
            match object["metadata"]["namespace"].as_str() {
                Some(ns) if !ns.is_empty() && ns != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => object["metadata"]["namespace"] = json!(namespace),
            }
        } else if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        let generate = object["metadata"]["generateName"]
            .as_str()
            .filter(|g| !g.is_empty())
            .map(str::to_string);
        let explicit_name = name_of(&object).to_string();
        for attempt in 0..3 {
            let mut candidate = object.clone();
            if let (true, Some(prefix)) = (explicit_name.is_empty(), &generate) {
                candidate["metadata"]["name"] =
                    json!(object::generate_name(prefix, rand::random::<u32>));
            }
            let name = name_of(&candidate).to_string();
            if resource.namespaced {
                self.check_namespace(resource, namespace.unwrap_or("default"), &name)
                    .await?;
            }
            let meta = &mut candidate["metadata"];
            meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
            meta["creationTimestamp"] = json!(format_time(self.clock.now()));
            if let Some(meta) = meta.as_object_mut() {
                for key in [
                    "resourceVersion",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "selfLink",
                    "managedFields",
                ] {
                    meta.remove(key);
                }
            }
            strategy::prepare_for_create(resource, &mut candidate)
                .map_err(ApiError::bad_request)?;
            if let Some(manager) = manager {
                self.record_manager(resource, None, &mut candidate, manager, None);
            }
            let errors = strategy::validate_create(resource, &candidate);
            if !errors.is_empty() {
                return Err(Status::invalid(resource.kind, resource.group, &name, &errors).into());
            }
            let _allocating = if resource.kind == "Service" {
                let guard = self.cluster_ips.lock().await;
                self.allocate_cluster_ip(resource, &mut candidate).await?;
                Some(guard)
            } else {
                None
            };
            if dry_run {
                return Ok(candidate);
            }
            let key = Self::key(resource, namespace, &name);
            match self.store.create(&key, encode(&candidate)?).await {
                Ok(kv) => return decode(&kv),
                Err(StoreError::AlreadyExists { .. })
                    if generate.is_some() && explicit_name.is_empty() && attempt < 2 =>
                {
                    continue
                }
                Err(StoreError::AlreadyExists { .. }) => {
                    return Err(Status::already_exists(resource, &name).into())
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(Status::already_exists(resource, name_of(&object)).into())
    }

    /// PUT: replace with `object`, honouring its resourceVersion if set.
    #[allow(clippy::too_many_arguments)]
    pub async fn update(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        object: Value,
        subresource: Option<&str>,
        dry_run: bool,
        manager: Option<&Manager>,
    ) -> Result<Value> {
        check_identity(resource, namespace, name, &object)?;
        // "0" is no precondition, as upstream parses it (unconditional).
        let wanted = parse_rv(&object["metadata"]["resourceVersion"]).filter(|rv| *rv != 0);
        loop {
            let current = self.current(resource, namespace, name).await?;
            if wanted.is_some_and(|rv| rv != current.mod_revision) {
                return Err(Status::modified(resource, name).into());
            }
            let old = decode(&current)?;
            if let Some(done) = self
                .write_update(
                    resource,
                    namespace,
                    name,
                    &current,
                    &old,
                    object.clone(),
                    subresource,
                    dry_run,
                    manager,
                )
                .await?
            {
                return Ok(done);
            }
            if wanted.is_some() {
                return Err(Status::modified(resource, name).into());
            }
        }
    }

    /// PATCH: `apply` computes the new object from the current one.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch<F>(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        dry_run: bool,
        manager: Option<&Manager>,
        mut apply: F,
    ) -> Result<Value>
    where
        F: FnMut(&Value) -> Result<Value>,
    {
        loop {
            let current = self.current(resource, namespace, name).await?;
            let old = decode(&current)?;
            let mut patched = apply(&old)?;
            // The patch pins a version only if it sets one (the current
            // object's own comes along otherwise): unpinned patches are
            // retried on a conflict, as upstream.
            let pinned = parse_rv(&patched["metadata"]["resourceVersion"])
                .filter(|rv| Some(*rv) != parse_rv(&old["metadata"]["resourceVersion"]));
            if pinned.is_some_and(|rv| rv != current.mod_revision) {
                return Err(Status::modified(resource, name).into());
            }
            patched["metadata"]["resourceVersion"] = json!(current.mod_revision.to_string());
            check_identity(resource, namespace, name, &patched)?;
            if let Some(done) = self
                .write_update(
                    resource,
                    namespace,
                    name,
                    &current,
                    &old,
                    patched,
                    subresource,
                    dry_run,
                    manager,
                )
                .await?
            {
                return Ok(done);
            }
            if pinned.is_some() {
                return Err(Status::modified(resource, name).into());
            }
        }
    }

    /// One compare-and-swap attempt; `None` if the object changed meanwhile.
    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        current: &KeyValue,
        old: &Value,
        mut new: Value,
        subresource: Option<&str>,
        dry_run: bool,
        manager: Option<&Manager>,
    ) -> Result<Option<Value>> {
        if resource.namespaced {
            new["metadata"]["namespace"] = json!(namespace.unwrap_or("default"));
        }
        if name_of(&new).is_empty() {
            new["metadata"]["name"] = json!(name);
        }
        new["kind"] = old["kind"].clone();
        new["apiVersion"] = old["apiVersion"].clone();
        strategy::prepare_for_update(resource, subresource, old, &mut new)
            .map_err(ApiError::bad_request)?;
        match manager {
            Some(manager) => self.record_manager(resource, Some(old), &mut new, manager, subresource),
            // Writes of the server itself keep the ownership as it was.
            None => new["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone(),
        }
        if new["metadata"]["managedFields"].is_null() {
            if let Some(meta) = new["metadata"].as_object_mut() {
                meta.remove("managedFields");
            }
        }
        let errors = strategy::validate_update(resource, subresource, old, &new);
        if !errors.is_empty() {
            return Err(Status::invalid(resource.kind, resource.group, name, &errors).into());
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == *old || dry_run {
            return Ok(Some(new));
        }
        let key = Self::key(resource, namespace, name);
        if self.finalized(resource, &new) {
            return match self.store.delete(&key, Some(current.mod_revision)).await {
                Ok(kv) => Ok(Some(decode_at(&encode(&new)?, kv.mod_revision)?)),
                Err(StoreError::Conflict { .. }) => Ok(None),
                Err(other) => Err(other.into()),
            };
        }
        match self
            .store
            .update(&key, current.mod_revision, encode(&new)?)
            .await
        {
            Ok(kv) => Ok(Some(decode(&kv)?)),
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(StoreError::NotFound { .. }) => Err(Status::not_found(resource, name).into()),
            Err(other) => Err(other.into()),
        }
    }

    /// Whether an object marked for deletion has nothing left holding it.
    fn finalized(&self, resource: &ResourceInfo, object: &Value) -> bool {
        let meta = &object["metadata"];
        if meta["deletionTimestamp"].is_null()
            || meta["finalizers"].as_array().is_some_and(|f| !f.is_empty())
        {
            return false;
        }
        match resource.kind {
            "Namespace" => object["spec"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty()),
            "Pod" => meta["deletionGracePeriodSeconds"].as_i64() == Some(0),
            _ => true,
        }
    }

    /// DELETE. Returns the object as deleted, or as marked for graceful deletion.
    pub async fn delete(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value> {
        if resource.kind == "Namespace" && IMMORTAL_NAMESPACES.contains(&name) {
            let mut status = Status::new(
                403,
                "Forbidden",
                format!("namespaces {name:?} is forbidden: this namespace may not be deleted"),
            );
            status.details = Some(json!({"name": name, "kind": "namespaces"}));
            return Err(status.into());
        }
        let key = Self::key(resource, namespace, name);
        loop {
            let current = self.current(resource, namespace, name).await?;
            let object = decode(&current)?;
            let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_string();
            if let Some(wanted) = options.precondition_uid.as_deref().filter(|u| *u != uid) {
                return Err(Status::conflict(resource, name, &format!("Precondition failed: UID in precondition: {wanted}, UID in object meta: {uid}")).into());
            }
            let rv = current.mod_revision.to_string();
            if let Some(wanted) = options
                .precondition_resource_version
                .as_deref()
                .filter(|r| *r != rv)
            {
                return Err(Status::conflict(resource, name, &format!("Precondition failed: ResourceVersion in precondition: {wanted}, ResourceVersion in object meta: {rv}")).into());
            }
            let marked = match self.deletion_plan(resource, &object, options).await? {
                DeletionPlan::Now => None,
                DeletionPlan::Unchanged => return Ok(object),
                DeletionPlan::Mark { grace } => {
                    let now = self.clock.now();
                    let deadline = now
                        .checked_add(SignedDuration::from_secs(grace))
                        .unwrap_or(now);
                    let mut object = object.clone();
                    let meta = &mut object["metadata"];
                    let existing = meta["deletionTimestamp"]
                        .as_str()
                        .and_then(|t| t.parse::<Timestamp>().ok());
                    if existing.is_none_or(|t| deadline < t) {
                        meta["deletionTimestamp"] = json!(format_time(deadline));
                        meta["deletionGracePeriodSeconds"] = json!(grace);
                        if resource.kind == "Pod" {
                            let generation = meta["generation"].as_i64().unwrap_or(1);
                            meta["generation"] = json!(generation + 1);
                        }
                    }
                    if resource.kind == "Namespace" {
                        object["status"]["phase"] = json!("Terminating");
                    }
                    Some(object)
                }
            };
            if options.dry_run {
                return Ok(marked.unwrap_or(object));
            }
            let outcome = match marked {
                Some(object) => self
                    .store
                    .update(&key, current.mod_revision, encode(&object)?)
                    .await
                    .map(|kv| decode(&kv)),
                None => self
                    .store
                    .delete(&key, Some(current.mod_revision))
                    .await
                    .map(|kv| decode(&kv)),
            };
            match outcome {
                Ok(object) => return object,
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => {
                    return Err(Status::not_found(resource, name).into())
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    async fn deletion_plan(
        &self,
        resource: &ResourceInfo,
        object: &Value,
        options: &DeleteOptions,
    ) -> Result<DeletionPlan> {
        let meta = &object["metadata"];
        let has_finalizers = meta["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if resource.kind == "Namespace" || has_finalizers {
            let already = !meta["deletionTimestamp"].is_null();
            return Ok(if already {
                DeletionPlan::Unchanged
            } else {
                DeletionPlan::Mark { grace: 0 }
            });
        }
        if resource.kind != "Pod" {
            return Ok(DeletionPlan::Now);
        }
        let spec_grace = object["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        let grace = options.grace_period_seconds.unwrap_or(spec_grace).max(0);
        let node = object["spec"]["nodeName"].as_str().unwrap_or("");
        if grace == 0 || node.is_empty() || is_terminal(object) || !self.node_exists(node).await? {
            return Ok(DeletionPlan::Now);
        }
        Ok(DeletionPlan::Mark { grace })
    }

    /// Pods bound to a node that does not exist have nobody to confirm their
    /// deletion (upstream's pod garbage collector removes them).
    async fn node_exists(&self, node: &str) -> Result<bool> {
        let Some(nodes) = resources::core("nodes") else {
            return Ok(false);
        };
        Ok(self
            .store
            .get(&nodes.storage_key(None, node))
            .await?
            .is_some())
    }
}

impl Registry {
    /// Read-modify-write that bypasses the update strategies, for writes the
    /// system itself makes (binding a pod, finalizing a namespace). `change`
    /// returns `false` to leave the object alone.
    pub async fn system_update<F>(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        mut change: F,
    ) -> Result<Value>
    where
        F: FnMut(&mut Value) -> Result<bool>,
    {
        let key = Self::key(resource, namespace, name);
        loop {
            let current = self.current(resource, namespace, name).await?;
            let mut object = decode(&current)?;
            if !change(&mut object)? {
                return Ok(object);
            }
            let outcome = if self.finalized(resource, &object) {
                self.store
                    .delete(&key, Some(current.mod_revision))
                    .await
                    .map(|kv| decode_at(&kv.value, kv.mod_revision))
            } else {
                match encode(&object) {
                    Ok(bytes) => self
                        .store
                        .update(&key, current.mod_revision, bytes)
                        .await
                        .map(|kv| decode(&kv)),
                    Err(e) => return Err(e),
                }
            };
            match outcome {
                Ok(object) => return object,
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => {
                    return Err(Status::not_found(resource, name).into())
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
}

enum DeletionPlan {
    Now,
    Mark { grace: i64 },
    Unchanged,
}

/// The body's name and namespace must match the URL.
fn check_identity(
    resource: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    object: &Value,
) -> Result<()> {
    let body_name = name_of(object);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if resource.namespaced {
        if let (Some(body_ns), Some(ns)) = (
            object["metadata"]["namespace"]
                .as_str()
                .filter(|n| !n.is_empty()),
            namespace,
        ) {
            if body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    Ok(())
}
