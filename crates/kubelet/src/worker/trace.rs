//! Where a pod's start goes, measured by the worker that starts it: from
//! the worker's start to the pod's volumes ready, its sandbox process up,
//! its network attached, its first container's bundle ready and that
//! container running. Logged once per
//! pod (`pod started`, with milliseconds per phase) for the benchmark's
//! trace (BENCHMARKS.md), like kubelet's pod startup latency tracker.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct StartTrace {
    began: Instant,
    volumes: Option<Duration>,
    sandbox: Option<Duration>,
    network: Option<Duration>,
    bundle: Option<Duration>,
    logged: bool,
}

/// Milliseconds to a tenth (0 for a phase the pod skipped).
fn ms(duration: Option<Duration>) -> f64 {
    duration.map_or(0.0, |d| (d.as_secs_f64() * 10_000.0).round() / 10.0)
}

impl StartTrace {
    pub(super) fn new() -> Self {
        Self { began: Instant::now(), volumes: None, sandbox: None, network: None, bundle: None, logged: false }
    }

    pub(super) fn volumes_ready(&mut self) {
        self.volumes.get_or_insert_with(|| self.began.elapsed());
    }

    pub(super) fn sandbox_up(&mut self) {
        self.sandbox.get_or_insert_with(|| self.began.elapsed());
    }

    pub(super) fn network_attached(&mut self) {
        self.network.get_or_insert_with(|| self.began.elapsed());
    }

    /// The first container's bundle (image, env, rootfs, config) is ready.
    pub(super) fn bundle_ready(&mut self) {
        self.bundle.get_or_insert_with(|| self.began.elapsed());
    }

    /// A container of the pod runs: the first time, the trace is logged.
    pub(super) fn container_running(&mut self, pod: &str) {
        if std::mem::replace(&mut self.logged, true) {
            return;
        }
        let running = Some(self.began.elapsed());
        tracing::info!(
            pod = %pod,
            volumes_ms = ms(self.volumes),
            sandbox_ms = ms(self.sandbox),
            network_ms = ms(self.network),
            bundle_ms = ms(self.bundle),
            running_ms = ms(running),
            "pod started"
        );
    }
}
