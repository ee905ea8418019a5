//! Ending containers and pods: graceful stop with the grace period,
//! deletion, deadline and local-storage eviction.

use super::*;

impl Worker {
    /// Reaps containers as their monitors end (each writes its exit record
    /// first), until none is left or `deadline`.
    pub(super) async fn reap_until(&mut self, deadline: Instant) {
        let mut deadline = deadline;
        self.wait_exits(&mut deadline, |worker| worker.live.is_empty())
            .await;
    }

    /// Reaps containers as they exit until `done` or `deadline`, which a
    /// deletion with a shorter grace period moves closer.
    async fn wait_exits(&mut self, deadline: &mut Instant, done: impl Fn(&Self) -> bool) {
        loop {
            self.reap_exited().await;
            if done(self) || Instant::now() >= *deadline {
                return;
            }
            let notice = self.exit_notice.clone();
            tokio::select! {
                _ = notice.notified() => {}
                _ = tokio::time::sleep_until(*deadline) => {}
                Some(newer) = next_version(&mut self.deletion) => {
                    let grace = match &newer {
                        Some(pod) => pod.metadata.deletion_grace_period_seconds.map(seconds),
                        // Gone from the API: stopped promptly.
                        None => Some(Duration::from_secs(2)),
                    };
                    if let Some(grace) = grace.filter(|g| Instant::now() + *g < *deadline) {
                        tracing::info!(pod = %self.key, ?grace, "deleted again with a shorter grace period");
                        *deadline = Instant::now() + grace;
                    }
                    if let Some(pod) = newer {
                        self.pod = pod;
                    }
                }
            }
        }
    }

    /// Reaps the containers whose monitors wrote their exit records.
    async fn reap_exited(&mut self) {
        let exited: Vec<String> = self
            .live
            .iter()
            .filter(|(_, l)| l.bundle.join("exit.json").exists())
            .map(|(n, _)| n.clone())
            .collect();
        for name in exited {
            if let Some((termination, _)) = self.reap(&name).await {
                if let Some(record) = self.record_mut(&name) {
                    record.state = State::Terminated(termination);
                }
            }
        }
    }

    /// Sends a live container its stop signal (or `signal`); a container
    /// that already exited is no error.
    async fn signal(&self, name: &str, signal: Option<&str>) {
        let Some(live) = self.live.get(name) else {
            return;
        };
        let signal = signal.unwrap_or(&live.stop_signal);
        tracing::info!(pod = %self.key, container = %name, %signal, "stopping container");
        if let Err(error) = self
            .agent
            .runtime
            .signal_init(&live.id, &live.bundle, live.monitor_pid, signal)
            .await
        {
            tracing::debug!(pod = %self.key, container = %name, %error, "signal not delivered (the container may have exited)");
        }
    }

    /// Signals every live container, waits up to `grace`, then kills what
    /// is left; sidecars are signalled after the other containers ended.
    pub(super) async fn stop_all(&mut self, grace: Duration) {
        let mut deadline = Instant::now() + grace;
        let live: std::collections::HashSet<&str> = self.live.keys().map(String::as_str).collect();
        let (first, sidecars) = crate::plan::stop_order(&self.record, &live);
        for name in &first {
            self.signal(name, None).await;
        }
        self.wait_exits(&mut deadline, |worker| !worker.live.keys().any(|n| first.contains(n)))
            .await;
        for name in &sidecars {
            self.signal(name, None).await;
        }
        self.wait_exits(&mut deadline, |worker| worker.live.is_empty())
            .await;
        let left: Vec<String> = self.live.keys().cloned().collect();
        for name in &left {
            self.signal(name, Some("KILL")).await;
        }
        self.reap_until(Instant::now() + Duration::from_secs(5))
            .await;
    }

    /// Graceful deletion: stop containers within the grace period, clean
    /// up, report the final status, then confirm with a grace-0 delete.
    pub(super) async fn terminate(&mut self) {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .map(seconds)
            .unwrap_or_else(|| self.grace_period());
        // A terminating pod is not ready and its probes stop, as upstream.
        for live in self.live.values_mut() {
            live.stop_probes();
        }
        for record in &mut self.record.containers {
            record.ready = false;
        }
        for name in self.live.keys() {
            self.container_event(
                name,
                EventType::Normal,
                "Killing",
                &format!("Stopping container {name}"),
            )
            .await;
        }
        // preStop hooks run first and use up part of the grace period;
        // the containers then get what is left (at least 2 s, as upstream).
        let started = Instant::now();
        self.pre_stop_all(grace).await;
        self.stop_all(crate::plan::grace_after_pre_stop(grace, started.elapsed()))
            .await;
        self.publish();
        self.teardown().await;
        if crate::static_pods::is_static(&self.pod) {
            // Its mirror pod is the agent's to remove.
            return;
        }
        let (namespace, name, uid) = pod_name(&self.pod);
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => tracing::info!(pod = %format!("{namespace}/{name}"), "pod deleted"),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), %error, "failed to confirm deletion")
            }
        }
    }

    /// Every monitoring period while containers run, as the eviction
    /// manager: a pod over a local-storage limit is evicted (its
    /// containers killed at once, Failed with reason `Evicted`).
    pub(super) async fn enforce_storage_limits(&mut self) -> bool {
        if self.live.is_empty() || !crate::eviction::has_limits(&self.pod) {
            return false;
        }
        let now = Instant::now();
        if self
            .storage_checked_at
            .is_some_and(|at| now < at + crate::eviction::MONITORING_PERIOD)
        {
            return false;
        }
        self.storage_checked_at = Some(now);
        let usage = self.storage_usage().await;
        let Some(message) = crate::eviction::violation(&self.pod, &usage) else {
            return false;
        };
        tracing::warn!(pod = %self.key, %message, "evicting the pod");
        self.event(EventType::Warning, crate::eviction::REASON, &message, None)
            .await;
        self.record.failed = Some((crate::eviction::REASON.into(), message));
        for live in self.live.values_mut() {
            live.stop_probes();
        }
        // Grace 0 becomes the runtime's minimum of 2 s, as upstream.
        self.stop_all(Duration::from_secs(2)).await;
        true
    }

    /// What the pod uses on disk: its disk emptyDirs, and each running
    /// container's writable layer and logs.
    pub(super) async fn storage_usage(&self) -> crate::eviction::Usage {
        let pod_dir = self.pod_dir();
        let volumes: Vec<(String, PathBuf)> = crate::eviction::disk_empty_dirs(&self.pod)
            .map(|(v, _)| (v.name.clone(), pod_dir.join("volumes").join(&v.name)))
            .collect();
        let containers: Vec<(String, [PathBuf; 2])> = self
            .live
            .iter()
            .map(|(name, live)| (name.clone(), [live.bundle.join("upper"), pod_dir.join(name)]))
            .collect();
        let key = self.key.clone();
        let measure = move || {
            let usage_of = |paths: &[PathBuf]| -> u64 {
                paths
                    .iter()
                    .map(|path| {
                        crate::eviction::disk_usage(path).unwrap_or_else(|error| {
                            tracing::warn!(pod = %key, path = %path.display(), %error, "cannot measure disk usage");
                            0
                        })
                    })
                    .sum()
            };
            crate::eviction::Usage {
                volumes: volumes
                    .iter()
                    .map(|(name, path)| (name.clone(), usage_of(std::slice::from_ref(path))))
                    .collect(),
                containers: containers
                    .iter()
                    .map(|(name, paths)| (name.clone(), usage_of(paths)))
                    .collect(),
            }
        };
        match tokio::task::spawn_blocking(measure).await {
            Ok(usage) => usage,
            Err(error) => {
                tracing::warn!(pod = %self.key, %error, "disk usage measurement failed");
                crate::eviction::Usage::default()
            }
        }
    }

    /// Past its deadline the pod fails: its containers are stopped and it
    /// is marked Failed with reason DeadlineExceeded, as upstream.
    pub(super) async fn enforce_deadline(&mut self) -> bool {
        if self.record.failed.is_some() {
            return true;
        }
        if self.deadline() != crate::plan::Deadline::Exceeded {
            return false;
        }
        let message = "Pod was active on the node longer than the specified deadline";
        self.event(EventType::Normal, "DeadlineExceeded", message, None)
            .await;
        self.record.failed = Some(("DeadlineExceeded".into(), message.into()));
        self.stop_all(self.grace_period()).await;
        true
    }
}

/// The pod's next version while it terminates; pending without a watch.
async fn next_version(deletion: &mut Option<Desired>) -> Option<Option<Arc<Pod>>> {
    let Some(receiver) = deletion.as_mut() else {
        return std::future::pending().await;
    };
    if receiver.changed().await.is_err() {
        *deletion = None;
        return None;
    }
    Some(receiver.borrow_and_update().clone())
}

