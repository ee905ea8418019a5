//! Taking over the pods an earlier agent ran: the checkpoint each worker
//! keeps, and adopting its sandbox, record and running containers.

use super::*;

/// Takes over a pod an earlier agent ran, from its checkpoint: its sandbox,
/// its record and its running containers (their monitors kept them going),
/// then runs it as [`run`] does.
pub async fn adopt(
    agent: Arc<Agent>,
    checkpoint: Checkpoint,
    desired: Desired,
) {
    let (mut worker, inbox) = Worker::new(agent, checkpoint.pod.clone(), checkpoint.record);
    worker.sandbox_id = checkpoint.sandbox_id;
    worker.finished = checkpoint.finished;
    let now_ms = worker.agent.clock.now().as_millisecond();
    for backoff in checkpoint.backoff {
        let left = u64::try_from(backoff.due_unix_ms - now_ms).unwrap_or(0);
        worker.backoff.insert(
            backoff.name,
            (
                Duration::from_millis(backoff.delay_ms),
                Instant::now() + Duration::from_millis(left),
            ),
        );
    }
    let (namespace, name, uid) = pod_name(&worker.pod);
    if let Some(pid) = checkpoint.sandbox_pid {
        let sandbox = Sandbox { pid };
        if !sandbox.alive() {
            tracing::warn!(pod = %worker.key, pid, "the adopted pod's sandbox process is gone; the pod gets a new sandbox");
        }
        worker.watch_sandbox(pid);
        worker.agent.containers.register(&namespace, &name, &uid);
        worker.agent.containers.set_sandbox(
            &uid,
            Some(SandboxEntry {
                id: worker.sandbox_id.clone(),
                pid,
                uid: uid.clone(),
            }),
        );
        worker.sandbox = Some(sandbox);
    }
    for live in checkpoint.live {
        // The monitor is no longer our child: wait on its pidfd. One that is
        // gone (the container ended while no agent ran) reports at once;
        // its exit.json holds the real exit code.
        let exits = worker.exits.clone();
        let notice = worker.exit_notice.clone();
        let (container, pid) = (live.name.clone(), live.monitor_pid);
        let image = worker
            .container_spec(&live.name)
            .and_then(|c| c.image)
            .and_then(|name| worker.agent.images.get(&name).ok().flatten());
        let alive = skiff_runtime::process::runs_with_argument(pid, &live.id);
        tokio::spawn(async move {
            if alive {
                let _ = skiff_runtime::process::exited(pid).await;
            }
            let _ = exits.send(container);
            notice.notify_one();
        });
        worker.live.insert(
            live.name,
            Live {
                bundle: worker.agent.data_dir.join("containers").join(&live.id),
                id: live.id,
                stop_signal: live.stop_signal,
                monitor_pid: pid,
                probes: Vec::new(),
                image: image.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
                layers: image
                    .map(|i| i.layers.into_iter().map(|l| l.digest).collect())
                    .unwrap_or_default(),
            },
        );
    }
    let records: Vec<ContainerRecord> = worker
        .record
        .init_containers
        .iter()
        .chain(worker.record.containers.iter())
        .chain(worker.record.ephemeral_containers.iter())
        .cloned()
        .collect();
    for record in records {
        let live_id = worker.live.get(&record.name).map(|l| l.id.clone());
        let runtime_id = live_id.clone().or_else(|| {
            record
                .container_id
                .split_once("://")
                .map(|(_, id)| id.to_string())
        });
        let Some(runtime_id) = runtime_id else {
            continue;
        };
        let entry = ContainerEntry {
            dir: worker.pod_dir().join(&record.name),
            attempt: worker.attempt(&record.name),
            running: live_id.is_some(),
            bundle: worker.agent.data_dir.join("containers").join(&runtime_id),
            cgroup: format!("{}/{runtime_id}", worker.cgroup_parent()),
            runtime_id,
        };
        worker
            .agent
            .containers
            .set(ContainerIndex::key(&uid, &record.name), entry);
        if live_id.is_some() && record.running() {
            if let Some(container) = worker.container_spec(&record.name) {
                let kinds: &[probe::Kind] = if record.started {
                    &[probe::Kind::Liveness, probe::Kind::Readiness]
                } else {
                    &[probe::Kind::Startup]
                };
                worker.start_probes(&container, kinds);
            }
        }
    }
    tracing::info!(pod = %worker.key, containers = worker.live.len(), "pod re-adopted");
    worker.run(desired, inbox).await;
}

impl Worker {
    /// The worker's state as a restarted agent needs it.
    pub(super) fn checkpoint(&self) -> Checkpoint {
        let now = Instant::now();
        let now_ms = self.agent.clock.now().as_millisecond();
        Checkpoint {
            pod: self.pod.clone(),
            sandbox_id: self.sandbox_id.clone(),
            sandbox_pid: self.sandbox.as_ref().map(|s| s.pid),
            record: self.record.clone(),
            finished: self.finished,
            live: self
                .live
                .iter()
                .map(|(name, live)| LiveContainer {
                    name: name.clone(),
                    id: live.id.clone(),
                    stop_signal: live.stop_signal.clone(),
                    monitor_pid: live.monitor_pid,
                })
                .collect(),
            backoff: self
                .backoff
                .iter()
                .map(|(name, (delay, at))| BackOff {
                    name: name.clone(),
                    delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    due_unix_ms: now_ms
                        + i64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(0),
                })
                .collect(),
        }
    }
}
