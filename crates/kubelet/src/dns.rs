//! A pod's name resolution, as the kubelet's DNS configurer builds it:
//! `resolv.conf` from `dnsPolicy` and `dnsConfig`, and the pod's fully
//! qualified name from `subdomain` (in `/etc/hosts`, and as the hostname
//! with `setHostnameAsFQDN`). Pure.

use k8s_openapi::api::core::v1::{PodDNSConfig, Pod};

/// The cluster domain (kubelet's `--cluster-domain` default).
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// Upstream's limits on what a resolv.conf may hold.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

#[derive(Debug, Default, PartialEq, Eq)]
struct Resolver {
    servers: Vec<String>,
    searches: Vec<String>,
    /// `name` or `name:value`.
    options: Vec<String>,
}

fn parse(text: &str) -> Resolver {
    let mut resolver = Resolver::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            // A loopback resolver of the host (systemd-resolved) is not
            // reachable from the pod's network namespace.
            Some("nameserver") => resolver
                .servers
                .extend(words.next().filter(|s| !s.starts_with("127.")).map(str::to_string)),
            Some("search" | "domain") => resolver.searches = words.map(str::to_string).collect(),
            Some("options") => resolver.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    resolver
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

/// The pod's `resolv.conf`, given the node's.
pub fn resolv_conf(pod: &Pod, node_resolv_conf: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.host_network.unwrap_or(false);
    let host = parse(node_resolv_conf);
    let mut resolver = match spec.dns_policy.as_deref().unwrap_or("ClusterFirst") {
        "None" => Resolver::default(),
        "Default" => host,
        "ClusterFirst" if host_network => host,
        // ClusterFirst, ClusterFirstWithHostNet: the cluster's search path
        // (there is no cluster DNS service: the node's resolvers answer).
        _ => Resolver {
            servers: host.servers,
            searches: vec![
                format!("{namespace}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ],
            options: vec!["ndots:5".into()],
        },
    };
    if let Some(PodDNSConfig { nameservers, searches, options }) = &spec.dns_config {
        for server in nameservers.iter().flatten() {
            push_unique(&mut resolver.servers, server.clone());
        }
        for search in searches.iter().flatten() {
            push_unique(&mut resolver.searches, search.clone());
        }
        // A pod's option replaces the node's of the same name.
        for option in options.iter().flatten() {
            let text = match &option.value {
                Some(value) => format!("{}:{value}", option.name.as_deref().unwrap_or_default()),
                None => option.name.clone().unwrap_or_default(),
            };
            let name = option.name.as_deref().unwrap_or_default();
            resolver.options.retain(|o| o.split(':').next() != Some(name));
            resolver.options.push(text);
        }
    }
    resolver.servers.truncate(MAX_NAMESERVERS);
    resolver.searches.truncate(MAX_SEARCHES);
    let mut text = String::new();
    if !resolver.searches.is_empty() {
        text.push_str(&format!("search {}\n", resolver.searches.join(" ")));
    }
    for server in &resolver.servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !resolver.options.is_empty() {
        text.push_str(&format!("options {}\n", resolver.options.join(" ")));
    }
    text
}

/// `<hostname>.<subdomain>.<namespace>.svc.cluster.local` when the pod has
/// a subdomain.
pub fn fqdn(pod: &Pod, hostname: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let subdomain = spec.subdomain.as_deref().filter(|s| !s.is_empty())?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    Some(format!("{hostname}.{subdomain}.{namespace}.svc.{CLUSTER_DOMAIN}"))
}

/// The kernel hostname: the FQDN with `setHostnameAsFQDN`, which must fit
/// in 64 characters (upstream's error otherwise).
pub fn kernel_hostname(pod: &Pod, hostname: &str) -> Result<String, String> {
    let as_fqdn = pod.spec.as_ref().and_then(|s| s.set_hostname_as_fqdn).unwrap_or(false);
    match fqdn(pod, hostname).filter(|_| as_fqdn) {
        Some(name) if name.len() > 64 => Err(format!(
            "failed to construct FQDN from pod hostname and cluster domain, FQDN {name} is too long (64 characters is the max, {} characters requested)",
            name.len()
        )),
        Some(name) => Ok(name),
        None => Ok(hostname.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NODE: &str = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0 ndots:1\n";

    fn pod(spec: serde_json::Value) -> Result<Pod, serde_json::Error> {
        serde_json::from_value(json!({"metadata": {"name": "web-0", "namespace": "shop"}, "spec": spec}))
    }

    #[test]
    fn resolv_conf_follows_dns_policy_and_config() -> Result<(), serde_json::Error> {
        let config = json!({"nameservers": ["1.1.1.1", "10.0.0.2"], "searches": ["extra.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]});
        let cases = [
            (json!({"containers": []}), "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.0.0.2\noptions ndots:5\n"),
            (json!({"dnsPolicy": "Default"}), "search corp.example\nnameserver 10.0.0.2\noptions edns0 ndots:1\n"),
            (json!({"dnsPolicy": "ClusterFirst", "hostNetwork": true}), "search corp.example\nnameserver 10.0.0.2\noptions edns0 ndots:1\n"),
            (
                json!({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true}),
                "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.0.0.2\noptions ndots:5\n",
            ),
            (json!({"dnsPolicy": "None", "dnsConfig": config.clone()}), "search extra.example\nnameserver 1.1.1.1\nnameserver 10.0.0.2\noptions ndots:2 single-request\n"),
            (
                json!({"dnsPolicy": "Default", "dnsConfig": config}),
                "search corp.example extra.example\nnameserver 10.0.0.2\nnameserver 1.1.1.1\noptions edns0 ndots:2 single-request\n",
            ),
            (
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.4"]}}),
                "nameserver 1.0.0.1\nnameserver 1.0.0.2\nnameserver 1.0.0.3\n",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(resolv_conf(&pod(spec.clone())?, NODE), want, "{spec}");
        }
        Ok(())
    }

    #[test]
    fn subdomains_give_the_pod_a_fully_qualified_name() -> Result<(), serde_json::Error> {
        let plain = pod(json!({}))?;
        assert_eq!(fqdn(&plain, "web-0"), None);
        assert_eq!(kernel_hostname(&plain, "web-0"), Ok("web-0".into()));
        let sub = pod(json!({"subdomain": "db"}))?;
        assert_eq!(fqdn(&sub, "web-0").as_deref(), Some("web-0.db.shop.svc.cluster.local"));
        assert_eq!(kernel_hostname(&sub, "web-0"), Ok("web-0".into()), "without setHostnameAsFQDN");
        let as_fqdn = pod(json!({"subdomain": "db", "setHostnameAsFQDN": true}))?;
        assert_eq!(kernel_hostname(&as_fqdn, "web-0"), Ok("web-0.db.shop.svc.cluster.local".into()));
        let long = pod(json!({"subdomain": "a-rather-long-subdomain-name", "setHostnameAsFQDN": true}))?;
        assert_eq!(
            kernel_hostname(&long, "web-0-with-a-long-name"),
            Err("failed to construct FQDN from pod hostname and cluster domain, FQDN web-0-with-a-long-name.a-rather-long-subdomain-name.shop.svc.cluster.local is too long (64 characters is the max, 74 characters requested)".into())
        );
        Ok(())
    }
}
