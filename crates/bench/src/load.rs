//! The load driver: concurrent clients, each running a weighted mix of
//! operations against one server, recording every HTTP request's latency in
//! a per-client histogram per label (merged at the end, so clients never
//! contend on a lock while measuring).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// What one client needs to talk to the server.
#[derive(Clone)]
pub struct Target {
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
    pub email: String,
    pub password: String,
    /// Patients to read and write (random pick per request)
    pub ids: Arc<Vec<String>>,
    /// The patient with the heavy chart (W3)
    pub heavy: String,
}

/// One operation of a mix; some issue more than one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// GET /api/health
    Health,
    /// GET /api/auth/me
    Me,
    /// GET of an unknown /api path: routing, middleware and a problem
    /// document, no database (the ceiling; /api/health writes a heartbeat)
    NotFound,
    /// GET /api/patients/{id} (audited)
    Read,
    /// GET /Patient/{id} of a FHIR server, no token (the Helios peer's W1)
    FhirRead,
    /// GET /api/patients?q=<prefix>&limit=20 (audited)
    Search,
    /// GET /api/patients/{heavy}/overview (audited)
    Overview,
    /// POST a note draft, then finalize it with If-Match
    Note,
    /// POST a lab result
    Lab,
    /// W4's write: a note (draft + finalize) or a lab, half each
    Write,
    /// POST /api/auth/signin (argon2id)
    Signin,
}

/// Clients that run the same weighted mix.
#[derive(Clone, Debug)]
pub struct Group {
    pub clients: usize,
    pub mix: Vec<(Op, u32)>,
}

/// Latencies (µs) and failures of one label.
pub struct LabelStats {
    pub hist: Histogram<u64>,
    /// status (0 = transport error) -> count
    pub errors: BTreeMap<u16, u64>,
}

impl LabelStats {
    fn new() -> LabelStats {
        LabelStats {
            hist: new_hist(),
            errors: BTreeMap::new(),
        }
    }
    pub fn requests(&self) -> u64 {
        self.hist.len() + self.errors.values().sum::<u64>()
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 120 s, 3 significant digits; the bounds are constants.
    Histogram::new_with_bounds(1, 120_000_000, 3)
        .unwrap_or_else(|_| unreachable!("constant bounds"))
}

/// One client's recorder.
struct Recorder {
    measuring: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    stats: BTreeMap<&'static str, LabelStats>,
}

impl Recorder {
    fn record(&mut self, label: &'static str, status: u16, took: Duration) {
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        let s = self.stats.entry(label).or_insert_with(LabelStats::new);
        // The ceiling's 404 is its expected answer.
        if (200..300).contains(&status) || (label == "404" && status == 404) {
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
            let _ = s.hist.record(us);
        } else {
            *s.errors.entry(status).or_insert(0) += 1;
        }
    }
}

/// Send one request, read its whole body, record it. On success the
/// headers, and the JSON body when `keep` asks for it.
async fn send(
    rec: &mut Recorder,
    label: &'static str,
    req: reqwest::RequestBuilder,
    keep: bool,
) -> Option<(reqwest::header::HeaderMap, Value)> {
    let started = Instant::now();
    let Ok(r) = req.send().await else {
        rec.record(label, 0, started.elapsed());
        return None;
    };
    let status = r.status().as_u16();
    let headers = if keep {
        r.headers().clone()
    } else {
        Default::default()
    };
    let Ok(body) = r.bytes().await else {
        rec.record(label, 0, started.elapsed());
        return None;
    };
    rec.record(label, status, started.elapsed());
    if !(200..300).contains(&status) {
        return None;
    }
    let v = if keep {
        serde_json::from_slice(&body).unwrap_or_default()
    } else {
        Value::Null
    };
    Some((headers, v))
}

/// Name prefixes that exist in the demo clinic (folded, 3 letters).
pub const PREFIXES: &[&str] = &[
    "zar", "quo", "ilv", "mar", "tes", "orv", "yul", "bre", "sel", "dum", "que", "van", "pel",
    "gri", "dun", "fai", "kes", "mor", "ash", "bri",
];

/// LOINC codes of the reference table with a plausible value and unit.
pub const LABS: &[(&str, f64, &str)] = &[
    ("2345-7", 95.0, "mg/dL"),
    ("2160-0", 1.0, "mg/dL"),
    ("2823-3", 4.2, "mmol/L"),
    ("2951-2", 140.0, "mmol/L"),
    ("718-7", 13.5, "g/dL"),
];

pub fn lab_body(rng: &mut StdRng, minutes_ago: i64) -> Value {
    let (code, value, unit) = LABS[rng.gen_range(0..LABS.len())];
    let at = chrono_like_rfc3339(minutes_ago);
    json!({"code": code, "value": value * rng.gen_range(0.8..1.2), "unit": unit, "collectedAt": at})
}

/// An RFC 3339 UTC timestamp `minutes_ago` minutes before now (no chrono
/// dependency: civil-from-days on the Unix clock).
pub fn chrono_like_rfc3339(minutes_ago: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let t = now - minutes_ago * 60;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

pub fn note_body(rng: &mut StdRng) -> Value {
    json!({
        "title": format!("Benchmark visit {}", rng.gen_range(0..1_000_000)),
        "subjective": "Synthetic benchmark note.",
        "plan": "Review in two weeks."
    })
}

/// Draft a note and finalize it outside any measurement (setup).
pub async fn setup_note(t: &Target, rng: &mut StdRng, patient: &str) -> bool {
    let mut rec = Recorder {
        measuring: Arc::new(AtomicBool::new(false)),
        done: Arc::new(AtomicU64::new(0)),
        stats: BTreeMap::new(),
    };
    note(t, &mut rec, rng, patient).await
}

/// Draft a note and finalize it; `If-Match` carries the draft's ETag when
/// the server sends one, otherwise its `version`.
async fn note(t: &Target, rec: &mut Recorder, rng: &mut StdRng, patient: &str) -> bool {
    let draft = t
        .client
        .post(format!("{}/api/patients/{patient}/notes", t.base))
        .bearer_auth(&t.token)
        .json(&note_body(rng));
    let Some((headers, v)) = send(rec, "note draft", draft, true).await else {
        return false;
    };
    let (Some(id), version) = (v["id"].as_str(), v["version"].as_i64().unwrap_or(1)) else {
        return false;
    };
    let if_match = headers
        .get(reqwest::header::ETAG)
        .and_then(|e| e.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| version.to_string());
    let fin = t
        .client
        .post(format!("{}/api/notes/{id}/finalize", t.base))
        .bearer_auth(&t.token)
        .header(reqwest::header::IF_MATCH, if_match);
    send(rec, "note finalize", fin, false).await.is_some()
}

async fn run_op(t: &Target, rec: &mut Recorder, rng: &mut StdRng, op: Op) {
    let pick = |rng: &mut StdRng| t.ids[rng.gen_range(0..t.ids.len())].clone();
    let op = match op {
        Op::Write if rng.gen_bool(0.5) => Op::Note,
        Op::Write => Op::Lab,
        other => other,
    };
    match op {
        Op::Health => {
            let r = t.client.get(format!("{}/api/health", t.base));
            send(rec, "health", r, false).await;
        }
        Op::NotFound => {
            let r = t.client.get(format!("{}/api/bench-no-such-route", t.base));
            send(rec, "404", r, false).await;
        }
        Op::Me => {
            let r = t
                .client
                .get(format!("{}/api/auth/me", t.base))
                .bearer_auth(&t.token);
            send(rec, "me", r, false).await;
        }
        Op::Read => {
            let r = t
                .client
                .get(format!("{}/api/patients/{}", t.base, pick(rng)))
                .bearer_auth(&t.token);
            send(rec, "read", r, false).await;
        }
        Op::FhirRead => {
            let r = t.client.get(format!("{}/Patient/{}", t.base, pick(rng)));
            send(rec, "read", r, false).await;
        }
        Op::Search => {
            let q = PREFIXES[rng.gen_range(0..PREFIXES.len())];
            let r = t
                .client
                .get(format!("{}/api/patients?q={q}&limit=20", t.base))
                .bearer_auth(&t.token);
            send(rec, "search", r, false).await;
        }
        Op::Overview => {
            let r = t
                .client
                .get(format!("{}/api/patients/{}/overview", t.base, t.heavy))
                .bearer_auth(&t.token);
            send(rec, "overview", r, false).await;
        }
        Op::Note | Op::Write => {
            let p = pick(rng);
            note(t, rec, rng, &p).await;
        }
        Op::Lab => {
            let p = pick(rng);
            let ago = rng.gen_range(0..100_000);
            let body = lab_body(rng, ago);
            let r = t
                .client
                .post(format!("{}/api/patients/{p}/labs", t.base))
                .bearer_auth(&t.token)
                .json(&body);
            send(rec, "lab", r, false).await;
        }
        Op::Signin => {
            let r = t
                .client
                .post(format!("{}/api/auth/signin", t.base))
                .json(&json!({"email": t.email, "password": t.password}));
            send(rec, "signin", r, false).await;
        }
    }
}

fn choose(mix: &[(Op, u32)], rng: &mut StdRng) -> Op {
    let total: u32 = mix.iter().map(|m| m.1).sum();
    let mut x = rng.gen_range(0..total.max(1));
    for (op, w) in mix {
        if x < *w {
            return *op;
        }
        x -= w;
    }
    mix.first().map(|m| m.0).unwrap_or(Op::Health)
}

/// The outcome of one run.
pub struct Outcome {
    pub labels: BTreeMap<&'static str, LabelStats>,
    pub seconds: f64,
}

impl Outcome {
    pub fn requests(&self) -> u64 {
        self.labels.values().map(LabelStats::requests).sum()
    }
}

/// Hooks called when measuring starts and ends (CPU sampling).
pub trait Probe {
    fn start(&mut self);
    fn stop(&mut self);
}

/// Run `groups` for `warmup` + `secs` seconds, printing progress each second.
pub async fn run(
    t: &Target,
    groups: &[Group],
    warmup: u64,
    secs: u64,
    probe: &mut dyn Probe,
) -> anyhow::Result<Outcome> {
    let measuring = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(warmup + secs);
    let mut tasks = Vec::new();
    let mut seed = 1u64;
    for g in groups {
        for _ in 0..g.clients {
            seed += 1;
            let (t, mix) = (t.clone(), g.mix.clone());
            let mut rec = Recorder {
                measuring: measuring.clone(),
                done: done.clone(),
                stats: BTreeMap::new(),
            };
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                while Instant::now() < deadline {
                    let op = choose(&mix, &mut rng);
                    run_op(&t, &mut rec, &mut rng, op).await;
                }
                rec.stats
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    probe.start();
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    for s in 1..=secs {
        tokio::time::sleep_until((start + Duration::from_secs(s)).into()).await;
        let n = done.load(Ordering::Relaxed);
        eprint!(
            "\r    {s:>3}/{secs}s {n:>9} requests {:>8.0}/s ",
            n as f64 / start.elapsed().as_secs_f64()
        );
    }
    measuring.store(false, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    probe.stop();
    eprintln!();
    let mut labels: BTreeMap<&'static str, LabelStats> = BTreeMap::new();
    for task in tasks {
        for (label, s) in task.await.context("a client task failed")? {
            let into = labels.entry(label).or_insert_with(LabelStats::new);
            let _ = into.hist.add(&s.hist);
            for (k, v) in s.errors {
                *into.errors.entry(k).or_insert(0) += v;
            }
        }
    }
    Ok(Outcome { labels, seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let s = chrono_like_rfc3339(0);
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
        let year: i32 = s.get(..4).unwrap().parse().unwrap();
        assert!(year >= 2024, "{s}");
    }

    #[test]
    fn the_mix_follows_its_weights() {
        let mix = [(Op::Read, 80), (Op::Search, 15), (Op::Write, 5)];
        let mut rng = StdRng::seed_from_u64(7);
        let mut reads = 0;
        for _ in 0..10_000 {
            if choose(&mix, &mut rng) == Op::Read {
                reads += 1;
            }
        }
        assert!((7_500..8_500).contains(&reads), "{reads}");
    }
}
