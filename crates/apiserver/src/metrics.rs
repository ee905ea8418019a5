//! Request metrics in Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    count: u64,
    sum: f64,
    buckets: [u64; 11],
}

/// Counters shared by all requests.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    watches: AtomicI64,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests
            .entry((verb.to_string(), resource.to_string(), code))
            .or_default() += 1;
        drop(requests);
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let histogram = latency
            .entry((verb.to_string(), resource.to_string()))
            .or_default();
        let seconds = elapsed.as_secs_f64();
        histogram.count += 1;
        histogram.sum += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                histogram.buckets[i] += 1;
            }
        }
    }

    pub fn watch_started(&self) {
        self.watches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn watch_ended(&self) {
        self.watches.fetch_sub(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, store_size_bytes: u64, revision: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP apiserver_request_total Counter of apiserver requests broken out by verb, resource and HTTP response code.");
        let _ = writeln!(out, "# TYPE apiserver_request_total counter");
        for ((verb, resource, code), count) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {count}");
        }
        let _ = writeln!(out, "# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.");
        let _ = writeln!(out, "# TYPE apiserver_request_duration_seconds histogram");
        for ((verb, resource), h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for (bound, count) in BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(out, "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",resource=\"{resource}\",le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",resource=\"{resource}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "apiserver_request_duration_seconds_sum{{verb=\"{verb}\",resource=\"{resource}\"}} {}", h.sum);
            let _ = writeln!(out, "apiserver_request_duration_seconds_count{{verb=\"{verb}\",resource=\"{resource}\"}} {}", h.count);
        }
        let _ = writeln!(
            out,
            "# HELP apiserver_registered_watchers Number of currently open watch requests."
        );
        let _ = writeln!(out, "# TYPE apiserver_registered_watchers gauge");
        let _ = writeln!(
            out,
            "apiserver_registered_watchers {}",
            self.watches.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP apiserver_storage_size_bytes Size of the storage database file in bytes."
        );
        let _ = writeln!(out, "# TYPE apiserver_storage_size_bytes gauge");
        let _ = writeln!(out, "apiserver_storage_size_bytes {store_size_bytes}");
        let _ = writeln!(
            out,
            "# HELP skiff_store_revision Current global revision of the store."
        );
        let _ = writeln!(out, "# TYPE skiff_store_revision gauge");
        let _ = writeln!(out, "skiff_store_revision {revision}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::default();
        metrics.observe("get", "pods", 200, Duration::from_millis(3));
        metrics.observe("get", "pods", 404, Duration::from_millis(30));
        let text = metrics.render(4096, 7);
        assert!(
            text.contains("apiserver_request_total{verb=\"get\",resource=\"pods\",code=\"200\"} 1")
        );
        assert!(text.contains("apiserver_request_duration_seconds_bucket{verb=\"get\",resource=\"pods\",le=\"0.005\"} 1"));
        assert!(text.contains(
            "apiserver_request_duration_seconds_count{verb=\"get\",resource=\"pods\"} 2"
        ));
        assert!(text.contains("apiserver_storage_size_bytes 4096"));
    }
}
