//! What a pod needs next, decided from the node's record alone (upstream's
//! `computePodActions`): which init container runs (one at a time, each to
//! success; a sidecar only has to have started), which app containers
//! start (waiting, not running, back-off elapsed), whose failed pull is in
//! back-off, and which sidecars stop once the app containers are done;
//! restarts and their back-off; what a probe result calls for; the pod's
//! active deadline; and the order and grace of termination.
//! Pure: the pod worker executes the plan.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;

use crate::probe::Kind;
use crate::status::{PodRecord, State};

/// One sync's plan for a pod.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PodActions {
    /// Containers to start now, in order.
    pub start: Vec<String>,
    /// App containers whose failed pull is in back-off (`ImagePullBackOff`).
    pub pull_back_off: Vec<String>,
    /// Running sidecars to stop: the app containers are done.
    pub stop_sidecars: Vec<String>,
    /// The init container everything else waits for, if any.
    pub blocked_on: Option<String>,
}

/// Plans a sync. `live` names the containers the runtime runs; `due` says
/// whether a container's restart back-off (if any) has elapsed.
pub fn compute_pod_actions(
    record: &PodRecord,
    restart_policy: &str,
    live: &HashSet<&str>,
    due: impl Fn(&str) -> bool,
) -> PodActions {
    let mut actions = PodActions::default();
    // Ephemeral containers start as soon as they appear, init containers
    // or not, and only once: a terminated one stays so.
    for ephemeral in &record.ephemeral_containers {
        let State::Waiting { reason, .. } = &ephemeral.state else {
            continue;
        };
        let due = due(&ephemeral.name);
        if reason == "ErrImagePull" && !due {
            actions.pull_back_off.push(ephemeral.name.clone());
        }
        if !live.contains(ephemeral.name.as_str()) && due {
            actions.start.push(ephemeral.name.clone());
        }
    }
    for init in &record.init_containers {
        if init.sidecar && init.running() && init.started {
            continue;
        }
        if !init.sidecar && init.completed() {
            continue;
        }
        // A failed init container under `Never` failed the pod: nothing starts.
        let failed = matches!(init.state, State::Terminated(_));
        if !failed && !live.contains(init.name.as_str()) && due(&init.name) {
            actions.start.push(init.name.clone());
        }
        actions.blocked_on = Some(init.name.clone());
        return actions;
    }
    if app_containers_done(record, restart_policy) {
        actions.stop_sidecars = record
            .init_containers
            .iter()
            .filter(|c| c.sidecar && live.contains(c.name.as_str()))
            .map(|c| c.name.clone())
            .collect();
    }
    for container in &record.containers {
        let State::Waiting { reason, .. } = &container.state else {
            continue;
        };
        let due = due(&container.name);
        if reason == "ErrImagePull" && !due {
            actions.pull_back_off.push(container.name.clone());
        }
        if !live.contains(container.name.as_str()) && due {
            actions.start.push(container.name.clone());
        }
    }
    actions
}

/// First crash-loop delay, doubled per restart up to the maximum.
pub const BACKOFF_START: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long without exiting resets its back-off.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// How an ended container is handled: whether it restarts (after a
/// back-off) or stays terminated, per restartPolicy; init containers that
/// succeeded are done, sidecars restart until the app containers are done.
pub fn restarts(restart_policy: &str, sidecar: bool, init: bool, exit_code: i32, app_done: bool) -> bool {
    match restart_policy {
        _ if sidecar => !app_done,
        _ if init && exit_code == 0 => false,
        "Always" => true,
        "OnFailure" => exit_code != 0,
        _ => false,
    }
}

/// The next crash-loop delay: 10 s, doubling to 5 min, back to 10 s after
/// a run of 10 min.
pub fn next_back_off(previous: Option<Duration>, ran_for: Option<Duration>) -> Duration {
    match (previous, ran_for) {
        (Some(_), Some(ran)) if ran >= BACKOFF_RESET => BACKOFF_START,
        (Some(delay), _) => (delay * 2).min(BACKOFF_MAX),
        (None, _) => BACKOFF_START,
    }
}

/// The app containers ended for good (never under `Always`): sidecars
/// stop and are not restarted.
pub fn app_containers_done(record: &PodRecord, restart_policy: &str) -> bool {
    restart_policy != "Always"
        && record
            .containers
            .iter()
            .all(|c| matches!(c.state, State::Terminated(_)))
}

/// What a probe's changed result calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeAction {
    /// Readiness changed: the container's `ready`.
    SetReady(bool),
    /// The startup probe succeeded: the container has started, liveness
    /// and readiness probes begin.
    Started,
    /// A failed liveness or startup probe: kill the container, within
    /// this grace, and restart it per policy.
    Kill(Duration),
    Nothing,
}

/// Upstream's prober: readiness only gates traffic; liveness and startup
/// failures kill the container, with the probe's own
/// `terminationGracePeriodSeconds` when set, else the pod's.
pub fn probe_action(kind: Kind, succeeded: bool, probe_grace: Option<i64>, pod_grace: Duration) -> ProbeAction {
    match (kind, succeeded) {
        (Kind::Readiness, ready) => ProbeAction::SetReady(ready),
        (Kind::Startup, true) => ProbeAction::Started,
        (Kind::Liveness, true) => ProbeAction::Nothing,
        (Kind::Liveness | Kind::Startup, false) => {
            ProbeAction::Kill(probe_grace.map_or(pod_grace, seconds))
        }
    }
}

/// Where a pod stands against its `activeDeadlineSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// None set.
    Unbounded,
    /// Time left.
    In(Duration),
    /// Ran out: the pod fails with `DeadlineExceeded`.
    Exceeded,
}

/// The deadline counts from the pod's start on the node.
pub fn deadline(active_deadline_seconds: Option<i64>, started: Timestamp, now: Timestamp) -> Deadline {
    let Some(limit) = active_deadline_seconds else {
        return Deadline::Unbounded;
    };
    let elapsed = now.as_second() - started.as_second();
    match limit.saturating_sub(elapsed) {
        left if left <= 0 => Deadline::Exceeded,
        left => Deadline::In(seconds(left)),
    }
}

/// The least time containers get to stop after their preStop hooks ran,
/// as upstream (never more than the grace period itself).
pub const MINIMUM_GRACE: Duration = Duration::from_secs(2);

/// The grace the containers get once preStop hooks took `hooks_took` of
/// the pod's `grace`.
pub fn grace_after_pre_stop(grace: Duration, hooks_took: Duration) -> Duration {
    grace.saturating_sub(hooks_took).max(MINIMUM_GRACE.min(grace))
}

/// The order a pod's running containers are stopped in: app containers
/// (and running init containers) first, then sidecars, the last started
/// first, as upstream's termination ordering.
pub fn stop_order(record: &PodRecord, live: &HashSet<&str>) -> (Vec<String>, Vec<String>) {
    let running = |name: &str| live.contains(name);
    let mut first: Vec<String> = record
        .containers
        .iter()
        .map(|c| c.name.clone())
        .filter(|n| running(n))
        .collect();
    first.extend(
        record
            .init_containers
            .iter()
            .filter(|c| !c.sidecar && running(&c.name))
            .chain(&record.ephemeral_containers)
            .filter(|c| running(&c.name))
            .map(|c| c.name.clone()),
    );
    let sidecars = record
        .init_containers
        .iter()
        .rev()
        .filter(|c| c.sidecar && running(&c.name))
        .map(|c| c.name.clone())
        .collect();
    (first, sidecars)
}

fn seconds(value: i64) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ContainerRecord, Termination};

    fn waiting(name: &str, reason: &str) -> ContainerRecord {
        let mut record = ContainerRecord::new(name, "busybox");
        record.state = State::Waiting {
            reason: reason.into(),
            message: None,
        };
        record
    }

    fn running(name: &str, started: bool) -> ContainerRecord {
        let mut record = ContainerRecord::new(name, "busybox");
        record.state = State::Running {
            started_at: Timestamp::UNIX_EPOCH,
        };
        record.started = started;
        record
    }

    fn exited(name: &str, code: i32) -> ContainerRecord {
        let mut record = ContainerRecord::new(name, "busybox");
        record.state = State::Terminated(Termination {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
            container_id: String::new(),
        });
        record
    }

    fn sidecar(mut record: ContainerRecord) -> ContainerRecord {
        record.sidecar = true;
        record
    }

    fn pod(inits: Vec<ContainerRecord>, apps: Vec<ContainerRecord>) -> PodRecord {
        PodRecord {
            sandbox_ready: true,
            pod_ip: None,
            host_ip: "10.0.0.1".into(),
            start_time: Timestamp::UNIX_EPOCH,
            init_containers: inits,
            containers: apps,
            ephemeral_containers: Vec::new(),
            failed: None,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn restarts_follow_the_restart_policy() {
        // (policy, sidecar, init, exit code, app containers done, restarts)
        let cases = [
            ("Always", false, false, 0, false, true),
            ("Always", false, false, 1, false, true),
            ("OnFailure", false, false, 0, false, false),
            ("OnFailure", false, false, 2, false, true),
            ("Never", false, false, 1, false, false),
            ("Always", false, true, 0, false, false),
            ("Always", false, true, 1, false, true),
            ("OnFailure", false, true, 1, false, true),
            ("Never", false, true, 1, false, false),
            ("Never", true, true, 0, false, true),
            ("OnFailure", true, true, 1, true, false),
        ];
        for (policy, sidecar, init, code, app_done, want) in cases {
            assert_eq!(restarts(policy, sidecar, init, code, app_done), want, "{policy} sidecar={sidecar} init={init} exit={code} done={app_done}");
        }
    }

    #[test]
    fn back_off_doubles_to_five_minutes_and_resets_after_a_long_run() {
        let s = Duration::from_secs;
        let cases = [
            (None, None, s(10)),
            (Some(s(10)), Some(s(1)), s(20)),
            (Some(s(160)), None, s(300)),
            (Some(s(300)), Some(s(599)), s(300)),
            (Some(s(300)), Some(s(600)), s(10)),
        ];
        for (previous, ran_for, want) in cases {
            assert_eq!(next_back_off(previous, ran_for), want, "{previous:?} {ran_for:?}");
        }
    }

    #[test]
    fn plans_follow_upstreams_compute_pod_actions() {
        struct Case {
            name: &'static str,
            record: PodRecord,
            policy: &'static str,
            live: &'static [&'static str],
            backing_off: &'static [&'static str],
            want: PodActions,
        }
        let cases = vec![
            Case {
                name: "a new pod starts its app containers in order",
                record: pod(vec![], vec![waiting("a", "ContainerCreating"), waiting("b", "ContainerCreating")]),
                policy: "Always",
                live: &[],
                backing_off: &[],
                want: PodActions { start: names(&["a", "b"]), ..Default::default() },
            },
            Case {
                name: "the first init container runs alone",
                record: pod(vec![waiting("i1", "PodInitializing"), waiting("i2", "PodInitializing")], vec![waiting("a", "PodInitializing")]),
                policy: "Always",
                live: &[],
                backing_off: &[],
                want: PodActions { start: names(&["i1"]), blocked_on: Some("i1".into()), ..Default::default() },
            },
            Case {
                name: "a running init container blocks the rest",
                record: pod(vec![running("i1", true), waiting("i2", "PodInitializing")], vec![waiting("a", "PodInitializing")]),
                policy: "Always",
                live: &["i1"],
                backing_off: &[],
                want: PodActions { blocked_on: Some("i1".into()), ..Default::default() },
            },
            Case {
                name: "a completed init container lets the next one run",
                record: pod(vec![exited("i1", 0), waiting("i2", "PodInitializing")], vec![waiting("a", "PodInitializing")]),
                policy: "Always",
                live: &[],
                backing_off: &[],
                want: PodActions { start: names(&["i2"]), blocked_on: Some("i2".into()), ..Default::default() },
            },
            Case {
                name: "a failed init container in back-off waits",
                record: pod(vec![waiting("i1", "CrashLoopBackOff")], vec![waiting("a", "PodInitializing")]),
                policy: "Always",
                live: &[],
                backing_off: &["i1"],
                want: PodActions { blocked_on: Some("i1".into()), ..Default::default() },
            },
            Case {
                name: "a failed init container under Never starts nothing",
                record: pod(vec![exited("i1", 1)], vec![waiting("a", "PodInitializing")]),
                policy: "Never",
                live: &[],
                backing_off: &[],
                want: PodActions { blocked_on: Some("i1".into()), ..Default::default() },
            },
            Case {
                name: "a sidecar only has to have started",
                record: pod(vec![sidecar(running("s", true)), waiting("i2", "PodInitializing")], vec![waiting("a", "PodInitializing")]),
                policy: "Always",
                live: &["s"],
                backing_off: &[],
                want: PodActions { start: names(&["i2"]), blocked_on: Some("i2".into()), ..Default::default() },
            },
            Case {
                name: "a sidecar whose startup probe has not passed blocks",
                record: pod(vec![sidecar(running("s", false))], vec![waiting("a", "PodInitializing")]),
                policy: "Always",
                live: &["s"],
                backing_off: &[],
                want: PodActions { blocked_on: Some("s".into()), ..Default::default() },
            },
            Case {
                name: "sidecars stop when the app containers are done",
                record: pod(vec![sidecar(running("s", true))], vec![exited("a", 0)]),
                policy: "Never",
                live: &["s"],
                backing_off: &[],
                want: PodActions { stop_sidecars: names(&["s"]), ..Default::default() },
            },
            Case {
                name: "under Always the app containers are never done",
                record: pod(vec![sidecar(running("s", true))], vec![waiting("a", "CrashLoopBackOff")]),
                policy: "Always",
                live: &["s"],
                backing_off: &["a"],
                want: PodActions::default(),
            },
            Case {
                name: "a crashed container restarts once its back-off elapsed",
                record: pod(vec![], vec![waiting("a", "CrashLoopBackOff"), running("b", true)]),
                policy: "Always",
                live: &["b"],
                backing_off: &[],
                want: PodActions { start: names(&["a"]), ..Default::default() },
            },
            Case {
                name: "a failed pull in back-off is reported, not retried",
                record: pod(vec![], vec![waiting("a", "ErrImagePull")]),
                policy: "Always",
                live: &[],
                backing_off: &["a"],
                want: PodActions { pull_back_off: names(&["a"]), ..Default::default() },
            },
            Case {
                name: "a failed pull whose back-off elapsed is tried again",
                record: pod(vec![], vec![waiting("a", "ImagePullBackOff")]),
                policy: "Always",
                live: &[],
                backing_off: &[],
                want: PodActions { start: names(&["a"]), ..Default::default() },
            },
            Case {
                name: "terminated containers under OnFailure are left to the exit handler",
                record: pod(vec![], vec![exited("a", 0)]),
                policy: "OnFailure",
                live: &[],
                backing_off: &[],
                want: PodActions::default(),
            },
        ];
        for case in cases {
            let live: HashSet<&str> = case.live.iter().copied().collect();
            let got = compute_pod_actions(&case.record, case.policy, &live, |n| !case.backing_off.contains(&n));
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn probe_results_call_for_upstreams_actions() {
        let pod_grace = Duration::from_secs(30);
        let cases = [
            (Kind::Readiness, false, None, ProbeAction::SetReady(false)),
            (Kind::Readiness, true, None, ProbeAction::SetReady(true)),
            (Kind::Startup, true, None, ProbeAction::Started),
            (Kind::Liveness, true, None, ProbeAction::Nothing),
            (Kind::Liveness, false, None, ProbeAction::Kill(pod_grace)),
            (Kind::Liveness, false, Some(5), ProbeAction::Kill(Duration::from_secs(5))),
            (Kind::Startup, false, Some(0), ProbeAction::Kill(Duration::ZERO)),
            (Kind::Startup, false, None, ProbeAction::Kill(pod_grace)),
        ];
        for (kind, succeeded, grace, want) in cases {
            assert_eq!(probe_action(kind, succeeded, grace, pod_grace), want, "{kind:?} {succeeded} {grace:?}");
        }
    }

    #[test]
    fn the_active_deadline_counts_from_the_start() -> Result<(), jiff::Error> {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse()?;
        let at = |s: i64| start.checked_add(jiff::SignedDuration::from_secs(s));
        let cases = [
            (None, 0, Deadline::Unbounded),
            (Some(30), 0, Deadline::In(Duration::from_secs(30))),
            (Some(30), 29, Deadline::In(Duration::from_secs(1))),
            (Some(30), 30, Deadline::Exceeded),
            (Some(30), 99, Deadline::Exceeded),
            (Some(0), 0, Deadline::Exceeded),
        ];
        for (limit, after, want) in cases {
            assert_eq!(deadline(limit, start, at(after)?), want, "{limit:?} after {after}s");
        }
        Ok(())
    }

    #[test]
    fn pre_stop_hooks_use_up_grace_but_leave_the_minimum() {
        let s = Duration::from_secs;
        let cases = [(s(30), s(0), s(30)), (s(30), s(10), s(20)), (s(30), s(29), s(2)), (s(30), s(40), s(2)), (s(1), s(5), s(1)), (s(0), s(0), s(0))];
        for (grace, took, want) in cases {
            assert_eq!(grace_after_pre_stop(grace, took), want, "{grace:?} {took:?}");
        }
    }

    #[test]
    fn sidecars_stop_last_in_reverse_start_order() {
        let record = pod(
            vec![sidecar(running("log-shipper", true)), sidecar(running("proxy", true))],
            vec![running("app", true), running("worker", true)],
        );
        // (live, stopped first, sidecars after)
        let cases: [(&[&str], &[&str], &[&str]); 3] = [
            (&["app", "worker", "log-shipper", "proxy"], &["app", "worker"], &["proxy", "log-shipper"]),
            (&["worker", "proxy"], &["worker"], &["proxy"]),
            (&[], &[], &[]),
        ];
        for (live, first, sidecars) in cases {
            let live: HashSet<&str> = live.iter().copied().collect();
            assert_eq!(stop_order(&record, &live), (names(first), names(sidecars)), "{live:?}");
        }
    }
}
