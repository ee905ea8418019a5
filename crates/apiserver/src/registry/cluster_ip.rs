//! Cluster IPs for Services, as upstream's allocator gives them out from
//! the service CIDR: the first free address, or the one asked for if it is
//! in range and free.

use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use skiff_api::Status;

use super::{name_of, ListParams};
use crate::error::{ApiError, Result};

/// The service CIDR (k3s's default); its first address is the
/// `kubernetes` Service's.
pub const SERVICE_CIDR: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(10, 43, 0, 0), 16);

impl super::Registry {
    /// Gives a Service that needs one (not ExternalName, not headless) a
    /// free cluster IP from [`SERVICE_CIDR`], or checks the one it asks
    /// for, as upstream's allocator does; `clusterIPs` follows.
    pub(super) async fn allocate_cluster_ip(&self, services: &ResourceInfo, service: &mut Value) -> Result<()> {
        let spec = &service["spec"];
        if spec["type"] == "ExternalName" {
            return Ok(());
        }
        let asked = spec["clusterIP"].as_str().unwrap_or_default().to_string();
        if asked == "None" {
            service["spec"]["clusterIPs"] = json!(["None"]);
            return Ok(());
        }
        let mut used = std::collections::BTreeSet::new();
        for other in self.list(services, None, &ListParams::default()).await?.items {
            if let Some(ip) = other["spec"]["clusterIP"].as_str().and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok()) {
                used.insert(ip);
            }
        }
        let (base, bits) = SERVICE_CIDR;
        let size = 1u32 << (32 - bits);
        let first = u32::from(base);
        let ip = if asked.is_empty() {
            // The network and broadcast addresses are never given out;
            // the first address is the `kubernetes` Service's.
            (2..size - 1)
                .map(|offset| std::net::Ipv4Addr::from(first + offset))
                .find(|ip| !used.contains(ip))
                .ok_or_else(|| Status::new(500, "InternalError", "Internal error occurred: failed to allocate a serviceIP: range is full"))?
        } else {
            let name = name_of(service).to_string();
            let invalid = |detail: String| -> ApiError {
                let errors = [skiff_api::FieldError::invalid("spec.clusterIPs", json!([asked.clone()]), detail)];
                Status::invalid("Service", "", &name, &errors).into()
            };
            let ip: std::net::Ipv4Addr = asked.parse().map_err(|_| invalid("must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()))?;
            if u32::from(ip) & !(size - 1) != first {
                return Err(invalid(format!("failed to allocate IP {asked}: the provided IP ({asked}) is not in the valid range. The range of valid IPs is {base}/{bits}")));
            }
            if used.contains(&ip) {
                return Err(invalid(format!("failed to allocate IP {asked}: provided IP is already allocated")));
            }
            ip
        };
        service["spec"]["clusterIP"] = json!(ip.to_string());
        service["spec"]["clusterIPs"] = json!([ip.to_string()]);
        service["spec"]["ipFamilies"] = json!(["IPv4"]);
        service["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        Ok(())
    }
}
