//! Creating, starting and reaping containers: security settings, user,
//! mounts and limits for the OCI bundle; exits and their termination records.

use super::*;

impl Worker {
    pub(super) async fn start_container(&mut self, container: &Container) {
        let name = container.name.clone();
        let is_init = self.is_init(&name);
        if !is_init && self.record_mut(&name).is_none() {
            return;
        }
        let image = match self.ensure_image(container).await {
            Ok(image) => image,
            Err(error) => {
                let delay = self.back_off(&name, None);
                tracing::info!(pod = %self.key, container = %name, reason = error.reason(), ?delay, "image not available");
                // Reported as is now; the next sync shows the back-off (ImagePullBackOff).
                self.set_waiting(&name, error.reason(), Some(error.to_string()));
                return;
            }
        };
        match self.create_and_start(container, &image).await {
            Ok(()) => {}
            Err(StepError::SandboxGone) => {
                // Not this container's fault: the pod gets a new sandbox.
                if let Some(pid) = self.sandbox.as_ref().map(|s| s.pid) {
                    tracing::warn!(pod = %self.key, container = %name, pid, "the sandbox's pid is no longer its sandbox process");
                    self.on_sandbox_exit(pid).await;
                }
            }
            Err(error) => {
                tracing::warn!(pod = %self.key, container = %name, %error, "container not started");
                self.back_off(&name, None);
                let (event, event_message) = error.event();
                self.container_event(&name, EventType::Warning, event, &event_message)
                    .await;
                self.set_waiting(&name, error.reason(), Some(error.to_string()));
            }
        }
    }

    /// The security settings and namespaces of `container`, or why it
    /// cannot be created as specified.
    pub(super) fn decide_security(
        &self,
        container: &Container,
        image_config: &Value,
        sandbox: &Sandbox,
    ) -> Result<(skiff_runtime::container::spec::Security, Namespaces), StepError> {
        let image_user = image_config["config"]["User"].as_str().unwrap_or("");
        crate::security::verify_run_as_non_root(&self.pod, container, image_user)
            .map_err(|message| StepError::Config {
                container: container.name.clone(),
                message,
            })?;
        let privileged = container
            .security_context
            .as_ref()
            .and_then(|c| c.privileged)
            .unwrap_or(false);
        let node_capabilities = node_capabilities();
        let capabilities = crate::security::capabilities(container, &node_capabilities);
        // containerd runs privileged containers without seccomp.
        let seccomp = match crate::security::seccomp_profile(&self.pod, container) {
            Some(profile) if !privileged => match profile.type_.as_str() {
                "RuntimeDefault" => Some(skiff_runtime::container::seccomp::runtime_default(&capabilities)),
                "Localhost" => {
                    let name = profile.localhost_profile.unwrap_or_default();
                    let path = self.agent.data_dir.join("seccomp").join(&name);
                    let text = std::fs::read_to_string(&path).map_err(|e| StepError::Create {
                        container: container.name.clone(),
                        message: format!(
                            "failed to generate seccomp spec opts: cannot load seccomp profile {:?}: open {}: {}",
                            path.display().to_string(),
                            path.display(),
                            io_message(&e)
                        ),
                    })?;
                    Some(
                        skiff_runtime::container::seccomp::from_profile(&text, &capabilities)
                            .map_err(|e| StepError::Create {
                                container: container.name.clone(),
                                message: format!("failed to generate seccomp spec opts: {e}"),
                            })?,
                    )
                }
                _ => None,
            },
            _ => None,
        };
        // The sandbox's namespaces are joined only while its pid is still it.
        if !sandbox.is(&self.sandbox_id) && !sandbox_predates_ids(sandbox) {
            return Err(StepError::SandboxGone);
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        let join = |kind: &str| Namespace::Join(format!("/proc/{}/ns/{kind}", sandbox.pid));
        let host_network = spec.host_network.unwrap_or(false);
        let namespaces = Namespaces {
            network: if host_network { Namespace::Host } else { join("net") },
            uts: if host_network { Namespace::Host } else { join("uts") },
            ipc: if spec.host_ipc.unwrap_or(false) { Namespace::Host } else { join("ipc") },
            pid: if spec.host_pid.unwrap_or(false) {
                Namespace::Host
            } else if spec.share_process_namespace.unwrap_or(false) {
                join("pid")
            } else if let Some(target) = self.debug_target(&container.name) {
                // `kubectl debug --target`: the target's processes are in view.
                Namespace::Join(format!("/proc/{}/ns/pid", self.target_pid(&container.name, &target)?))
            } else {
                Namespace::Private
            },
        };
        Ok((
            crate::security::security(&self.pod, container, &node_capabilities, seccomp),
            namespaces,
        ))
    }

    /// The container an ephemeral container targets, if any.
    fn debug_target(&self, name: &str) -> Option<String> {
        self.ephemeral(name)
            .and_then(|e| e.target_container_name.clone())
            .filter(|t| !t.is_empty())
    }

    /// The init process of `target`, which must be running.
    fn target_pid(&self, name: &str, target: &str) -> Result<u32, StepError> {
        self.live
            .get(target)
            .and_then(|live| read_state::<Started>(&live.bundle, "started.json"))
            .map(|started| started.pid)
            .ok_or_else(|| StepError::Config {
                container: name.to_string(),
                message: format!("cannot share the process namespace of target container {target:?}: it is not running"),
            })
    }

    pub(super) async fn create_and_start(
        &mut self,
        container: &Container,
        image: &Image,
    ) -> Result<(), StepError> {
        let agent = self.agent.clone();
        let name = container.name.clone();
        let sandbox = self.sandbox.clone().ok_or(StepError::SandboxGone)?;
        let failed = |message: String| StepError::Create {
            container: name.clone(),
            message,
        };
        let image_config = agent.images.config(image).map_err(|e| failed(e.to_string()))?;
        let (mut security, namespaces) = self.decide_security(container, &image_config, &sandbox)?;
        if let Some(labels) = crate::security::selinux_labels(&self.pod, container) {
            if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
                security.selinux = Some(labels);
            } else {
                let message = format!("seLinuxOptions of container {name} are not applied: SELinux is not enabled on this node");
                tracing::warn!(pod = %self.key, container = %name, "{message}");
                self.container_event(&name, EventType::Warning, "SELinuxNotEnabled", &message)
                    .await;
            }
        }
        let mut objects = self.objects().unwrap_or_default();
        let links = self.pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
        objects.services = agent.sources.services_for(&namespace, links).await;
        let environment = environment(
            &self.pod,
            container,
            &image_config,
            &self.hostname(),
            &self.node_facts(),
            &objects,
        )
        .map_err(|message| StepError::Config {
            container: name.clone(),
            message,
        })?;
        for message in &environment.skipped {
            self.event(EventType::Warning, "InvalidEnvironmentVariableNames", message, None)
                .await;
        }
        let env = environment.vars;
        let args = command_line(container, &image_config, &env);
        if args.is_empty() {
            return Err(failed("no command specified".into()));
        }
        let pod_dir = self.pod_dir();
        let attempt = self.attempt(&name);
        let log_dir = pod_dir.join(&name);
        std::fs::create_dir_all(&log_dir).map_err(StepError::io(&log_dir))?;
        let log = log_dir.join(format!("{attempt}.log"));
        let termination_log = pod_dir.join(format!("termination-{name}"));
        std::fs::write(&termination_log, "").map_err(StepError::io(&termination_log))?;
        let mut mounts = vec![
            BindMount {
                source: pod_dir.join("etc-hosts").display().to_string(),
                destination: "/etc/hosts".into(),
                read_only: false,
                ..Default::default()
            },
            BindMount {
                source: pod_dir.join("etc-hostname").display().to_string(),
                destination: "/etc/hostname".into(),
                read_only: false,
                ..Default::default()
            },
            BindMount {
                source: pod_dir.join("resolv.conf").display().to_string(),
                destination: "/etc/resolv.conf".into(),
                read_only: false,
                ..Default::default()
            },
            BindMount {
                source: termination_log.display().to_string(),
                destination: container
                    .termination_message_path
                    .clone()
                    .unwrap_or_else(|| "/dev/termination-log".into()),
                read_only: false,
                ..Default::default()
            },
        ];
        mounts.extend(self.container_mounts(container, &env)?);
        let layers = agent.images.layer_dirs(image).map_err(|e| failed(e.to_string()))?;
        let (uid, gid) = user_of(container, &self.pod, &image_config, &layers).map_err(failed)?;
        let id = random_id();
        let bundle = agent.data_dir.join("containers").join(&id);
        let stdio = ContainerStdio {
            stdin: container.stdin.unwrap_or(false),
            stdin_once: container.stdin_once.unwrap_or(false),
            tty: container.tty.unwrap_or(false),
        };
        let config = ContainerConfig {
            args,
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: container
                .working_dir
                .clone()
                .or_else(|| {
                    image_config["config"]["WorkingDir"]
                        .as_str()
                        .map(str::to_string)
                })
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            uid,
            gid,
            additional_gids: crate::security::additional_gids(&self.pod),
            hostname: self.hostname(),
            namespaces,
            security,
            mounts,
            readonly_rootfs: container
                .security_context
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem)
                .unwrap_or(false),
            cgroups_path: format!("{}/{id}", self.cgroup_parent()),
            limits: limits_of(container),
            terminal: stdio.tty,
        };
        let spec = oci_config(&config);
        let runtime = agent.runtime.clone();
        let prepared_bundle = bundle.clone();
        tokio::task::spawn_blocking(move || {
            runtime.prepare_bundle(&prepared_bundle, &layers, &spec)
        })
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))?;
        self.trace.bundle_ready();
        let field = self.field_path(&name);
        self.event(
            EventType::Normal,
            "Created",
            &format!("Created container: {name}"),
            field.clone(),
        )
        .await;
        let mut monitor = agent
            .runtime
            .start(&bundle, &id, &log, stdio)
            .map_err(|e| failed(e.to_string()))?;
        let (_, _, uid) = pod_name(&self.pod);
        let entry = ContainerEntry {
            dir: log_dir.clone(),
            attempt,
            running: true,
            runtime_id: id.clone(),
            bundle: bundle.clone(),
            cgroup: format!("{}/{id}", self.cgroup_parent()),
        };
        agent
            .containers
            .set(ContainerIndex::key(&uid, &name), entry);
        let monitor_pid = monitor.id().unwrap_or(0);
        let exits = self.exits.clone();
        let notice = self.exit_notice.clone();
        let exit_name = name.clone();
        // Watched before the monitor can write its first record.
        let records = watch_records(&bundle);
        tokio::spawn(async move {
            if let Err(error) = monitor.wait().await {
                tracing::warn!(container = %exit_name, %error, "waiting for a container monitor failed");
            }
            let _ = exits.send(exit_name);
            notice.notify_one();
        });
        // The monitor writes started.json once the runtime started the
        // process, or exit.json if it could not; on a loaded node that can
        // take long, so there is no deadline, only the monitor's own end.
        let started = wait_started(&bundle, records, monitor_pid).await;
        let stop_signal = image_config["config"]["StopSignal"]
            .as_str()
            .unwrap_or("SIGTERM")
            .trim_start_matches("SIG")
            .to_string();
        self.live.insert(
            name.clone(),
            Live {
                id: id.clone(),
                bundle: bundle.clone(),
                stop_signal,
                monitor_pid,
                probes: Vec::new(),
                image: image.name.clone(),
                layers: image.layers.iter().map(|l| l.digest.clone()).collect(),
            },
        );
        let container_id = format!("{}://{id}", agent.runtime.name());
        let image_id = image.image_id();
        if let Some(record) = self.record_mut(&name) {
            record.container_id = container_id;
            record.image_id = image_id;
            if started.is_some() {
                record.state = State::Running {
                    started_at: agent.clock.now(),
                };
                record.started = container.startup_probe.is_none();
                record.ready = record.started && container.readiness_probe.is_none();
            }
        }
        if started.is_some() {
            self.trace.container_running(&self.key);
            // A startup probe gates the others until it succeeds.
            if container.startup_probe.is_some() {
                self.start_probes(container, &[probe::Kind::Startup]);
            } else {
                self.start_probes(container, &[probe::Kind::Liveness, probe::Kind::Readiness]);
            }
            self.event(
                EventType::Normal,
                "Started",
                &format!("Started container {name}"),
                field,
            )
            .await;
            self.post_start(container).await;
        }
        Ok(())
    }

    /// Forgets a container whose monitor ended: removes it from the runtime
    /// and returns how it ended (with how long it ran).
    pub(super) async fn reap(&mut self, name: &str) -> Option<(Termination, Option<Duration>)> {
        let live = self.live.remove(name)?;
        self.mark_log_stopped(name);
        let exited: Option<Exited> = read_state(&live.bundle, "exit.json");
        let started: Option<Started> = read_state(&live.bundle, "started.json");
        let termination_message =
            std::fs::read_to_string(self.pod_dir().join(format!("termination-{name}")))
                .unwrap_or_default();
        // Read before the runtime deletes the container's cgroup.
        let oom_killed =
            self.agent.cgroups.oom_killed(&format!("{}/{}", self.cgroup_parent(), live.id));
        if let Err(error) = self.agent.runtime.delete(&live.id).await {
            tracing::warn!(pod = %self.key, container = %name, id = %live.id, %error, "the runtime failed to delete the container");
        }
        let runtime = self.agent.runtime.clone();
        let bundle = live.bundle.clone();
        match tokio::task::spawn_blocking(move || runtime.remove_bundle(&bundle)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(pod = %self.key, container = %name, bundle = %live.bundle.display(), %error, "failed to remove the container's bundle (its rootfs may stay mounted)")
            }
            Err(error) => tracing::warn!(pod = %self.key, container = %name, %error, "bundle removal task failed"),
        }
        // No exit record means the monitor itself was killed: report SIGKILL.
        let exit_code = exited.as_ref().map(|e| e.exit_code).unwrap_or(137);
        let termination_message = if termination_message.is_empty() && exit_code != 0 {
            self.log_tail_if_asked(name)
        } else {
            termination_message
        };
        let error = exited.as_ref().and_then(|e| e.error.clone());
        let started_at = started
            .as_ref()
            .and_then(|s| s.started_at.parse::<Timestamp>().ok());
        let finished_at = self.agent.clock.now();
        let ran_for = started_at.map(|s| seconds(finished_at.as_second() - s.as_second()));
        let termination = Termination {
            exit_code,
            signal: exited.as_ref().and_then(|e| e.signal),
            reason: match (exit_code, &error) {
                (_, Some(_)) => "StartError".into(),
                (137, None) if oom_killed => "OOMKilled".into(),
                (0, None) => "Completed".into(),
                _ => "Error".into(),
            },
            message: error.or(Some(termination_message).filter(|m| !m.is_empty())),
            started_at,
            finished_at,
            container_id: format!("{}://{}", self.agent.runtime.name(), live.id),
        };
        tracing::info!(pod = %self.key, container = name, exit_code, "container exited");
        Some((termination, ran_for))
    }

    /// `terminationMessagePolicy: FallbackToLogsOnError`: the end of the
    /// log (80 lines, 2 KiB at most, as upstream) stands in for the message.
    pub(super) fn log_tail_if_asked(&self, name: &str) -> String {
        let asked = self.container_spec(name).is_some_and(|c| {
            c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        });
        if !asked {
            return String::new();
        }
        self.log_tail(name)
    }

    /// The end of the log of a container's current attempt (80 lines,
    /// 2 KiB at most).
    fn log_tail(&self, name: &str) -> String {
        let (_, _, uid) = pod_name(&self.pod);
        let Some(entry) = self
            .agent
            .containers
            .get(&ContainerIndex::key(&uid, name))
        else {
            return String::new();
        };
        let path = entry.dir.join(format!("{}.log", entry.attempt));
        let bytes = std::fs::read(&path).unwrap_or_else(|error| {
            tracing::warn!(pod = %self.key, container = %name, log = %path.display(), %error, "cannot read the log for the termination message");
            Vec::new()
        });
        let tail = crate::logs::render(
            &crate::logs::parse(&bytes),
            &crate::logs::LogOptions {
                tail_lines: Some(80),
                ..Default::default()
            },
        );
        // The last 2048 bytes, as upstream (the message is a string: lossy).
        let start = tail.len().saturating_sub(2048);
        String::from_utf8_lossy(&tail[start..]).into_owned()
    }

    /// A container's monitor ended: record how, and decide whether it restarts.
    pub(super) async fn on_exit(&mut self, name: &str) {
        let Some((termination, ran_for)) = self.reap(name).await else {
            return;
        };
        let policy = self.restart_policy();
        let sidecar = self.record_mut(name).is_some_and(|r| r.sidecar);
        // An ephemeral container is never restarted.
        let restart = self.ephemeral(name).is_none() && crate::plan::restarts(
            &policy,
            sidecar,
            self.is_init(name),
            termination.exit_code,
            crate::plan::app_containers_done(&self.record, &policy),
        );
        if !restart {
            if let Some(record) = self.record_mut(name) {
                record.state = State::Terminated(termination);
            }
            return;
        }
        // Upstream's event, then how the container ended and its last words.
        let detail = crate::hints::crash_loop(
            termination.exit_code,
            &termination.reason,
            &self.log_tail(name),
        );
        let delay = self.back_off(name, ran_for);
        let (namespace, pod, uid) = pod_name(&self.pod);
        let message = format!(
            "back-off {} restarting failed container={name} pod={pod}_{namespace}({uid})",
            humantime(delay)
        );
        if let Some(record) = self.record_mut(name) {
            record.last = Some(termination);
            record.restart_count += 1;
            record.state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(message),
            };
        }
        let event = format!(
            "Back-off restarting failed container {name} in pod {pod}_{namespace}({uid}): {detail}"
        );
        self.container_event(name, EventType::Warning, "BackOff", &event)
            .await;
    }
}

/// The capabilities this agent holds (its bounding set): no container
/// gets more.
pub(super) fn node_capabilities() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| {
            tracing::warn!("cannot read the agent's capabilities; assuming all");
            u64::MAX
        });
    skiff_runtime::container::spec::capabilities_in_mask(mask)
}

/// An I/O error as Go prints it (`no such file or directory`).
pub(super) fn io_message(error: &std::io::Error) -> String {
    let text = error.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_lowercase()
}

/// The user a container runs as: securityContext, then the image's `User`
/// (names looked up in the image's own files).
pub(super) fn user_of(
    container: &Container,
    pod: &Pod,
    image_config: &Value,
    layers: &[PathBuf],
) -> Result<(u32, u32), String> {
    let image_user = image_config["config"]["User"].as_str().unwrap_or("");
    // The topmost layer holding the file is what the container sees.
    let image_file = |path: &str| {
        layers
            .iter()
            .rev()
            .find_map(|layer| std::fs::read_to_string(layer.join(path)).ok())
    };
    crate::security::resolve_user(
        crate::security::run_as_user(pod, container),
        crate::security::run_as_group(pod, container),
        image_user,
        image_file("etc/passwd").as_deref(),
        image_file("etc/group").as_deref(),
    )
}

pub(super) fn limits_of(container: &Container) -> Limits {
    use skiff_api::quantity::Quantity;
    let resources = container.resources.as_ref();
    let get = |list: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
               name: &str| {
        list.and_then(|l| l.get(name))
            .and_then(|q| Quantity::parse(&q.0))
            .map(|q| q.milli_value())
    };
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let cpu_request = get(requests, "cpu").or_else(|| get(limits, "cpu"));
    Limits {
        memory_bytes: get(limits, "memory").map(|m| i64::try_from(m / 1000).unwrap_or(i64::MAX)),
        cpu_shares: Some(
            cpu_request
                .map(|m| u64::try_from((m * 1024 / 1000).max(2)).unwrap_or(2))
                .unwrap_or(2),
        ),
        cpu_quota: get(limits, "cpu")
            .map(|m| i64::try_from((m * 100_000 / 1000).max(1000)).unwrap_or(i64::MAX)),
        cpu_period: Some(100_000),
    }
}

/// A watch on a bundle for the monitor's records (written by rename, so
/// they appear whole).
pub(super) fn watch_records(bundle: &std::path::Path) -> crate::notify::Changes {
    crate::notify::Changes::watch(
        bundle,
        inotify::WatchMask::MOVED_TO | inotify::WatchMask::CLOSE_WRITE,
        "the container's start is known when its monitor ends",
    )
}

/// The container's start record, once the monitor wrote it; `None` when it
/// wrote an exit record instead or ended. Woken by inotify and by the
/// monitor's pidfd, never by a timer.
pub(super) async fn wait_started(
    bundle: &std::path::Path,
    mut records: crate::notify::Changes,
    monitor_pid: u32,
) -> Option<Started> {
    let mut monitor_gone = std::pin::pin!(skiff_runtime::process::exited(monitor_pid));
    loop {
        if let Some(started) = read_state::<Started>(bundle, "started.json") {
            return Some(started);
        }
        if read_state::<Exited>(bundle, "exit.json").is_some() {
            return None;
        }
        tokio::select! {
            _ = records.next() => {}
            _ = &mut monitor_gone => {
                // Its records were written before it ended.
                return read_state::<Started>(bundle, "started.json");
            }
        }
    }
}
