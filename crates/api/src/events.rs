//! Conversion between core/v1 Events (how they are stored) and
//! events.k8s.io/v1 Events, which upstream serves from the same storage.

use serde_json::{json, Map, Value};

fn copy(from: &Value, from_key: &str, to: &mut Map<String, Value>, to_key: &str) {
    if let Some(v) = from.get(from_key).filter(|v| !v.is_null()) {
        to.insert(to_key.to_string(), v.clone());
    }
}

/// core/v1 → events.k8s.io/v1.
pub fn to_events_v1(core: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    for (from, to) in [
        ("metadata", "metadata"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("reason", "reason"),
        ("involvedObject", "regarding"),
        ("related", "related"),
        ("message", "note"),
        ("type", "type"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
    ] {
        copy(core, from, &mut out, to);
    }
    if let Some(series) = core.get("series").filter(|s| s.is_object()) {
        out.insert(
            "series".into(),
            json!({"count": series["count"], "lastObservedTime": series["lastObservedTime"]}),
        );
    }
    out.entry("eventTime").or_insert(Value::Null);
    Value::Object(out)
}

/// events.k8s.io/v1 → core/v1.
pub fn to_core(events_v1: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("v1"));
    for (from, to) in [
        ("metadata", "metadata"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("reason", "reason"),
        ("regarding", "involvedObject"),
        ("related", "related"),
        ("note", "message"),
        ("type", "type"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
    ] {
        copy(events_v1, from, &mut out, to);
    }
    if let Some(series) = events_v1.get("series").filter(|s| s.is_object()) {
        out.insert("series".into(), series.clone());
    }
    out.entry("involvedObject").or_insert(json!({}));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_the_fields() {
        let core = json!({"kind": "Event", "apiVersion": "v1", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reason": "Started",
            "type": "Normal", "source": {"component": "kubelet"}, "count": 1,
            "reportingComponent": "kubelet", "reportingInstance": "n1"});
        let v1 = to_events_v1(&core);
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!(v1["note"], "hi");
        let back = to_core(&v1);
        assert_eq!(back["involvedObject"], core["involvedObject"]);
        assert_eq!(back["message"], "hi");
        assert_eq!(back["source"], core["source"]);
    }
}
