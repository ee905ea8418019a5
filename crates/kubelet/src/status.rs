//! Pod status: what the node knows about a pod's containers, turned into
//! `status` the way kubelet computes it (phase, conditions in upstream order,
//! container states), and the status manager: the single writer that
//! patches pod status, coalescing updates per pod.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termination {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub container_id: String,
}

/// Where a container is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Termination),
}

/// The node's record of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: String,
    pub state: State,
    pub last: Option<Termination>,
    pub restart_count: i32,
    /// Startup probe passed (or none); meaningful while running.
    pub started: bool,
    /// Readiness probe passing (or none, once started); meaningful while running.
    pub ready: bool,
    /// An init container with `restartPolicy: Always` (a sidecar).
    pub sidecar: bool,
}

impl ContainerRecord {
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.to_string(),
            image: image.to_string(),
            image_id: String::new(),
            container_id: String::new(),
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last: None,
            restart_count: 0,
            started: false,
            ready: false,
            sidecar: false,
        }
    }

    /// A regular init container that ran to success.
    pub fn completed(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }

    pub fn running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// Running and passing its readiness probe, if any.
    pub fn is_ready(&self) -> bool {
        self.running() && self.ready
    }
}

/// The node's record of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Timestamp,
    pub init_containers: Vec<ContainerRecord>,
    pub containers: Vec<ContainerRecord>,
    /// `kubectl debug`'s containers: started once, never restarted, no
    /// part of the pod's phase or readiness.
    #[serde(default)]
    pub ephemeral_containers: Vec<ContainerRecord>,
    /// Set when the node failed the pod itself (reason, message), as for
    /// `activeDeadlineSeconds` (DeadlineExceeded).
    pub failed: Option<(String, String)>,
}

impl PodRecord {
    /// Init containers still in the way of the app containers: regular ones
    /// not yet completed, sidecars not yet started.
    pub fn incomplete_init(&self) -> Vec<&str> {
        self.init_containers
            .iter()
            .filter(|c| {
                if c.sidecar {
                    // Stopped for good only once the app containers were done.
                    let stopped = matches!(c.state, State::Terminated(_));
                    !(stopped || c.running() && c.started)
                } else {
                    !c.completed()
                }
            })
            .map(|c| c.name.as_str())
            .collect()
    }
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn termination_json(t: &Termination) -> Value {
    let mut v = json!({"exitCode": t.exit_code, "reason": t.reason, "finishedAt": time(t.finished_at), "containerID": t.container_id});
    if let Some(started) = t.started_at {
        v["startedAt"] = json!(time(started));
    }
    if let Some(signal) = t.signal {
        v["signal"] = json!(signal);
    }
    if let Some(message) = t.message.as_ref().filter(|m| !m.is_empty()) {
        v["message"] = json!(message);
    }
    v
}

fn container_json(c: &ContainerRecord, init: bool) -> Value {
    // A regular init container is ready once it completed, as upstream.
    let ready = if init && !c.sidecar {
        c.completed()
    } else {
        c.is_ready()
    };
    let state = match &c.state {
        State::Waiting { reason, message } => {
            let mut w = json!({"reason": reason});
            if let Some(m) = message {
                w["message"] = json!(m);
            }
            json!({"waiting": w})
        }
        State::Running { started_at } => json!({"running": {"startedAt": time(*started_at)}}),
        State::Terminated(t) => json!({"terminated": termination_json(t)}),
    };
    let mut v = json!({
        "name": c.name, "state": state, "ready": ready, "restartCount": c.restart_count,
        "image": c.image, "imageID": c.image_id, "started": c.running() && c.started,
        "lastState": c.last.as_ref().map(|t| json!({"terminated": termination_json(t)})).unwrap_or(json!({})),
    });
    if !c.container_id.is_empty() {
        v["containerID"] = json!(c.container_id);
    }
    v
}

/// Upstream's `getPhase`: init containers first (a failed one fails the
/// pod under `Never`, else keeps it Pending), then the app containers.
pub fn pod_phase(restart_policy: &str, record: &PodRecord) -> &'static str {
    if record.failed.is_some() {
        return "Failed";
    }
    if !record.sandbox_ready {
        return "Pending";
    }
    let mut pending = false;
    let mut failed = false;
    for c in record.init_containers.iter().filter(|c| !c.sidecar) {
        match &c.state {
            State::Terminated(t) if t.exit_code == 0 => {}
            State::Terminated(_) => failed = true,
            State::Waiting { .. } if c.last.as_ref().is_some_and(|t| t.exit_code != 0) => {
                failed = true
            }
            _ => pending = true,
        }
    }
    if failed && restart_policy == "Never" {
        return "Failed";
    }
    if pending || failed || !record.incomplete_init().is_empty() {
        return "Pending";
    }
    let phase = phase(restart_policy, &record.containers, true);
    // Not terminal while a container (a sidecar) still runs.
    let still_running = record.init_containers.iter().any(ContainerRecord::running);
    if matches!(phase, "Succeeded" | "Failed") && still_running {
        return "Running";
    }
    phase
}

/// Upstream's `getPhase` for app containers.
pub fn phase(
    restart_policy: &str,
    containers: &[ContainerRecord],
    sandbox_ready: bool,
) -> &'static str {
    if !sandbox_ready {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } if c.last.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    }
}

/// Keeps a condition's lastTransitionTime while its status is unchanged.
fn condition(
    previous: &[Value],
    kind: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> Value {
    let status_text = if status { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c["type"] == kind && c["status"] == status_text)
        .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
        .unwrap_or_else(|| time(now));
    let mut c = json!({"type": kind, "status": status_text, "lastProbeTime": null, "lastTransitionTime": since});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// `Initialized`: True once every init container is done (it never goes
/// back to False); else which ones are incomplete.
fn initialized_condition(
    previous: &[Value],
    record: &PodRecord,
    terminal: bool,
    now: Timestamp,
) -> Value {
    let was_initialized = previous
        .iter()
        .any(|c| c["type"] == "Initialized" && c["status"] == "True");
    let incomplete = record.incomplete_init();
    if incomplete.is_empty() || was_initialized {
        let reason = terminal.then_some("PodCompleted");
        return condition(previous, "Initialized", true, reason, None, now);
    }
    condition(
        previous,
        "Initialized",
        false,
        Some("ContainersNotInitialized"),
        Some(format!(
            "containers with incomplete status: [{}]",
            incomplete.join(" ")
        )),
        now,
    )
}

/// The pod's `status`, from the node's record.
pub fn pod_status(pod: &Pod, record: &PodRecord, now: Timestamp) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let phase = pod_phase(restart_policy, record);
    let previous: Vec<Value> = serde_json::to_value(
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default(),
    )
    .ok()
    .and_then(|v| v.as_array().cloned())
    .unwrap_or_default();
    let unready: Vec<&str> = record
        .init_containers
        .iter()
        .filter(|c| c.sidecar)
        .chain(&record.containers)
        .filter(|c| !c.is_ready())
        .map(|c| c.name.as_str())
        .collect();
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let (ready_reason, ready_message) = if terminal {
        (Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (None, None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let containers_ready = unready.is_empty() && !terminal;
    let gates_met = spec.readiness_gates.iter().flatten().all(|g| {
        previous
            .iter()
            .any(|c| c["type"] == g.condition_type.as_str() && c["status"] == "True")
    });
    let mut conditions = vec![
        condition(
            &previous,
            "PodReadyToStartContainers",
            record.sandbox_ready && !terminal,
            None,
            None,
            now,
        ),
        initialized_condition(&previous, record, terminal, now),
        condition(
            &previous,
            "Ready",
            containers_ready && gates_met,
            ready_reason,
            ready_message.clone(),
            now,
        ),
        condition(
            &previous,
            "ContainersReady",
            containers_ready,
            ready_reason,
            ready_message,
            now,
        ),
    ];
    conditions.extend(
        previous
            .iter()
            .filter(|c| c["type"] == "PodScheduled")
            .cloned(),
    );
    let known = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    conditions.extend(
        previous
            .iter()
            .filter(|c| c["type"].as_str().is_some_and(|t| !known.contains(&t)))
            .cloned(),
    );
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": record.host_ip,
        "hostIPs": [{"ip": record.host_ip}],
        "startTime": time(record.start_time),
        "containerStatuses": record.containers.iter().map(|c| container_json(c, false)).collect::<Vec<_>>(),
    });
    if !record.init_containers.is_empty() {
        status["initContainerStatuses"] = record
            .init_containers
            .iter()
            .map(|c| container_json(c, true))
            .collect();
    }
    if !record.ephemeral_containers.is_empty() {
        status["ephemeralContainerStatuses"] = record
            .ephemeral_containers
            .iter()
            .map(|c| {
                let mut status = container_json(c, false);
                status["ready"] = json!(false);
                if let Some(map) = status.as_object_mut() {
                    map.remove("started");
                }
                status
            })
            .collect();
    }
    if let Some((reason, message)) = &record.failed {
        status["reason"] = json!(reason);
        status["message"] = json!(message);
    }
    if let Some(ip) = &record.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some(qos) = pod.status.as_ref().and_then(|s| s.qos_class.clone()) {
        status["qosClass"] = json!(qos);
    }
    status
}

/// One status write: which pod, and its new status.
#[derive(Debug)]
pub struct Update {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub status: Value,
    /// A static pod: the status goes to its mirror pod (the mirror whose
    /// `kubernetes.io/config.mirror` is `uid`), whatever the mirror's UID.
    pub mirror: bool,
}

/// The handle pod workers send status through.
#[derive(Clone)]
pub struct StatusSender(mpsc::UnboundedSender<Update>);

impl StatusSender {
    pub fn send(&self, update: Update) {
        let _ = self.0.send(update);
    }
}

/// A failed write is tried again after this long (the API server may be
/// down, or a static pod's mirror not created yet).
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// A mirror pod that is still missing after this many tries is given up on
/// (its static pod is gone); the next change of the pod tries again.
const MIRROR_TRIES: u32 = 30;

/// What writing one update came to.
enum Outcome {
    Written(String),
    Gone,
    Retry,
}

async fn write(client: &kube::Client, update: &Update) -> Outcome {
    let api: Api<Pod> = Api::namespaced(client.clone(), &update.namespace);
    // The UID precondition keeps a status from landing on a newer pod of
    // the same name; for a mirror pod, that is the mirror's own UID.
    let target_uid = if update.mirror {
        match api.get_opt(&update.name).await {
            Ok(Some(mirror))
                if crate::static_pods::mirrored_uid(&mirror) == Some(update.uid.as_str()) =>
            {
                mirror.metadata.uid.unwrap_or_default()
            }
            Ok(_) => return Outcome::Gone,
            Err(_) => return Outcome::Retry,
        }
    } else {
        update.uid.clone()
    };
    let patch = json!({"metadata": {"uid": target_uid}, "status": update.status});
    match api
        .patch_status(&update.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Outcome::Written(target_uid),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Outcome::Gone,
        Err(error) => {
            tracing::warn!(pod = %format!("{}/{}", update.namespace, update.name), %error, "status update failed; retrying");
            Outcome::Retry
        }
    }
}

/// Identifies a status for "already written" (64-bit SipHash of its JSON).
fn status_hash(status: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    status.to_string().hash(&mut hasher);
    hasher.finish()
}

/// Starts the status manager; it alone patches pod status.
pub fn start_manager(client: kube::Client, shutdown: CancellationToken) -> StatusSender {
    let (tx, mut rx) = mpsc::unbounded_channel::<Update>();
    tokio::spawn(async move {
        // A hash of the last status written, by the UID of the object
        // written to (a status kept whole would cost kilobytes per pod).
        let mut written: HashMap<String, u64> = HashMap::new();
        // Updates to try again, with how many times they were tried.
        let mut pending: HashMap<String, (Update, u32)> = HashMap::new();
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                update = rx.recv() => match update { Some(u) => Some(u), None => return },
                _ = tokio::time::sleep(RETRY), if !pending.is_empty() => None,
            };
            // Coalesce: only the latest status of each pod is written.
            let mut latest = std::mem::take(&mut pending);
            for update in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                latest.insert(update.uid.clone(), (update, 0));
            }
            for (uid, (update, tries)) in latest {
                let hash = status_hash(&update.status);
                if !update.mirror && written.get(&uid) == Some(&hash) {
                    continue;
                }
                match write(&client, &update).await {
                    Outcome::Written(target) => {
                        written.insert(target, hash);
                    }
                    Outcome::Gone if update.mirror && tries < MIRROR_TRIES => {
                        pending.insert(uid, (update, tries + 1));
                    }
                    Outcome::Gone => {
                        written.remove(&uid);
                    }
                    Outcome::Retry => {
                        pending.insert(uid, (update, tries + 1));
                    }
                }
            }
            if written.len() > 10_000 {
                written.clear();
            }
        }
    });
    StatusSender(tx)
}

/// What a new sandbox means for the pod's containers (the kubelet's
/// `computePodActions` when the sandbox changed): under `Never` a pod whose
/// containers already ran is not started again (returns `false`);
/// otherwise every container starts again in the new sandbox, init
/// containers first, except those that succeeded under `OnFailure`. Each
/// container to start again keeps its last termination and counts a restart.
pub fn restart_in_new_sandbox(policy: &str, record: &mut PodRecord) -> bool {
    let ran = |c: &ContainerRecord| c.restart_count > 0 || !matches!(c.state, State::Waiting { .. });
    if policy == "Never" && record.containers.iter().chain(&record.init_containers).any(ran) {
        return false;
    }
    for container in record.init_containers.iter_mut().chain(record.containers.iter_mut()) {
        let State::Terminated(termination) = &container.state else {
            continue;
        };
        if policy == "OnFailure" && termination.exit_code == 0 && !container.sidecar {
            continue;
        }
        container.last = Some(termination.clone());
        container.restart_count += 1;
        container.started = false;
        container.ready = false;
        container.state = State::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(states: Vec<(State, Option<Termination>)>) -> PodRecord {
        PodRecord {
            sandbox_ready: true,
            pod_ip: Some("10.42.0.9".into()),
            host_ip: "192.0.2.1".into(),
            start_time: Timestamp::UNIX_EPOCH,
            init_containers: Vec::new(),
            ephemeral_containers: Vec::new(),
            failed: None,
            containers: states
                .into_iter()
                .enumerate()
                .map(|(i, (state, last))| ContainerRecord {
                    state,
                    last,
                    started: true,
                    ready: true,
                    ..ContainerRecord::new(&format!("c{i}"), "busybox")
                })
                .collect(),
        }
    }

    #[test]
    fn a_new_sandbox_restarts_containers_as_compute_pod_actions_does() {
        let cases = [
            ("Always", vec![ended(137), ended(0)], true, vec![1, 1]),
            ("OnFailure", vec![ended(137), ended(0)], true, vec![1, 0]),
            ("Never", vec![ended(137), ended(0)], false, vec![0, 0]),
        ];
        for (policy, ends, restarts, counts) in cases {
            let mut pod = record(ends.into_iter().map(|t| (State::Terminated(t), None)).collect());
            assert_eq!(restart_in_new_sandbox(policy, &mut pod), restarts, "{policy}");
            let got: Vec<i32> = pod.containers.iter().map(|c| c.restart_count).collect();
            assert_eq!(got, counts, "{policy}");
            for c in pod.containers.iter().filter(|c| c.restart_count == 1) {
                assert!(matches!(c.state, State::Waiting { .. }) && c.last.is_some(), "{policy}: {c:?}");
            }
        }
        // Never, before anything ran (the first sandbox died at once): start.
        let mut fresh = record(vec![(State::Waiting { reason: "ContainerCreating".into(), message: None }, None)]);
        assert!(restart_in_new_sandbox("Never", &mut fresh));
    }

    fn ended(code: i32) -> Termination {
        Termination {
            exit_code: code,
            signal: None,
            reason: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            message: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
            container_id: "runc://x".into(),
        }
    }

    #[test]
    fn phases_follow_restart_policy() {
        let running = State::Running {
            started_at: Timestamp::UNIX_EPOCH,
        };
        assert_eq!(
            phase(
                "Always",
                &record(vec![(running.clone(), None)]).containers,
                true
            ),
            "Running"
        );
        assert_eq!(
            phase(
                "Never",
                &record(vec![(State::Terminated(ended(0)), None)]).containers,
                true
            ),
            "Succeeded"
        );
        assert_eq!(
            phase(
                "Never",
                &record(vec![(State::Terminated(ended(1)), None)]).containers,
                true
            ),
            "Failed"
        );
        assert_eq!(
            phase(
                "OnFailure",
                &record(vec![(State::Terminated(ended(0)), None)]).containers,
                true
            ),
            "Succeeded"
        );
        assert_eq!(
            phase(
                "Always",
                &record(vec![(State::Terminated(ended(0)), None)]).containers,
                true
            ),
            "Running"
        );
        let backoff = State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: None,
        };
        assert_eq!(
            phase(
                "Always",
                &record(vec![(backoff, Some(ended(1)))]).containers,
                true
            ),
            "Running"
        );
        let creating = State::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        assert_eq!(
            phase("Always", &record(vec![(creating, None)]).containers, true),
            "Pending"
        );
        assert_eq!(phase("Always", &[], false), "Pending");
    }

    #[test]
    fn status_reads_like_upstream() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c0"}]},
            "status": {"qosClass": "BestEffort", "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
        .unwrap_or_default();
        let status = pod_status(
            &pod,
            &record(vec![(State::Terminated(ended(1)), None)]),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(status["phase"], "Failed");
        let types: Vec<&str> = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert_eq!(status["conditions"][2]["reason"], "PodCompleted");
        assert_eq!(
            status["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Error"
        );
        assert_eq!(status["podIP"], "10.42.0.9");
        assert_eq!(status["qosClass"], "BestEffort");

        let running = record(vec![
            (
                State::Running {
                    started_at: Timestamp::UNIX_EPOCH,
                },
                None,
            ),
            (
                State::Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                },
                None,
            ),
        ]);
        let status = pod_status(&pod, &running, Timestamp::UNIX_EPOCH);
        assert_eq!(
            status["conditions"][3]["message"],
            "containers with unready status: [c1]"
        );
        assert_eq!(status["containerStatuses"][0]["ready"], true);
    }
}
