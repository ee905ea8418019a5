//! Pod networking through real CNI plugins (the containernetworking-plugins
//! binaries): one IP per pod on a flat bridge network, `hostPort` through
//! portmap (`lo` is the sandbox's own: see `sandbox`). Results of ADD are cached
//! per sandbox so DEL hands the plugins the `prevResult` they need, and so a
//! restarted node agent can tear down what an earlier one set up.

pub mod addresses;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// The CNI spec version of the configs Skiff writes.
const CNI_VERSION: &str = "1.0.0";
/// The name of Skiff's own network (host-local keeps its state under it).
pub const OWN_NETWORK_NAME: &str = "skiff";
/// The pod interface name, as kubelet uses.
pub const POD_INTERFACE: &str = "eth0";

/// What can go wrong setting up or tearing down a pod network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("CNI plugin {plugin} failed ({command}): {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        message: String,
    },
    #[error("failed to run CNI plugin {plugin} from {dir}")]
    Exec {
        plugin: String,
        dir: String,
        source: std::io::Error,
    },
    #[error("no usable network config in {dir}")]
    NoConfig { dir: String },
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("i/o error on {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, NetworkError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NetworkError + '_ {
    move |source| NetworkError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A `hostPort` to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    pub protocol: String,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty", default)]
    pub host_ip: String,
}

/// Which pod a network belongs to.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The sandbox ID (CNI_CONTAINERID).
    pub id: String,
    /// Path of the pod's network namespace.
    pub netns: PathBuf,
    pub namespace: String,
    pub name: String,
    pub ports: Vec<PortMapping>,
}

/// The address a pod got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    pub ip: String,
    pub gateway: Option<String>,
}

/// Settings for Skiff's default network.
#[derive(Debug, Clone)]
pub struct DefaultNetwork {
    pub bridge: String,
    /// The node's pod CIDR, e.g. `10.42.0.0/24`.
    pub pod_cidr: String,
}

/// The CNI plugins and configuration one node uses.
#[derive(Debug, Clone)]
pub struct Cni {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    /// Cached ADD results, per sandbox.
    pub cache_dir: PathBuf,
}

/// Skiff's own pod network on a node: written once the node has a pod
/// CIDR (the server assigns it), with the masquerade rule for leaving the
/// cluster CIDR.
#[derive(Debug, Clone)]
pub struct OwnNetwork {
    pub bridge: String,
    pub cluster_cidr: String,
    /// host-local IPAM's state.
    pub ipam_dir: PathBuf,
}

impl Cni {
    /// Writes Skiff's conflist for `pod_cidr` and the masquerade rule.
    pub async fn configure_own(&self, own: &OwnNetwork, pod_cidr: &str) -> Result<()> {
        let network = DefaultNetwork { bridge: own.bridge.clone(), pod_cidr: pod_cidr.to_string() };
        self.write_default_config(&network, &own.ipam_dir)?;
        ensure_masquerade(pod_cidr, &own.cluster_cidr).await
    }
}

/// Skiff's default conflist: bridge with host-local IPAM, then portmap.
/// Masquerading is one node-wide rule ([`ensure_masquerade`]) rather than
/// the bridge plugin's `ipMasq`, whose per-pod chains make every pod start
/// and stop rewrite the NAT table (quadratic at hundreds of pods).
pub fn default_conflist(network: &DefaultNetwork, ipam_dir: &Path) -> Value {
    json!({
        "cniVersion": CNI_VERSION,
        "name": OWN_NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": network.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

/// Makes sure traffic from the node's pod CIDR to outside the cluster's
/// pod network is masqueraded (one rule per node, as flannel's for k3s);
/// pod-to-pod traffic across nodes keeps its source address.
pub async fn ensure_masquerade(pod_cidr: &str, cluster_cidr: &str) -> Result<()> {
    let rule = ["-s", pod_cidr, "!", "-d", cluster_cidr, "-m", "comment", "--comment", "skiff pod masquerade", "-j", "MASQUERADE"];
    ensure_rule("nat", "POSTROUTING", &rule).await
}

/// Sends pods' connections to `service` (the `kubernetes` Service's
/// address and port) to the API server at `target`, with one DNAT rule:
/// the only Service Skiff routes, so no Service proxy is needed. An API
/// server on loopback is reached as kube-proxy reaches localhost node
/// ports: `route_localnet`, with kube-proxy's rule that drops every other
/// packet for 127.0.0.0/8 arriving from outside (CVE-2020-8558).
pub async fn ensure_service_nat(service: std::net::SocketAddr, target: std::net::SocketAddr) -> Result<()> {
    let (service_ip, service_port) = (service.ip().to_string(), service.port().to_string());
    let destination = target.to_string();
    let rule = [
        "-d", &service_ip, "-p", "tcp", "--dport", &service_port, "-m", "comment", "--comment",
        "skiff kubernetes service", "-j", "DNAT", "--to-destination", &destination,
    ];
    ensure_rule("nat", "PREROUTING", &rule).await?;
    if target.ip().is_loopback() {
        let martians = [
            "-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate",
            "RELATED,ESTABLISHED,DNAT", "-m", "comment", "--comment", "skiff: block incoming localnet connections",
            "-j", "DROP",
        ];
        ensure_rule("filter", "INPUT", &martians).await?;
        let sysctl = Path::new("/proc/sys/net/ipv4/conf/all/route_localnet");
        std::fs::write(sysctl, "1").map_err(io_err(sysctl))?;
    }
    Ok(())
}

/// Routes `cidr` via `via` (`ip route replace`: idempotent).
pub async fn ensure_route(cidr: &str, via: &str) -> Result<()> {
    ip(&["route", "replace", cidr, "via", via]).await
}

/// Removes the route to `cidr`.
pub async fn remove_route(cidr: &str) -> Result<()> {
    ip(&["route", "del", cidr]).await
}

async fn ip(args: &[&str]) -> Result<()> {
    let mut command = tokio::process::Command::new("ip");
    command.args(args).stdin(Stdio::null());
    run_tool("ip", &mut command).await
}

/// Runs a host tool (`ip`, `iptables`); a failure carries its stderr.
async fn run_tool(tool: &str, command: &mut tokio::process::Command) -> Result<()> {
    let output = command.output().await.map_err(io_err(Path::new(tool)))?;
    if output.status.success() {
        return Ok(());
    }
    Err(NetworkError::Plugin {
        plugin: tool.into(),
        command: "ADD",
        message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// Appends `rule` to `chain` of `table` unless it is there (`iptables -w`).
async fn ensure_rule(table: &str, chain: &str, rule: &[&str]) -> Result<()> {
    let iptables = |action: &'static str| {
        let mut command = tokio::process::Command::new("iptables");
        command
            .args(["-w", "-t", table, action, chain])
            .args(rule)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let present = iptables("-C")
        .status()
        .await
        .map_err(io_err(Path::new("iptables")))?;
    if present.success() {
        return Ok(());
    }
    run_tool("iptables", &mut iptables("-A")).await
}

/// portmap only acts on port mappings; for a pod without host ports it is
/// not called at all (it would still scan the NAT table on every DEL).
fn needed(plugin: &Value, attachment: &Attachment) -> bool {
    plugin["type"] != "portmap" || !attachment.ports.is_empty()
}

impl Cni {
    /// Writes Skiff's default conflist into `conf_dir` unless one is there.
    pub fn write_default_config(&self, network: &DefaultNetwork, ipam_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(&self.conf_dir).map_err(io_err(&self.conf_dir))?;
        let path = self.conf_dir.join("10-skiff.conflist");
        let text =
            serde_json::to_string_pretty(&default_conflist(network, ipam_dir)).map_err(|e| {
                NetworkError::Malformed {
                    what: "conflist".into(),
                    reason: e.to_string(),
                }
            })?;
        std::fs::write(&path, text).map_err(io_err(&path))
    }

    /// The first conflist (or single-plugin conf) in `conf_dir`, by name, as kubelet picks.
    pub fn load_config(&self) -> Result<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.conf_dir)
            .map_err(io_err(&self.conf_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
            })
            .collect();
        files.sort();
        let path = files.first().ok_or_else(|| NetworkError::NoConfig {
            dir: self.conf_dir.display().to_string(),
        })?;
        let text = std::fs::read(path).map_err(io_err(path))?;
        let config: Value = serde_json::from_slice(&text).map_err(|e| NetworkError::Malformed {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if config["plugins"].is_array() {
            return Ok(config);
        }
        // A single-plugin .conf becomes a one-element list.
        Ok(json!({"cniVersion": config["cniVersion"], "name": config["name"], "plugins": [config]}))
    }

    fn cache_path(&self, id: &str) -> PathBuf {
        self.cache_dir.join(format!("{id}.json"))
    }

    async fn invoke(
        &self,
        plugin_config: &Value,
        command: &'static str,
        attachment: &Attachment,
        interface: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Value> {
        let plugin = plugin_config["type"].as_str().unwrap_or("").to_string();
        if plugin.is_empty() || plugin.contains('/') {
            return Err(NetworkError::Malformed {
                what: "plugin config".into(),
                reason: format!("bad plugin type {plugin:?}"),
            });
        }
        let binary = self.bin_dir.join(&plugin);
        let mut args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
            attachment.namespace, attachment.name, attachment.id
        );
        // An address picked for the pod, which IPAM plugins take as
        // `IP=` (host-local, static); the others ignore it.
        if let Some(ip) = requested {
            args.push_str(&format!(";IP={ip}"));
        }
        let mut child = tokio::process::Command::new(&binary)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &attachment.id)
            .env("CNI_NETNS", &attachment.netns)
            .env("CNI_IFNAME", interface)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", &self.bin_dir)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| NetworkError::Exec {
                plugin: plugin.clone(),
                dir: self.bin_dir.display().to_string(),
                source,
            })?;
        let input = plugin_config.to_string();
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .await
                .map_err(io_err(&binary))?;
        }
        let output = child.wait_with_output().await.map_err(io_err(&binary))?;
        let stdout: Value = if output.stdout.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
        };
        if !output.status.success() {
            let message = stdout["msg"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&output.stderr).trim().to_string());
            let details = stdout["details"]
                .as_str()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return Err(NetworkError::Plugin {
                plugin,
                command,
                message: format!("{message}{details}"),
            });
        }
        Ok(stdout)
    }

    /// The config a plugin receives: the list's name and version, plus
    /// runtime config for the capabilities it declares.
    fn plugin_input(
        list: &Value,
        plugin: &Value,
        attachment: &Attachment,
        previous: &Value,
    ) -> Value {
        let mut input = plugin.clone();
        input["cniVersion"] = list["cniVersion"].clone();
        input["name"] = list["name"].clone();
        if plugin["capabilities"]["portMappings"] == true {
            input["runtimeConfig"] = json!({"portMappings": attachment.ports});
        }
        if !previous.is_null() {
            input["prevResult"] = previous.clone();
        }
        input
    }

    /// Sets up the pod interface (the sandbox set `lo` up); returns the
    /// pod's address.
    pub async fn add(&self, attachment: &Attachment) -> Result<PodAddress> {
        self.add_requesting(attachment, None).await
    }

    /// [`Cni::add`], asking the IPAM plugin for `requested` (see
    /// [`addresses`]).
    pub async fn add_requesting(&self, attachment: &Attachment, requested: Option<Ipv4Addr>) -> Result<PodAddress> {
        let list = self.load_config()?;
        let mut result = Value::Null;
        for plugin in list["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| needed(p, attachment))
        {
            let input = Self::plugin_input(&list, plugin, attachment, &result);
            match self.invoke(&input, "ADD", attachment, POD_INTERFACE, requested).await {
                Ok(output) => result = output,
                Err(error) => {
                    // Undo what succeeded so nothing leaks.
                    let _ = self.remove_with(&list, attachment, &result).await;
                    return Err(error);
                }
            }
        }
        std::fs::create_dir_all(&self.cache_dir).map_err(io_err(&self.cache_dir))?;
        let cached = json!({"config": list, "result": result, "netns": attachment.netns, "ports": attachment.ports,
                            "namespace": attachment.namespace, "name": attachment.name});
        let path = self.cache_path(&attachment.id);
        std::fs::write(&path, cached.to_string()).map_err(io_err(&path))?;
        address_of(&result)
    }

    async fn remove_with(
        &self,
        list: &Value,
        attachment: &Attachment,
        result: &Value,
    ) -> Result<()> {
        let mut first_error = None;
        for plugin in list["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
            .filter(|p| needed(p, attachment))
        {
            let input = Self::plugin_input(list, plugin, attachment, result);
            if let Err(error) = self.invoke(&input, "DEL", attachment, POD_INTERFACE, None).await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Tears down the pod network of sandbox `id` (idempotent). Works from
    /// the cached ADD, so it needs neither the pod nor its namespace.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let path = self.cache_path(id);
        let cached: Value = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| NetworkError::Malformed {
                what: path.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let netns = PathBuf::from(cached["netns"].as_str().unwrap_or(""));
        let attachment = Attachment {
            id: id.to_string(),
            // A namespace that is already gone is passed as empty, as the spec allows.
            netns: if netns.exists() {
                netns
            } else {
                PathBuf::new()
            },
            namespace: cached["namespace"].as_str().unwrap_or("").to_string(),
            name: cached["name"].as_str().unwrap_or("").to_string(),
            ports: serde_json::from_value(cached["ports"].clone()).unwrap_or_default(),
        };
        self.remove_with(&cached["config"], &attachment, &cached["result"])
            .await?;
        std::fs::remove_file(&path).map_err(io_err(&path))
    }

    /// Sandbox IDs with a network set up (for cleanup after a restart).
    pub fn attached(&self) -> Vec<String> {
        std::fs::read_dir(&self.cache_dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect()
    }
}

/// The pod IP from a CNI result (the first IPv4 address).
pub fn address_of(result: &Value) -> Result<PodAddress> {
    let ip = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|entry| {
            entry["address"]
                .as_str()
                .and_then(|a| a.split('/').next())
                .filter(|a| a.contains('.'))
        })
        .ok_or_else(|| NetworkError::Malformed {
            what: "CNI result".into(),
            reason: format!("no IPv4 address in {result}"),
        })?;
    let gateway = result["ips"][0]["gateway"].as_str().map(str::to_string);
    Ok(PodAddress {
        ip: ip.to_string(),
        gateway,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_give_the_pod_ip() -> Result<()> {
        let result = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
            "ips": [{"address": "10.42.0.7/24", "gateway": "10.42.0.1", "interface": 0}]});
        assert_eq!(
            address_of(&result)?,
            PodAddress {
                ip: "10.42.0.7".into(),
                gateway: Some("10.42.0.1".into())
            }
        );
        assert!(address_of(&json!({})).is_err());
        Ok(())
    }

    #[test]
    fn plugins_get_runtime_config_for_their_capabilities() {
        let list = default_conflist(
            &DefaultNetwork {
                bridge: "skiff0".into(),
                pod_cidr: "10.42.0.0/24".into(),
            },
            Path::new("/ipam"),
        );
        let attachment = Attachment {
            id: "abc".into(),
            netns: PathBuf::from("/proc/1/ns/net"),
            namespace: "default".into(),
            name: "web".into(),
            ports: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
        };
        let portmap =
            Cni::plugin_input(&list, &list["plugins"][1], &attachment, &json!({"ips": []}));
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
        assert_eq!(portmap["prevResult"], json!({"ips": []}));
        assert_eq!(portmap["name"], "skiff");
        let bridge = Cni::plugin_input(&list, &list["plugins"][0], &attachment, &Value::Null);
        assert!(bridge.get("runtimeConfig").is_none() && bridge.get("prevResult").is_none());
        assert_eq!(bridge["ipam"]["dataDir"], "/ipam");
    }
}
