//! The kubelet's resource metrics endpoint (`/metrics/resource`): each
//! running container's cumulative CPU time and memory working set, and the
//! node's, in Prometheus text with millisecond timestamps, as metrics-server
//! scrapes them (here the API server does, for `kubectl top`).

use std::fmt::Write;

use skiff_runtime::cgroups::Usage;

/// One running container's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub usage: Usage,
}

/// A label value, escaped as the text format wants.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn seconds(nanoseconds: u64) -> String {
    format!("{}.{:09}", nanoseconds / 1_000_000_000, nanoseconds % 1_000_000_000)
}

/// A per-container metric: name, type, help, and its value of a usage.
type Series = (&'static str, &'static str, &'static str, fn(&Usage) -> String);

/// The endpoint's text, every sample stamped `timestamp_ms`.
pub fn render(containers: &[ContainerUsage], node: Option<Usage>, timestamp_ms: i64) -> String {
    let mut text = String::new();
    let per_container: [Series; 2] = [
        ("container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed by the container in core-seconds", |u| seconds(u.cpu_nanoseconds)),
        ("container_memory_working_set_bytes", "gauge", "Current working set of the container in bytes", |u| u.memory_working_set_bytes.to_string()),
    ];
    for (metric, kind, help, value_of) in per_container {
        let _ = writeln!(text, "# HELP {metric} [STABLE] {help}");
        let _ = writeln!(text, "# TYPE {metric} {kind}");
        for c in containers {
            let value = value_of(&c.usage);
            let _ = writeln!(
                text,
                "{metric}{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}} {value} {timestamp_ms}",
                label(&c.container),
                label(&c.namespace),
                label(&c.pod),
            );
        }
    }
    if let Some(node) = node {
        let _ = writeln!(text, "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds");
        let _ = writeln!(text, "# TYPE node_cpu_usage_seconds_total counter");
        let _ = writeln!(text, "node_cpu_usage_seconds_total {} {timestamp_ms}", seconds(node.cpu_nanoseconds));
        let _ = writeln!(text, "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes");
        let _ = writeln!(text, "# TYPE node_memory_working_set_bytes gauge");
        let _ = writeln!(text, "node_memory_working_set_bytes {} {timestamp_ms}", node.memory_working_set_bytes);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_kubelets_metric_names() {
        let containers = [ContainerUsage {
            namespace: "default".into(),
            pod: "web".into(),
            container: "c\"1".into(),
            usage: Usage { cpu_nanoseconds: 1_500_000_001, memory_working_set_bytes: 4096 },
        }];
        let node = Usage { cpu_nanoseconds: 3_000_000_000, memory_working_set_bytes: 1 << 20 };
        let text = render(&containers, Some(node), 1700000000000);
        assert!(text.contains("container_cpu_usage_seconds_total{container=\"c\\\"1\",namespace=\"default\",pod=\"web\"} 1.500000001 1700000000000\n"), "{text}");
        assert!(text.contains("container_memory_working_set_bytes{container=\"c\\\"1\",namespace=\"default\",pod=\"web\"} 4096 1700000000000\n"), "{text}");
        assert!(text.contains("node_cpu_usage_seconds_total 3.000000000 1700000000000\n"), "{text}");
        assert!(text.contains("node_memory_working_set_bytes 1048576 1700000000000\n"), "{text}");
    }
}
