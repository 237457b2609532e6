//! `amal-bench`: drive a running `amal` server with concurrent clients and
//! report throughput and latency percentiles. Start the server with raised
//! rate limits (see docs/BENCHMARKS.md), then for example:
//!
//! ```sh
//! amal-bench --url http://127.0.0.1:8080 --scenario patient --concurrency 32 --duration 15
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// POST /api/auth/signin (argon2id on every request)
    Signin,
    /// GET /api/auth/me (token check + session lookup)
    Me,
    /// GET /api/patients/{id} (audited read)
    Patient,
    /// GET /api/patients/{id}/overview (audited chart overview)
    Overview,
    /// GET /api/patients?q=<prefix> (audited name-prefix search)
    Search,
}

#[derive(Parser, Debug)]
#[command(
    name = "amal-bench",
    about = "Load generator for a running amal server"
)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value = "provider@demo.amal.test")]
    email: String,
    #[arg(long, env = "AMAL_DEMO_PASSWORD")]
    password: String,
    #[arg(long, value_enum, default_value = "patient")]
    scenario: Scenario,
    /// Concurrent clients
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds (after the warm-up)
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Warm-up seconds (not measured)
    #[arg(long, default_value_t = 2)]
    warmup: u64,
}

struct Shared {
    hist: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    errors: Mutex<std::collections::BTreeMap<u16, u64>>,
    measuring: std::sync::atomic::AtomicBool,
}

/// Name prefixes that exist in the demo clinic (folded, 3 letters).
const PREFIXES: &[&str] = &[
    "zar", "quo", "ilv", "mar", "tes", "orv", "yul", "bre", "sel", "dum", "que", "van", "pel",
    "gri", "dun", "fai", "kes", "mor", "ash", "bri",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency * 2)
        .build()?;
    let signin = client
        .post(format!("{}/api/auth/signin", a.url))
        .json(&json!({"email": a.email, "password": a.password}))
        .send()
        .await
        .context("cannot reach the server")?;
    if !signin.status().is_success() {
        bail!("sign-in failed with {}", signin.status());
    }
    let token = signin.json::<Value>().await?["accessToken"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ids: Vec<String> = match a.scenario {
        Scenario::Patient | Scenario::Overview => {
            let v: Value = client
                .get(format!("{}/api/patients?limit=200", a.url))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            v["items"]
                .as_array()
                .map(|xs| {
                    xs.iter()
                        .filter_map(|p| p["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => vec![],
    };
    if matches!(a.scenario, Scenario::Patient | Scenario::Overview) && ids.is_empty() {
        bail!("no patients to read; start `amal demo` first");
    }
    let shared = Arc::new(Shared {
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        ok: AtomicU64::new(0),
        errors: Mutex::new(Default::default()),
        measuring: false.into(),
    });
    let deadline = Instant::now() + Duration::from_secs(a.warmup + a.duration);
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (client, shared, ids, token) =
            (client.clone(), shared.clone(), ids.clone(), token.clone());
        let (url, scenario, email, password) = (
            a.url.clone(),
            a.scenario,
            a.email.clone(),
            a.password.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let req = {
                    let mut rng = rand::thread_rng();
                    match scenario {
                        Scenario::Signin => client
                            .post(format!("{url}/api/auth/signin"))
                            .json(&json!({"email": email, "password": password})),
                        Scenario::Me => {
                            client.get(format!("{url}/api/auth/me")).bearer_auth(&token)
                        }
                        Scenario::Patient => client
                            .get(format!(
                                "{url}/api/patients/{}",
                                ids[rng.gen_range(0..ids.len())]
                            ))
                            .bearer_auth(&token),
                        Scenario::Overview => client
                            .get(format!(
                                "{url}/api/patients/{}/overview",
                                ids[rng.gen_range(0..ids.len())]
                            ))
                            .bearer_auth(&token),
                        Scenario::Search => client
                            .get(format!(
                                "{url}/api/patients?q={}&limit=20",
                                PREFIXES[rng.gen_range(0..PREFIXES.len())]
                            ))
                            .bearer_auth(&token),
                    }
                };
                let started = Instant::now();
                let status = match req.send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                if !shared.measuring.load(Ordering::Relaxed) {
                    continue;
                }
                if (200..300).contains(&status) {
                    shared.ok.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut h) = shared.hist.lock() {
                        let _ = h.record(
                            u64::try_from(started.elapsed().as_micros().max(1)).unwrap_or(u64::MAX),
                        );
                    }
                } else if let Ok(mut e) = shared.errors.lock() {
                    *e.entry(status).or_insert(0) += 1;
                }
            }
        }));
    }
    eprintln!(
        "{:?}: {} clients, warm-up {}s, measuring {}s against {}",
        a.scenario, a.concurrency, a.warmup, a.duration, a.url
    );
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    for s in 1..=a.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let done = shared.ok.load(Ordering::Relaxed);
        eprintln!(
            "  {s:>3}s  {done:>9} ok  {:>9.0} req/s",
            done as f64 / start.elapsed().as_secs_f64()
        );
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let ok = shared.ok.load(Ordering::Relaxed);
    let h = shared
        .hist
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram poisoned"))?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    println!(
        "scenario={:?} clients={} requests={} errors={:?} throughput={:.0}/s p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        a.scenario, a.concurrency, ok, errors, ok as f64 / secs, ms(0.5), ms(0.9), ms(0.99), h.max() as f64 / 1000.0
    );
    Ok(())
}
