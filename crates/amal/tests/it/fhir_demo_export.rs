//! A system-level bulk export of a demo clinic (`amal demo`, the real
//! binary; 300 patients so CI stays fast — docs/INTEROP.md has the
//! 10,000-patient numbers): every NDJSON line validates with the
//! independent validator, and each file holds what the database holds.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::fhir::{files, kick_off, manifest, validate_fhir};
use crate::helpers::*;

const PATIENTS: usize = 300;

/// `SELECT count` on the demo's own database.
async fn count(url: &str, sql: &str) -> u64 {
    use sqlx::Connection;
    let n: i64 = if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    };
    u64::try_from(n).unwrap()
}

/// Vital-sign Observations a set becomes: blood pressure (either value)
/// and each other measurement present.
const VITAL_OBSERVATIONS: &str = "SELECT CAST(COALESCE(SUM(\
    (CASE WHEN systolic IS NOT NULL OR diastolic IS NOT NULL THEN 1 ELSE 0 END) + \
    (CASE WHEN heart_rate IS NOT NULL THEN 1 ELSE 0 END) + \
    (CASE WHEN respiratory_rate IS NOT NULL THEN 1 ELSE 0 END) + \
    (CASE WHEN temperature IS NOT NULL THEN 1 ELSE 0 END) + \
    (CASE WHEN spo2 IS NOT NULL THEN 1 ELSE 0 END) + \
    (CASE WHEN weight_kg IS NOT NULL THEN 1 ELSE 0 END) + \
    (CASE WHEN height_cm IS NOT NULL THEN 1 ELSE 0 END) + \
    (CASE WHEN bmi IS NOT NULL THEN 1 ELSE 0 END)), 0) AS BIGINT) FROM vitals";

#[tokio::test]
async fn a_demo_clinic_exports_completely_and_every_line_validates() {
    let dir = temp_dir();
    let pg_url = if is_postgres() {
        Some(fresh_database_url(&dir).await)
    } else {
        None
    };
    let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AMAL_BIND", "127.0.0.1:0")
        .env("TMPDIR", &dir)
        .env("AMAL_DEMO_PASSWORD", "demo password for tests")
        .env("AMAL_RATE_LIMIT_READ", "100000/60s")
        .args(["demo", "--patients", &PATIENTS.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(u) = &pg_url {
        c.env("DATABASE_URL", u);
    }
    let mut child = c.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut base, mut data) = (None, None);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("running at ").nth(1) {
                base = Some(rest.trim().trim_end_matches('/').to_string());
            }
            if line.starts_with("Data (") {
                data = line.rsplit_once("): ").map(|x| x.1.trim().to_string());
            }
            if let (Some(b), Some(d)) = (&base, &data) {
                let _ = tx.send((b.clone(), d.clone()));
                base = None;
            }
        }
    });
    let (base, data) = rx
        .recv_timeout(std::time::Duration::from_secs(600))
        .expect("the demo printed its URL and data folder");
    let db_url = pg_url.unwrap_or_else(|| format!("sqlite://{data}/amal.db"));

    // The export through a TestApp-like client on the demo's server.
    let app = TestApp::spawn().await;
    let demo = TestApp {
        base: base.clone(),
        client: reqwest::Client::new(),
        state: app.state.clone(),
        raw: app.raw.clone(),
    };
    let r = demo
        .post(
            "/api/auth/signin",
            None,
            json!({"email": "admin@demo.amal.test", "password": "demo password for tests"}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    let admin = v["accessToken"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let r = kick_off(&demo, "/fhir/R4/$export", &admin).await;
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let m = manifest(&demo, &status, &admin).await;
    let out = files(&demo, &m, &admin).await;
    let took = started.elapsed();

    let want = [
        (
            "Patient",
            count(&db_url, "SELECT count(*) FROM patients").await,
        ),
        (
            "AllergyIntolerance",
            count(&db_url, "SELECT count(*) FROM allergies").await,
        ),
        (
            "Condition",
            count(&db_url, "SELECT count(*) FROM problems").await,
        ),
        (
            "MedicationRequest",
            count(&db_url, "SELECT count(*) FROM prescriptions").await,
        ),
        (
            "Observation",
            count(&db_url, "SELECT count(*) FROM labs").await
                + count(&db_url, VITAL_OBSERVATIONS).await,
        ),
        (
            "DocumentReference",
            count(&db_url, "SELECT count(*) FROM notes WHERE status = 'final'").await,
        ),
        (
            "Practitioner",
            count(
                &db_url,
                "SELECT count(*) FROM users WHERE role IN ('provider', 'nurse')",
            )
            .await,
        ),
    ];
    assert_eq!(want[0].1, PATIENTS as u64);
    let mut total = 0;
    for (ty, n) in want {
        let lines = &out
            .iter()
            .find(|(t, _)| t == ty)
            .unwrap_or_else(|| panic!("{ty} in the manifest"))
            .1;
        assert_eq!(lines.len() as u64, n, "{ty}: lines = rows in the database");
        assert!(lines.iter().all(|r| r["resourceType"] == ty), "{ty}");
        total += lines.len();
        // Every line, in chunks the validator reads quickly.
        for chunk in lines.chunks(2000) {
            validate_fhir(chunk);
        }
    }
    let vitals = out
        .iter()
        .find(|(t, _)| t == "Observation")
        .unwrap()
        .1
        .iter()
        .filter(|o| o["category"][0]["coding"][0]["code"] == "vital-signs")
        .count();
    assert!(vitals > 0, "the demo's vital signs are exported");
    eprintln!(
        "exported {total} resources ({vitals} vital-sign Observations) of {PATIENTS} demo patients in {:.1}s",
        took.as_secs_f64()
    );

    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}
