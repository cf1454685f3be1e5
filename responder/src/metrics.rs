//! Prometheus text exposition: counters by label set and latency
//! histograms, kept in memory; job counts by state come from the queue at
//! scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket upper bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

#[derive(Default)]
pub struct Metrics {
    /// (metric name, labels rendered `a="x",b="y"`) -> count
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    histograms: Mutex<BTreeMap<&'static str, Histogram>>,
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "keyburn_deliveries_total",
        "counter",
        "Webhook deliveries by event and outcome.",
    ),
    (
        "keyburn_revocations_total",
        "counter",
        "Revocations by provider and outcome.",
    ),
    (
        "keyburn_steps_total",
        "counter",
        "Job steps by step and outcome.",
    ),
    (
        "keyburn_webhook_ack_seconds",
        "histogram",
        "Time from request to acknowledgement.",
    ),
    (
        "keyburn_alert_resolution_seconds",
        "histogram",
        "Time from enqueue to job done.",
    ),
];

impl Metrics {
    pub fn count(&self, name: &'static str, labels: &[(&str, &str)]) {
        let rendered = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace(['"', '\\', '\n'], "_")))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry((name, rendered)).or_default() += 1;
    }

    pub fn observe(&self, name: &'static str, d: Duration) {
        let secs = d.as_secs_f64();
        let mut h = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        let h = h.entry(name).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.total += 1;
    }

    /// The exposition text, with `jobs` (state, count) as a gauge.
    pub fn render(&self, jobs: &[(&str, u64)]) -> String {
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        let _ = writeln!(
            out,
            "# HELP keyburn_jobs Jobs in the queue by state.\n# TYPE keyburn_jobs gauge"
        );
        for (state, n) in jobs {
            let _ = writeln!(out, "keyburn_jobs{{state=\"{state}\"}} {n}");
        }
        for ((name, labels), n) in self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "{name}{{{labels}}} {n}");
        }
        for (name, h) in self
            .histograms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
            }
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.total);
            let _ = writeln!(out, "{name}_sum {}", h.sum);
            let _ = writeln!(out, "{name}_count {}", h.total);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_as_prometheus_text() {
        let m = Metrics::default();
        m.count(
            "keyburn_deliveries_total",
            &[("event", "ping"), ("outcome", "ok")],
        );
        m.count(
            "keyburn_deliveries_total",
            &[("event", "ping"), ("outcome", "ok")],
        );
        m.observe("keyburn_webhook_ack_seconds", Duration::from_millis(3));
        let text = m.render(&[("queued", 2)]);
        assert!(
            text.contains("keyburn_deliveries_total{event=\"ping\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(text.contains("keyburn_jobs{state=\"queued\"} 2"));
        assert!(text.contains("keyburn_webhook_ack_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("keyburn_webhook_ack_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("keyburn_webhook_ack_seconds_count 1"));
    }
}
