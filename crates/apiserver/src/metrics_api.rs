//! `metrics.k8s.io/v1beta1` (PodMetrics, NodeMetrics) for `kubectl top`,
//! as metrics-server serves it, without a metrics-server to install: the
//! API server scrapes the node agents' `/metrics/resource` when asked and
//! turns their cumulative CPU counters into rates against an earlier
//! scrape, as metrics-server does against its previous one. A container
//! (or node) seen only once has no rate yet, so its metrics are "not
//! available" for about a second, as on a fresh metrics-server.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::response::Response;
use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::Status;

use crate::error::{ApiError, Result};
use crate::handlers::AppState;
use crate::registry::ListParams;
use crate::request::{Target, Verb};

/// A rate needs two scrapes at least this far apart.
const MIN_WINDOW_MS: i64 = 1000;
/// Older scrapes are forgotten.
const HISTORY_MS: i64 = 10 * 60 * 1000;

/// One sample of the text format: `name{labels} value timestamp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// The samples of a Prometheus text exposition (comments skipped; a line
/// that does not parse is skipped too).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (&line[..open], parse_labels(&line[open + 1..close])?, &line[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    let mut fields = rest.split_whitespace();
    let value = fields.next()?.parse().ok()?;
    let timestamp_ms = fields.next().and_then(|t| t.parse().ok());
    Some(Sample {
        name: name.trim().to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim().to_string(), value);
    }
}

/// Whose CPU counter a series is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Series {
    Node(String),
    Container {
        namespace: String,
        pod: String,
        container: String,
    },
}

/// A rate over a window, as PodMetrics and NodeMetrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub nanocores: u64,
    pub window_ms: i64,
    pub timestamp_ms: i64,
}

/// Earlier scrapes of every CPU counter: (timestamp, core-seconds).
#[derive(Debug, Default)]
pub struct History(Mutex<HashMap<Series, VecDeque<(i64, f64)>>>);

impl History {
    /// Records a counter's value and returns its rate against the newest
    /// earlier value at least [`MIN_WINDOW_MS`] older, if any.
    fn observe(&self, series: Series, timestamp_ms: i64, seconds: f64) -> Option<Rate> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let points = all.entry(series).or_default();
        // A counter that went back belongs to a new container of the name.
        if points.back().is_some_and(|(_, v)| *v > seconds) {
            points.clear();
        }
        if points.back().is_none_or(|(t, _)| *t < timestamp_ms) {
            points.push_back((timestamp_ms, seconds));
        }
        while points.front().is_some_and(|(t, _)| *t < timestamp_ms - HISTORY_MS) {
            points.pop_front();
        }
        let (then, earlier) = points
            .iter()
            .rev()
            .find(|(t, _)| *t <= timestamp_ms - MIN_WINDOW_MS)
            .copied()?;
        let window_ms = timestamp_ms - then;
        let nanocores = ((seconds - earlier) * 1e9 * 1000.0 / window_ms as f64).max(0.0) as u64;
        Some(Rate {
            nanocores,
            window_ms,
            timestamp_ms,
        })
    }

    /// Forgets series no scrape mentions any more.
    fn retain(&self, seen: &HashSet<Series>, scraped_nodes: &HashSet<String>) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|series, _| match series {
            Series::Node(name) => !scraped_nodes.contains(name) || seen.contains(series),
            Series::Container { .. } => seen.contains(series),
        });
    }
}

/// Go's `time.Duration` text for whole milliseconds (`1.5s`, `1m0.25s`).
pub fn go_duration(ms: i64) -> String {
    let (minutes, rest) = (ms / 60_000, ms % 60_000);
    let seconds = if rest % 1000 == 0 {
        format!("{}s", rest / 1000)
    } else {
        let text = format!("{}.{:03}", rest / 1000, rest % 1000);
        format!("{}s", text.trim_end_matches('0'))
    };
    if minutes > 0 {
        format!("{minutes}m{seconds}")
    } else {
        seconds
    }
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(crate::strategy::format_time)
        .unwrap_or_default()
}

fn usage(nanocores: u64, memory_bytes: f64) -> Value {
    json!({"cpu": format!("{nanocores}n"), "memory": format!("{}Ki", (memory_bytes as u64) / 1024)})
}

/// One container's figures: its name, CPU rate and memory working set.
type ContainerFigures = (String, Rate, f64);

/// One node's scrape, turned into rates.
#[derive(Debug, Default)]
struct NodeScrape {
    node: Option<(Rate, f64)>,
    /// By (namespace, pod).
    pods: HashMap<(String, String), Vec<ContainerFigures>>,
}

fn digest(history: &History, node: &str, samples: &[Sample], seen: &mut HashSet<Series>) -> NodeScrape {
    let now = jiff::Timestamp::now().as_millisecond();
    let mut scrape = NodeScrape::default();
    let memory_of = |labels: &BTreeMap<String, String>| {
        samples
            .iter()
            .find(|s| s.name == "container_memory_working_set_bytes" && s.labels == *labels)
            .map(|s| s.value)
            .unwrap_or(0.0)
    };
    for sample in samples {
        let at = sample.timestamp_ms.unwrap_or(now);
        match sample.name.as_str() {
            "node_cpu_usage_seconds_total" => {
                let series = Series::Node(node.to_string());
                seen.insert(series.clone());
                if let Some(rate) = history.observe(series, at, sample.value) {
                    let memory = samples
                        .iter()
                        .find(|s| s.name == "node_memory_working_set_bytes")
                        .map(|s| s.value)
                        .unwrap_or(0.0);
                    scrape.node = Some((rate, memory));
                }
            }
            "container_cpu_usage_seconds_total" => {
                let label = |k: &str| sample.labels.get(k).cloned().unwrap_or_default();
                let series = Series::Container {
                    namespace: label("namespace"),
                    pod: label("pod"),
                    container: label("container"),
                };
                seen.insert(series.clone());
                if let Some(rate) = history.observe(series, at, sample.value) {
                    scrape
                        .pods
                        .entry((label("namespace"), label("pod")))
                        .or_default()
                        .push((label("container"), rate, memory_of(&sample.labels)));
                }
            }
            _ => {}
        }
    }
    scrape
}

/// Scrapes `nodes` (each once), logging and skipping those that fail.
async fn scrape(state: &AppState, nodes: &[String]) -> HashMap<String, NodeScrape> {
    let mut scrapes = HashMap::new();
    let Some(tls) = state.kubelet_tls.as_ref() else {
        tracing::warn!("no node client configured: resource metrics are not available");
        return scrapes;
    };
    let mut seen = HashSet::new();
    for node in nodes {
        match crate::connect::fetch_from_node(&state.registry, tls, node, "/metrics/resource").await {
            Ok(body) => {
                let samples = parse(&String::from_utf8_lossy(&body));
                scrapes.insert(node.clone(), digest(&state.resource_metrics, node, &samples, &mut seen));
            }
            Err(error) => tracing::warn!(%node, %error, "cannot scrape the node's resource metrics"),
        }
    }
    let scraped: HashSet<String> = scrapes.keys().cloned().collect();
    state.resource_metrics.retain(&seen, &scraped);
    scrapes
}

fn metadata(object: &Value, timestamp_ms: i64) -> Value {
    let mut metadata = json!({
        "name": object["metadata"]["name"],
        "creationTimestamp": rfc3339(timestamp_ms),
    });
    if let Some(ns) = object["metadata"]["namespace"].as_str() {
        metadata["namespace"] = json!(ns);
    }
    if let Some(labels) = object["metadata"]["labels"].as_object() {
        metadata["labels"] = json!(labels);
    }
    metadata
}

fn pod_metrics(pod: &Value, scrapes: &HashMap<String, NodeScrape>) -> Option<Value> {
    let node = pod["spec"]["nodeName"].as_str()?;
    let key = (
        pod["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
        pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
    );
    let containers = scrapes.get(node)?.pods.get(&key)?;
    let newest = containers.iter().map(|(_, r, _)| r.timestamp_ms).max()?;
    let window = containers.iter().map(|(_, r, _)| r.window_ms).max()?;
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": metadata(pod, newest),
        "timestamp": rfc3339(newest),
        "window": go_duration(window),
        "containers": containers.iter().map(|(name, rate, memory)| json!({
            "name": name,
            "usage": usage(rate.nanocores, *memory),
        })).collect::<Vec<_>>(),
    }))
}

fn node_metrics(node: &Value, scrapes: &HashMap<String, NodeScrape>) -> Option<Value> {
    let (rate, memory) = scrapes.get(node["metadata"]["name"].as_str()?)?.node?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": metadata(node, rate.timestamp_ms),
        "timestamp": rfc3339(rate.timestamp_ms),
        "window": go_duration(rate.window_ms),
        "usage": usage(rate.nanocores, memory),
    }))
}

/// GET and LIST of PodMetrics and NodeMetrics.
pub async fn serve(
    state: &Arc<AppState>,
    resource: &'static ResourceInfo,
    target: &Target,
    params: ListParams,
    verb: Verb,
) -> Result<Response> {
    let pods = resource.kind == "PodMetrics";
    let source = ApiError::served("", "v1", if pods { "pods" } else { "nodes" })?;
    let ns = target.namespace.as_deref();
    // metrics-server names what it has no metrics for (or no object) so.
    let not_found = |name: &str| {
        let shown = ns.map_or(name.to_string(), |ns| format!("{ns}/{name}"));
        ApiError::from(Status::not_found(resource, &shown))
    };
    let objects = match (verb, target.name.as_deref()) {
        (Verb::Get, Some(name)) => vec![state.registry.get(source, ns, name).await.map_err(|error| {
            if error.code() == 404 {
                not_found(name)
            } else {
                error
            }
        })?],
        (Verb::List, _) => state.registry.list(source, ns, &params).await?.items,
        _ => {
            return Err(Status::method_not_allowed(resource.plural, &format!("{verb:?}").to_lowercase()).into())
        }
    };
    let nodes: Vec<String> = if pods {
        let names: HashSet<String> = objects
            .iter()
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
            .collect();
        names.into_iter().collect()
    } else {
        objects
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    };
    let scrapes = scrape(state, &nodes).await;
    let metrics = |object: &Value| {
        if pods {
            pod_metrics(object, &scrapes)
        } else {
            node_metrics(object, &scrapes)
        }
    };
    let body = match target.name.as_deref() {
        Some(name) if verb == Verb::Get => objects.first().and_then(metrics).ok_or_else(|| not_found(name))?,
        _ => json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {},
            "items": objects.iter().filter_map(metrics).collect::<Vec<_>>(),
        }),
    };
    Ok(crate::handlers::json_response(axum::http::StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let text = "# HELP x y\n# TYPE x counter\ncontainer_cpu_usage_seconds_total{container=\"c\",namespace=\"default\",pod=\"we\\\"b\"} 1.5 1700000000000\nnode_memory_working_set_bytes 1024 1700000000000\nbroken{ 1\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert_eq!(samples[0].labels["pod"], "we\"b");
        assert_eq!(samples[0].value, 1.5);
        assert_eq!(samples[0].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(samples[1].name, "node_memory_working_set_bytes");
        assert!(samples[1].labels.is_empty());
    }

    #[test]
    fn rates_need_two_scrapes_a_second_apart() {
        let history = History::default();
        let series = Series::Node("n".into());
        assert_eq!(history.observe(series.clone(), 10_000, 1.0), None);
        assert_eq!(history.observe(series.clone(), 10_500, 1.2), None, "too close");
        // Against the newest scrape far enough back: 0.8 s of CPU in 1.5 s.
        let rate = history.observe(series.clone(), 12_000, 2.0);
        assert_eq!(rate, Some(Rate { nanocores: 533_333_333, window_ms: 1500, timestamp_ms: 12_000 }));
        // A counter that went back starts again.
        assert_eq!(history.observe(series, 13_000, 0.1), None);
    }

    #[test]
    fn windows_read_as_go_durations() {
        assert_eq!(go_duration(10_000), "10s");
        assert_eq!(go_duration(1_500), "1.5s");
        assert_eq!(go_duration(20_029), "20.029s");
        assert_eq!(go_duration(60_250), "1m0.25s");
    }
}
