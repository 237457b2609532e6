//! `amal-bench suite`: start a real release server (`amal demo`, which
//! generates the clinic and then runs the same `server::serve` as
//! `amal serve`) on a fresh database per engine, build the heavy chart of
//! W3 through the API, run W1-W6 and the health ceiling, and print one table
//! (with `--peer-binary`, also W1 against the Helios peer of peer.rs).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::load::{self, Group, Op, Target};
use crate::measure::{loadavg, measured, proc_kib, terminate, Plan, Row, W1_IDS};
use crate::peer::{self, Peer};

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
    Both,
}

#[derive(clap::Args, Debug)]
pub struct SuiteArgs {
    /// Patients the demo generator creates
    #[arg(long, default_value_t = 100_000)]
    pub(crate) patients: usize,
    /// Database engine(s)
    #[arg(long, value_enum, default_value = "both")]
    engine: Engine,
    /// PostgreSQL server URL (its `postgres` database); the suite creates
    /// and drops a fresh database `amal_bench_<pid>` there with psql
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_admin_url: String,
    /// The `amal` binary (default: `amal` next to this program)
    #[arg(long)]
    amal_binary: Option<PathBuf>,
    /// Concurrent clients of each workload
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Sign-in clients of W6 (beside W1's clients)
    #[arg(long, default_value_t = 4)]
    signin_clients: usize,
    /// Measured seconds per workload
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// Warm-up seconds per workload (not measured)
    #[arg(long, default_value_t = 2)]
    pub(crate) warmup: u64,
    /// Notes on W3's heavy chart
    #[arg(long, default_value_t = 500)]
    heavy_notes: usize,
    /// Lab results on W3's heavy chart
    #[arg(long, default_value_t = 2_000)]
    heavy_labs: usize,
    /// Only these workloads (comma-separated: health,w1,w2,w3,w4,w5,w6)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// A Helios FHIR server binary (`hfs`) to run as W1's peer: started on a
    /// fresh SQLite file, loaded with patients through its FHIR API, and
    /// read with W1's clients right after each engine's W1
    #[arg(long)]
    pub(crate) peer_binary: Option<PathBuf>,
}

/// Every limit class raised so the benchmark measures the server, not the
/// limiter (the suite says so when it starts).
const RAISED: &str = "1000000000/60s";
const PASSWORD: &str = "bench password 2026";
impl SuiteArgs {
    fn plan(&self) -> Plan {
        Plan {
            clients: self.concurrency,
            warmup: self.warmup,
            duration: self.duration,
        }
    }
}

/// The running server under test.
struct Server {
    child: Child,
    base: String,
    pid: u32,
    db_name: Option<String>,
}

impl Server {
    fn start(a: &SuiteArgs, engine: Engine, amal: &PathBuf) -> anyhow::Result<Server> {
        let mut cmd = Command::new(amal);
        cmd.args(["demo", "--patients", &a.patients.to_string()])
            .args(["--password", PASSWORD])
            .env("AMAL_BIND", "127.0.0.1:0")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for class in ["AUTH", "WRITE", "AI", "READ"] {
            cmd.env(format!("AMAL_RATE_LIMIT_{class}"), RAISED);
        }
        cmd.env_remove("DATABASE_URL");
        let mut db_name = None;
        if engine == Engine::Postgres {
            let name = format!("amal_bench_{}", std::process::id());
            psql(&a.pg_admin_url, &format!("DROP DATABASE IF EXISTS {name}"))?;
            psql(&a.pg_admin_url, &format!("CREATE DATABASE {name}"))?;
            cmd.env("DATABASE_URL", with_database(&a.pg_admin_url, &name));
            db_name = Some(name);
        }
        eprintln!(
            "==> {engine:?}: `amal demo --patients {}` (rate limits raised: AMAL_RATE_LIMIT_{{AUTH,WRITE,AI,READ}}={RAISED}, LOG_LEVEL=warn)",
            a.patients
        );
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", amal.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("running at ").nth(1) {
                    let _ = tx.send(rest.trim_end_matches('/').to_string());
                }
            }
        });
        let started = Instant::now();
        let base = loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(b) => break b,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(st) = child.try_wait()? {
                        bail!("amal demo exited with {st} before listening");
                    }
                    if started.elapsed() > Duration::from_secs(3600) {
                        bail!("amal demo did not start listening within an hour");
                    }
                }
                Err(_) => bail!("amal demo closed its output before listening"),
            }
        };
        eprintln!(
            "    listening at {base} (pid {pid}) after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(Server {
            child,
            base,
            pid,
            db_name,
        })
    }

    fn stop(mut self, pg_admin_url: &str) {
        // SIGTERM lets the demo delete its scratch folder.
        terminate(&mut self.child);
        if let Some(name) = self.db_name.take() {
            let _ = psql(pg_admin_url, &format!("DROP DATABASE IF EXISTS {name}"));
        }
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let st = Command::new("psql")
        .args([url, "-qAtc", sql])
        .status()
        .context("cannot run psql (apt-get install postgresql-client)")?;
    if !st.success() {
        bail!("psql failed: {sql}");
    }
    Ok(())
}

/// `postgres://u@h:p/db?x` with its database replaced.
fn with_database(url: &str, db: &str) -> String {
    let (head, query) = url.split_once('?').unwrap_or((url, ""));
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head.get(scheme_end..).and_then(|rest| rest.find('/')) {
        Some(i) => head.get(..scheme_end + i).unwrap_or(head),
        None => head,
    };
    if query.is_empty() {
        format!("{base}/{db}")
    } else {
        format!("{base}/{db}?{query}")
    }
}

async fn sign_in(client: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<String> {
    let r = client
        .post(format!("{base}/api/auth/signin"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("sign-in as {email} failed with {}", r.status());
    }
    let v: Value = r.json().await?;
    Ok(v["accessToken"].as_str().unwrap_or_default().to_string())
}

/// Up to `want` patient ids, page by page.
async fn patient_ids(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    want: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    while ids.len() < want {
        let mut url = format!("{base}/api/patients?limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let v: Value = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for p in v["items"].as_array().into_iter().flatten() {
            if let Some(id) = p["id"].as_str() {
                ids.push(id.to_string());
            }
        }
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    if ids.is_empty() {
        bail!("the demo clinic has no patients");
    }
    Ok(ids)
}

/// W3's patient: registered, then `notes` finalized notes and `labs` lab
/// results through the API, 16 at a time.
async fn heavy_chart(t: &Target, notes: usize, labs: usize) -> anyhow::Result<String> {
    let v: Value = t
        .client
        .post(format!("{}/api/patients", t.base))
        .bearer_auth(&t.token)
        .json(
            &json!({"givenName": "Heavy", "familyName": "Chartbench", "birthDate": "1950-01-01",
                      "sex": "female", "confirmDuplicate": true}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = v["id"].as_str().context("no patient id")?.to_string();
    let total = notes + labs;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = 16;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (t, id, done, failed) = (t.clone(), id.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(1000 + w as u64);
            let mut i = w;
            while i < total {
                let ok = if i < notes {
                    load::setup_note(&t, &mut rng, &id).await
                } else {
                    let body = load::lab_body(&mut rng, i64::try_from(i).unwrap_or(0) * 30);
                    t.client
                        .post(format!("{}/api/patients/{id}/labs", t.base))
                        .bearer_auth(&t.token)
                        .json(&body)
                        .send()
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false)
                };
                if !ok {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i += workers;
            }
        }));
    }
    let started = Instant::now();
    loop {
        let n = done.load(std::sync::atomic::Ordering::Relaxed);
        eprint!("\r    heavy chart: {n}/{total} notes and labs");
        if n >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for t in tasks {
        t.await?;
    }
    eprintln!(" in {:.1}s", started.elapsed().as_secs_f64());
    let f = failed.load(std::sync::atomic::Ordering::Relaxed);
    if f > 0 {
        bail!("{f} of {total} heavy-chart writes failed");
    }
    Ok(id)
}

fn workloads(a: &SuiteArgs) -> Vec<(&'static str, String, Vec<Group>)> {
    let c = a.concurrency;
    let g = |clients, mix: Vec<(Op, u32)>| Group { clients, mix };
    let mut w = vec![
        (
            "health",
            "health".to_string(),
            vec![g(c, vec![(Op::Health, 1)])],
        ),
        ("w1", "W1 read".to_string(), vec![g(c, vec![(Op::Read, 1)])]),
    ];
    for n in [1, 8, c] {
        w.push((
            "w2",
            format!("W2 search ({n} clients)"),
            vec![g(n, vec![(Op::Search, 1)])],
        ));
    }
    w.push((
        "w3",
        "W3 overview".into(),
        vec![g(c, vec![(Op::Overview, 1)])],
    ));
    w.push(("w4", "W4 writes".into(), vec![g(c, vec![(Op::Write, 1)])]));
    w.push((
        "w5",
        "W5 mixed 80/15/5".into(),
        vec![g(c, vec![(Op::Read, 80), (Op::Search, 15), (Op::Write, 5)])],
    ));
    w.push((
        "w6",
        "W6 sign-in storm + W1".into(),
        vec![
            g(c, vec![(Op::Read, 1)]),
            g(a.signin_clients, vec![(Op::Signin, 1)]),
        ],
    ));
    w
}

async fn one_engine(
    a: &SuiteArgs,
    engine: Engine,
    amal: &PathBuf,
    peer: Option<&Peer>,
) -> anyhow::Result<Vec<Row>> {
    let server = Server::start(a, engine, amal)?;
    let result = measure(a, engine, &server, peer).await;
    let peak = proc_kib(server.pid, "VmHWM:");
    server.stop(&a.pg_admin_url);
    let mut rows = result?;
    eprintln!(
        "    {engine:?}: server peak RSS {:.1} MiB",
        peak as f64 / 1024.0
    );
    rows.push(Row {
        engine: format!("{engine:?}"),
        workload: "server peak RSS (VmHWM)".into(),
        rss_mib: peak as f64 / 1024.0,
        load: loadavg(),
        ..Row::empty()
    });
    Ok(rows)
}

async fn measure(
    a: &SuiteArgs,
    engine: Engine,
    server: &Server,
    peer: Option<&Peer>,
) -> anyhow::Result<Vec<Row>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host((a.concurrency + a.signin_clients) * 2)
        .build()?;
    let email = "provider@demo.amal.test".to_string();
    let token = sign_in(&client, &server.base, &email).await?;
    let ids = patient_ids(&client, &server.base, &token, W1_IDS).await?;
    eprintln!("    {} patient ids to read and write", ids.len());
    let mut t = Target {
        client,
        base: server.base.clone(),
        token,
        email,
        password: PASSWORD.into(),
        ids: Arc::new(ids),
        heavy: String::new(),
    };
    let wanted = |key: &str| a.only.is_empty() || a.only.iter().any(|o| o == key);
    if wanted("w3") {
        t.heavy = heavy_chart(&t, a.heavy_notes, a.heavy_labs).await?;
    }
    let mut rows = Vec::new();
    for (key, name, groups) in workloads(a) {
        if !wanted(key) {
            continue;
        }
        rows.extend(
            measured(
                &a.plan(),
                &format!("{engine:?}"),
                &name,
                &t,
                &groups,
                server.pid,
            )
            .await?,
        );
        if let (Some(peer), "w1") = (peer, key) {
            rows.extend(peer.w1(&a.plan()).await?);
        }
    }
    Ok(rows)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    format!(
        "{cores} cores ({cpu}), {:.1} GiB RAM, load generator on the same machine",
        mem / 1024.0 / 1024.0
    )
}

pub async fn suite(a: SuiteArgs) -> anyhow::Result<()> {
    let w1_wanted = a.only.is_empty() || a.only.iter().any(|o| o == "w1");
    if a.peer_binary.is_some() && !w1_wanted {
        bail!("--peer-binary is compared with W1: add w1 to --only");
    }
    let amal = match &a.amal_binary {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("amal"),
    };
    if !amal.exists() {
        bail!(
            "{} not found: `cargo build --release -p amal -p bench` first, or give --amal-binary",
            amal.display()
        );
    }
    let engines = match a.engine {
        Engine::Both => vec![Engine::Sqlite, Engine::Postgres],
        e => vec![e],
    };
    let machine = machine();
    eprintln!("amal-bench suite on {machine}; load average {}", loadavg());
    // The peer first: a binary that does not start fails the run in
    // seconds, not after the demo clinic has been generated. Dropping it
    // (also on an error below) stops it.
    let peer = match &a.peer_binary {
        Some(bin) => Some(Peer::start_loaded(bin, a.patients).await?),
        None => None,
    };
    let mut rows = Vec::new();
    for e in engines {
        rows.extend(one_engine(&a, e, &amal, peer.as_ref()).await?);
    }
    println!();
    println!(
        "{} patients, {} clients per workload (W2 also 1 and 8; W6 adds {} sign-in clients), {}s measured after {}s warm-up; {machine}",
        a.patients, a.concurrency, a.signin_clients, a.duration, a.warmup
    );
    if let Some(p) = &peer {
        println!();
        println!("{}", p.title());
    }
    println!();
    println!("| engine | workload | requests of | clients | ok/s | p50 ms | p95 ms | p99 ms | max ms | errors | server CPU s / 1k req | RSS MiB | load avg |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        if r.requests == 0 && r.label.is_empty() {
            println!(
                "| {} | {} | | | | | | | | | | {:.0} | {} |",
                r.engine, r.workload, r.rss_mib, r.load
            );
            continue;
        }
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.3} | {:.0} | {} |",
            r.engine,
            r.workload,
            r.label,
            r.clients,
            r.per_sec,
            r.p50,
            r.p95,
            r.p99,
            r.max,
            if r.errors.is_empty() { "0" } else { &r.errors },
            r.cpu_per_1k,
            r.rss_mib,
            r.load
        );
    }
    let ratios = peer::ratios(&rows);
    if !ratios.is_empty() {
        println!();
    }
    for r in ratios {
        println!("{r}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_postgres_url_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "b"),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "b"), "postgres://h:1/b");
    }
}
