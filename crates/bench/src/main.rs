//! `amal-bench`: benchmarks of the `amal` server, as programs (never timed
//! tests).
//!
//! ```sh
//! cargo build --release -p amal -p bench
//! # the whole suite: a fresh demo clinic per engine, W1-W6, one table
//! target/release/amal-bench suite --patients 100000 --engine both
//! # W1 beside the Helios FHIR server serving the same read unaudited
//! target/release/amal-bench suite --only w1 --peer-binary /work/helios/bin/hfs
//! # one scenario against a server you started yourself
//! AMAL_DEMO_PASSWORD=... target/release/amal-bench run --url http://127.0.0.1:8080 --scenario read
//! ```
//!
//! See docs/BENCHMARKS.md for the workloads, the latest table and the
//! machine it was taken on.

mod load;
mod measure;
mod peer;
mod suite;

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use load::{Group, Op, Probe, Target};

#[derive(Parser, Debug)]
#[command(name = "amal-bench", about = "Benchmarks of the amal server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start a release server on a fresh demo clinic per engine, run W1-W6
    /// and the health ceiling, print a table
    Suite(suite::SuiteArgs),
    /// Drive one scenario against a server that is already running
    Run(RunArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// GET /api/health
    Health,
    /// GET of an unknown /api path (404, no database)
    NotFound,
    /// POST /api/auth/signin (argon2id on every request)
    Signin,
    /// GET /api/auth/me (token check + session lookup)
    Me,
    /// GET /api/patients/{id} (audited read)
    Read,
    /// GET /api/patients/{id}/overview of the first listed patient
    Overview,
    /// GET /api/patients?q=<prefix> (audited name-prefix search)
    Search,
    /// Note draft + finalize, or a lab result
    Write,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value = "provider@demo.amal.test")]
    email: String,
    #[arg(long, env = "AMAL_DEMO_PASSWORD")]
    password: String,
    #[arg(long, value_enum, default_value = "read")]
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

struct NoProbe;
impl Probe for NoProbe {
    fn start(&mut self) {}
    fn stop(&mut self) {}
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
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
    let v: Value = client
        .get(format!("{}/api/patients?limit=200", a.url))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let ids: Vec<String> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str().map(str::to_string))
        .collect();
    let needs_ids = matches!(
        a.scenario,
        Scenario::Read | Scenario::Overview | Scenario::Write
    );
    if needs_ids && ids.is_empty() {
        bail!("no patients to read; start `amal demo` first");
    }
    let op = match a.scenario {
        Scenario::Health => Op::Health,
        Scenario::NotFound => Op::NotFound,
        Scenario::Signin => Op::Signin,
        Scenario::Me => Op::Me,
        Scenario::Read => Op::Read,
        Scenario::Overview => Op::Overview,
        Scenario::Search => Op::Search,
        Scenario::Write => Op::Write,
    };
    let t = Target {
        client,
        base: a.url.clone(),
        token,
        email: a.email.clone(),
        password: a.password.clone(),
        heavy: ids.first().cloned().unwrap_or_default(),
        ids: Arc::new(ids),
    };
    eprintln!(
        "{:?}: {} clients, warm-up {}s, measuring {}s against {}",
        a.scenario, a.concurrency, a.warmup, a.duration, a.url
    );
    let groups = [Group {
        clients: a.concurrency,
        mix: vec![(op, 1)],
    }];
    let out = load::run(&t, &groups, a.warmup, a.duration, &mut NoProbe).await?;
    for (label, s) in &out.labels {
        let ms = |q: f64| s.hist.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "scenario={:?} request={label} clients={} ok={} errors={:?} throughput={:.0}/s p50={:.2}ms p95={:.2}ms p99={:.2}ms max={:.2}ms",
            a.scenario,
            a.concurrency,
            s.hist.len(),
            s.errors,
            s.hist.len() as f64 / out.seconds,
            ms(0.5),
            ms(0.95),
            ms(0.99),
            s.hist.max() as f64 / 1000.0
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Suite(a) => suite::suite(a).await,
        Cmd::Run(a) => run(a).await,
    }
}
