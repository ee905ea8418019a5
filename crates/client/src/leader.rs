//! Leader election on a `coordination.k8s.io` Lease, as client-go's
//! `leaderelection` does it for kube-scheduler and kube-controller-manager:
//! candidates read the Lease every retry period; one whose holder has not
//! renewed it for the lease duration (by the candidate's own clock, so
//! clock skew between servers does not matter) takes it with an update
//! guarded by resourceVersion; the leader renews every retry period and
//! steps down when it cannot renew within the renew deadline. The elected
//! work runs only while this process holds the Lease; on shutdown the
//! Lease is released so another server takes over at once.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// client-go's defaults for kube-scheduler and kube-controller-manager.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate does with the Lease it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it over.
    TakeOver,
    /// Someone else holds it and renewed within the lease duration.
    Wait,
}

/// Decides from the Lease as read (`None`: absent) and how long its record
/// has been unchanged as this process saw it.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, unchanged_for: Duration, timing: &Timing) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == me {
        return Step::Renew;
    }
    if holder.is_empty() {
        return Step::TakeOver;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(timing.lease_duration);
    if unchanged_for >= duration {
        Step::TakeOver
    } else {
        Step::Wait
    }
}

/// The record written when `me` takes or renews the Lease at `now`.
pub fn held_by(previous: Option<&LeaseSpec>, me: &str, timing: &Timing, now: MicroTime) -> LeaseSpec {
    let ours = previous.is_some_and(|p| p.holder_identity.as_deref() == Some(me));
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: i32::try_from(timing.lease_duration.as_secs()).ok(),
        acquire_time: if ours { previous.and_then(|p| p.acquire_time.clone()) } else { Some(now.clone()) },
        renew_time: Some(now),
        lease_transitions: Some(if ours || previous.is_none() { transitions } else { transitions + 1 }),
        ..LeaseSpec::default()
    }
}

/// The record a leader leaves when it stops (client-go's ReleaseOnCancel).
pub fn released(previous: &LeaseSpec, now: MicroTime) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: previous.lease_transitions,
        ..LeaseSpec::default()
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// One Lease, the identity campaigning for it, and the timing.
pub struct Election {
    pub leases: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub timing: Timing,
}

/// How a term as leader ended.
enum Ended<T> {
    Finished(T),
    Failed(tokio::task::JoinError),
    Lost,
    Shutdown,
}

/// What the candidate last read, and since when (by our clock) it was so.
struct Observed {
    lease: Option<Lease>,
    since: Instant,
}

impl Observed {
    fn record(&self) -> Option<&LeaseSpec> {
        self.lease.as_ref()?.spec.as_ref()
    }
}

/// Cancels the elected work and waits for it to end.
async fn stop_work<T>(stop: &CancellationToken, running: tokio::task::JoinHandle<T>, lease: &str) {
    stop.cancel();
    if let Err(error) = running.await {
        tracing::error!(lease, %error, "the elected work failed while stopping");
    }
}

impl Election {
    /// An election for the Lease `namespace/name` with upstream's timing.
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self { leases: Api::namespaced(client, namespace), name: name.to_string(), identity: identity.to_string(), timing: Timing::default() }
    }

    /// Runs `work` while this process holds the Lease: started when it is
    /// won, cancelled (and awaited) when it is lost, started again when it
    /// is won again. Returns what `work` returned if it ended on its own
    /// while leading (the caller decides what that means), or `None` once
    /// `shutdown` fires (after releasing the Lease).
    pub async fn run<T, F, Fut>(&self, shutdown: CancellationToken, mut work: F) -> Option<T>
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let mut observed = Observed { lease: None, since: Instant::now() };
        loop {
            if !self.acquire(&mut observed, &shutdown).await {
                return None;
            }
            tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
            let stop = shutdown.child_token();
            let mut running = tokio::spawn(work(stop.clone()));
            let mut last_renew = Instant::now();
            let ended = loop {
                tokio::select! {
                    outcome = &mut running => break match outcome {
                        Ok(output) => Ended::Finished(output),
                        Err(error) => Ended::Failed(error),
                    },
                    _ = shutdown.cancelled() => break Ended::Shutdown,
                    _ = tokio::time::sleep(self.timing.retry_period) => {}
                }
                match self.try_take(&mut observed).await {
                    Ok(true) => last_renew = Instant::now(),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(lease = %self.name, %error, "failed to renew the lease"),
                }
                if last_renew.elapsed() >= self.timing.renew_deadline || !self.holds(&observed) {
                    break Ended::Lost;
                }
            };
            match ended {
                Ended::Finished(output) if !shutdown.is_cancelled() => return Some(output),
                Ended::Lost => {
                    tracing::warn!(lease = %self.name, identity = %self.identity, "leader election lost; stopping the elected work");
                    stop_work(&stop, running, &self.name).await;
                }
                Ended::Failed(error) => {
                    tracing::error!(lease = %self.name, %error, "the elected work failed");
                    self.release(&observed).await;
                    return None;
                }
                Ended::Finished(_) => {
                    self.release(&observed).await;
                    return None;
                }
                Ended::Shutdown => {
                    stop_work(&stop, running, &self.name).await;
                    self.release(&observed).await;
                    return None;
                }
            }
        }
    }

    fn holds(&self, observed: &Observed) -> bool {
        observed.record().and_then(|r| r.holder_identity.as_deref()) == Some(self.identity.as_str())
    }

    /// Campaigns until the Lease is ours (true) or shutdown (false).
    async fn acquire(&self, observed: &mut Observed, shutdown: &CancellationToken) -> bool {
        loop {
            match self.try_take(observed).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(error) => tracing::warn!(lease = %self.name, %error, "failed to read or take the lease"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(self.timing.retry_period) => {}
            }
        }
    }

    /// One read-decide-write round; true if we hold the Lease after it.
    async fn try_take(&self, observed: &mut Observed) -> Result<bool, kube::Error> {
        let lease = self.leases.get_opt(&self.name).await?;
        if lease.as_ref().map(|l| &l.spec) != observed.lease.as_ref().map(|l| &l.spec) {
            observed.since = Instant::now();
        }
        observed.lease = lease.clone();
        let record = observed.record();
        let step = decide(record, &self.identity, observed.since.elapsed(), &self.timing);
        let spec = held_by(record, &self.identity, &self.timing, now());
        let written = match (step, lease) {
            (Step::Wait, _) => return Ok(false),
            (Step::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                    spec: Some(spec),
                };
                self.leases.create(&PostParams::default(), &lease).await
            }
            (Step::Renew | Step::TakeOver, Some(mut lease)) => {
                lease.spec = Some(spec);
                self.leases.replace(&self.name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(lease) => {
                observed.lease = Some(lease);
                observed.since = Instant::now();
                Ok(true)
            }
            // Another candidate wrote first: read again next round.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn release(&self, observed: &Observed) {
        let Some(mut lease) = observed.lease.clone() else {
            return;
        };
        let Some(spec) = lease.spec.as_ref().filter(|s| s.holder_identity.as_deref() == Some(self.identity.as_str())) else {
            return;
        };
        lease.spec = Some(released(spec, now()));
        match self.leases.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.name, "released the lease"),
            Err(error) => tracing::warn!(lease = %self.name, %error, "failed to release the lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(holder: Option<&str>, seconds: i32) -> LeaseSpec {
        LeaseSpec { holder_identity: holder.map(str::to_string), lease_duration_seconds: Some(seconds), ..LeaseSpec::default() }
    }

    #[test]
    fn candidates_take_only_absent_free_or_expired_leases() {
        let timing = Timing::default();
        let s = Duration::from_secs;
        let cases = [
            (None, s(0), Step::Create),
            (Some(held(Some("me"), 15)), s(0), Step::Renew),
            (Some(held(Some("me"), 15)), s(100), Step::Renew),
            (Some(held(None, 15)), s(0), Step::TakeOver),
            (Some(held(Some(""), 15)), s(0), Step::TakeOver),
            (Some(held(Some("other"), 15)), s(14), Step::Wait),
            (Some(held(Some("other"), 15)), s(15), Step::TakeOver),
            // The holder's own duration counts, not ours.
            (Some(held(Some("other"), 60)), s(30), Step::Wait),
            (Some(held(Some("other"), 1)), s(1), Step::TakeOver),
        ];
        for (lease, unchanged, want) in cases {
            assert_eq!(decide(lease.as_ref(), "me", unchanged, &timing), want, "{lease:?} unchanged for {unchanged:?}");
        }
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let timing = Timing::default();
        let t0 = MicroTime(jiff::Timestamp::UNIX_EPOCH);
        let t1 = MicroTime(jiff::Timestamp::from_second(100).unwrap_or_default());
        let first = held_by(None, "a", &timing, t0.clone());
        assert_eq!((first.lease_transitions, first.lease_duration_seconds), (Some(0), Some(15)));
        let renewed = held_by(Some(&first), "a", &timing, t1.clone());
        assert_eq!((renewed.acquire_time.clone(), renewed.renew_time.clone(), renewed.lease_transitions), (Some(t0), Some(t1.clone()), Some(0)));
        let taken = held_by(Some(&renewed), "b", &timing, t1.clone());
        assert_eq!((taken.holder_identity.as_deref(), taken.acquire_time.clone(), taken.lease_transitions), (Some("b"), Some(t1.clone()), Some(1)));
        let free = released(&taken, t1);
        assert_eq!((free.holder_identity, free.lease_duration_seconds, free.lease_transitions), (None, Some(1), Some(1)));
    }
}
