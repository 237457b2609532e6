//! The Helios FHIR server (`hfs`) as W1's peer: started on a fresh SQLite
//! file with neither auth nor audit, loaded with Patients through its own
//! FHIR API, then read by W1's load generator (`GET /Patient/{id}`) right
//! after each engine's W1, so both share the machine's noise of the moment.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::load::{Group, Op, Target};
use crate::measure::{self, Plan, Row, W1_IDS};

/// The workload name of the peer's rows.
pub const PEER_W1: &str = "Helios peer W1 read (no auth, no audit)";
/// Helios seeds its conformance resources before it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Patients per transaction Bundle, and Bundles in flight.
const BUNDLE: usize = 500;
const LOADERS: usize = 2;

/// A running Helios; dropping it stops the process and deletes its folder.
pub struct Peer {
    child: Child,
    binary: PathBuf,
    dir: PathBuf,
    base: String,
    pid: u32,
    /// Patients in its database and the ids W1 reads (evenly spread).
    loaded: usize,
    ids: Arc<Vec<String>>,
}

/// `binary` on `dir/helios.db` at 127.0.0.1:`port`. Auth and audit are off
/// by default in Helios 0.2.7; they are set anyway so an environment that
/// turns them on cannot change what is measured.
pub fn helios_command(binary: &Path, port: u16, dir: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--database-url")
        .arg(dir.join("helios.db"))
        .args(["--log-level", "warn"])
        .env("HFS_AUTH_ENABLED", "false")
        .env("HFS_AUDIT_BACKEND", "none")
        .env("HFS_BASE_URL", format!("http://127.0.0.1:{port}"))
        // amal's PostgreSQL URL must not become Helios's database.
        .env_remove("DATABASE_URL")
        .env_remove("HFS_DATABASE_URL")
        // Its ./data and ./exports land in the scratch folder.
        .current_dir(dir);
    cmd
}

/// A port free now (the OS picks it; Helios binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    Ok(l.local_addr()?.port())
}

impl Peer {
    /// Start Helios, wait until it is ready, load the suite's patients.
    pub async fn start_loaded(binary: &Path, patients: usize) -> anyhow::Result<Peer> {
        let mut peer = Peer::start(binary, READY_TIMEOUT).await?;
        peer.load(patients).await?;
        Ok(peer)
    }

    async fn start(binary: &Path, timeout: Duration) -> anyhow::Result<Peer> {
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("amal-bench-helios-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let cmd = helios_command(binary, port, &dir);
        Peer::launch(cmd, binary, port, dir, timeout).await
    }

    /// Spawn `cmd` (its output to `dir/helios.log`) and poll its readiness
    /// route; on any failure the returned error names the binary and shows
    /// the end of its output, and the process is stopped.
    async fn launch(
        mut cmd: Command,
        binary: &Path,
        port: u16,
        dir: PathBuf,
        timeout: Duration,
    ) -> anyhow::Result<Peer> {
        let log = File::create(dir.join("helios.log"))?;
        cmd.stdout(log.try_clone()?).stderr(log);
        eprintln!(
            "==> Helios peer: {} on {} at 127.0.0.1:{port}",
            binary.display(),
            dir.join("helios.db").display()
        );
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                bail!("cannot start the peer {}: {e}", binary.display());
            }
        };
        let mut peer = Peer {
            pid: child.id(),
            child,
            binary: binary.to_path_buf(),
            dir,
            base: format!("http://127.0.0.1:{port}"),
            loaded: 0,
            ids: Arc::new(Vec::new()),
        };
        peer.wait_ready(timeout).await?;
        Ok(peer)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/_readiness", self.base);
        let started = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait()? {
                bail!(
                    "the peer {} exited with {st} before it was ready at {url}; its output:\n{}",
                    self.binary.display(),
                    self.output_tail()
                );
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    eprintln!(
                        "    ready at {} (pid {}) after {:.1}s",
                        self.base,
                        self.pid,
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
            }
            if started.elapsed() > timeout {
                bail!(
                    "the peer {} (pid {}) was not ready at {url} within {}s; its output:\n{}",
                    self.binary.display(),
                    self.pid,
                    timeout.as_secs(),
                    self.output_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The last lines Helios wrote.
    fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("helios.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines.get(lines.len().saturating_sub(20)..).unwrap_or(&[]);
        if tail.is_empty() {
            "(nothing)".into()
        } else {
            tail.join("\n")
        }
    }

    /// PUT `n` Patients in transaction Bundles, `LOADERS` at a time.
    async fn load(&mut self, n: usize) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let next = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..LOADERS {
            let (client, base, next, done) = (
                client.clone(),
                self.base.clone(),
                next.clone(),
                done.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let from = next.fetch_add(BUNDLE, Ordering::Relaxed);
                    if from >= n {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let to = (from + BUNDLE).min(n);
                    let r = client
                        .post(format!("{base}/"))
                        .header(reqwest::header::CONTENT_TYPE, "application/fhir+json")
                        .json(&bundle(from..to))
                        .send()
                        .await?;
                    if !r.status().is_success() {
                        let status = r.status();
                        let body: String = r
                            .text()
                            .await
                            .unwrap_or_default()
                            .chars()
                            .take(500)
                            .collect();
                        bail!("Patients {from}..{to}: transaction answered {status}: {body}");
                    }
                    done.fetch_add(to - from, Ordering::Relaxed);
                }
            }));
        }
        loop {
            let d = done.load(Ordering::Relaxed);
            eprint!("\r    Helios: {d}/{n} Patients loaded");
            if d >= n || tasks.iter().all(|t| t.is_finished()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for t in tasks {
            t.await?
                .with_context(|| format!("loading the peer {}", self.binary.display()))?;
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            " in {secs:.1}s ({:.0}/s)",
            n as f64 / secs.max(f64::EPSILON)
        );
        self.loaded = n;
        self.ids = Arc::new(spread(n, W1_IDS).map(patient_id).collect());
        if self.ids.is_empty() {
            bail!("no patients to load into the peer (--patients 0)");
        }
        Ok(())
    }

    /// W1's clients, warm-up and duration against `GET /Patient/{id}`.
    pub async fn w1(&self, plan: &Plan) -> anyhow::Result<Vec<Row>> {
        let t = Target {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(plan.clients * 2)
                .build()?,
            base: self.base.clone(),
            token: String::new(),
            email: String::new(),
            password: String::new(),
            ids: self.ids.clone(),
            heavy: String::new(),
        };
        let groups = [Group {
            clients: plan.clients,
            mix: vec![(Op::FhirRead, 1)],
        }];
        measure::measured(plan, "Helios (SQLite)", PEER_W1, &t, &groups, self.pid).await
    }

    /// The line under the table's title.
    pub fn title(&self) -> String {
        format!(
            "Helios peer: {}, SQLite, no auth, no audit; {} Patients loaded through its FHIR API (transaction Bundles of {BUNDLE}), W1 reads {} of them (W1 on amal reads {W1_IDS} of its patients)",
            self.binary.display(),
            self.loaded,
            self.ids.len()
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        measure::terminate(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `k` of `0..n`, evenly spaced (all of them when `n <= k`).
fn spread(n: usize, k: usize) -> impl Iterator<Item = usize> {
    let k = k.min(n);
    (0..k).map(move |i| i * n / k)
}

fn patient_id(i: usize) -> String {
    format!("amal-bench-{i}")
}

/// A transaction of PUTs: Patients about the size of a demo patient (MRN,
/// name, sex, birth date, phone).
fn bundle(range: std::ops::Range<usize>) -> Value {
    const GIVEN: &[&str] = &["Amina", "Brann", "Celia", "Dorin", "Esme", "Faris"];
    const FAMILY: &[&str] = &["Zarkov", "Quorin", "Ilvane", "Marlow", "Tessaly"];
    let entries: Vec<Value> = range
        .map(|i| {
            let id = patient_id(i);
            json!({
                "resource": {
                    "resourceType": "Patient",
                    "id": id,
                    "identifier": [{"system": "urn:amal-bench:mrn", "value": format!("MRN{i:08}")}],
                    "name": [{"family": FAMILY[i % FAMILY.len()], "given": [GIVEN[i % GIVEN.len()]]}],
                    "gender": if i % 2 == 0 { "female" } else { "male" },
                    "birthDate": format!("{}-{:02}-{:02}", 1930 + i % 90, 1 + i % 12, 1 + i % 28),
                    "telecom": [{"system": "phone", "value": format!("555 01{:02}", i % 100)}]
                },
                "request": {"method": "PUT", "url": format!("Patient/{id}")}
            })
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// "amal W1 ok/s ÷ Helios ok/s" for each amal W1 row followed by a peer row.
pub fn ratios(rows: &[Row]) -> Vec<String> {
    rows.windows(2)
        .filter_map(|w| match w {
            [amal, peer] if amal.workload == "W1 read" && peer.workload == PEER_W1 => Some(format!(
                "W1 ratio ({}): amal {:.0} ok/s (p99 {:.2} ms) ÷ Helios {:.0} ok/s (p99 {:.2} ms) = {:.2}",
                amal.engine,
                amal.per_sec,
                amal.p99,
                peer.per_sec,
                peer.p99,
                amal.per_sec / peer.per_sec.max(f64::EPSILON)
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_names_port_database_and_turns_auth_and_audit_off() {
        let dir = Path::new("/tmp/peer-test");
        let cmd = helios_command(Path::new("/opt/hfs"), 4567, dir);
        assert_eq!(cmd.get_program(), "/opt/hfs");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].to_string()
        };
        assert_eq!(after("--port"), "4567");
        assert_eq!(after("--host"), "127.0.0.1");
        assert_eq!(after("--database-url"), "/tmp/peer-test/helios.db");
        let env: Vec<_> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().to_string(),
                    v.map(|v| v.to_string_lossy().to_string()),
                )
            })
            .collect();
        for (k, v) in [
            ("HFS_AUTH_ENABLED", Some("false")),
            ("HFS_AUDIT_BACKEND", Some("none")),
            ("DATABASE_URL", None),
        ] {
            assert!(
                env.contains(&(k.to_string(), v.map(str::to_string))),
                "{k}: {env:?}"
            );
        }
        assert_eq!(cmd.get_current_dir(), Some(dir));
    }

    #[test]
    fn reads_are_spread_over_the_loaded_patients() {
        assert_eq!(spread(10, 4).collect::<Vec<_>>(), [0, 2, 5, 7]);
        assert_eq!(spread(3, 2000).count(), 3);
        let b = bundle(5..7);
        assert_eq!(b["entry"].as_array().unwrap().len(), 2);
        assert_eq!(b["entry"][1]["request"]["url"], "Patient/amal-bench-6");
        assert_eq!(b["entry"][1]["resource"]["id"], "amal-bench-6");
    }

    fn gone(pid: u32) -> bool {
        // Reaped: no /proc entry (or, if the pid was reused, not our child).
        !Path::new(&format!("/proc/{pid}")).exists()
    }

    #[tokio::test]
    async fn a_binary_that_never_listens_fails_after_the_timeout_and_is_stopped() {
        let port = free_port().unwrap();
        let dir = std::env::temp_dir().join(format!("amal-bench-peer-test-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("60");
        let started = Instant::now();
        let err = match Peer::launch(
            cmd,
            Path::new("/bin/sleep"),
            port,
            dir.clone(),
            Duration::from_secs(1),
        )
        .await
        {
            Ok(_) => panic!("sleep became ready"),
            Err(e) => e.to_string(),
        };
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(
            err.contains("/bin/sleep") && err.contains("not ready"),
            "{err}"
        );
        let pid: u32 = err
            .split("(pid ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(gone(pid), "{err}");
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn a_binary_that_exits_is_named_with_its_output() {
        // GNU sleep refuses Helios's flags and exits 1.
        let err = match Peer::start(Path::new("/bin/sleep"), Duration::from_secs(30)).await {
            Ok(_) => panic!("sleep became ready"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("/bin/sleep") && err.contains("exited"),
            "{err}"
        );
        assert!(err.contains("sleep:"), "its own message is shown: {err}");
    }

    #[tokio::test]
    async fn a_missing_binary_is_named() {
        let err = match Peer::start(Path::new("/nonexistent/hfs"), Duration::from_secs(5)).await {
            Ok(_) => panic!("started"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("cannot start the peer /nonexistent/hfs"),
            "{err}"
        );
    }

    #[test]
    fn the_ratio_pairs_amal_w1_with_the_peer_row_after_it() {
        let row = |engine: &str, workload: &str, per_sec, p99| {
            let mut r = Row::empty();
            (r.engine, r.workload) = (engine.into(), workload.into());
            (r.per_sec, r.p99) = (per_sec, p99);
            r
        };
        let rows = [
            row("Sqlite", "health", 1.0, 1.0),
            row("Sqlite", "W1 read", 5000.0, 20.0),
            row("Helios (SQLite)", PEER_W1, 20000.0, 4.0),
            row("Postgres", "W1 read", 3000.0, 30.0),
        ];
        let r = ratios(&rows);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with("W1 ratio (Sqlite): amal 5000 ok/s"),
            "{}",
            r[0]
        );
        assert!(r[0].ends_with("= 0.25"), "{}", r[0]);
    }
}
