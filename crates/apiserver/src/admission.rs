//! Admission of new pods by their service account (upstream's
//! ServiceAccount admission plugin): the account must exist (the `default`
//! one is made if its controller has not got to a new namespace yet), and,
//! unless automounting is off, the pod gets its `kube-api-access-*` volume.
//! Mirror pods of static pods may not use an account and get no token.

use serde_json::Value;
use skiff_api::pod::service_account;
use skiff_api::Status;

use crate::error::{ApiError, Result};
use crate::registry::Registry;

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

fn random_suffix() -> String {
    // upstream's utilrand.String: no vowels, no look-alike digits.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| char::from(ALPHABET[usize::from(rand::random::<u8>()) % ALPHABET.len()]))
        .collect()
}

fn forbidden(pod: &Value, message: String) -> ApiError {
    refused("pods", pod["metadata"]["name"].as_str().unwrap_or(""), &message)
}

/// Admits a pod about to be created in `namespace`.
pub async fn admit_pod(registry: &Registry, namespace: &str, pod: &mut Value) -> Result<()> {
    let account_name = pod["spec"]["serviceAccountName"]
        .as_str()
        .or_else(|| pod["spec"]["serviceAccount"].as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
        .to_string();
    if pod["metadata"]["annotations"][MIRROR_ANNOTATION].is_string() {
        if account_name != "default" {
            return Err(forbidden(pod, "a mirror pod may not reference service accounts".into()));
        }
        return Ok(());
    }
    let accounts = ApiError::served("", "v1", "serviceaccounts")?;
    let account = match registry.get(accounts, Some(namespace), &account_name).await {
        Ok(account) => account,
        Err(error) if error.code() == 404 && account_name == "default" => {
            let account = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": namespace}});
            match registry.create(accounts, Some(namespace), account, false, None).await {
                Ok(created) => created,
                Err(error) if error.code() == 409 => registry.get(accounts, Some(namespace), "default").await?,
                Err(other) => return Err(other),
            }
        }
        Err(error) if error.code() == 404 => {
            return Err(forbidden(
                pod,
                format!("error looking up service account {namespace}/{account_name}: serviceaccount {account_name:?} not found"),
            ))
        }
        Err(other) => return Err(other),
    };
    if service_account::automount(pod, &account) {
        service_account::add_token_volume(pod, &random_suffix());
    }
    Ok(())
}

/// upstream's NodeRestriction for a request by a node agent (others pass):
/// `verb` is create/update/patch/delete on `resource` (`sub`resource) named
/// `name` in `namespace`, with `object` the body being written (for patch,
/// the patched object; `old` its stored state).
#[allow(clippy::too_many_arguments)]
pub async fn restrict_node(
    registry: &Registry,
    user: &skiff_api::rbac::UserInfo,
    verb: &str,
    resource: &skiff_api::resources::ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    sub: Option<&str>,
    object: Option<&Value>,
) -> Result<()> {
    use skiff_api::node_restriction as restrict;
    let Some(node) = crate::auth::node::node_name(user) else {
        return Ok(());
    };
    let name = if name.is_empty() { object.and_then(|o| o["metadata"]["name"].as_str()).unwrap_or("") } else { name };
    let decided = match (resource.group, resource.plural, sub, verb) {
        ("", "nodes", None, "create") => object.map_or(Ok(()), |o| restrict::admit_node(node, name, o, None)),
        ("", "nodes", None, "update") => match object {
            Some(object) => {
                let old = registry.get(ApiError::served("", "v1", "nodes")?, None, name).await.ok();
                restrict::admit_node(node, name, object, old.as_ref())
            }
            None => Ok(()),
        },
        ("coordination.k8s.io", "leases", None, _) => restrict::admit_lease(node, namespace.unwrap_or(""), name),
        ("", "pods", None, "create") => match object {
            Some(pod) => {
                let own = registry.get(ApiError::served("", "v1", "nodes")?, None, node).await.ok();
                restrict::admit_pod_create(node, own.as_ref().and_then(|n| n["metadata"]["uid"].as_str()), pod)
            }
            None => Ok(()),
        },
        ("", "pods", None, "delete") | ("", "pods", Some("eviction"), "create") => {
            let pods = ApiError::served("", "v1", "pods")?;
            match registry.get(pods, namespace, name).await {
                Ok(pod) => restrict::admit_pod_removal(node, pod["spec"]["nodeName"].as_str().unwrap_or(""), sub.is_some()),
                // Not there: the delete itself answers 404.
                Err(_) => Ok(()),
            }
        }
        _ => Ok(()),
    };
    decided.map_err(|message| refused(resource.plural, name, &message))
}

/// `<resource> "<name>" is forbidden: <message>`, as admission refusals read.
pub fn refused(plural: &str, name: &str, message: &str) -> ApiError {
    let mut status = Status::new(403, "Forbidden", format!("{plural} {name:?} is forbidden: {message}"));
    status.details = Some(serde_json::json!({"name": name, "kind": plural}));
    status.into()
}
