//! Probes and lifecycle hooks: starting probe tasks, acting on their
//! reports (restart on liveness failure), postStart and preStop.

use super::*;
use crate::plan::ProbeAction;

impl Worker {
    /// Starts the container's probes of `kinds` (those it has).
    pub(super) fn start_probes(&mut self, container: &Container, kinds: &[probe::Kind]) {
        let (Some(sandbox), Some(live)) =
            (self.sandbox.clone(), self.live.get_mut(&container.name))
        else {
            return;
        };
        for kind in kinds {
            let spec = match kind {
                probe::Kind::Liveness => &container.liveness_probe,
                probe::Kind::Readiness => &container.readiness_probe,
                probe::Kind::Startup => &container.startup_probe,
            };
            let Some(spec) = spec.clone() else { continue };
            let target = probe::Target {
                runtime: self.agent.runtime.clone(),
                runtime_id: live.id.clone(),
                sandbox: sandbox.clone(),
                pod_ip: self.record.pod_ip.clone().unwrap_or_default(),
                container: container.clone(),
            };
            live.probes.push(tokio::spawn(probe::run(
                *kind,
                spec,
                target,
                self.probe_reports.clone(),
            )));
        }
    }

    /// A probe failed once, or its result changed.
    pub(super) async fn on_probe(&mut self, report: probe::Report) {
        let name = report.container.clone();
        if self
            .live
            .get(&name)
            .is_none_or(|l| l.id != report.runtime_id)
        {
            return; // from an earlier attempt
        }
        let Some(container) = self.container_spec(&name) else {
            return;
        };
        match report.event {
            probe::ReportEvent::Failed(message) => {
                let mut text = format!("{} probe failed: {message}", report.kind.title());
                if report.kind == probe::Kind::Readiness {
                    text = format!("{}; {}", text.trim_end(), crate::hints::READINESS);
                }
                self.container_event(&name, EventType::Warning, "Unhealthy", &text)
                    .await;
            }
            probe::ReportEvent::Changed(result) => {
                let probe_grace = match report.kind {
                    probe::Kind::Startup => container.startup_probe.as_ref(),
                    _ => container.liveness_probe.as_ref(),
                }
                .and_then(|p| p.termination_grace_period_seconds);
                let action = crate::plan::probe_action(report.kind, result, probe_grace, self.grace_period());
                match action {
                    ProbeAction::SetReady(ready) => {
                        if let Some(record) = self.record_mut(&name) {
                            record.ready = ready;
                        }
                    }
                    ProbeAction::Started => {
                        if let Some(record) = self.record_mut(&name) {
                            record.started = true;
                            record.ready = container.readiness_probe.is_none();
                        }
                        self.start_probes(&container, &[probe::Kind::Liveness, probe::Kind::Readiness]);
                    }
                    ProbeAction::Kill(grace) => self.kill_unhealthy(&name, report.kind, grace).await,
                    ProbeAction::Nothing => {}
                }
            }
        }
    }

    /// A failed liveness or startup probe: the container is killed (within
    /// the probe's or the pod's grace period) and restarted per policy.
    pub(super) async fn kill_unhealthy(&mut self, name: &str, kind: probe::Kind, grace: Duration) {
        let name = name.to_string();
        let Some(live) = self.live.get_mut(&name) else {
            return;
        };
        live.stop_probes();
        let (id, signal) = (live.id.clone(), live.stop_signal.clone());
        if let Some(record) = self.record_mut(&name) {
            record.ready = false;
        }
        let message = format!(
            "Container {name} failed {} probe, will be restarted",
            report_kind(kind)
        );
        self.container_event(&name, EventType::Normal, "Killing", &message)
            .await;
        tracing::info!(pod = %self.key, container = %name, ?kind, "probe failed; killing the container");
        let runtime = self.agent.runtime.clone();
        tokio::spawn(async move {
            if let Err(error) = runtime.kill(&id, &signal).await {
                tracing::debug!(container = %id, %error, "stop signal not delivered (the container may have exited)");
            }
            tokio::time::sleep(grace).await;
            // Still there after the grace period (or already gone: harmless).
            if let Err(error) = runtime.kill(&id, "KILL").await {
                tracing::debug!(container = %id, %error, "SIGKILL not delivered (the container exited)");
            }
        });
    }

    /// Runs one lifecycle hook handler (exec, httpGet, tcpSocket or sleep)
    /// against the running container `name`, within `timeout`.
    pub(super) async fn run_hook(
        &self,
        container: &Container,
        handler: &k8s_openapi::api::core::v1::LifecycleHandler,
        timeout: Duration,
    ) -> Result<(), String> {
        if let Some(sleep) = &handler.sleep {
            tokio::time::sleep(seconds(sleep.seconds).min(timeout)).await;
            return Ok(());
        }
        let (Some(live), Some(sandbox)) = (self.live.get(&container.name), self.sandbox.clone())
        else {
            return Err("the container is not running".into());
        };
        // A hook handler is a probe handler run once, bounded by `timeout`.
        let as_probe = k8s_openapi::api::core::v1::Probe {
            exec: handler.exec.clone(),
            http_get: handler.http_get.clone(),
            tcp_socket: handler.tcp_socket.clone(),
            timeout_seconds: Some(i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        let target = probe::Target {
            runtime: self.agent.runtime.clone(),
            runtime_id: live.id.clone(),
            sandbox,
            pod_ip: self.record.pod_ip.clone().unwrap_or_default(),
            container: container.clone(),
        };
        probe::probe_once(&as_probe, &target).await
    }

    /// The event message kubelet uses when a hook fails.
    pub(super) fn hook_failure(
        &self,
        container: &Container,
        handler: &k8s_openapi::api::core::v1::LifecycleHandler,
        error: &str,
    ) -> String {
        let (namespace, pod, uid) = pod_name(&self.pod);
        let kind = match (&handler.exec, &handler.http_get) {
            (Some(exec), _) => format!(
                "Exec lifecycle hook ({:?})",
                exec.command.clone().unwrap_or_default()
            ),
            (None, Some(http)) => format!(
                "HTTP lifecycle hook ({})",
                http.path.clone().unwrap_or_default()
            ),
            _ => "Lifecycle hook".to_string(),
        };
        format!(
            "{kind} for Container {:?} in Pod \"{pod}_{namespace}({uid})\" failed - error: {error}",
            container.name
        )
    }

    /// postStart: runs right after the container started; if it fails the
    /// container is killed (and restarted per policy), as upstream.
    pub(super) async fn post_start(&mut self, container: &Container) {
        let Some(handler) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.clone())
        else {
            return;
        };
        let grace = self.grace_period();
        if let Err(error) = self.run_hook(container, &handler, grace).await {
            let message = self.hook_failure(container, &handler, &error);
            self.container_event(
                &container.name,
                EventType::Warning,
                "FailedPostStartHook",
                &message,
            )
            .await;
            if let Some(live) = self.live.get(&container.name) {
                let _ = self.agent.runtime.kill(&live.id, "KILL").await;
            }
        }
    }

    /// preStop of every live container that has one, concurrently, within
    /// the grace period (which they use up).
    pub(super) async fn pre_stop_all(&mut self, grace: Duration) {
        let containers: Vec<Container> = self
            .live
            .keys()
            .filter_map(|name| self.container_spec(name))
            .filter(|c| c.lifecycle.as_ref().is_some_and(|l| l.pre_stop.is_some()))
            .collect();
        let this: &Worker = self;
        let runs = containers.iter().filter_map(|c| {
            let handler = c.lifecycle.as_ref()?.pre_stop.clone()?;
            Some(async move {
                let result = tokio::time::timeout(grace, this.run_hook(c, &handler, grace)).await;
                (c, handler, result)
            })
        });
        let results = futures::future::join_all(runs).await;
        for (container, handler, result) in results {
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error,
                Err(_) => format!("timed out after {}s", grace.as_secs()),
            };
            let message = self.hook_failure(container, &handler, &error);
            self.container_event(
                &container.name,
                EventType::Warning,
                "FailedPreStopHook",
                &message,
            )
            .await;
        }
    }
}

/// `liveness` / `startup`, as kubelet's kill message says it.
pub(super) fn report_kind(kind: probe::Kind) -> &'static str {
    match kind {
        probe::Kind::Liveness => "liveness",
        probe::Kind::Readiness => "readiness",
        probe::Kind::Startup => "startup",
    }
}
