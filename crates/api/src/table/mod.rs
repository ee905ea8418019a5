//! Server-side printing (`meta.k8s.io/v1` Table), following upstream's
//! pkg/printers/internalversion: the columns and cell logic of
//! `kubectl get` for each served kind, always with the wide columns (kubectl
//! hides `priority: 1` columns unless `-o wide`).

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::resources::ResourceInfo;

mod pod;
use pod::pod_cells;

/// What each row carries as `object` (the `includeObject` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// `duration.HumanDuration` from apimachinery.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn parse_time(value: &Value) -> Option<Timestamp> {
    value.as_str().and_then(|s| s.parse::<Timestamp>().ok())
}

/// `translateTimestampSince`: the age of a timestamp, or `<unknown>`.
pub fn since(value: &Value, now: Timestamp) -> String {
    match parse_time(value) {
        Some(t) => human_duration(now.as_second() - t.as_second()),
        None => "<unknown>".to_string(),
    }
}

pub(crate) fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn or_none(value: &str) -> String {
    if value.is_empty() {
        "<none>".to_string()
    } else {
        value.to_string()
    }
}

pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) priority: u8,
    pub(crate) description: &'static str,
}

pub(crate) const fn col(name: &'static str, priority: u8, description: &'static str) -> Column {
    Column {
        name,
        kind: "string",
        priority,
        description,
    }
}

pub(crate) const fn int_col(name: &'static str, priority: u8, description: &'static str) -> Column {
    Column {
        name,
        kind: "integer",
        priority,
        description,
    }
}

pub(crate) const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn columns_for(kind: &str) -> Vec<Column> {
    if let Some(columns) = crate::rbac::table::columns(kind) {
        return columns;
    }
    let name = col("Name", 0, NAME_DOC);
    let age = col("Age", 0, AGE_DOC);
    match kind {
        "Pod" => vec![
            name,
            col("Ready", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            age,
            col("IP", 1, "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            col("Node", 1, "NodeName indicates in which node this pod is scheduled."),
            col("Nominated Node", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
            col("Readiness Gates", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
        ],
        "Node" => vec![
            name,
            col("Status", 0, "The status of the node"),
            col("Roles", 0, "The roles of the node"),
            age,
            col("Version", 0, "Kubelet Version reported by the node."),
            col("Internal-IP", 1, "List of internal IPs for the node."),
            col("External-IP", 1, "List of external IPs for this node."),
            col("OS-Image", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            col("Kernel-Version", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            col("Container-Runtime", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        "Namespace" => vec![name, col("Status", 0, "The status of the namespace"), age],
        "Event" => vec![
            col("Last Seen", 0, "Time when last event occurred"),
            col("Type", 0, "Type of this event."),
            col("Reason", 0, "Reason for the transition into the object's current status."),
            col("Object", 0, "Object this event is about."),
            col("Subobject", 1, "Subobject this event is about."),
            col("Source", 1, "Source of the event."),
            col("Message", 0, "A human-readable description of the status of this operation."),
            col("First Seen", 1, "Time when first event occurred"),
            int_col("Count", 1, "The number of times this event has occurred."),
            col("Name", 1, NAME_DOC),
        ],
        "ConfigMap" => vec![name, int_col("Data", 0, "Data contains the configuration data."), age],
        "Secret" => vec![
            name,
            col("Type", 0, "The type of the secret"),
            int_col("Data", 0, "The number of entries in the secret"),
            age,
        ],
        "Service" => vec![
            name,
            col("Type", 0, "The type of the service."),
            col("Cluster-IP", 0, "The cluster IP of the service."),
            col("External-IP", 0, "The external IP of the service."),
            col("Port(s)", 0, "The ports of the service."),
            age,
            col("Selector", 1, "The selector of the service."),
        ],
        "ServiceAccount" => vec![name, int_col("Secrets", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), age],
        "Lease" => vec![name, col("Holder", 0, "The holder of the lease"), age],
        "Endpoints" => vec![name, col("Endpoints", 0, "Endpoints is the list of endpoints in the object."), age],
        "EndpointSlice" => vec![
            name,
            col("AddressType", 0, "The type of address held in the EndpointSlice."),
            col("Ports", 0, "The ports of the EndpointSlice."),
            col("Endpoints", 0, "The addresses of the endpoints in the EndpointSlice."),
            age,
        ],
        _ => vec![name, age],
    }
}

/// Upstream's printers' lists: three entries, then `+ N more...`;
/// `empty` when there are none.
pub(crate) fn list_with_more(items: &[String], empty: &str) -> String {
    let shown = items.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if items.len() > 3 {
        format!("{shown} + {} more...", items.len() - 3)
    } else if shown.is_empty() {
        empty.to_string()
    } else {
        shown
    }
}

/// An EndpointSlice's ports (number, else name, else `*`) and addresses.
fn endpoint_slice_cells(slice: &Value) -> (String, String) {
    let ports: Vec<String> = slice["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<String> = slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    (list_with_more(&ports, "<unset>"), list_with_more(&addresses, "<unset>"))
}

/// `10.42.0.5:80,10.42.0.6:80 + 1 more...`, as upstream's printer lists
/// an Endpoints object's addresses and ports (three at most).
fn endpoints_cell(endpoints: &Value) -> String {
    let mut listed = Vec::new();
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let ports: Vec<i64> = subset["ports"].as_array().into_iter().flatten().filter_map(|p| p["port"].as_i64()).collect();
        for address in subset["addresses"].as_array().into_iter().flatten() {
            let ip = address["ip"].as_str().unwrap_or_default();
            if ports.is_empty() {
                listed.push(ip.to_string());
            }
            listed.extend(ports.iter().map(|port| format!("{ip}:{port}")));
        }
    }
    list_with_more(&listed, "<none>")
}

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let status = &node["status"];
    let mut states: Vec<String> = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] == "Ready")
        .map(|c| {
            if c["status"] == "True" {
                "Ready".to_string()
            } else {
                "NotReady".to_string()
            }
        })
        .take(1)
        .collect();
    if states.is_empty() {
        states.push("Unknown".to_string());
    }
    if node["spec"]["unschedulable"] == true {
        states.push("SchedulingDisabled".to_string());
    }
    let mut roles: Vec<String> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                Some(role.to_string())
            } else if k == "kubernetes.io/role" {
                v.as_str().map(str::to_string)
            } else {
                None
            }
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    roles.dedup();
    let address = |kind: &str| {
        status["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == kind)
            .and_then(|a| a["address"].as_str())
            .unwrap_or("<none>")
            .to_string()
    };
    let info = &status["nodeInfo"];
    let or_unknown = |v: &Value| {
        if text(v).is_empty() {
            "<unknown>".to_string()
        } else {
            text(v).to_string()
        }
    };
    vec![
        json!(text(&node["metadata"]["name"])),
        json!(states.join(",")),
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        json!(since(&node["metadata"]["creationTimestamp"], now)),
        json!(text(&info["kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or_unknown(&info["osImage"])),
        json!(or_unknown(&info["kernelVersion"])),
        json!(or_unknown(&info["containerRuntimeVersion"])),
    ]
}

fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first = if parse_time(&event["firstTimestamp"]).is_some() {
        since(&event["firstTimestamp"], now)
    } else {
        since(&event["eventTime"], now)
    };
    let mut last = if parse_time(&event["lastTimestamp"]).is_some() {
        since(&event["lastTimestamp"], now)
    } else {
        first.clone()
    };
    let mut count = event["count"].as_i64().unwrap_or(0);
    if event["series"].is_object() {
        last = since(&event["series"]["lastObservedTime"], now);
        count = event["series"]["count"].as_i64().unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let involved = &event["involvedObject"];
    let kind = text(&involved["kind"]).to_lowercase();
    let target = if text(&involved["name"]).is_empty() {
        kind
    } else {
        format!("{kind}/{}", text(&involved["name"]))
    };
    let source = &event["source"];
    let source_text = if !text(&source["component"]).is_empty() {
        if text(&source["host"]).is_empty() {
            text(&source["component"]).to_string()
        } else {
            format!("{}, {}", text(&source["component"]), text(&source["host"]))
        }
    } else {
        let controller = text(&event["reportingComponent"]);
        let instance = text(&event["reportingInstance"]);
        if instance.is_empty() {
            controller.to_string()
        } else {
            format!("{controller}, {instance}")
        }
    };
    vec![
        json!(last),
        json!(text(&event["type"])),
        json!(text(&event["reason"])),
        json!(target),
        json!(text(&involved["fieldPath"])),
        json!(source_text),
        json!(text(&event["message"]).trim()),
        json!(first),
        json!(count),
        json!(text(&event["metadata"]["name"])),
    ]
}

fn service_cells(service: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &service["spec"];
    let kind = if text(&spec["type"]).is_empty() {
        "ClusterIP"
    } else {
        text(&spec["type"])
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = if text(&p["protocol"]).is_empty() {
                "TCP"
            } else {
                text(&p["protocol"])
            };
            match p["nodePort"].as_i64() {
                Some(node_port) => format!("{}:{node_port}/{protocol}", p["port"]),
                None => format!("{}/{protocol}", p["port"]),
            }
        })
        .collect();
    let external: Vec<String> = spec["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let selector: Vec<String> = spec["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect();
    vec![
        json!(text(&service["metadata"]["name"])),
        json!(kind),
        json!(or_none(text(&spec["clusterIP"]))),
        json!(if external.is_empty() {
            "<none>".to_string()
        } else {
            external.join(",")
        }),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        json!(since(&service["metadata"]["creationTimestamp"], now)),
        json!(if selector.is_empty() {
            "<none>".to_string()
        } else {
            selector.join(",")
        }),
    ]
}

fn count_keys(value: &Value) -> usize {
    value.as_object().map(|m| m.len()).unwrap_or(0)
}

/// The cells of one object's row.
pub fn cells(kind: &str, object: &Value, now: Timestamp) -> Vec<Value> {
    let name = json!(text(&object["metadata"]["name"]));
    let age = json!(since(&object["metadata"]["creationTimestamp"], now));
    if let Some(cells) = crate::rbac::table::cells(kind, object, now) {
        return cells;
    }
    match kind {
        "Pod" => pod_cells(object, now),
        "Node" => node_cells(object, now),
        "Event" => event_cells(object, now),
        "Service" => service_cells(object, now),
        "Namespace" => vec![name, json!(text(&object["status"]["phase"])), age],
        "ConfigMap" => vec![
            name,
            json!(count_keys(&object["data"]) + count_keys(&object["binaryData"])),
            age,
        ],
        "Secret" => vec![
            name,
            json!(text(&object["type"])),
            json!(count_keys(&object["data"])),
            age,
        ],
        "ServiceAccount" => vec![
            name,
            json!(object["secrets"].as_array().map(Vec::len).unwrap_or(0)),
            age,
        ],
        "Lease" => vec![name, json!(text(&object["spec"]["holderIdentity"])), age],
        "Endpoints" => vec![name, json!(endpoints_cell(object)), age],
        "EndpointSlice" => {
            let (ports, addresses) = endpoint_slice_cells(object);
            vec![name, json!(text(&object["addressType"])), json!(ports), json!(addresses), age]
        }
        _ => vec![name, age],
    }
}

/// `PartialObjectMetadata` for an object.
pub fn partial_object_metadata(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

/// One row of a Table of `kind`.
pub fn row(kind: &str, object: &Value, now: Timestamp, include: IncludeObject) -> Value {
    let mut row = json!({"cells": cells(kind, object, now)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => row["object"] = partial_object_metadata(object),
        IncludeObject::Object => row["object"] = object.clone(),
    }
    if kind == "Pod" {
        let (reason, message) = match object["status"]["phase"].as_str() {
            Some("Succeeded") => ("Succeeded", "The pod has completed successfully."),
            Some("Failed") => ("Failed", "The pod failed."),
            _ => return row,
        };
        row["conditions"] =
            json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]);
    }
    row
}

/// A Table of `objects` of `resource`.
pub fn table(
    resource: &ResourceInfo,
    objects: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    now: Timestamp,
    include: IncludeObject,
) -> Value {
    let mut table = table_head(resource, resource_version, continue_token);
    table["rows"] = objects
        .iter()
        .map(|o| row(resource.kind, o, now, include))
        .collect();
    table
}

/// A Table of `resource` without its rows (`"rows": []`, the last field),
/// for lists that write their rows one at a time.
pub fn table_head(
    resource: &ResourceInfo,
    resource_version: &str,
    continue_token: Option<&str>,
) -> Value {
    let columns: Vec<Value> = columns_for(resource.kind)
        .iter()
        .map(|c| {
            let format = if c.name == "Name" { "name" } else { "" };
            json!({"name": c.name, "type": c.kind, "format": format, "description": c.description, "priority": c.priority})
        })
        .collect();
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T00:10:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(20 * 3600), "20h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(30 * 86400), "30d");
    }

    fn status_of(pod: Value) -> (String, String, String) {
        let cells = pod_cells(&pod, now());
        (
            cells[1].as_str().unwrap_or("").to_string(),
            cells[2].as_str().unwrap_or("").to_string(),
            cells[3].as_str().unwrap_or("").to_string(),
        )
    }

    #[test]
    fn pod_status_column_follows_upstream() {
        let pending = json!({"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}});
        assert_eq!(
            status_of(pending.clone()),
            ("0/1".into(), "Pending".into(), "0".into())
        );
        let creating = json!({"spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending",
            "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        assert_eq!(status_of(creating).1, "ContainerCreating");
        let crash = json!({"spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running",
            "containerStatuses": [{"name": "c", "ready": false, "restartCount": 3,
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:09:18Z"}},
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(
            status_of(crash),
            (
                "0/1".into(),
                "CrashLoopBackOff".into(),
                "3 (42s ago)".into()
            )
        );
        let init = json!({"spec": {"initContainers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}, "restartCount": 0},
                {"name": "b", "state": {"running": {}}, "restartCount": 0}]}});
        assert_eq!(status_of(init).1, "Init:1/2");
        let terminating = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running",
            "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
        assert_eq!(
            status_of(terminating),
            ("1/1".into(), "Terminating".into(), "0".into())
        );
        let exit = json!({"spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Failed",
            "containerStatuses": [{"name": "c", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}]}});
        assert_eq!(status_of(exit).1, "ExitCode:2");
    }

    #[test]
    fn event_rows() {
        let event = json!({"metadata": {"name": "p.1"}, "type": "Normal", "reason": "Scheduled",
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "Successfully assigned default/p to n1 ",
            "source": {"component": "default-scheduler"}, "count": 2,
            "firstTimestamp": "2026-01-01T00:09:00Z", "lastTimestamp": "2026-01-01T00:09:50Z"});
        let cells = event_cells(&event, now());
        assert_eq!(cells[0], "10s");
        assert_eq!(cells[3], "pod/p");
        assert_eq!(cells[6], "Successfully assigned default/p to n1");
        assert_eq!(cells[8], 2);
    }

    #[test]
    fn endpoints_list_three_addresses_then_how_many_more() {
        let cases = [
            (serde_json::json!({}), "<none>"),
            (serde_json::json!({"subsets": [{"addresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 80}]}]}), "10.42.0.5:80"),
            (
                serde_json::json!({"subsets": [{"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}], "ports": [{"port": 80}, {"port": 443}]}]}),
                "10.42.0.5:80,10.42.0.5:443,10.42.0.6:80 + 1 more...",
            ),
        ];
        for (endpoints, want) in cases {
            assert_eq!(endpoints_cell(&endpoints), want, "{endpoints}");
        }
    }
}
