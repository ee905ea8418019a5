//! Objects every Kubernetes cluster has, kept as upstream's controllers
//! keep them: a `default` ServiceAccount in every namespace (the
//! service-account controller), the `kube-root-ca.crt` ConfigMap with the
//! cluster CA in every namespace (the root-CA publisher, which also puts
//! back an edited or deleted copy), and the `kubernetes` Service in
//! `default` on the first address of the service range, with the Endpoints
//! and EndpointSlice that name the API server. (Pods get their token volume
//! from `admission`; the node agent routes the Service's address.)

use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, Result};
use crate::registry::{ListParams, Registry};

pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
/// The `kubernetes` Service's address: the first of the service range.
pub const KUBERNETES_SERVICE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 43, 0, 1);
/// Retry delay when the store's watch cannot be opened.
const RETRY: Duration = Duration::from_secs(5);

fn core(plural: &str) -> Result<&'static ResourceInfo> {
    ApiError::served("", "v1", plural)
}

fn root_ca(namespace: &str, ca_pem: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ROOT_CA_CONFIG_MAP, "namespace": namespace,
            "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
        "data": {"ca.crt": ca_pem}})
}

/// Creates `object` unless it exists (a concurrent creation is fine).
async fn create_missing(registry: &Registry, resource: &ResourceInfo, namespace: &str, object: Value) -> Result<()> {
    match registry.create(resource, Some(namespace), object, false, None).await {
        Ok(_) => Ok(()),
        Err(error) if error.code() == 409 => Ok(()),
        Err(other) => Err(other),
    }
}

/// One pass over the active namespaces: their `default` ServiceAccount and
/// their `kube-root-ca.crt`, created or put back.
pub(crate) async fn namespace_pass(registry: &Registry, ca_pem: &str) -> Result<()> {
    let (namespaces, accounts, config_maps) = (core("namespaces")?, core("serviceaccounts")?, core("configmaps")?);
    for namespace in registry.list(namespaces, None, &ListParams::default()).await?.items {
        if !namespace["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let Some(name) = namespace["metadata"]["name"].as_str() else { continue };
        if let Err(error) = registry.get(accounts, Some(name), "default").await {
            if error.code() != 404 {
                return Err(error);
            }
            let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": name}});
            create_missing(registry, accounts, name, account).await?;
            tracing::info!(namespace = name, "created the default service account");
        }
        match registry.get(config_maps, Some(name), ROOT_CA_CONFIG_MAP).await {
            Ok(existing) if existing["data"]["ca.crt"] == ca_pem && existing["data"].as_object().map(|d| d.len()) == Some(1) => {}
            Ok(mut existing) => {
                existing["data"] = json!({"ca.crt": ca_pem});
                match registry.update(config_maps, Some(name), ROOT_CA_CONFIG_MAP, existing, None, false, None).await {
                    Ok(_) => tracing::info!(namespace = name, "put the cluster CA back into kube-root-ca.crt"),
                    // Changed meanwhile: the next pass looks again.
                    Err(error) if error.code() == 409 => {}
                    Err(other) => return Err(other),
                }
            }
            Err(error) if error.code() == 404 => {
                create_missing(registry, config_maps, name, root_ca(name, ca_pem)).await?;
            }
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// Whether a change under `key` is one the pass answers.
fn concerns_us(key: &str) -> bool {
    key.starts_with("/registry/namespaces/")
        || (key.starts_with("/registry/serviceaccounts/") && key.ends_with("/default"))
        || (key.starts_with("/registry/configmaps/") && key.ends_with(&format!("/{ROOT_CA_CONFIG_MAP}")))
}

/// Keeps every namespace's `default` ServiceAccount and `kube-root-ca.crt`
/// until `shutdown`: a pass, then wait for a change that concerns them.
pub async fn run_namespace_objects(registry: Registry, ca_pem: String, shutdown: CancellationToken) {
    loop {
        let start = registry.store().current_revision().await.unwrap_or(0);
        if let Err(error) = namespace_pass(&registry, &ca_pem).await {
            tracing::warn!(%error, "service account and root CA pass failed");
        }
        let mut changes = match registry.store().watch("/registry/", start).await {
            Ok(changes) if start > 0 => changes,
            _ => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        let wake = async {
            while let Some(Ok(event)) = changes.next().await {
                if concerns_us(&event.kv.key) {
                    return;
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake => {}
        }
    }
}

/// The `kubernetes` Service, its Endpoints and EndpointSlice naming the
/// API server at `address:port` (created, or updated when it moved).
pub async fn ensure_kubernetes_service(registry: &Registry, address: IpAddr, port: u16) -> Result<()> {
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
        "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP, "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}});
    let services = core("services")?;
    // Looked up first: a second create would fail on the taken address.
    match registry.get(services, Some("default"), "kubernetes").await {
        Ok(_) => {}
        Err(error) if error.code() == 404 => create_missing(registry, services, "default", service).await?,
        Err(other) => return Err(other),
    }
    let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address.to_string()}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
    let family = if address.is_ipv4() { "IPv4" } else { "IPv6" };
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": family,
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
    let slices = ApiError::served("discovery.k8s.io", "v1", "endpointslices")?;
    for (resource, wanted, field) in [(core("endpoints")?, endpoints, "subsets"), (slices, slice, "endpoints")] {
        match registry.get(resource, Some("default"), "kubernetes").await {
            Ok(existing) if existing[field] == wanted[field] && existing["ports"] == wanted["ports"] => {}
            Ok(mut existing) => {
                for key in [field, "ports"] {
                    if !wanted[key].is_null() {
                        existing[key] = wanted[key].clone();
                    }
                }
                registry.update(resource, Some("default"), "kubernetes", existing, None, false, None).await?;
            }
            Err(error) if error.code() == 404 => create_missing(registry, resource, "default", wanted).await?,
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_wakes_for_what_it_keeps() {
        assert!(concerns_us("/registry/namespaces/team-a"));
        assert!(concerns_us("/registry/serviceaccounts/team-a/default"));
        assert!(concerns_us("/registry/configmaps/team-a/kube-root-ca.crt"));
        assert!(!concerns_us("/registry/configmaps/team-a/other"));
        assert!(!concerns_us("/registry/pods/team-a/default"));
    }
}
