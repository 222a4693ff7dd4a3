//! Prometheus metrics, served as text at `/metrics`: counters and latency histograms kept in
//! the process, queue depths read from the queue at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Metric name plus its labels, rendered `name{a="x",b="y"}`-ready.
type Series = (&'static str, Vec<(&'static str, String)>);

/// A gauge read at scrape time: name, labels, value.
pub type Gauge = (&'static str, Vec<(&'static str, String)>, f64);

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The process' metrics registry (one per application).
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Series, u64>>,
    histograms: Mutex<BTreeMap<Series, Histogram>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn series(name: &'static str, labels: &[(&'static str, &str)]) -> Series {
    (
        name,
        labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
    )
}

/// HELP lines of every metric, in the order they are rendered.
const HELP: &[(&str, &str, &str)] = &[
    (
        "chatbot_webhook_requests_total",
        "counter",
        "Webhook requests by provider and outcome (accepted, unauthorized, too_large, malformed, unavailable...).",
    ),
    (
        "chatbot_webhook_messages_total",
        "counter",
        "Inbound messages in accepted webhook requests: queued, or duplicate (already queued once).",
    ),
    (
        "chatbot_jobs_total",
        "counter",
        "Finished job runs by queue and outcome (ok, error: retried until the attempts run out).",
    ),
    (
        "chatbot_job_duration_seconds",
        "histogram",
        "Time a job run took, by queue.",
    ),
    (
        "chatbot_ingest_delay_seconds",
        "histogram",
        "From the webhook accepting a message to its turn being complete in the worker.",
    ),
    (
        "chatbot_sends_total",
        "counter",
        "Outbound messages by provider, tenant and outcome (sent, retry, refused, template, skipped_window).",
    ),
    (
        "chatbot_engagement_connections_total",
        "counter",
        "Engagement WebSocket requests by endpoint and outcome (opened, invalid_url, origin_refused, too_many, unavailable).",
    ),
    (
        "chatbot_engagement_sessions_total",
        "counter",
        "Finished engagement chats by endpoint and outcome (checkout, paid, unpaid, left, idle, flood, too_big, refused, invalid_url, too_long).",
    ),
    (
        "chatbot_engagement_send_lag_seconds",
        "histogram",
        "How late each paced engagement message was written to its socket, after its due time.",
    ),
    (
        "chatbot_queue_depth",
        "gauge",
        "Jobs per queue waiting to run and running now.",
    ),
];

fn write_labels(out: &mut String, labels: &[(&'static str, String)], extra: Option<(&str, &str)>) {
    let mut all: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend(extra);
    if all.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in all.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out.push('}');
}

impl Metrics {
    /// Add one to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *counters.entry(series(name, labels)).or_default() += 1;
    }

    /// Record one observation in a latency histogram.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], took: Duration) {
        let secs = took.as_secs_f64();
        let mut histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let h = histograms.entry(series(name, labels)).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The Prometheus text exposition, with `gauges` (name, labels, value) read at scrape time.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, labels), value) in counters.iter().filter(|((n, _), _)| n == name) {
                out.push_str(n);
                write_labels(&mut out, labels, None);
                let _ = writeln!(out, " {value}");
            }
            for ((n, labels), h) in histograms.iter().filter(|((n, _), _)| n == name) {
                for (bound, count) in BUCKETS.iter().zip(h.counts) {
                    let _ = write!(out, "{n}_bucket");
                    write_labels(&mut out, labels, Some(("le", &bound.to_string())));
                    let _ = writeln!(out, " {count}");
                }
                let _ = write!(out, "{n}_bucket");
                write_labels(&mut out, labels, Some(("le", "+Inf")));
                let _ = writeln!(out, " {}", h.count);
                let _ = write!(out, "{n}_sum");
                write_labels(&mut out, labels, None);
                let _ = writeln!(out, " {}", h.sum);
                let _ = write!(out, "{n}_count");
                write_labels(&mut out, labels, None);
                let _ = writeln!(out, " {}", h.count);
            }
            for (n, labels, value) in gauges.iter().filter(|(n, _, _)| n == name) {
                out.push_str(n);
                write_labels(&mut out, labels, None);
                let _ = writeln!(out, " {value}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.inc(
            "chatbot_webhook_requests_total",
            &[("provider", "meta"), ("outcome", "accepted")],
        );
        m.inc(
            "chatbot_webhook_requests_total",
            &[("provider", "meta"), ("outcome", "accepted")],
        );
        m.observe(
            "chatbot_job_duration_seconds",
            &[("queue", "ingest")],
            Duration::from_millis(3),
        );
        let text = m.render(&[(
            "chatbot_queue_depth",
            vec![("queue", "ingest".into()), ("state", "waiting".into())],
            4.0,
        )]);
        assert!(
            text.contains(
                "chatbot_webhook_requests_total{provider=\"meta\",outcome=\"accepted\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "chatbot_job_duration_seconds_bucket{queue=\"ingest\",le=\"0.0025\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("chatbot_job_duration_seconds_bucket{queue=\"ingest\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("chatbot_job_duration_seconds_count{queue=\"ingest\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("chatbot_queue_depth{queue=\"ingest\",state=\"waiting\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE chatbot_sends_total counter"),
            "{text}"
        );
    }
}
