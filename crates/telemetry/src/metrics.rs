//! In-process metrics (SPEC §8): named counters, and request durations per
//! route class kept in HDR histograms for p50/p95/p99. Served as JSON at
//! `/api/metrics` and in Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Upper bounds (seconds) of the request-duration histogram buckets; 2 s,
/// the slow-API alert's threshold, is one of them.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    counters: Mutex<BTreeMap<String, u64>>,
    durations: Mutex<BTreeMap<String, Histogram<u64>>>,
    gauges: Mutex<BTreeMap<String, f64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Prometheus metric name for a JSON counter name (`auth.signin.success` →
/// `auth_signin_success_total`).
pub fn prometheus_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    s.push_str("_total");
    s
}

/// `write.notes.success` also counts as `write.success`, and
/// `ai.explain.refused` as `ai.refused`: totals the alert rules read without
/// regular expressions over metric names.
fn rollup(name: &str) -> Option<String> {
    let mut parts = name.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(family @ ("write" | "ai")), Some(_), Some(outcome), None) => {
            Some(format!("{family}.{outcome}"))
        }
        _ => None,
    }
}

impl Metrics {
    /// No counters yet; the server names the ones that must exist from
    /// the start (`server::state`).
    pub fn new() -> Metrics {
        Metrics {
            counters: Mutex::new(BTreeMap::new()),
            durations: Mutex::new(BTreeMap::new()),
            gauges: Mutex::new(BTreeMap::new()),
        }
    }

    /// Current gauge values (for the alert evaluator).
    pub fn gauges(&self) -> BTreeMap<String, f64> {
        self.gauges.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Cumulative request counts at or below each of [`DURATION_BUCKETS`]
    /// (seconds) over every route class, then the total count and the sum
    /// of durations in seconds: the Prometheus histogram
    /// `amal_http_request_duration_seconds` the slow-API alert reads.
    pub fn duration_buckets(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let Ok(d) = self.durations.lock() else {
            return (Vec::new(), 0, 0.0);
        };
        let mut cumulative = vec![0u64; DURATION_BUCKETS.len()];
        let (mut count, mut sum) = (0u64, 0.0f64);
        for h in d.values() {
            for (slot, le) in cumulative.iter_mut().zip(DURATION_BUCKETS) {
                *slot += h.count_between(0, crate::num::floor_u64(le * 1e6));
            }
            count += h.len();
            sum += h.mean() * h.len() as f64 / 1e6;
        }
        (
            DURATION_BUCKETS.into_iter().zip(cumulative).collect(),
            count,
            sum,
        )
    }

    pub fn incr(&self, name: &str) {
        self.incr_by(name, 1);
    }

    pub fn incr_by(&self, name: &str, n: u64) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry(name.to_string()).or_insert(0) += n;
            if let Some(total) = rollup(name) {
                *c.entry(total).or_insert(0) += n;
            }
        }
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .ok()
            .and_then(|c| c.get(name).copied())
            .unwrap_or(0)
    }

    pub fn set_gauge(&self, name: &str, v: f64) {
        if let Ok(mut g) = self.gauges.lock() {
            g.insert(name.to_string(), v);
        }
    }

    /// Record one request of `class` taking `micros` microseconds.
    pub fn observe(&self, class: &str, micros: u64) {
        if let Ok(mut d) = self.durations.lock() {
            let h = d.entry(class.to_string()).or_insert_with(|| {
                Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
            });
            let _ = h.record(micros.clamp(1, 3_600_000_000));
        }
    }

    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// p95 over all request classes, in milliseconds (for the slow-API alert).
    pub fn overall_quantile_ms(&self, q: f64) -> f64 {
        let Ok(d) = self.durations.lock() else {
            return 0.0;
        };
        d.values()
            .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
            .fold(0.0, f64::max)
    }

    /// The JSON shape of SPEC §8.
    pub fn snapshot_json(&self) -> Value {
        let counters = self.counters();
        let durations: BTreeMap<String, Value> = self
            .durations
            .lock()
            .map(|d| {
                d.iter()
                    .map(|(k, h)| {
                        let ms = |v: u64| (v as f64 / 10.0).round() / 100.0;
                        (
                            k.clone(),
                            json!({
                                "count": h.len(),
                                "avg": (h.mean() / 10.0).round() / 100.0,
                                "p50": ms(h.value_at_quantile(0.50)),
                                "p95": ms(h.value_at_quantile(0.95)),
                                "p99": ms(h.value_at_quantile(0.99)),
                            }),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let gauges = self.gauges.lock().map(|g| g.clone()).unwrap_or_default();
        json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "metrics": { "counters": counters, "durations": durations, "gauges": gauges }
        })
    }

    /// Prometheus text exposition format.
    pub fn prometheus_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (name, v) in self.counters() {
            let n = prometheus_name(&name);
            let _ = writeln!(out, "# TYPE {n} counter\n{n} {v}");
        }
        if let Ok(g) = self.gauges.lock() {
            for (name, v) in g.iter() {
                let n: String = name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let _ = writeln!(out, "# TYPE {n} gauge\n{n} {v}");
            }
        }
        let (buckets, count, sum) = self.duration_buckets();
        let _ = writeln!(out, "# TYPE amal_http_request_duration_seconds histogram");
        for (le, n) in buckets {
            let _ = writeln!(
                out,
                "amal_http_request_duration_seconds_bucket{{le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "amal_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             amal_http_request_duration_seconds_sum {sum}\n\
             amal_http_request_duration_seconds_count {count}"
        );
        if let Ok(d) = self.durations.lock() {
            let _ = writeln!(out, "# TYPE amal_request_duration_seconds summary");
            for (class, h) in d.iter() {
                for q in [0.5, 0.95, 0.99] {
                    let _ = writeln!(
                        out,
                        "amal_request_duration_seconds{{class=\"{class}\",quantile=\"{q}\"}} {}",
                        h.value_at_quantile(q) as f64 / 1e6
                    );
                }
                let sum: f64 = h.mean() * h.len() as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "amal_request_duration_seconds_sum{{class=\"{class}\"}} {sum}"
                );
                let _ = writeln!(
                    out,
                    "amal_request_duration_seconds_count{{class=\"{class}\"}} {}",
                    h.len()
                );
            }
        }
        out
    }
}
