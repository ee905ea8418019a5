//! An Event recorder like client-go's legacy one: core/v1 Events named
//! `<object>.<unique suffix>`, and repeats of the same event on the same
//! object counted on the existing Event instead of creating new ones.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// How many distinct (object, reason, message) series are remembered for counting.
const REMEMBERED: usize = 4096;

/// (involved uid, type, reason, message): what makes two events the same series.
type SeriesKey = (String, EventType, String, String);
/// (event namespace, event name, count so far)
type SeriesEntry = (String, String, i32);

/// Records Events for one component (e.g. `default-scheduler`, `kubelet`).
/// Recording never waits for the API server: events go to one background
/// writer per recorder, in order, as client-go's broadcaster sends them, so
/// a pod's start does not wait on its `Created`/`Started` events.
pub struct EventRecorder {
    queue: tokio::sync::mpsc::UnboundedSender<Pending>,
}

/// An event waiting to be written.
struct Pending {
    object: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
}

/// The background writer's state.
struct Writer {
    client: kube::Client,
    component: String,
    host: Option<String>,
    /// (uid, type, reason, message) → (event namespace, name, count)
    seen: HashMap<SeriesKey, SeriesEntry>,
}

impl EventRecorder {
    /// A recorder writing through `client`; must be made inside a Tokio runtime.
    pub fn new(client: kube::Client, component: &str, host: Option<&str>) -> Self {
        let mut writer = Writer {
            client,
            component: component.to_string(),
            host: host.map(str::to_string),
            seen: HashMap::new(),
        };
        let (queue, mut pending) = tokio::sync::mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            while let Some(event) = pending.recv().await {
                if let Err(error) = writer.try_record(&event.object, event.kind, &event.reason, &event.message).await {
                    tracing::warn!(%error, reason = %event.reason, object = ?event.object.name, "failed to record event");
                }
            }
        });
        Self { queue }
    }

    /// Records an event about `object`; failures are logged, never fatal.
    pub async fn record(
        &self,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let event = Pending { object: object.clone(), kind, reason: reason.to_string(), message: message.to_string() };
        if self.queue.send(event).is_err() {
            tracing::warn!(reason, object = ?object.name, "the event writer stopped; event dropped");
        }
    }
}

impl Writer {
    async fn try_record(
        &mut self,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let namespace = object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let key = (
            object.uid.clone().unwrap_or_default(),
            kind,
            reason.to_string(),
            message.to_string(),
        );
        let now = Time(Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let previous = self.seen.get(&key).cloned();
        if let Some((ns, name, count)) = previous {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            let patched = Api::<Event>::namespaced(self.client.clone(), &ns)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            if patched.is_ok() {
                self.seen.insert(key, (ns, name, count + 1));
                return Ok(());
            }
        }
        let suffix = format!("{:x}", now.0.as_nanosecond());
        let name = format!("{}.{suffix}", object.name.clone().unwrap_or_default());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(kind.as_str().to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        if self.seen.len() >= REMEMBERED {
            self.seen.clear();
        }
        self.seen.insert(key, (namespace, name, 1));
        Ok(())
    }
}

/// A reference to a pod for events, as kubelet and the scheduler make them.
pub fn pod_reference(
    pod: &k8s_openapi::api::core::v1::Pod,
    field_path: Option<&str>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Pod".to_string()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: field_path.map(str::to_string),
    }
}
