//! The alert engine (SPEC §9): pure evaluation over metric samples, with no
//! I/O and no application state; `server::alert_task` drives it.
//!
//! Alerts are evaluated inside `amal` on its own metrics so that a
//! clinic without Prometheus still gets them. The same rules ship for
//! Prometheus in `ops/prometheus/alerts.yml`: every rule below carries the
//! PromQL expression it mirrors, and a unit test keeps the two files in step
//! (names, expressions, `for` durations, severities and routes).
//!
//! Every interval (`AMAL_ALERT_INTERVAL`, default 15 s) the evaluator probes
//! the database (`database.up`), counts unreviewed critical lab results
//! (`labs.unreviewed_critical`), reads the process memory
//! (`process.memory_used_ratio`) and the busiest client IP's rate-limit hits
//! (`rate_limit.hits_max_per_ip`), takes a sample of every counter and gauge,
//! and moves each alert like Prometheus does: inactive → pending (condition
//! true) → firing (true for the rule's `for` duration) → inactive again
//! (resolved). Firing and resolved alerts are posted to `ALERT_WEBHOOK_URL`
//! in the Alertmanager webhook format by a background worker, with a timeout
//! and retries with backoff; nothing here ever runs on a request's path.
//!
//! Windows (`[5m]` in PromQL) are computed from the samples kept in memory:
//! `increase(x[5m])` is the counter now minus the oldest sample inside the
//! last five minutes (the counters start at zero when the process starts).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::metrics::Metrics;

/// Default evaluation interval of the built-in alerts (`AMAL_ALERT_INTERVAL`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// Deliveries waiting for the worker; past this a delivery is dropped and
/// counted as `alerts.webhook.failure`.
const WEBHOOK_QUEUE: usize = 256;

/// Per-IP rate-limit hits are kept in one-minute buckets over this many
/// minutes (the gauge covers the current minute and the four before it).
const IP_BUCKET_SECS: u64 = 60;
const IP_BUCKETS: u64 = 5;
/// At most this many client IPs are tracked per bucket (space-saving
/// top-N: a newcomer takes the least-counted slot and its count, so the
/// busiest addresses are never under-counted and memory stays bounded).
const IP_CAPACITY: usize = 1024;

/// Samples older than the longest window plus this margin are dropped.
const HISTORY_MARGIN_SECS: f64 = 120.0;
/// At most one sample a second is kept, whatever the interval.
const HISTORY_MIN_SPACING_SECS: f64 = 1.0;
/// Points kept for the admin's metrics charts: a bounded ring, one point
/// per evaluation (two hours at the default 15 s interval).
pub const METRICS_POINTS: usize = 480;

/// Counters an alert reads, by their JSON names, summed.
#[derive(Debug, Clone, Copy)]
struct Sel(&'static [&'static str]);

impl Sel {
    fn sum(&self, counters: &BTreeMap<String, u64>) -> u64 {
        self.0
            .iter()
            .filter_map(|n| counters.get(*n))
            .copied()
            .sum()
    }
}

/// What an alert's expression computes.
#[derive(Debug, Clone, Copy)]
enum Cond {
    /// `gauge == value`
    GaugeEq(&'static str, f64),
    /// `gauge > threshold`
    GaugeAbove(&'static str, f64),
    /// `increase(num) / increase(den) > threshold` over `window` seconds,
    /// when `increase(den) >= min_den`.
    RatioAbove {
        num: Sel,
        den: Sel,
        window: u64,
        threshold: f64,
        min_den: u64,
    },
    /// `increase(success) == 0 and increase(error) > 0` over `window`.
    NoSuccess {
        success: Sel,
        error: Sel,
        window: u64,
    },
    /// `increase(sel) > threshold` over `window`.
    IncreaseAbove {
        sel: Sel,
        window: u64,
        threshold: f64,
    },
    /// `histogram_quantile(q, request durations over window) > threshold` (s).
    QuantileAbove { q: f64, window: u64, threshold: f64 },
}

impl Cond {
    fn window(&self) -> u64 {
        match self {
            Cond::GaugeEq(..) | Cond::GaugeAbove(..) => 0,
            Cond::RatioAbove { window, .. }
            | Cond::NoSuccess { window, .. }
            | Cond::IncreaseAbove { window, .. }
            | Cond::QuantileAbove { window, .. } => *window,
        }
    }
}

/// How urgent an alert is: `critical` (page), `high` (chat channel) or
/// `low` (log only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Critical,
    High,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Low => "low",
        }
    }
}

/// One alert rule.
#[derive(Debug)]
pub struct Rule {
    pub name: &'static str,
    pub severity: Severity,
    /// Where it goes: `pagerduty`, `slack`, `clinical` or `log`.
    pub route: &'static str,
    /// How long the condition must hold before the alert fires.
    pub for_secs: u64,
    /// The PromQL expression in `ops/prometheus/alerts.yml`.
    pub expr: &'static str,
    pub summary: &'static str,
    cond: Cond,
}

// Totals over every resource and AI operation (see `metrics::rollup`).
const WRITE_SUCCESS: Sel = Sel(&["write.success"]);
const WRITE_ERROR: Sel = Sel(&["write.error"]);
const AI_REFUSED: Sel = Sel(&["ai.refused"]);
const AI_ANSWERED: Sel = Sel(&["ai.refused", "ai.success"]);

/// Every alert of SPEC §9 and the clinical-safety signals, in the order of
/// `ops/prometheus/alerts.yml`.
pub const RULES: &[Rule] = &[
    Rule {
        name: "DatabaseConnectivityLost",
        severity: Severity::Critical,
        route: "pagerduty",
        for_secs: 30,
        expr: "database_up == 0",
        summary: "The database has been unreachable for more than 30 seconds.",
        cond: Cond::GaugeEq("database.up", 0.0),
    },
    Rule {
        name: "AuthServerErrorsHigh",
        severity: Severity::Critical,
        route: "pagerduty",
        for_secs: 120,
        expr: "sum(rate(http_auth_5xx_total[5m])) / sum(rate(http_auth_requests_total[5m])) > 0.1",
        summary: "More than 10% of sign-in, sign-up and refresh requests fail with 5xx.",
        cond: Cond::RatioAbove {
            num: Sel(&["http.auth.5xx"]),
            den: Sel(&["http.auth.requests"]),
            window: 300,
            threshold: 0.1,
            min_den: 1,
        },
    },
    Rule {
        name: "WritesFailing",
        severity: Severity::Critical,
        route: "pagerduty",
        for_secs: 30,
        expr: "(sum(increase(write_success_total[2m])) or vector(0)) == 0 and sum(increase(write_error_total[2m])) > 0",
        summary: "No clinical write has succeeded for more than 2 minutes while writes are being attempted.",
        cond: Cond::NoSuccess {
            success: WRITE_SUCCESS,
            error: WRITE_ERROR,
            window: 120,
        },
    },
    Rule {
        name: "RateLimitAbuseFromOneIp",
        severity: Severity::High,
        route: "slack",
        for_secs: 0,
        expr: "rate_limit_hits_max_per_ip > 20",
        summary: "One client IP has been rate-limited more than 20 times in the last 5 minutes.",
        cond: Cond::GaugeAbove("rate_limit.hits_max_per_ip", 20.0),
    },
    Rule {
        name: "AiRefusalRateHigh",
        severity: Severity::High,
        route: "slack",
        for_secs: 300,
        expr: "sum(rate(ai_refused_total[15m])) / (sum(rate(ai_refused_total[15m])) + sum(rate(ai_success_total[15m]))) > 0.5 and sum(increase(ai_refused_total[15m])) + sum(increase(ai_success_total[15m])) >= 5",
        summary: "The AI assistant refuses more than half of the requests it answers.",
        cond: Cond::RatioAbove {
            num: AI_REFUSED,
            den: AI_ANSWERED,
            window: 900,
            threshold: 0.5,
            min_den: 5,
        },
    },
    Rule {
        name: "ValidationErrorRateHigh",
        severity: Severity::High,
        route: "slack",
        for_secs: 300,
        expr: "sum(rate(http_validation_error_total[5m])) / sum(rate(http_requests_total[5m])) > 0.25 and sum(increase(http_requests_total[5m])) >= 20",
        summary: "More than 25% of requests are refused as invalid (400/422).",
        cond: Cond::RatioAbove {
            num: Sel(&["http.validation_error"]),
            den: Sel(&["http.requests"]),
            window: 300,
            threshold: 0.25,
            min_den: 20,
        },
    },
    Rule {
        name: "SlowApiP95",
        severity: Severity::Low,
        route: "log",
        for_secs: 300,
        expr: "histogram_quantile(0.95, sum by (le) (rate(amal_http_request_duration_seconds_bucket[5m]))) > 2",
        summary: "The 95th percentile of API response times is above 2 seconds.",
        cond: Cond::QuantileAbove {
            q: 0.95,
            window: 300,
            threshold: 2.0,
        },
    },
    Rule {
        name: "HighMemoryUsage",
        severity: Severity::Low,
        route: "log",
        for_secs: 600,
        expr: "process_memory_used_ratio > 0.8",
        summary: "The server process has used more than 80% of the memory available to it for 10 minutes.",
        cond: Cond::GaugeAbove("process.memory_used_ratio", 0.8),
    },
    Rule {
        name: "AuditWriteFailure",
        severity: Severity::Critical,
        route: "pagerduty",
        for_secs: 0,
        expr: "increase(audit_write_failure_total[5m]) > 0",
        summary: "An audit event could not be written: access to patient data is not being recorded.",
        cond: Cond::IncreaseAbove {
            sel: Sel(&["audit.write_failure"]),
            window: 300,
            threshold: 0.0,
        },
    },
    Rule {
        name: "DatabaseFaults",
        severity: Severity::High,
        route: "slack",
        for_secs: 0,
        expr: "increase(db_fault_total[5m]) > 0",
        summary: "Requests were answered 503 because of a database fault (down, full, read-only or connection lost).",
        cond: Cond::IncreaseAbove {
            sel: Sel(&["db.fault"]),
            window: 300,
            threshold: 0.0,
        },
    },
    Rule {
        name: "AdminBulkExport",
        severity: Severity::High,
        route: "slack",
        for_secs: 0,
        expr: "increase(fhir_export_admin_total[1h]) > 0",
        summary: "An administrator started a FHIR bulk export of patient records (every patient, or a care team's).",
        cond: Cond::IncreaseAbove {
            sel: Sel(&["fhir.export.admin"]),
            window: 3600,
            threshold: 0.0,
        },
    },
    Rule {
        name: "BreakGlassInvoked",
        severity: Severity::High,
        route: "slack",
        for_secs: 0,
        expr: "increase(access_break_glass_total[1h]) > 0",
        summary: "A clinician used break-glass (emergency) access to a patient outside their care teams; review it.",
        cond: Cond::IncreaseAbove {
            sel: Sel(&["access.break_glass"]),
            window: 3600,
            threshold: 0.0,
        },
    },
    Rule {
        name: "AdminCreatedClinicalAccount",
        severity: Severity::High,
        route: "slack",
        for_secs: 0,
        expr: "increase(users_clinical_created_by_admin_total[1h]) > 0",
        summary: "An administrator created (or made) a provider or nurse account; review it.",
        cond: Cond::IncreaseAbove {
            sel: Sel(&["users.clinical_created_by_admin"]),
            window: 3600,
            threshold: 0.0,
        },
    },
    Rule {
        name: "BackupTooOld",
        severity: Severity::High,
        route: "slack",
        for_secs: 0,
        expr: "backup_last_success_age_seconds > 93600",
        summary: "The last verified backup is more than 26 hours old.",
        cond: Cond::GaugeAbove("backup.last_success_age_seconds", 93_600.0),
    },
    Rule {
        name: "CriticalLabUnreviewed",
        severity: Severity::High,
        route: "clinical",
        for_secs: 1800,
        expr: "labs_unreviewed_critical > 0",
        summary: "A critical lab result has waited more than 30 minutes for a clinician's review.",
        cond: Cond::GaugeAbove("labs.unreviewed_critical", 0.0),
    },
];

/// Alerts only Prometheus can evaluate (they watch `amal` from outside).
pub const PROMETHEUS_ONLY: &[&str] = &["AmalTargetDown"];

/// A point-in-time copy of the metrics.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds on the evaluator's clock.
    t: f64,
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, f64>,
    /// Cumulative request counts per bucket upper bound (s), without +Inf.
    buckets: Vec<(f64, u64)>,
    /// All requests (the +Inf bucket).
    requests: u64,
}

impl Sample {
    pub fn take(m: &Metrics, t: f64) -> Sample {
        let (buckets, requests, _) = m.duration_buckets();
        Sample {
            t,
            counters: m.counters(),
            gauges: m.gauges(),
            buckets,
            requests,
        }
    }
}

/// Prometheus' `histogram_quantile` over cumulative buckets.
fn histogram_quantile(q: f64, buckets: &[(f64, u64)], total: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut prev_le, mut prev_count) = (0.0f64, 0.0f64);
    for &(le, c) in buckets {
        let c = c as f64;
        if c >= rank {
            if c <= prev_count {
                return Some(le);
            }
            return Some(prev_le + (le - prev_le) * (rank - prev_count) / (c - prev_count));
        }
        prev_le = le;
        prev_count = c;
    }
    // In the +Inf bucket: the highest finite upper bound, as Prometheus does.
    buckets.last().map(|b| b.0)
}

/// The state of one alert, as Prometheus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    #[default]
    Inactive,
    Pending,
    Firing,
}

#[derive(Debug, Clone, Default)]
struct Track {
    status: AlertStatus,
    active_since: Option<f64>,
    last_resolved: Option<f64>,
    value: Option<f64>,
    detail: Option<String>,
}

#[derive(Debug, Default)]
struct Evaluator {
    history: VecDeque<Sample>,
    tracks: Vec<Track>,
    last_eval: Option<f64>,
}

/// A firing or resolved alert, to be logged and posted.
#[derive(Debug, Clone)]
pub struct Transition {
    pub rule: &'static Rule,
    pub firing: bool,
    pub value: Option<f64>,
    starts_at: f64,
    ends_at: Option<f64>,
    detail: Option<String>,
}

/// Rate-limit hits per client IP, in one-minute buckets, bounded in size.
#[derive(Debug, Default)]
pub struct IpHits {
    buckets: Mutex<VecDeque<(u64, HashMap<String, u32>)>>,
}

impl IpHits {
    fn record(&self, ip: &str, now: f64) {
        let idx = crate::num::floor_u64(now) / IP_BUCKET_SECS;
        let Ok(mut b) = self.buckets.lock() else {
            return;
        };
        while b.front().is_some_and(|(i, _)| i + IP_BUCKETS <= idx) {
            b.pop_front();
        }
        if b.back().map(|(i, _)| *i) != Some(idx) {
            b.push_back((idx, HashMap::new()));
        }
        let Some((_, map)) = b.back_mut() else {
            return;
        };
        if let Some(n) = map.get_mut(ip) {
            *n = n.saturating_add(1);
        } else if map.len() >= IP_CAPACITY {
            let least = map
                .iter()
                .min_by_key(|(_, n)| **n)
                .map(|(k, n)| (k.clone(), *n));
            if let Some((k, n)) = least {
                map.remove(&k);
                map.insert(ip.to_string(), n.saturating_add(1));
            }
        } else {
            map.insert(ip.to_string(), 1);
        }
    }

    /// The most hits one IP had over the window, and that IP.
    pub fn max(&self, now: f64) -> (u32, Option<String>) {
        let idx = crate::num::floor_u64(now) / IP_BUCKET_SECS;
        let Ok(b) = self.buckets.lock() else {
            return (0, None);
        };
        let mut totals: HashMap<&str, u32> = HashMap::new();
        for (_, map) in b.iter().filter(|(i, _)| i + IP_BUCKETS > idx && *i <= idx) {
            for (ip, n) in map {
                let e = totals.entry(ip.as_str()).or_insert(0);
                *e = e.saturating_add(*n);
            }
        }
        totals
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(ip, n)| (n, Some(ip.to_string())))
            .unwrap_or((0, None))
    }
}

/// The evaluator's state, kept in [`AppState`].
pub struct Alerts {
    pub interval: Duration,
    epoch: Instant,
    epoch_wall: DateTime<Utc>,
    /// Added to the clock; moved only by tests ([`Alerts::advance_clock`]).
    skew_ms: AtomicU64,
    pub ip_hits: IpHits,
    eval: Mutex<Evaluator>,
    pub webhook_configured: bool,
    pub queue: mpsc::Sender<Value>,
    pub queue_rx: Mutex<Option<mpsc::Receiver<Value>>>,
    /// The metrics over time, for the admin's charts (bounded).
    points: Mutex<VecDeque<MetricsPoint>>,
    /// How many alerts were firing and pending at each evaluation, for the
    /// alerts page's charts (bounded like `points`).
    states: Mutex<VecDeque<StatePoint>>,
    /// The last webhook delivery attempt (after its retries).
    last_delivery: Mutex<Option<WebhookDelivery>>,
}

/// One point of the admin's metrics charts: what happened between two
/// evaluations.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsPoint {
    pub at: DateTime<Utc>,
    pub requests_per_second: f64,
    /// 95th percentile request duration over the interval (ms); null without requests.
    pub p95_ms: Option<f64>,
    /// 5xx answers per request over the interval; null without requests.
    pub error_ratio: Option<f64>,
    pub signin_failures: u64,
    pub ai_refusals: u64,
}

/// The alerts' states at one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct StatePoint {
    pub at: DateTime<Utc>,
    pub firing: usize,
    pub pending: usize,
}

/// The outcome of the last alert webhook delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    pub at: DateTime<Utc>,
    pub alert: String,
    pub delivered: bool,
    pub attempts: u32,
}

fn counter_delta(prev: &Sample, cur: &Sample, f: impl Fn(&str) -> bool) -> u64 {
    let sum = |s: &Sample| -> u64 {
        s.counters
            .iter()
            .filter(|(k, _)| f(k))
            .map(|(_, v)| *v)
            .sum()
    };
    sum(cur).saturating_sub(sum(prev))
}

impl MetricsPoint {
    fn between(prev: &Sample, cur: &Sample, at: DateTime<Utc>) -> Option<MetricsPoint> {
        let dt = cur.t - prev.t;
        if dt <= 0.0 {
            return None;
        }
        let requests = cur.requests.saturating_sub(prev.requests);
        let buckets: Vec<(f64, u64)> = cur
            .buckets
            .iter()
            .map(|&(le, c)| {
                let before = prev
                    .buckets
                    .iter()
                    .find(|(l, _)| *l == le)
                    .map_or(0, |b| b.1);
                (le, c.saturating_sub(before))
            })
            .collect();
        let errors = counter_delta(prev, cur, |k| k == "http.5xx");
        Some(MetricsPoint {
            at,
            requests_per_second: requests as f64 / dt,
            p95_ms: histogram_quantile(0.95, &buckets, requests).map(|s| s * 1000.0),
            error_ratio: (requests > 0).then(|| errors as f64 / requests as f64),
            signin_failures: counter_delta(prev, cur, |k| k == "auth.signin.failure"),
            ai_refusals: counter_delta(prev, cur, |k| {
                k.starts_with("ai.") && k.ends_with(".refused")
            }),
        })
    }
}

impl Alerts {
    /// An evaluator run every `interval`; `webhook_configured` says whether
    /// transitions are queued for delivery.
    pub fn new(interval: Duration, webhook_configured: bool) -> Alerts {
        let (queue, rx) = mpsc::channel(WEBHOOK_QUEUE);
        let mut history = VecDeque::new();
        // The counters start at zero with the process.
        history.push_back(Sample::default());
        Alerts {
            interval,
            epoch: Instant::now(),
            epoch_wall: Utc::now(),
            skew_ms: AtomicU64::new(0),
            ip_hits: IpHits::default(),
            eval: Mutex::new(Evaluator {
                history,
                tracks: vec![Track::default(); RULES.len()],
                last_eval: None,
            }),
            webhook_configured,
            points: Mutex::new(VecDeque::new()),
            states: Mutex::new(VecDeque::new()),
            last_delivery: Mutex::new(None),
            queue,
            queue_rx: Mutex::new(Some(rx)),
        }
    }

    /// How many alerts are firing now.
    pub fn firing(&self) -> usize {
        self.eval
            .lock()
            .map(|ev| {
                ev.tracks
                    .iter()
                    .filter(|t| t.status == AlertStatus::Firing)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Seconds since the evaluator started (plus any test skew).
    pub fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() + self.skew_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Move the evaluator's clock forward (tests of `for` durations and
    /// windows use it instead of waiting).
    #[doc(hidden)]
    pub fn advance_clock(&self, by: Duration) {
        self.skew_ms
            .fetch_add(crate::num::cap_u64(by.as_millis()), Ordering::Relaxed);
    }

    fn wall(&self, t: f64) -> DateTime<Utc> {
        self.epoch_wall + chrono::Duration::milliseconds(crate::num::trunc_i64(t * 1000.0))
    }

    /// Count one rate-limited request from `ip` (called by the rate-limit
    /// layer). Only this bounded in-memory table knows the IPs: Prometheus
    /// sees the busiest one's count as `rate_limit_hits_max_per_ip`.
    pub fn record_rate_limit_hit(&self, ip: &str) {
        self.ip_hits.record(ip, self.now());
    }

    /// Evaluate every rule on `sample`; return the alerts that started
    /// firing or resolved.
    pub fn evaluate(&self, sample: Sample, top_ip: Option<(u32, String)>) -> Vec<Transition> {
        let Ok(mut ev) = self.eval.lock() else {
            return Vec::new();
        };
        let now = sample.t;
        let mut out = Vec::new();
        for (i, rule) in RULES.iter().enumerate() {
            let (value, active) = condition(rule.cond, &ev.history, &sample);
            let detail = match rule.cond {
                Cond::GaugeAbove("rate_limit.hits_max_per_ip", _) => top_ip
                    .as_ref()
                    .filter(|(n, _)| *n > 0)
                    .map(|(n, ip)| format!("busiest client IP {ip}: {n} rate-limited requests")),
                Cond::GaugeAbove(g, _) | Cond::GaugeEq(g, _) if !sample.gauges.contains_key(g) => {
                    Some(format!("no data: gauge {g} is not reported"))
                }
                _ => None,
            };
            let Some(track) = ev.tracks.get_mut(i) else {
                continue;
            };
            track.value = value;
            track.detail = detail.clone();
            match (track.status, active) {
                (AlertStatus::Inactive, true) => {
                    track.active_since = Some(now);
                    track.status = AlertStatus::Pending;
                }
                (_, false) => {
                    if track.status == AlertStatus::Firing {
                        track.last_resolved = Some(now);
                        out.push(Transition {
                            rule,
                            firing: false,
                            value,
                            starts_at: track.active_since.unwrap_or(now),
                            ends_at: Some(now),
                            detail: detail.clone(),
                        });
                    }
                    track.status = AlertStatus::Inactive;
                    track.active_since = None;
                }
                _ => {}
            }
            if track.status == AlertStatus::Pending
                && now - track.active_since.unwrap_or(now) >= rule.for_secs as f64
            {
                track.status = AlertStatus::Firing;
                out.push(Transition {
                    rule,
                    firing: true,
                    value,
                    starts_at: track.active_since.unwrap_or(now),
                    ends_at: None,
                    detail,
                });
            }
        }
        ev.last_eval = Some(now);
        let count = |st: AlertStatus| ev.tracks.iter().filter(|t| t.status == st).count();
        let state = StatePoint {
            at: self.wall(now),
            firing: count(AlertStatus::Firing),
            pending: count(AlertStatus::Pending),
        };
        if let Ok(mut states) = self.states.lock() {
            states.push_back(state);
            while states.len() > METRICS_POINTS {
                states.pop_front();
            }
        }
        if let Some(point) = ev
            .history
            .back()
            .and_then(|prev| MetricsPoint::between(prev, &sample, self.wall(now)))
        {
            if let Ok(mut pts) = self.points.lock() {
                pts.push_back(point);
                while pts.len() > METRICS_POINTS {
                    pts.pop_front();
                }
            }
        }
        // Keep at most one sample a second, and only as far back as the
        // longest window needs.
        let keep = ev
            .history
            .back()
            .is_none_or(|last| now - last.t >= HISTORY_MIN_SPACING_SECS);
        if keep {
            ev.history.push_back(sample);
        }
        let longest = RULES.iter().map(|r| r.cond.window()).max().unwrap_or(0) as f64;
        while ev.history.len() > 2
            && ev
                .history
                .get(1)
                .is_some_and(|s| s.t < now - longest - HISTORY_MARGIN_SECS)
        {
            ev.history.pop_front();
        }
        out
    }

    /// The metrics over time, oldest first (at most [`METRICS_POINTS`]).
    pub fn points(&self) -> Vec<MetricsPoint> {
        self.points
            .lock()
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Firing and pending counts per evaluation, oldest first (at most
    /// [`METRICS_POINTS`]).
    pub fn state_points(&self) -> Vec<StatePoint> {
        self.states
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Record the outcome of a webhook delivery (after its retries).
    pub fn delivered(&self, alert: &str, delivered: bool, attempts: u32) {
        if let Ok(mut d) = self.last_delivery.lock() {
            *d = Some(WebhookDelivery {
                at: Utc::now(),
                alert: alert.to_string(),
                delivered,
                attempts,
            });
        }
    }

    /// The state of every alert.
    pub fn report(&self) -> AlertsReport {
        let Ok(ev) = self.eval.lock() else {
            return AlertsReport::default();
        };
        let alerts: Vec<AlertView> = RULES
            .iter()
            .zip(ev.tracks.iter())
            .map(|(rule, t)| AlertView {
                name: rule.name.into(),
                state: t.status,
                severity: rule.severity.as_str().into(),
                route: rule.route.into(),
                summary: rule.summary.into(),
                expr: rule.expr.into(),
                for_seconds: rule.for_secs,
                value: t.value.filter(|v| v.is_finite()),
                active_since: t.active_since.map(|s| self.wall(s)),
                last_resolved_at: t.last_resolved.map(|s| self.wall(s)),
                detail: t.detail.clone(),
                runbook: runbook(rule.name),
            })
            .collect();
        AlertsReport {
            evaluated_at: ev.last_eval.map(|t| self.wall(t)),
            interval_seconds: self.interval.as_secs_f64(),
            webhook_configured: self.webhook_configured,
            last_webhook_delivery: self.last_delivery.lock().ok().and_then(|d| d.clone()),
            firing: alerts
                .iter()
                .filter(|a| a.state == AlertStatus::Firing)
                .count(),
            alerts,
        }
    }

    /// The Alertmanager-style webhook body for a transition.
    pub fn payload(&self, t: &Transition) -> Value {
        let status = if t.firing { "firing" } else { "resolved" };
        let labels = json!({
            "alertname": t.rule.name,
            "severity": t.rule.severity.as_str(),
            "route": t.rule.route,
            "service": "amal",
        });
        let mut annotations = json!({
            "summary": t.rule.summary,
            "runbook": runbook(t.rule.name),
            "expr": t.rule.expr,
        });
        if let Some(v) = t.value.filter(|v| v.is_finite()) {
            annotations["value"] = json!(format!("{v}"));
        }
        if let Some(d) = &t.detail {
            annotations["detail"] = json!(d);
        }
        let ts = |s: f64| {
            self.wall(s)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        json!({
            "version": "4",
            "status": status,
            "receiver": "amal",
            "groupKey": format!("amal/{}", t.rule.name),
            "truncatedAlerts": 0,
            "groupLabels": { "alertname": t.rule.name },
            "commonLabels": labels,
            "commonAnnotations": annotations,
            "externalURL": "",
            "alerts": [{
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": ts(t.starts_at),
                "endsAt": t.ends_at.map(ts).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "generatorURL": "",
                "fingerprint": fingerprint(t.rule.name),
            }],
        })
    }
}

fn runbook(name: &str) -> String {
    format!(
        "docs/ops/ALERT_DEFINITIONS.md#{}",
        name.to_ascii_lowercase()
    )
}

fn fingerprint(name: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(format!("amal/{name}").as_bytes())[..8])
}

/// Evaluate one condition: its value (when there is data) and whether it holds.
fn condition(cond: Cond, history: &VecDeque<Sample>, cur: &Sample) -> (Option<f64>, bool) {
    // The oldest sample inside the window; with sparse samples (an interval
    // longer than the window) the one before `cur`.
    let past = |window: u64| -> &Sample {
        let from = cur.t - window as f64;
        history
            .iter()
            .find(|s| s.t >= from && s.t < cur.t)
            .or_else(|| history.iter().rev().find(|s| s.t < cur.t))
            .unwrap_or(cur)
    };
    let increase = |sel: Sel, window: u64| -> u64 {
        sel.sum(&cur.counters)
            .saturating_sub(sel.sum(&past(window).counters))
    };
    match cond {
        Cond::GaugeEq(g, v) => {
            let x = cur.gauges.get(g).copied();
            (x, x == Some(v))
        }
        Cond::GaugeAbove(g, th) => {
            let x = cur.gauges.get(g).copied();
            (x, x.is_some_and(|x| x > th))
        }
        Cond::RatioAbove {
            num,
            den,
            window,
            threshold,
            min_den,
        } => {
            let (n, d) = (increase(num, window), increase(den, window));
            if d == 0 {
                return (None, false);
            }
            let r = n as f64 / d as f64;
            (Some(r), r > threshold && d >= min_den)
        }
        Cond::NoSuccess {
            success,
            error,
            window,
        } => {
            let (s, e) = (increase(success, window), increase(error, window));
            (Some(e as f64), s == 0 && e > 0)
        }
        Cond::IncreaseAbove {
            sel,
            window,
            threshold,
        } => {
            let v = increase(sel, window) as f64;
            (Some(v), v > threshold)
        }
        Cond::QuantileAbove {
            q,
            window,
            threshold,
        } => {
            let p = past(window);
            let deltas: Vec<(f64, u64)> = cur
                .buckets
                .iter()
                .map(|&(le, c)| {
                    let before = p
                        .buckets
                        .iter()
                        .find(|b| b.0 == le)
                        .map(|b| b.1)
                        .unwrap_or(0);
                    (le, c.saturating_sub(before))
                })
                .collect();
            let total = cur.requests.saturating_sub(p.requests);
            match histogram_quantile(q, &deltas, total) {
                Some(v) => (Some(v), v > threshold),
                None => (None, false),
            }
        }
    }
}

/// Process memory: resident set size against the memory available to the
/// process (the machine's `MemTotal`, or the cgroup's `memory.max` when
/// lower, as under systemd's `MemoryMax=`). Linux only.
pub fn read_memory() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss = kib_field(&status, "VmRSS:")? * 1024.0;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut total = kib_field(&meminfo, "MemTotal:")? * 1024.0;
    if let Some(limit) = cgroup_memory_max() {
        total = total.min(limit);
    }
    (total > 0.0).then_some((rss, total))
}

fn kib_field(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn cgroup_memory_max() -> Option<f64> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cg.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let v = std::fs::read_to_string(format!(
        "/sys/fs/cgroup{}/memory.max",
        path.trim_end_matches('/')
    ))
    .ok()?;
    v.trim().parse::<f64>().ok().filter(|v| *v > 0.0)
}

/// `GET /api/alerts`.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertsReport {
    /// When the rules were last evaluated (null before the first evaluation).
    pub evaluated_at: Option<DateTime<Utc>>,
    pub interval_seconds: f64,
    /// Whether `ALERT_WEBHOOK_URL` is set.
    pub webhook_configured: bool,
    /// The last webhook delivery since start (null: none yet).
    pub last_webhook_delivery: Option<WebhookDelivery>,
    /// How many alerts are firing.
    pub firing: usize,
    pub alerts: Vec<AlertView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    pub name: String,
    pub state: AlertStatus,
    /// `critical` (page), `high` (chat channel), `low` (log only).
    pub severity: String,
    /// `pagerduty`, `slack`, `clinical` or `log`.
    pub route: String,
    pub summary: String,
    /// The PromQL expression of the same rule in `ops/prometheus/alerts.yml`.
    pub expr: String,
    pub for_seconds: u64,
    /// The expression's value at the last evaluation, when it had data.
    pub value: Option<f64>,
    /// Since when the condition holds (pending or firing).
    pub active_since: Option<DateTime<Utc>>,
    pub last_resolved_at: Option<DateTime<Utc>>,
    pub detail: Option<String>,
    pub runbook: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sample(t: f64, counters: &[(&str, u64)], gauges: &[(&str, f64)]) -> Sample {
        Sample {
            t,
            counters: counters.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            gauges: gauges.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            buckets: Vec::new(),
            requests: 0,
        }
    }

    fn status(a: &Alerts, name: &str) -> AlertStatus {
        a.report()
            .alerts
            .iter()
            .find(|x| x.name == name)
            .unwrap()
            .state
    }

    fn names(ts: &[Transition]) -> Vec<(&'static str, bool)> {
        ts.iter().map(|t| (t.rule.name, t.firing)).collect()
    }

    /// Feed gauge values every 15 s; return the transitions of each step.
    fn run_gauge(
        name: &str,
        gauge: &str,
        values: &[f64],
    ) -> (Alerts, Vec<Vec<(&'static str, bool)>>) {
        let a = Alerts::new(DEFAULT_INTERVAL, false);
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let ts = a.evaluate(sample(15.0 * (i + 1) as f64, &[], &[(gauge, *v)]), None);
            out.push(names(&ts).into_iter().filter(|(n, _)| *n == name).collect());
        }
        (a, out)
    }

    #[test]
    fn database_down_fires_after_30_seconds_and_resolves() {
        let (a, steps) = run_gauge(
            "DatabaseConnectivityLost",
            "database.up",
            &[1.0, 0.0, 0.0, 0.0, 1.0],
        );
        assert!(steps[1].is_empty(), "pending at first");
        assert!(steps[2].is_empty(), "15 s is not enough");
        assert_eq!(steps[3], vec![("DatabaseConnectivityLost", true)]);
        assert_eq!(steps[4], vec![("DatabaseConnectivityLost", false)]);
        assert_eq!(
            status(&a, "DatabaseConnectivityLost"),
            AlertStatus::Inactive
        );
    }

    #[test]
    fn gauge_alerts_fire_and_resolve() {
        for (name, gauge, bad, good, steps_needed) in [
            (
                "RateLimitAbuseFromOneIp",
                "rate_limit.hits_max_per_ip",
                21.0,
                20.0,
                0,
            ),
            (
                "HighMemoryUsage",
                "process.memory_used_ratio",
                0.85,
                0.5,
                40,
            ),
            (
                "BackupTooOld",
                "backup.last_success_age_seconds",
                100_000.0,
                3600.0,
                0,
            ),
            (
                "CriticalLabUnreviewed",
                "labs.unreviewed_critical",
                1.0,
                0.0,
                120,
            ),
        ] {
            let mut values = vec![bad; steps_needed + 1];
            values.push(good);
            let (_, steps) = run_gauge(name, gauge, &values);
            let fired_at = steps.iter().position(|s| s.contains(&(name, true)));
            assert_eq!(fired_at, Some(steps_needed), "{name}: {steps:?}");
            assert_eq!(steps.last().unwrap(), &vec![(name, false)], "{name}");
        }
        // A missing gauge (no scheduled backups) never fires.
        let a = Alerts::new(DEFAULT_INTERVAL, false);
        a.evaluate(sample(15.0, &[], &[]), None);
        let r = a.report();
        let b = r.alerts.iter().find(|x| x.name == "BackupTooOld").unwrap();
        assert_eq!(b.state, AlertStatus::Inactive);
        assert!(b.detail.as_deref().unwrap_or("").contains("no data"));
    }

    #[test]
    fn writes_failing_needs_attempts_and_no_success() {
        let a = Alerts::new(DEFAULT_INTERVAL, false);
        let step = |t: f64, ok: u64, err: u64| {
            names(&a.evaluate(
                sample(t, &[("write.success", ok), ("write.error", err)], &[]),
                None,
            ))
        };
        assert!(step(15.0, 5, 0).is_empty());
        // Idle for minutes: no attempts, no alert.
        assert!(step(300.0, 5, 0).is_empty());
        // Errors only, but a success is still inside the 2-minute window.
        assert!(step(330.0, 6, 1).is_empty());
        // Two minutes of errors without success: pending, then firing 30 s on.
        assert!(step(460.0, 6, 4).is_empty());
        assert_eq!(step(490.0, 6, 6), vec![("WritesFailing", true)]);
        assert_eq!(step(505.0, 7, 6), vec![("WritesFailing", false)]);
    }

    #[test]
    fn ratio_alerts_fire_and_resolve() {
        // Auth 5xx above 10 % for 2 minutes.
        let a = Alerts::new(DEFAULT_INTERVAL, false);
        let mut fired = None;
        for i in 1..=20u64 {
            let ts = a.evaluate(
                sample(
                    15.0 * i as f64,
                    &[("http.auth.requests", 10 * i), ("http.auth.5xx", 2 * i)],
                    &[],
                ),
                None,
            );
            if names(&ts).contains(&("AuthServerErrorsHigh", true)) {
                fired.get_or_insert(i);
            }
        }
        assert_eq!(
            fired,
            Some(9),
            "pending from the first step, firing 120 s later"
        );
        let mut resolved = false;
        for i in 21..=60u64 {
            let ts = a.evaluate(
                sample(
                    15.0 * i as f64,
                    &[("http.auth.requests", 10 * i), ("http.auth.5xx", 40)],
                    &[],
                ),
                None,
            );
            resolved |= names(&ts).contains(&("AuthServerErrorsHigh", false));
        }
        assert!(resolved);

        // AI refusals: more than half of at least 5 answers.
        let a = Alerts::new(DEFAULT_INTERVAL, false);
        let mut log = Vec::new();
        for i in 1..=30u64 {
            log.extend(names(&a.evaluate(
                sample(
                    15.0 * i as f64,
                    &[
                        ("ai.refused", 3 * i),
                        ("ai.success", i),
                        ("ai.unavailable", 50 * i),
                    ],
                    &[],
                ),
                None,
            )));
        }
        assert_eq!(log, vec![("AiRefusalRateHigh", true)]);
        // Two refusals out of three is too few answers to judge.
        let a = Alerts::new(DEFAULT_INTERVAL, false);
        let mut log = Vec::new();
        for i in 1..=40u64 {
            log.extend(names(&a.evaluate(
                sample(
                    15.0 * i as f64,
                    &[("ai.refused", 2), ("ai.success", 1)],
                    &[],
                ),
                None,
            )));
        }
        assert!(log.is_empty(), "{log:?}");

        // Validation errors: more than 25 % of at least 20 requests.
        let a = Alerts::new(DEFAULT_INTERVAL, false);
        let mut log = Vec::new();
        for i in 1..=30u64 {
            let bad = if i <= 25 { 5 * i } else { 125 };
            log.extend(names(&a.evaluate(
                sample(
                    15.0 * i as f64,
                    &[("http.requests", 10 * i), ("http.validation_error", bad)],
                    &[],
                ),
                None,
            )));
        }
        assert_eq!(log.first(), Some(&("ValidationErrorRateHigh", true)));
    }

    #[test]
    fn audit_failure_fires_at_once_and_resolves_after_the_window() {
        let a = Alerts::new(DEFAULT_INTERVAL, false);
        assert!(a
            .evaluate(sample(15.0, &[("audit.write_failure", 0)], &[]), None)
            .is_empty());
        let ts = a.evaluate(sample(30.0, &[("audit.write_failure", 1)], &[]), None);
        assert_eq!(names(&ts), vec![("AuditWriteFailure", true)]);
        assert!(a
            .evaluate(sample(200.0, &[("audit.write_failure", 1)], &[]), None)
            .is_empty());
        let ts = a.evaluate(sample(340.0, &[("audit.write_failure", 1)], &[]), None);
        assert_eq!(names(&ts), vec![("AuditWriteFailure", false)]);
    }

    #[test]
    fn slow_p95_uses_the_window_not_the_whole_history() {
        let a = Alerts::new(DEFAULT_INTERVAL, false);
        let bounds = crate::metrics::DURATION_BUCKETS;
        // Cumulative counts: `fast` requests under 50 ms, `slow` ones at 2.5 s.
        let mk = |t: f64, fast: u64, slow: u64| {
            let mut s = sample(t, &[], &[]);
            s.buckets = bounds
                .iter()
                .map(|&le| {
                    (
                        le,
                        if le >= 0.05 { fast } else { 0 } + if le >= 2.5 { slow } else { 0 },
                    )
                })
                .collect();
            s.requests = fast + slow;
            s
        };
        let mut log = Vec::new();
        // A long fast history, then five minutes and more of slow requests.
        for i in 1..=40u64 {
            log.extend(names(&a.evaluate(mk(15.0 * i as f64, 1000 * i, 0), None)));
        }
        for i in 41..=80u64 {
            log.extend(names(
                &a.evaluate(mk(15.0 * i as f64, 40_000 + i, 10 * (i - 40)), None),
            ));
        }
        assert_eq!(log, vec![("SlowApiP95", true)]);
        for i in 81..=120u64 {
            log.extend(names(
                &a.evaluate(mk(15.0 * i as f64, 40_000 + 100 * i, 400), None),
            ));
        }
        assert_eq!(log.last(), Some(&("SlowApiP95", false)));
    }

    #[test]
    fn histogram_quantile_matches_prometheus() {
        let b = [(0.1, 50), (0.5, 90), (1.0, 100)];
        assert_eq!(histogram_quantile(0.5, &b, 100), Some(0.1));
        let p95 = histogram_quantile(0.95, &b, 100).unwrap();
        assert!((p95 - 0.75).abs() < 1e-9, "{p95}");
        assert_eq!(histogram_quantile(0.99, &[(1.0, 1)], 10), Some(1.0));
        assert_eq!(histogram_quantile(0.95, &b, 0), None);
    }

    #[test]
    fn ip_hits_are_windowed_and_bounded() {
        let h = IpHits::default();
        for _ in 0..15 {
            h.record("10.0.0.1", 10.0);
        }
        for _ in 0..10 {
            h.record("10.0.0.1", 130.0);
        }
        h.record("10.0.0.2", 130.0);
        assert_eq!(h.max(130.0), (25, Some("10.0.0.1".into())));
        // Six minutes later the first minute has left the window.
        assert_eq!(h.max(370.0).0, 10);
        assert_eq!(h.max(1000.0).0, 0);
        // A flood of distinct addresses stays bounded and keeps the top one.
        for _ in 0..30 {
            h.record("192.0.2.7", 1000.0);
        }
        for i in 0..5000 {
            h.record(&format!("198.51.{}.{}", i / 256, i % 256), 1000.0);
        }
        let b = h.buckets.lock().unwrap();
        assert!(b.iter().all(|(_, m)| m.len() <= IP_CAPACITY));
        drop(b);
        assert_eq!(h.max(1000.0).1.as_deref(), Some("192.0.2.7"));
    }

    #[test]
    fn memory_fields_parse() {
        assert_eq!(
            kib_field("Name: amal\nVmRSS:\t  2048 kB\n", "VmRSS:"),
            Some(2048.0)
        );
        if cfg!(target_os = "linux") {
            let (rss, total) = read_memory().unwrap();
            assert!(rss > 0.0 && rss < total);
        }
    }

    #[test]
    fn webhook_payload_is_alertmanager_shaped() {
        let a = Alerts::new(DEFAULT_INTERVAL, true);
        let t = Transition {
            rule: &RULES[0],
            firing: false,
            value: Some(1.0),
            starts_at: 10.0,
            ends_at: Some(70.0),
            detail: None,
        };
        let p = a.payload(&t);
        assert_eq!(p["status"], "resolved");
        assert_eq!(
            p["alerts"][0]["labels"]["alertname"],
            "DatabaseConnectivityLost"
        );
        assert_eq!(p["alerts"][0]["labels"]["severity"], "critical");
        assert!(p["alerts"][0]["endsAt"].as_str().unwrap().starts_with("20"));
    }

    /// The Prometheus rules file holds the same alerts with the same
    /// expressions, `for` durations, severities and routes.
    #[test]
    fn prometheus_rules_file_matches() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../ops/prometheus/alerts.yml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let mut seen = Vec::new();
        for block in text.split("- alert: ").skip(1) {
            let name = block.lines().next().unwrap().trim().to_string();
            let field = |key: &str| {
                block
                    .lines()
                    .find_map(|l| l.trim().strip_prefix(key))
                    .map(|v| v.trim().trim_matches('\'').to_string())
            };
            seen.push(name.clone());
            if PROMETHEUS_ONLY.contains(&name.as_str()) {
                continue;
            }
            let rule = RULES
                .iter()
                .find(|r| r.name == name)
                .unwrap_or_else(|| panic!("{name} is in alerts.yml but not evaluated by amal"));
            assert_eq!(field("expr:").as_deref(), Some(rule.expr), "{name} expr");
            let for_text = if rule.for_secs % 60 == 0 && rule.for_secs > 0 {
                format!("{}m", rule.for_secs / 60)
            } else {
                format!("{}s", rule.for_secs)
            };
            assert_eq!(field("for:"), Some(for_text), "{name} for");
            assert_eq!(
                field("severity:").as_deref(),
                Some(rule.severity.as_str()),
                "{name} severity"
            );
            assert_eq!(field("route:").as_deref(), Some(rule.route), "{name} route");
            assert!(block.contains(&runbook(rule.name)), "{name} runbook");
        }
        for rule in RULES {
            assert!(
                seen.iter().any(|n| n == rule.name),
                "{} missing from alerts.yml",
                rule.name
            );
        }
    }
}
