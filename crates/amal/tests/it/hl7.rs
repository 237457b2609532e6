//! HL7 v2 lab results in: the corpus under tests/data/hl7 (each message
//! with its expected ACK), idempotency, roles, the CLI and its import rate,
//! and mutated messages that must never break the import.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

pub(crate) fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hl7"))
}

/// (file, expected ACK code, results stored) from `expected.tsv`.
pub(crate) fn expected() -> Vec<(String, String, usize)> {
    let text = std::fs::read_to_string(corpus_dir().join("expected.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap())
        })
        .collect()
}

/// The three patients the corpus names, with their fixed MRNs.
pub(crate) async fn corpus_patients(app: &TestApp) -> Vec<uuid::Uuid> {
    let by = app.create_user("staff").await;
    let mut ids = Vec::new();
    for (mrn, given, family, birth, sex) in [
        ("4000000001", "Amira", "Haddad", "1980-04-12", "female"),
        ("4000000002", "José", "Núñez", "1975-11-30", "male"),
        ("4000000003", "Siobhan", "O'Brien", "1992-02-29", "female"),
    ] {
        let d = store::patients::Demographics {
            given_name: given.into(),
            family_name: family.into(),
            birth_date: birth.into(),
            sex: domain::clinical::Sex::parse(sex).unwrap(),
            phone: None,
            email: None,
            address: None,
        };
        let mut tx = app.state.db.begin().await.unwrap();
        let p = store::patients::insert(&mut tx, &d, by.id, || mrn.to_string())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        ids.push(p.id);
    }
    ids
}

async fn post_hl7(app: &TestApp, token: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/api/labs/hl7"))
        .bearer_auth(token)
        .header("content-type", "x-application/hl7-v2+er7")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The ACK of a response (the body on 200, the problem's `ack` otherwise).
async fn ack_of(r: reqwest::Response) -> (u16, String, Option<Value>) {
    let status = r.status().as_u16();
    if status == 200 {
        assert_eq!(r.headers()["content-type"], "x-application/hl7-v2+er7");
        (status, r.text().await.unwrap(), None)
    } else {
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let v: Value = r.json().await.unwrap();
        (status, v["ack"].as_str().unwrap().to_string(), Some(v))
    }
}

pub(crate) fn msa(ack: &str) -> Vec<String> {
    ack.split('\r')
        .find(|s| s.starts_with("MSA|"))
        .unwrap()
        .split('|')
        .map(str::to_string)
        .collect()
}

pub(crate) async fn lab_count(app: &TestApp) -> usize {
    let mut n = 0;
    for p in store::fhir::patients(
        &app.state.db,
        &store::fhir::Search {
            limit: 100,
            ..Default::default()
        },
        &Default::default(),
    )
    .await
    .unwrap()
    {
        n += store::labs::list_for_patient(&app.state.db, p.id, None, None, 1000)
            .await
            .unwrap()
            .len();
    }
    n
}

#[tokio::test]
async fn every_corpus_message_gets_its_ack_and_stores_what_it_says() {
    let app = TestApp::spawn().await;
    let patients = corpus_patients(&app).await;
    let prov = app.signed_in("provider").await;
    let cases = expected();
    assert!(cases.len() >= 30, "the corpus has at least 30 messages");
    for (file, code, stored) in &cases {
        let body = std::fs::read(corpus_dir().join(file)).unwrap();
        let before = lab_count(&app).await;
        let (status, ack, problem) = ack_of(post_hl7(&app, &prov.access, body).await).await;
        let fields = msa(&ack);
        assert_eq!(&fields[1], code, "{file}: {ack} {problem:?}");
        let want_status = match code.as_str() {
            "AA" => 200,
            "AE" => 422,
            _ => 400,
        };
        assert_eq!(status, want_status, "{file}");
        assert_eq!(
            lab_count(&app).await - before,
            *stored,
            "{file}: results stored"
        );
        if code != "AA" {
            let p = problem.unwrap();
            assert!(ack.contains("\rERR|"), "{file}: an ERR segment: {ack}");
            assert!(!p["hl7Errors"].as_array().unwrap().is_empty());
        }
        if !fields[2].is_empty() {
            // MSA-2 echoes the message control id (C01 … C40).
            assert!(fields[2].starts_with('C'), "{file}: {ack}");
        }
    }

    // The stored results equal what the messages said.
    let labs = store::labs::list_for_patient(&app.state.db, patients[0], None, None, 1000)
        .await
        .unwrap();
    let find = |code: &str, value: f64| {
        labs.iter()
            .find(|l| l.code == code && (l.value - value).abs() < 1e-9)
            .unwrap_or_else(|| panic!("{code} {value} stored"))
    };
    let k = find("2823-3", 6.8);
    assert_eq!(
        (k.unit.as_str(), k.reference_low, k.reference_high),
        ("mmol/L", Some(3.5), Some(5.1))
    );
    assert_eq!(
        k.flag.map(domain::labs::LabFlag::as_str),
        Some("critical_high")
    );
    assert_eq!(k.collected_at.to_rfc3339(), "2026-11-20T07:00:00+00:00");
    assert_eq!(k.name, "Potassium");
    let low = find("2345-7", 38.0);
    assert_eq!(
        low.flag.map(domain::labs::LabFlag::as_str),
        Some("critical_low")
    );
    let calcium = find("17861-6", 8.1);
    assert_eq!(calcium.flag.map(domain::labs::LabFlag::as_str), Some("low"));
    let crp = find("30522-7", 12.5);
    assert_eq!(
        (
            crp.reference_low,
            crp.reference_high,
            crp.flag.map(domain::labs::LabFlag::as_str)
        ),
        (Some(0.0), Some(5.0), Some("high"))
    );
    let lh = find("10501-5", 7.2);
    assert_eq!(lh.flag, None, "no range known, none sent: unflagged");
    assert_eq!(lh.unit, "m[IU]/mL");
    let escaped = find("2345-7", 101.0);
    assert_eq!(escaped.name, "Glucose & fasting");
    assert!(
        escaped
            .warning
            .as_deref()
            .unwrap()
            .contains("Patient fasting | 10 h"),
        "{:?}",
        escaped.warning
    );
    // The laboratory said H, our check says normal: the more serious flag
    // is kept and the disagreement is written down.
    let disputed = find("2345-7", 95.0);
    assert_eq!(
        disputed.flag.map(domain::labs::LabFlag::as_str),
        Some("high")
    );
    assert!(disputed
        .warning
        .as_deref()
        .unwrap()
        .contains("laboratory flagged this result high; our reference check gives normal"));
    // The accent-free family name matched José Núñez.
    let jose = store::labs::list_for_patient(&app.state.db, patients[1], None, None, 10)
        .await
        .unwrap();
    assert_eq!(jose.len(), 1);
    let siobhan = store::labs::list_for_patient(&app.state.db, patients[2], None, None, 10)
        .await
        .unwrap();
    assert_eq!(siobhan.len(), 4);
    // The sender's view is kept beside each result.
    let accepted = store::hl7::count(&app.state.db).await.unwrap();
    assert_eq!(
        accepted as usize,
        cases.iter().filter(|c| c.1 == "AA" && c.2 > 0).count()
    );
    // Every message was audited, and no audit event holds message text.
    let events = audit_events(&app).await;
    let imports: Vec<_> = events.iter().filter(|e| e.action == "hl7.import").collect();
    assert_eq!(imports.len(), cases.len());
    for e in &imports {
        let d = e.detail.clone().unwrap_or_default();
        assert!(!d.contains("Haddad") && !d.contains("Glucose"), "{d}");
    }
    assert!(imports.iter().any(|e| e.outcome == "duplicate"));
}

#[tokio::test]
async fn a_repeated_message_stores_nothing_twice() {
    let app = TestApp::spawn().await;
    corpus_patients(&app).await;
    let prov = app.signed_in("provider").await;
    let body = std::fs::read(corpus_dir().join("05_cmp_eight_results.hl7")).unwrap();
    let r = post_hl7(&app, &prov.access, body.clone()).await;
    assert!(r.headers().get("x-hl7-duplicate").is_none());
    let (_, first, _) = ack_of(r).await;
    assert_eq!(lab_count(&app).await, 8);
    let r = post_hl7(&app, &prov.access, body.clone()).await;
    assert_eq!(r.headers()["x-hl7-duplicate"], "true");
    let (status, again, _) = ack_of(r).await;
    assert_eq!(status, 200);
    assert_eq!(again, first, "the first ACK is answered again");
    assert_eq!(lab_count(&app).await, 8);
    // Sent twice at once: still stored once.
    let other = std::fs::read(corpus_dir().join("06_cbc_and_lipid_two_orders.hl7")).unwrap();
    let (a, b) = tokio::join!(
        post_hl7(&app, &prov.access, other.clone()),
        post_hl7(&app, &prov.access, other.clone())
    );
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(lab_count(&app).await, 12);
    assert_eq!(store::hl7::count(&app.state.db).await.unwrap(), 2);
}

#[tokio::test]
async fn only_providers_import_and_only_hl7_media_types() {
    let app = TestApp::spawn().await;
    corpus_patients(&app).await;
    let body = std::fs::read(corpus_dir().join("01_normal_glucose.hl7")).unwrap();
    let r = app
        .client
        .post(app.url("/api/labs/hl7"))
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;
    for role in ["nurse", "staff", "admin"] {
        let s = app.signed_in(role).await;
        assert_problem(
            post_hl7(&app, &s.access, body.clone()).await,
            403,
            "forbidden",
        )
        .await;
    }
    let prov = app.signed_in("provider").await;
    let r = app
        .client
        .post(app.url("/api/labs/hl7"))
        .bearer_auth(&prov.access)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(r, 415, "unsupported_media_type").await;
    assert_eq!(lab_count(&app).await, 0, "nothing changed");
    let r = app
        .client
        .post(app.url("/api/labs/hl7"))
        .bearer_auth(&prov.access)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(lab_count(&app).await, 1);
    // Rejections are problem documents that carry the ACK.
    let v = assert_problem(
        post_hl7(&app, &prov.access, b"garbage".to_vec()).await,
        400,
        "hl7_rejected",
    )
    .await;
    assert_eq!(v["ackCode"], "AR");
    let v = assert_problem(
        post_hl7(
            &app,
            &prov.access,
            std::fs::read(corpus_dir().join("21_unknown_mrn.hl7")).unwrap(),
        )
        .await,
        422,
        "hl7_not_processed",
    )
    .await;
    assert_eq!(v["hl7Errors"][0]["segment"], "PID");
    assert_eq!(v["hl7Errors"][0]["field"], 3);
    assert_eq!(v["hl7Errors"][0]["code"], "204");
}

/// Random edits of every corpus message: the import answers each (an ACK
/// or an error ACK), never panics and never fails with a server error.
#[tokio::test]
async fn mutated_corpus_messages_never_break_the_import() {
    let app = TestApp::spawn().await;
    corpus_patients(&app).await;
    let prov = app.create_user("provider").await;
    let actor = server::auth::AuthUser {
        id: prov.id,
        role: domain::roles::Role::Provider,
        session: uuid::Uuid::nil(),
    };
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let alphabet = [
        '|', '^', '~', '\\', '&', '\r', '\n', '9', '-', '.', 'é', '\u{0}', '\u{1c}',
    ];
    let mut answered = 0;
    for (file, _, _) in expected() {
        let text =
            String::from_utf8_lossy(&std::fs::read(corpus_dir().join(&file)).unwrap()).into_owned();
        for _ in 0..12 {
            let mut chars: Vec<char> = text.chars().collect();
            for _ in 0..1 + next(4) {
                let len = chars.len();
                match next(4) {
                    0 if len > 0 => {
                        chars.remove(next(len));
                    }
                    1 => chars.insert(next(len + 1), alphabet[next(alphabet.len())]),
                    2 if len > 0 => chars[next(len)] = alphabet[next(alphabet.len())],
                    _ if len > 0 => chars.truncate(next(len)),
                    _ => {}
                }
            }
            let m: String = chars.into_iter().collect();
            let out = server::services::hl7::import(&app.state.db, &actor, &m).await;
            let out = out.unwrap_or_else(|e| panic!("{file}: import failed: {e}"));
            assert!(out.ack.starts_with("MSH|^~\\&|AMAL|"));
            answered += 1;
        }
    }
    assert!(answered >= 360);
}

#[tokio::test]
async fn cli_imports_a_folder_and_reports_the_rate() {
    let app = TestApp::spawn().await;
    corpus_patients(&app).await;
    let prov = app.create_user("provider").await;
    let nurse = app.create_user("nurse").await;
    let dir = temp_dir();
    let url = app.raw.database_url.clone().unwrap();
    let amal = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_amal"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AMAL_DATA_DIR", &dir)
            .env("DATABASE_URL", &url)
            .args(args);
        c.output().unwrap()
    };
    let corpus = corpus_dir();
    let out = amal(&[
        "import",
        "hl7",
        corpus.to_str().unwrap(),
        "--user",
        &nurse.email,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be an active provider"));

    let out = amal(&[
        "import",
        "hl7",
        corpus.to_str().unwrap(),
        "--user",
        &prov.email,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "the corpus holds rejected messages: exit 1"
    );
    let cases = expected();
    let count = |c: &str| cases.iter().filter(|x| x.1 == c).count();
    let summary = format!(
        "{} message(s): {} AA, {} AE, {} AR (1 repeat(s)); {} result(s) stored",
        cases.len(),
        count("AA"),
        count("AE"),
        count("AR"),
        cases.iter().map(|c| c.2).sum::<usize>()
    );
    assert!(stdout.contains(&summary), "{stdout}");
    assert!(
        !stdout.contains("Haddad"),
        "no message contents in the output"
    );

    // A batch file of 300 fresh messages: the import rate.
    let template = std::fs::read_to_string(corpus.join("05_cmp_eight_results.hl7")).unwrap();
    let batch: String = (0..300)
        .map(|i| template.replace("|C05|", &format!("|B{i:05}|")))
        .collect();
    let file = dir.join("batch.hl7");
    std::fs::write(&file, batch).unwrap();
    let out = amal(&[
        "import",
        "hl7",
        file.to_str().unwrap(),
        "--user",
        &prov.email,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("300 message(s): 300 AA, 0 AE, 0 AR (0 repeat(s)); 2400 result(s) stored"),
        "{last}"
    );
    eprintln!(
        "HL7 import rate ({}): {last}",
        if is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
}
