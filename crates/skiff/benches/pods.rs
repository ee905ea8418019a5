//! Skiff's benchmark: pod start latency, throughput, density, API latency
//! and idle cost of a real `skiff server` (release build) in a network
//! namespace of its own, side by side with `podman kube play` and a bare
//! `runc run` on the same image from the same local registry.
//!
//! `cargo bench -p skiff --bench pods -- [--smoke] [--no-podman] [--density N] [--json PATH]`
//! (or `bash scripts/bench.sh`). Prints a table; writes the same as JSON.
//! Goals are printed as met / not met, never asserted.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::Skiff;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::{json, Value};

/// The image every runner starts, pulled once from the local registry.
const IMAGE: &str = "127.0.0.1:5000/bench/busybox:1";
/// Idles until SIGTERM, then exits at once (no busy loop, no forks).
const SLEEPER: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// How much of everything to do.
#[derive(Clone)]
struct Plan {
    latency_pods: usize,
    httpd_pods: usize,
    throughput_pods: usize,
    density: Vec<usize>,
    api_ops: usize,
    watchers: usize,
    idle: Duration,
    podman_latency_pods: usize,
    podman_throughput_pods: usize,
    podman_density: usize,
    floor_runs: usize,
    clients: usize,
}

impl Plan {
    fn full() -> Self {
        Self {
            latency_pods: 100,
            httpd_pods: 20,
            throughput_pods: 100,
            density: vec![250, 1000],
            api_ops: 100,
            watchers: 100,
            idle: Duration::from_secs(60),
            podman_latency_pods: 20,
            podman_throughput_pods: 50,
            podman_density: 100,
            floor_runs: 20,
            clients: 4,
        }
    }

    fn smoke() -> Self {
        Self {
            latency_pods: 5,
            httpd_pods: 2,
            throughput_pods: 5,
            density: vec![5],
            api_ops: 5,
            watchers: 5,
            idle: Duration::from_secs(2),
            podman_latency_pods: 2,
            podman_throughput_pods: 3,
            podman_density: 3,
            floor_runs: 2,
            clients: 2,
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
struct Row {
    metric: String,
    unit: &'static str,
    skiff: Option<f64>,
    podman: Option<f64>,
    floor: Option<f64>,
    /// The goal, and whether lower is better (else higher).
    goal: Option<(f64, bool)>,
    note: String,
}

impl Row {
    fn new(metric: impl Into<String>, unit: &'static str, skiff: Option<f64>) -> Self {
        Self {
            metric: metric.into(),
            unit,
            skiff,
            podman: None,
            floor: None,
            goal: None,
            note: String::new(),
        }
    }
    fn goal_at_most(mut self, goal: f64) -> Self {
        self.goal = Some((goal, true));
        self
    }
    fn goal_at_least(mut self, goal: f64) -> Self {
        self.goal = Some((goal, false));
        self
    }
    fn podman(mut self, value: Option<f64>) -> Self {
        self.podman = value;
        self
    }
    fn floor(mut self, value: Option<f64>) -> Self {
        self.floor = value;
        self
    }
    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
    fn met(&self) -> Option<bool> {
        let (goal, lower) = self.goal?;
        let value = self.skiff?;
        Some(if lower { value <= goal } else { value >= goal })
    }
    fn json(&self) -> Value {
        json!({
            "metric": self.metric, "unit": self.unit, "skiff": self.skiff,
            "podman": self.podman, "floor": self.floor,
            "ratio": self.ratio(),
            "goal": self.goal.map(|(g, lower)| json!({"value": g, "lowerIsBetter": lower})),
            "met": self.met(), "note": self.note,
        })
    }
    /// podman ÷ skiff for times and sizes (how many times better skiff is);
    /// skiff ÷ podman for rates.
    fn ratio(&self) -> Option<f64> {
        let (s, p) = (self.skiff?, self.podman?);
        if s <= 0.0 || p <= 0.0 {
            return None;
        }
        Some(if self.unit == "pods/s" { s / p } else { p / s })
    }
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50/p90/p99/max rows for a set of durations.
fn distribution(
    name: &str,
    samples: &[Duration],
    podman: &[Duration],
    floor: &[Duration],
) -> Vec<Row> {
    let sort = |s: &[Duration]| {
        let mut v: Vec<f64> = s.iter().copied().map(millis).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (s, p, f) = (sort(samples), sort(podman), sort(floor));
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0)]
        .into_iter()
        .map(|(label, q)| {
            Row::new(format!("{name} {label}"), "ms", percentile(&s, q))
                .podman(percentile(&p, q))
                .floor(percentile(&f, q))
        })
        .collect()
}

/// When each pod was first seen Running, Ready and gone, from one watch.
#[derive(Default, Clone, Copy)]
struct Seen {
    /// When the watch first showed the pod bound to a node.
    bound: Option<Instant>,
    running: Option<Instant>,
    ready: Option<Instant>,
    gone: Option<Instant>,
}

#[derive(Clone)]
struct Tracker {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    ips: Arc<Mutex<HashMap<String, String>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Tracker {
    fn start(api: Api<Pod>) -> Self {
        let tracker = Self {
            seen: Arc::default(),
            ips: Arc::default(),
            changed: Arc::default(),
        };
        let t = tracker.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Ok(Some(event)) = events.try_next().await {
                let now = Instant::now();
                let (pod, deleted) = match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
                    watcher::Event::Delete(p) => (p, true),
                    _ => continue,
                };
                let name = pod.metadata.name.clone().unwrap_or_default();
                let status = pod.status.clone().unwrap_or_default();
                if let Ok(mut seen) = t.seen.lock() {
                    let entry = seen.entry(name.clone()).or_default();
                    if deleted {
                        entry.gone.get_or_insert(now);
                    }
                    if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                        entry.bound.get_or_insert(now);
                    }
                    if status.phase.as_deref() == Some("Running") {
                        entry.running.get_or_insert(now);
                    }
                    let ready = status
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    if ready {
                        entry.ready.get_or_insert(now);
                    }
                }
                if let (Some(ip), Ok(mut ips)) = (status.pod_ip.clone(), t.ips.lock()) {
                    ips.insert(name, ip);
                }
                t.changed.notify_waiters();
            }
        });
        tracker
    }

    fn get(&self, name: &str) -> Seen {
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.get(name).copied())
            .unwrap_or_default()
    }

    fn forget(&self, name: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(name);
        }
    }

    /// Waits until `check` holds for the seen times of `names`.
    async fn wait_all(
        &self,
        names: &[String],
        timeout: Duration,
        check: impl Fn(&Seen) -> bool,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let done = names.iter().all(|n| check(&self.get(n)));
            if done {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                let missing = names.iter().filter(|n| !check(&self.get(n))).count();
                bail!(
                    "{missing} of {} pods did not get there within {timeout:?}",
                    names.len()
                );
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }
}

fn pod_manifest(name: &str, command: &str, extra: Value) -> Result<Pod> {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "skiff"}},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "app", "image": IMAGE, "command": ["sh", "-c", command]}]
        }
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    Ok(serde_json::from_value(pod)?)
}

async fn create(api: &Api<Pod>, pod: &Pod) -> Result<()> {
    api.create(&PostParams::default(), pod).await?;
    Ok(())
}

async fn delete(api: &Api<Pod>, name: &str) -> Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Runs `work` for each of `names` on `clients` concurrent tasks.
async fn fan_out<F, Fut>(names: &[String], clients: usize, work: F) -> Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    futures::stream::iter(names.iter().cloned().map(work))
        .buffer_unordered(clients.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// RSS and PSS (KiB) of one process, from /proc.
fn memory_kib(pid: u32) -> (u64, u64) {
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&rollup, "Rss:"), field(&rollup, "Pss:"))
}

/// User + system CPU seconds a process used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (11 and 12 after the name); 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds the whole machine spent busy so far (every process,
/// detached ones too: monitors, runtimes, CNI plugins), from /proc/stat.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, t)| t)
        .sum();
    busy / 100.0
}

/// CPU used between two points, by the server process itself and by the
/// whole machine, in milliseconds per pod.
struct CpuSpent {
    server: f64,
    machine: f64,
}

impl CpuSpent {
    fn measure(pid: u32) -> (f64, f64) {
        (cpu_seconds(pid), machine_busy_seconds())
    }

    fn since(before: (f64, f64), pid: u32, pods: usize) -> Self {
        let (server, machine) = Self::measure(pid);
        let per_pod = |s: f64| s * 1000.0 / pods.max(1) as f64;
        Self { server: per_pod(server - before.0), machine: per_pod(machine - before.1) }
    }

    fn row(&self, metric: String) -> Row {
        Row::new(metric, "ms", Some(self.machine)).note(format!(
            "CPU per pod, all processes; {:.0} ms in the skiff server",
            self.server
        ))
    }
}

/// Processes whose command line contains every one of `needles`.
fn processes_with(needles: &[&str]) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            needles.iter().all(|n| text.contains(n))
        })
        .collect()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Total (RSS, PSS) in KiB of the per-pod helper processes of a runner.
fn helpers_kib(sets: &[&[&str]]) -> (u64, u64, usize) {
    let mut pids: Vec<u32> = sets.iter().flat_map(|s| processes_with(s)).collect();
    pids.sort_unstable();
    pids.dedup();
    let (rss, pss) = pids
        .iter()
        .map(|p| memory_kib(*p))
        .fold((0, 0), |(r, p), (r2, p2)| (r + r2, p + p2));
    (rss, pss, pids.len())
}

/// Serves one GET on the pod IP and returns once the first byte arrives.
async fn first_byte(ip: &str) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect((ip, 8080)).await else {
        return false;
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream
        .write_all(b"GET /hostname HTTP/1.0\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte).await, Ok(1))
}

/// The agent's `pod started` traces of the `lat-*` pods in the server log:
/// per pod, milliseconds from its worker's start to volumes, sandbox,
/// network, first bundle and first container running.
fn agent_traces(log: &str) -> Vec<[f64; 5]> {
    let field = |line: &str, key: &str| -> Option<f64> {
        let rest = line.split(&format!(" {key}=")).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    log.lines()
        .filter(|l| l.contains("pod started") && l.contains("pod=default_lat-"))
        .filter_map(|l| Some([field(l, "volumes_ms")?, field(l, "sandbox_ms")?, field(l, "network_ms")?, field(l, "bundle_ms")?, field(l, "running_ms")?]))
        .collect()
}

/// Rows tracing where create → Running goes (p50 of each phase): the API
/// write and scheduling (until the watch shows the pod bound), the agent's
/// phases from its own trace, and the rest (the agent seeing the pod, its
/// status write, the watch delivering it).
fn start_trace(log: &str, bound: &[Duration], running: &[Duration]) -> Vec<Row> {
    let traces = agent_traces(log);
    let p50 = |mut values: Vec<f64>| -> Option<f64> {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    let bound_ms = p50(bound.iter().map(|d| millis(*d)).collect());
    let phase = |i: usize| p50(traces.iter().map(|t| t[i]).collect());
    let step = |i: usize| p50(traces.iter().map(|t| t[i] - if i == 0 { 0.0 } else { t[i - 1] }).collect());
    let rest = match (p50(running.iter().map(|d| millis(*d)).collect()), bound_ms, phase(4)) {
        (Some(total), Some(bound), Some(agent)) => Some(total - bound - agent),
        _ => None,
    };
    let note = format!("p50 of {} pods", traces.len());
    vec![
        Row::new("trace: create → bound (API write, scheduler)".to_string(), "ms", bound_ms).note(note.clone()),
        Row::new("trace: agent worker → volumes (token, projected)".to_string(), "ms", step(0)).note(note.clone()),
        Row::new("trace: volumes → sandbox up (cgroup, pause)".to_string(), "ms", step(1)).note(note.clone()),
        Row::new("trace: sandbox → network (CNI bridge, IPAM)".to_string(), "ms", step(2)).note(note.clone()),
        Row::new("trace: network → bundle (image, env, rootfs, config)".to_string(), "ms", step(3)).note(note.clone()),
        Row::new("trace: bundle → running (monitor, runtime run)".to_string(), "ms", step(4)).note(note.clone()),
        Row::new("trace: the rest (agent sees pod, status write, watch)".to_string(), "ms", rest).note(note),
    ]
}

/// Issue 17's goals, relative to the floor and podman of the same run:
/// each a ratio row with its goal met / NOT met (absent values leave the
/// row empty, e.g. in a --no-podman run).
fn relative_goals(rows: &[Row]) -> Vec<Row> {
    let find = |prefix: &str| rows.iter().rev().find(|r| r.metric.starts_with(prefix));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let p50 = find("create → Running p50");
    let p99 = find("create → Running p99");
    let delete = find("delete → gone (exits on SIGTERM) p50");
    let pss = rows.iter().rev().find(|r| r.metric.starts_with("per-pod overhead (PSS) at"));
    let podman_pss = find("per-pod overhead (PSS), podman");
    let most = rows
        .iter()
        .filter_map(|r| Some((r.metric.strip_suffix(" pods Running")?.parse::<f64>().ok()?, r.skiff?)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let skiff_rate = most.and_then(|(n, _)| find(&format!("rate of pods up, to {n} pods"))).and_then(|r| r.skiff);
    let podman_rate = find("create throughput").and_then(|r| r.podman);
    let rss = most.and_then(|(n, _)| find(&format!("skiff RSS with {n} pods"))).and_then(|r| r.skiff);
    let deleted = rows.iter().rev().find(|r| r.metric.starts_with("delete ") && r.metric.ends_with(" pods")).and_then(|r| r.skiff);
    let n = most.map_or(0.0, |(n, _)| n);
    vec![
        Row::new("goal: create → Running p50 ÷ runc floor", "×", ratio(p50.and_then(|r| r.skiff), p50.and_then(|r| r.floor))).goal_at_most(1.5),
        Row::new("goal: create → Running p99 ÷ runc floor", "×", ratio(p99.and_then(|r| r.skiff), p99.and_then(|r| r.floor))).goal_at_most(2.5),
        Row::new("goal: podman start p50 ÷ skiff's", "×", ratio(p50.and_then(|r| r.podman), p50.and_then(|r| r.skiff))).goal_at_least(6.0),
        Row::new("goal: per-pod PSS ÷ podman's (conmon + infra)", "×", ratio(pss.and_then(|r| r.skiff), podman_pss.and_then(|r| r.podman))).goal_at_most(1.0),
        Row::new(format!("goal: rate of {n} pods up ÷ podman's"), "×", ratio(skiff_rate, podman_rate)).goal_at_least(5.0),
        Row::new(format!("goal: skiff RSS at {n} pods"), "MiB", rss).goal_at_most(120.0),
        Row::new(format!("goal: {n} pods deleted"), "s", deleted).goal_at_most(30.0),
        Row::new("goal: podman delete p50 ÷ skiff's", "×", ratio(delete.and_then(|r| r.podman), delete.and_then(|r| r.skiff))).goal_at_least(3.0),
    ]
}

struct Bench<'a> {
    skiff: &'a Skiff,
    api: Api<Pod>,
    tracker: Tracker,
    plan: Plan,
    rows: Vec<Row>,
}

impl Bench<'_> {
    fn server_pid(&self) -> Result<u32> {
        self.skiff.pid().context("server pid")
    }

    async fn idle(&mut self, label: &str) -> Result<()> {
        let pid = self.server_pid()?;
        let before = cpu_seconds(pid);
        tokio::time::sleep(self.plan.idle).await;
        let used = cpu_seconds(pid) - before;
        let percent = used / self.plan.idle.as_secs_f64() * 100.0;
        let (rss, _) = memory_kib(pid);
        self.rows.push(
            Row::new(format!("idle CPU, {label}"), "% core", Some(percent))
                .goal_at_most(1.0)
                .note(format!(
                    "{used:.2} CPU s over {} s",
                    self.plan.idle.as_secs()
                )),
        );
        self.rows.push(Row::new(
            format!("idle RSS of skiff, {label}"),
            "MiB",
            Some(mib(rss)),
        ));
        Ok(())
    }

    /// Sequential create → Running / Ready, then sequential delete → gone.
    async fn latency(&mut self) -> Result<(Vec<Duration>, Vec<Duration>, Vec<Duration>)> {
        let (mut running, mut ready, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
        let mut bound = Vec::new();
        let names: Vec<String> = (0..self.plan.latency_pods)
            .map(|i| format!("lat-{i}"))
            .collect();
        for name in &names {
            let pod = pod_manifest(name, SLEEPER, json!({}))?;
            let start = Instant::now();
            create(&self.api, &pod).await?;
            let n = std::slice::from_ref(name);
            self.tracker
                .wait_all(n, Duration::from_secs(60), |s| s.ready.is_some())
                .await?;
            let seen = self.tracker.get(name);
            running.push(seen.running.context("running")?.duration_since(start));
            bound.push(seen.bound.context("bound")?.duration_since(start));
            ready.push(seen.ready.context("ready")?.duration_since(start));
        }
        self.rows.extend(start_trace(&self.skiff.log(), &bound, &running));
        for name in &names {
            let start = Instant::now();
            delete(&self.api, name).await?;
            let n = std::slice::from_ref(name);
            let gone = self
                .tracker
                .wait_all(n, Duration::from_secs(60), |s| s.gone.is_some())
                .await?;
            deleted.push(gone.duration_since(start));
            self.tracker.forget(name);
        }
        Ok((running, ready, deleted))
    }

    /// Create → first byte of HTTP served on the pod IP (busybox httpd).
    async fn httpd(&mut self) -> Result<Vec<Duration>> {
        let mut samples = Vec::new();
        for i in 0..self.plan.httpd_pods {
            let name = format!("httpd-{i}");
            let pod = pod_manifest(&name, "exec httpd -f -p 8080 -h /etc", json!({}))?;
            let start = Instant::now();
            create(&self.api, &pod).await?;
            let deadline = start + Duration::from_secs(60);
            loop {
                let ip = self
                    .tracker
                    .ips
                    .lock()
                    .ok()
                    .and_then(|i| i.get(&name).cloned());
                if let Some(ip) = ip {
                    if first_byte(&ip).await {
                        samples.push(start.elapsed());
                        break;
                    }
                }
                if Instant::now() > deadline {
                    bail!("{name} never served");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            self.delete_many(std::slice::from_ref(&name), Duration::from_secs(60))
                .await?;
        }
        Ok(samples)
    }

    /// `count` pods created by concurrent clients; time until all Running.
    async fn create_many(&self, names: &[String], timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let api = self.api.clone();
        fan_out(names, self.plan.clients, |name| {
            let api = api.clone();
            async move { create(&api, &pod_manifest(&name, SLEEPER, json!({}))?).await }
        })
        .await?;
        let done = match self.tracker.wait_all(names, timeout, |s| s.running.is_some()).await {
            Ok(done) => done,
            Err(error) => {
                let missing: Vec<&String> = names.iter().filter(|n| self.tracker.get(n).running.is_none()).collect();
                return Err(error.context(self.why_not_running(&missing)));
            }
        };
        Ok(done.duration_since(start))
    }

    /// What the pods that did not start are waiting for, by the API and by
    /// the server's log, for a failed run to say.
    fn why_not_running(&self, missing: &[&String]) -> String {
        let mut said = Vec::new();
        for name in missing.iter().take(5) {
            let state = self
                .skiff
                .kubectl(&["get", "pod", name, "-o", "jsonpath={.status.phase} {.status.containerStatuses[*].state} {.status.conditions[*].message}"])
                .map(|run| run.stdout)
                .unwrap_or_else(|e| format!("cannot read it: {e}"));
            said.push(format!("{name}: {state}"));
        }
        let log = self.skiff.log();
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
        let tail = warnings[warnings.len().saturating_sub(20)..].join("\n");
        format!("pods not Running:\n{}\nthe server's last warnings:\n{tail}", said.join("\n"))
    }

    async fn delete_many(&self, names: &[String], timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let api = self.api.clone();
        fan_out(names, self.plan.clients, |name| {
            let api = api.clone();
            async move { delete(&api, &name).await }
        })
        .await?;
        let done = self
            .tracker
            .wait_all(names, timeout, |s| s.gone.is_some())
            .await?;
        for name in names {
            self.tracker.forget(name);
        }
        Ok(done.duration_since(start))
    }

    fn kubectl_get_pods_ms(&self) -> Result<f64> {
        let mut times = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            let run = self.skiff.kubectl(&["get", "pods", "--no-headers"])?.ok()?;
            times.push(millis(start.elapsed()));
            if run.stdout.lines().count() == 0 {
                bail!("kubectl get pods listed nothing");
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(times[1])
    }

    /// A watch from resourceVersion 0: time until every pod arrived.
    async fn watch_all_ms(&self, count: usize) -> Result<f64> {
        let start = Instant::now();
        let stream = self
            .api
            .watch(&WatchParams::default().timeout(60), "0")
            .await?;
        let mut stream = std::pin::pin!(stream);
        let mut seen = 0;
        while let Some(event) = stream.try_next().await? {
            if matches!(event, WatchEvent::Added(_)) {
                seen += 1;
                if seen >= count {
                    return Ok(millis(start.elapsed()));
                }
            }
        }
        bail!("the watch ended after {seen} of {count} pods")
    }

    async fn density(&mut self) -> Result<()> {
        let mut names: Vec<String> = Vec::new();
        let density = self.plan.density.clone();
        for target in density {
            let new: Vec<String> = (names.len()..target)
                .map(|i| format!("dense-{i}"))
                .collect();
            let pid = self.server_pid()?;
            let cpu_before = CpuSpent::measure(pid);
            let took = self.create_many(&new, Duration::from_secs(600)).await?;
            let cpu = CpuSpent::since(cpu_before, pid, new.len());
            let new_count = new.len();
            names.extend(new);
            let (rss, _) = memory_kib(pid);
            let data = self.skiff.data_dir_path().display().to_string();
            let (h_rss, h_pss, processes) =
                helpers_kib(&[&[&data, "monitor"], &["skiff", "pause", "--hostname"]]);
            let per_pod_pss = mib(h_pss) / target as f64;
            let get_ms = self.kubectl_get_pods_ms()?;
            let watch_ms = self.watch_all_ms(target).await?;
            let mut rss_row = Row::new(
                format!("skiff RSS with {target} pods"),
                "MiB",
                Some(mib(rss)),
            );
            let mut per_pod = Row::new(
                format!("per-pod overhead (PSS) at {target} pods"),
                "MiB",
                Some(per_pod_pss),
            )
            .note(format!(
                "{processes} monitor+sandbox processes, RSS sum {:.0} MiB ({:.2} MiB/pod)",
                mib(h_rss),
                mib(h_rss) / target as f64
            ));
            if target >= 1000 {
                rss_row = rss_row.goal_at_most(150.0);
                per_pod = per_pod.goal_at_most(1.5);
            }
            self.rows.push(
                Row::new(
                    format!("{target} pods Running"),
                    "s",
                    Some(took.as_secs_f64()),
                )
                .note(format!("{new_count} new pods")),
            );
            // The rate of the pods this step brought up (from the previous
            // step's count to `target`), which the throughput goal judges.
            self.rows.push(Row::new(
                format!("rate of pods up, to {target} pods"),
                "pods/s",
                Some(new_rate(new_count, took)),
            ));
            self.rows.push(cpu.row(format!("CPU per pod start, to {target} pods")));
            self.rows.push(rss_row);
            self.rows.push(per_pod);
            self.rows.push(Row::new(
                format!("kubectl get pods, {target} pods"),
                "ms",
                Some(get_ms),
            ));
            self.rows.push(Row::new(
                format!("watch delivering {target} pods"),
                "ms",
                Some(watch_ms),
            ));
        }
        if self.plan.api_ops > 0 {
            self.api_latency(names.len()).await?;
        }
        let pid = self.server_pid()?;
        let cpu_before = CpuSpent::measure(pid);
        let took = self.delete_many(&names, Duration::from_secs(900)).await?;
        let cpu = CpuSpent::since(cpu_before, pid, names.len());
        self.rows.push(
            Row::new(
                format!("delete {} pods", names.len()),
                "s",
                Some(took.as_secs_f64()),
            )
            .note(format!("{:.1} pods/s", new_rate(names.len(), took))),
        );
        self.rows.push(cpu.row(format!("CPU per pod delete, {} pods", names.len())));
        Ok(())
    }

    /// create/get/list/patch latency with `stored` pods, and a watch fan-out.
    async fn api_latency(&mut self, stored: usize) -> Result<()> {
        let ops = self.plan.api_ops;
        // These never schedule (no node has the label): pure API work.
        let names: Vec<String> = (0..ops).map(|i| format!("api-{i}")).collect();
        let mut timings: HashMap<&str, Vec<f64>> = HashMap::new();
        for name in &names {
            let pod = pod_manifest(name, SLEEPER, json!({"nodeSelector": {"bench": "nowhere"}}))?;
            let start = Instant::now();
            create(&self.api, &pod).await?;
            timings
                .entry("create")
                .or_default()
                .push(millis(start.elapsed()));
        }
        for name in &names {
            let start = Instant::now();
            self.api.get(name).await?;
            timings
                .entry("get")
                .or_default()
                .push(millis(start.elapsed()));
        }
        for name in &names {
            let patch = json!({"metadata": {"labels": {"touched": "yes"}}});
            let start = Instant::now();
            self.api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            timings
                .entry("patch")
                .or_default()
                .push(millis(start.elapsed()));
        }
        for _ in 0..(ops / 10).max(2) {
            let start = Instant::now();
            let list = self.api.list(&ListParams::default()).await?;
            timings
                .entry("list")
                .or_default()
                .push(millis(start.elapsed()));
            if list.items.len() < stored {
                bail!("list returned {} of {stored} pods", list.items.len());
            }
        }
        for verb in ["create", "get", "patch", "list"] {
            let mut v = timings.remove(verb).unwrap_or_default();
            v.sort_by(f64::total_cmp);
            let total = stored + if verb == "list" { ops } else { 0 };
            self.rows.push(Row::new(
                format!("API {verb} p50, {total} pods stored"),
                "ms",
                percentile(&v, 50.0),
            ));
            self.rows.push(Row::new(
                format!("API {verb} p99, {total} pods stored"),
                "ms",
                percentile(&v, 99.0),
            ));
        }
        // Fan-out: every watcher waits for one update of one pod.
        let target = names.first().context("an api pod")?.clone();
        let current = self.api.get(&target).await?;
        let version = current.metadata.resource_version.unwrap_or_default();
        let mut watchers = Vec::new();
        for _ in 0..self.plan.watchers {
            let params = WatchParams::default()
                .fields(&format!("metadata.name={target}"))
                .timeout(60);
            let stream = self.api.watch(&params, &version).await?;
            watchers.push(tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Ok(Some(event)) = stream.try_next().await {
                    if let WatchEvent::Modified(pod) = event {
                        if pod.labels().get("fan").is_some() {
                            return Some(Instant::now());
                        }
                    }
                }
                None
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let start = Instant::now();
        let patch = json!({"metadata": {"labels": {"fan": "out"}}});
        self.api
            .patch(&target, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let mut delivery = Vec::new();
        for watcher in watchers {
            let at = watcher.await?.context("a watcher missed the update")?;
            delivery.push(millis(at.duration_since(start)));
        }
        delivery.sort_by(f64::total_cmp);
        self.rows.push(Row::new(
            format!("watch fan-out p99, {} watchers", self.plan.watchers),
            "ms",
            percentile(&delivery, 99.0),
        ));
        for name in &names {
            self.api
                .delete(
                    name,
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    },
                )
                .await?;
        }
        Ok(())
    }
}

fn new_rate(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(1e-9)
}

/// podman, rootful, with all its state under one temporary directory.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn setup() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("networks"))?;
        std::fs::write(
            root.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{r}/events.log\"\nstatic_dir = \"{r}/libpod\"\ntmp_dir = \"{r}/tmp\"\n\
                 volume_path = \"{r}/volumes\"\n[network]\nnetwork_config_dir = \"{r}/networks\"\n",
                r = root.display()
            ),
        )?;
        std::fs::write(
            root.join("registries.conf"),
            "[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n",
        )?;
        std::fs::write(
            root.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{r}/storage\"\nrunroot = \"{r}/run\"\n",
                r = root.display()
            ),
        )?;
        let podman = Self { dir };
        podman.run(&["pull", "-q", IMAGE])?;
        Ok(podman)
    }

    fn command(&self, args: &[&str]) -> Command {
        let root = self.dir.path();
        let mut command = Command::new("podman");
        command
            .args(args)
            .env("CONTAINERS_CONF", root.join("containers.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", root.join("registries.conf"))
            .env("CONTAINERS_STORAGE_CONF", root.join("storage.conf"))
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let output = self.command(args).output()?;
        if !output.status.success() {
            bail!(
                "podman {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn manifest(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(format!("{name}.yaml"));
        let pod = pod_manifest(name, SLEEPER, json!({}))?;
        std::fs::write(&path, serde_yaml::to_string(&pod)?)?;
        Ok(path)
    }

    /// `kube play` of one pod: returns once its containers started.
    fn play(&self, name: &str) -> Result<Duration> {
        let path = self.manifest(name)?;
        let start = Instant::now();
        self.run(&["kube", "play", "--quiet", &path.display().to_string()])?;
        Ok(start.elapsed())
    }

    fn down(&self, name: &str) -> Result<Duration> {
        let path = self.dir.path().join(format!("{name}.yaml"));
        let start = Instant::now();
        self.run(&["kube", "down", &path.display().to_string()])?;
        Ok(start.elapsed())
    }

    fn parallel(
        &self,
        names: &[String],
        clients: usize,
        work: impl Fn(&str) -> Result<Duration> + Sync,
    ) -> Result<Duration> {
        let start = Instant::now();
        let chunks: Vec<&[String]> = names
            .chunks(names.len().div_ceil(clients.max(1)).max(1))
            .collect();
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| scope.spawn(|| chunk.iter().try_for_each(|n| work(n).map(|_| ()))))
                .collect();
            for handle in handles {
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("podman thread panicked"))??;
            }
            Ok(())
        })?;
        Ok(start.elapsed())
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["pod", "rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["system", "reset", "--force"]);
        let root = self.dir.path().display().to_string();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
            for mount in mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(4))
                .filter(|m| m.starts_with(&root))
            {
                let _ = Command::new("umount").args(["-l", mount]).status();
            }
        }
    }
}

struct PodmanResults {
    start: Vec<Duration>,
    down: Vec<Duration>,
    throughput: Option<(usize, Duration, Duration)>,
    density: Option<(usize, Duration, f64, f64)>,
}

fn podman_bench(plan: &Plan) -> Result<PodmanResults> {
    let podman = Podman::setup()?;
    let mut results = PodmanResults {
        start: Vec::new(),
        down: Vec::new(),
        throughput: None,
        density: None,
    };
    for i in 0..plan.podman_latency_pods {
        results.start.push(podman.play(&format!("pl-{i}"))?);
    }
    for i in 0..plan.podman_latency_pods {
        results.down.push(podman.down(&format!("pl-{i}"))?);
    }
    let names: Vec<String> = (0..plan.podman_throughput_pods)
        .map(|i| format!("pt-{i}"))
        .collect();
    let up = podman.parallel(&names, plan.clients, |n| podman.play(n))?;
    let down = podman.parallel(&names, plan.clients, |n| podman.down(n))?;
    results.throughput = Some((names.len(), up, down));
    let names: Vec<String> = (0..plan.podman_density)
        .map(|i| format!("pd-{i}"))
        .collect();
    let up = podman.parallel(&names, plan.clients, |n| podman.play(n))?;
    let root = podman.dir.path().display().to_string();
    let (rss, pss, _) = helpers_kib(&[&["conmon", &root], &["catatonit", "-P"]]);
    results.density = Some((
        names.len(),
        up,
        mib(pss) / names.len() as f64,
        mib(rss) / names.len() as f64,
    ));
    podman.parallel(&names, plan.clients, |n| podman.down(n))?;
    Ok(results)
}

/// The floor: `runc run -d` of the same image from an unpacked bundle
/// (`umoci unpack`), no network, no monitor.
fn runc_floor(runs: usize) -> Result<Vec<Duration>> {
    let dir = tempfile::tempdir()?;
    let layout = dir.path().join("layout");
    let ok = |c: &mut Command| -> Result<()> {
        let out = c.output()?;
        if !out.status.success() {
            bail!("{c:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    ok(Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{IMAGE}"),
        ])
        .arg(format!("oci:{}:bench", layout.display())))?;
    let bundle = dir.path().join("bundle");
    ok(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:bench", layout.display()))
        .arg(&bundle))?;
    let config_path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    config["process"]["args"] = json!(["sh", "-c", SLEEPER]);
    config["process"]["terminal"] = json!(false);
    // Stay within the host's hard limits (no CAP_SYS_RESOURCE here).
    config["process"]["rlimits"] = json!([]);
    std::fs::write(&config_path, serde_json::to_vec(&config)?)?;
    let root = dir.path().join("runc");
    let mut samples = Vec::new();
    for i in 0..runs {
        let id = format!("floor-{}-{i}", std::process::id());
        let start = Instant::now();
        ok(Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()))?;
        samples.push(start.elapsed());
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force", &id])
            .output();
    }
    Ok(samples)
}

fn print_table(rows: &[Row]) {
    let cell = |v: Option<f64>| {
        v.map(|v| {
            if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<46} {:>7} {:>10} {:>10} {:>9} {:>8} {:>12}  note",
        "metric", "unit", "skiff", "podman", "ratio", "floor", "goal"
    );
    for row in rows {
        let goal = match (row.goal, row.met()) {
            (Some((g, lower)), Some(met)) => format!(
                "{}{} {}",
                if lower { "≤" } else { "≥" },
                g,
                if met { "met" } else { "NOT met" }
            ),
            _ => String::new(),
        };
        let ratio = row
            .ratio()
            .map(|r| format!("{r:.1}×"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<46} {:>7} {:>10} {:>10} {:>9} {:>8} {:>12}  {}",
            row.metric,
            row.unit,
            cell(row.skiff),
            cell(row.podman),
            ratio,
            cell(row.floor),
            goal,
            row.note
        );
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; nothing else is ours to refuse.
    let smoke = args.iter().any(|a| a == "--smoke");
    let with_podman = !args.iter().any(|a| a == "--no-podman");
    let json_path = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench/pods.json"));
    // cargo runs benchmarks in the package directory; paths are the workspace's.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let json_path = workspace.join(json_path);
    // `--density N`: only N pods up and down, for a quick look at one change.
    let density_only: Option<usize> = args
        .iter()
        .position(|a| a == "--density")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok());
    let mut plan = if smoke { Plan::smoke() } else { Plan::full() };
    if let Some(n) = density_only {
        plan.density = vec![n];
        plan.api_ops = 0;
    }
    let phases = match density_only {
        Some(_) => Phases::Density,
        None => Phases::All { with_podman },
    };
    let began = Instant::now();
    let max_pods =
        (plan.density.iter().max().copied().unwrap_or(0) + plan.api_ops + 100).to_string();
    let skiff =
        Skiff::start_node_with(&["--max-pods", &max_pods, "--node-pod-cidr", "10.42.0.0/21"])?;
    skiff.start_registry(IMAGE)?;
    let (mut rows, failed) = match measure(&skiff, plan.clone(), phases) {
        Ok(result) => result,
        Err(error) => {
            eprintln!("benchmark failed: {error:#}\n{}", tail(&skiff.log(), 30));
            return Err(error);
        }
    };
    drop(skiff);
    // The same sequential starts with etcd as the datastore, beside SQLite's.
    if failed.is_none() && density_only.is_none() {
        match etcd_rows(&plan, &max_pods) {
            Ok(etcd) => rows.extend(etcd),
            Err(error) => eprintln!("etcd datastore phase failed: {error:#}"),
        }
    }
    let goals = relative_goals(&rows);
    rows.extend(goals);
    print_table(&rows);
    println!("\nwhole run: {:.0} s", began.elapsed().as_secs_f64());
    if let Some(error) = &failed {
        println!("the run stopped early: {error:#}");
    }
    if let Some(parent) = json_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let report = json!({
        "smoke": smoke,
        "failed": failed.as_ref().map(|e| format!("{e:#}")),
        "seconds": began.elapsed().as_secs_f64(),
        "machine": machine(),
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)?;
    println!("written: {}", json_path.display());
    failed.map_or(Ok(()), Err)
}

fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpus = read("/proc/cpuinfo")
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string());
    json!({"cpus": cpus, "model": model, "kernel": read("/proc/sys/kernel/osrelease").trim()})
}


/// Which measurements a server gets.
#[derive(Clone, Copy)]
enum Phases {
    All { with_podman: bool },
    /// Only sequential create → Running (the etcd datastore's row).
    Latency,
    /// Only the density phase (`--density N`).
    Density,
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `phases` against `skiff` from a thread (and runtime) inside the
/// node's network namespace; this process stays outside, so the node's
/// cleanup does not count it among the namespace's processes. A failed
/// phase still reports what was measured before it.
fn measure(skiff: &Skiff, plan: Plan, phases: Phases) -> Result<(Vec<Row>, Option<anyhow::Error>)> {
    let ns = skiff.netns.clone().context("netns")?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<(Vec<Row>, Option<anyhow::Error>)> {
                let netns = std::fs::File::open(format!("/run/netns/{ns}"))?;
                nix::sched::setns(std::os::fd::AsFd::as_fd(&netns), nix::sched::CloneFlags::CLONE_NEWNET)?;
                let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
                runtime.block_on(async {
                    let client = skiff_client::from_kubeconfig(&skiff.kubeconfig(), "skiff-bench").await?;
                    let api: Api<Pod> = Api::namespaced(client, "default");
                    let tracker = Tracker::start(api.clone());
                    let mut bench = Bench { skiff, api, tracker, plan, rows: Vec::new() };
                    let failed = match phases {
                        Phases::All { with_podman } => run_all(&mut bench, with_podman).await.err(),
                        Phases::Latency => run_latency_only(&mut bench).await.err(),
                        Phases::Density => async {
                            warm_up(&mut bench).await?;
                            bench.density().await
                        }
                        .await
                        .err(),
                    };
                    anyhow::Ok((bench.rows, failed))
                })
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?
    })
}

/// create → Running with the server on a real etcd (on the node's
/// loopback), for the row beside SQLite's.
fn etcd_rows(plan: &Plan, max_pods: &str) -> Result<Vec<Row>> {
    let skiff = Skiff::start_node_on_etcd(&["--max-pods", max_pods, "--node-pod-cidr", "10.42.0.0/21"])?;
    skiff.start_registry(IMAGE)?;
    let (rows, failed) = measure(&skiff, plan.clone(), Phases::Latency)?;
    drop(skiff);
    let rows = rows
        .into_iter()
        .map(|mut row| {
            if let Some(phase) = row.metric.strip_prefix("trace: ") {
                row.metric = format!("etcd trace: {phase}");
            }
            row
        })
        .collect();
    failed.map_or(Ok(rows), Err)
}

async fn warm_up(bench: &mut Bench<'_>) -> Result<()> {
    // The image is pulled once, outside every measurement.
    let warm = pod_manifest("warmup", SLEEPER, json!({}))?;
    create(&bench.api, &warm).await?;
    bench
        .tracker
        .wait_all(&["warmup".to_string()], Duration::from_secs(120), |s| s.running.is_some())
        .await?;
    bench.delete_many(&["warmup".to_string()], Duration::from_secs(60)).await?;
    Ok(())
}

async fn run_latency_only(bench: &mut Bench<'_>) -> Result<()> {
    warm_up(bench).await?;
    let (running, _, _) = bench.latency().await?;
    let rows = distribution("create → Running, etcd datastore", &running, &[], &[]);
    bench.rows.extend(rows.into_iter().map(|r| r.note("same pods, server on etcd 3.4 on loopback")));
    Ok(())
}

async fn run_all(bench: &mut Bench<'_>, with_podman: bool) -> Result<()> {
    warm_up(bench).await?;
    bench.idle("0 pods").await?;

    let (running, ready, deleted) = bench.latency().await?;
    let httpd = bench.httpd().await?;
    let podman = if with_podman
        && Command::new("podman")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        // podman runs in between, while skiff idles with no pods.
        Some(tokio::task::block_in_place(|| podman_bench(&bench.plan)))
    } else {
        None
    };
    let podman = match podman {
        Some(Ok(results)) => Some(results),
        Some(Err(error)) => {
            eprintln!("podman peer failed: {error:#}");
            None
        }
        None => None,
    };
    let floor = tokio::task::block_in_place(|| runc_floor(bench.plan.floor_runs))
        .map_err(|e| eprintln!("runc floor failed: {e:#}"))
        .unwrap_or_default();

    let podman_start = podman.as_ref().map(|p| p.start.clone()).unwrap_or_default();
    let mut rows = distribution("create → Running", &running, &podman_start, &floor);
    rows[0] = rows[0].clone().goal_at_most(100.0);
    rows[2] = rows[2].clone().goal_at_most(250.0);
    bench.rows.extend(rows);
    bench
        .rows
        .extend(distribution("create → Ready", &ready, &podman_start, &[]));
    bench
        .rows
        .extend(distribution("create → first HTTP byte", &httpd, &[], &[]));
    let podman_down = podman.as_ref().map(|p| p.down.clone()).unwrap_or_default();
    let mut rows = distribution(
        "delete → gone (exits on SIGTERM)",
        &deleted,
        &podman_down,
        &[],
    );
    rows[0] = rows[0].clone().goal_at_most(150.0);
    bench.rows.extend(rows);
    let speedup = {
        let p50 = |v: &[Duration]| {
            let mut s: Vec<f64> = v.iter().copied().map(millis).collect();
            s.sort_by(f64::total_cmp);
            percentile(&s, 50.0)
        };
        match (p50(&running), p50(&podman_start)) {
            (Some(s), Some(p)) if s > 0.0 => Some(p / s),
            _ => None,
        }
    };
    bench
        .rows
        .push(Row::new("start p50 speed-up over podman", "×", speedup).goal_at_least(5.0));

    // Throughput, with an idle minute at 100 pods in between.
    let names: Vec<String> = (0..bench.plan.throughput_pods)
        .map(|i| format!("burst-{i}"))
        .collect();
    let up = bench.create_many(&names, Duration::from_secs(300)).await?;
    let n = names.len();
    let mut up_row = Row::new(
        format!("{n} pods created → all Running"),
        "s",
        Some(up.as_secs_f64()),
    );
    if n >= 100 {
        up_row = up_row.goal_at_most(10.0);
    }
    let mut rate_up = Row::new(
        format!("create throughput ({n} pods)"),
        "pods/s",
        Some(new_rate(n, up)),
    );
    bench.idle(&format!("{n} pods")).await?;
    let down = bench.delete_many(&names, Duration::from_secs(300)).await?;
    let mut rate_down = Row::new(
        format!("delete throughput ({n} pods)"),
        "pods/s",
        Some(new_rate(n, down)),
    );
    if let Some((pn, pup, pdown)) = podman.as_ref().and_then(|p| p.throughput) {
        rate_up = rate_up
            .podman(Some(new_rate(pn, pup)))
            .note(format!("podman: {pn} pods"));
        rate_down = rate_down
            .podman(Some(new_rate(pn, pdown)))
            .note(format!("podman: {pn} pods"));
    }
    bench.rows.push(up_row);
    bench.rows.push(rate_up);
    bench.rows.push(rate_down);

    bench.density().await?;
    if let Some((pn, up, pss, rss)) = podman.as_ref().and_then(|p| p.density) {
        bench.rows.push(
            Row::new(
                format!("per-pod overhead (PSS), podman at {pn} pods"),
                "MiB",
                None,
            )
            .podman(Some(pss))
            .note(format!(
                "conmon + infra; RSS {rss:.2} MiB/pod; {pn} pods up in {:.1} s",
                up.as_secs_f64()
            )),
        );
    }
    Ok(())
}
