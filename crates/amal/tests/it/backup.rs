//! Backups, verification and restore (`amal backup`, `amal backup verify`,
//! `amal restore`), scheduled backups inside `amal serve`, and the
//! rollback drill (`amal migrate down` / `up` with a backup first). Every
//! test runs on SQLite, and on PostgreSQL with `AMAL_TEST_DATABASE_URL`
//! (which needs `pg_dump` and `pg_restore` on PATH).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;

fn amal(dir: &Path, url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AMAL_DATA_DIR", dir)
        .env("DATABASE_URL", url);
    c
}

/// Run without blocking the runtime (the API writers keep going meanwhile).
async fn run(c: Command) -> (bool, String, String) {
    let out = tokio::process::Command::from(c).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn amal_ok(dir: &Path, url: &str, args: &[&str]) -> String {
    let mut c = amal(dir, url);
    c.args(args);
    let (ok, out, err) = run(c).await;
    assert!(ok, "amal {args:?} failed:\n{out}\n{err}");
    out
}

async fn amal_fails(dir: &Path, url: &str, args: &[&str]) -> String {
    let mut c = amal(dir, url);
    c.args(args);
    let (ok, out, err) = run(c).await;
    assert!(!ok, "amal {args:?} should have failed:\n{out}\n{err}");
    format!("{out}{err}")
}

/// The two entries of an archive: its manifest and its database image.
pub(crate) fn unpack(archive: &Path) -> (Value, String, Vec<u8>) {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(archive).unwrap());
    let mut ar = tar::Archive::new(gz);
    let mut entries = ar.entries().unwrap();
    let mut first = entries.next().unwrap().unwrap();
    assert_eq!(first.path().unwrap().to_string_lossy(), "manifest.json");
    let mut text = String::new();
    first.read_to_string(&mut text).unwrap();
    drop(first);
    let mut second = entries.next().unwrap().unwrap();
    let name = second.path().unwrap().to_string_lossy().into_owned();
    let mut image = Vec::new();
    second.read_to_end(&mut image).unwrap();
    (serde_json::from_str(&text).unwrap(), name, image)
}

/// Write an archive holding `manifest` (with the image's checksum and size
/// made right) and `image`, as an attacker who also fixes checksums would.
fn repack(manifest: &Value, name: &str, image: &[u8], out: &Path) {
    repack_with(manifest, name, image, out, false)
}

/// [`repack`], and sign the manifest again with the clinic's checkpoint
/// key, as an insider holding the key file would.
fn repack_signed(manifest: &Value, name: &str, image: &[u8], out: &Path) {
    repack_with(manifest, name, image, out, true)
}

fn repack_with(manifest: &Value, name: &str, image: &[u8], out: &Path, sign: bool) {
    let mut m = manifest.clone();
    m["database"]["sha256"] = json!(hex::encode(Sha256::digest(image)));
    m["database"]["bytes"] = json!(image.len());
    if sign {
        let key = store::checkpoint::parse_signing_key(&clinic_keys().1).unwrap();
        let mut unsigned = m.clone();
        unsigned.as_object_mut().unwrap().remove("signature");
        let mut bytes = b"amal-backup-manifest-v2\n".to_vec();
        bytes.extend(serde_json::to_vec(&unsigned).unwrap());
        m["signature"]["value"] = json!(store::checkpoint::sign_base64(&key, &bytes));
    }
    let json = serde_json::to_vec_pretty(&m).unwrap();
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(out).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    for (entry, body) in [("manifest.json", json.as_slice()), (name, image)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        tar.append_data(&mut h, entry, body).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

/// The statement that removes the audit table's no-update trigger.
fn drop_update_trigger() -> &'static str {
    if is_postgres() {
        "DROP TRIGGER audit_events_no_update ON audit_events"
    } else {
        "DROP TRIGGER audit_events_no_update"
    }
}

/// The database image of `archive` (whose raw image is `image`) after
/// running `sqls` on it, as an attacker with the file would.
async fn tamper_image(archive: &Path, image: &[u8], sqls: &[&str]) -> Vec<u8> {
    if is_postgres() {
        let (sdir, surl) = fresh().await;
        amal_ok(&sdir, &surl, &["restore", archive.to_str().unwrap()]).await;
        let db = store::Db::connect(&surl).await.unwrap();
        for sql in sqls {
            execute(&db, sql).await;
        }
        db.close().await;
        let dump = sdir.join("tampered.pgdump");
        let st = Command::new("pg_dump")
            .args([
                "--format=custom",
                "--compress=0",
                &format!("--file={}", dump.display()),
                &format!("--dbname={surl}"),
            ])
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read(dump).unwrap()
    } else {
        let path = temp_dir().join("tampered.sqlite");
        std::fs::write(&path, image).unwrap();
        let db = store::Db::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        for sql in sqls {
            execute(&db, sql).await;
        }
        // Fold the WAL into the file before reading it back.
        execute(&db, "PRAGMA wal_checkpoint(TRUNCATE)").await;
        db.close().await;
        std::fs::read(&path).unwrap()
    }
}

async fn scalar(db: &store::Db, sql: &str) -> i64 {
    let r: (i64,) = match db {
        store::Db::Sqlite(s) => sqlx::query_as(sql).fetch_one(&s.read).await.unwrap(),
        store::Db::Postgres(p) => sqlx::query_as(sql).fetch_one(p).await.unwrap(),
    };
    r.0
}

async fn execute(db: &store::Db, sql: &str) {
    match db {
        store::Db::Sqlite(s) => sqlx::query(sql).execute(&s.write).await.map(|_| ()),
        store::Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn table_exists(db: &store::Db, table: &str) -> bool {
    let counts = store::backup::row_counts(db).await.unwrap();
    counts.contains_key(table)
}

fn manifest_counts(m: &Value) -> BTreeMap<String, i64> {
    m["rowCounts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
        .collect()
}

/// A fresh, empty database of the engine under test, in its own folder.
async fn fresh() -> (PathBuf, String) {
    let dir = temp_dir();
    let url = fresh_database_url(&dir).await;
    (dir, url)
}

/// A provider creates a patient and a draft note for it through the API.
async fn patient_with_note(app: &TestApp, token: &str, n: usize) -> String {
    let p = app
        .create_patient(token, &format!("Writer{n}"), "Backup")
        .await;
    let id = sid(&p);
    let r = app
        .post(
            &format!("/api/patients/{id}/notes"),
            Some(token),
            json!({"title": "Visit", "subjective": "well", "plan": "review"}),
        )
        .await;
    assert_eq!(r.status(), 201, "note");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_while_four_writers_insert_is_a_consistent_snapshot() {
    let app = TestApp::spawn().await;
    let url = app.raw.database_url.clone().unwrap();
    let dir = app.raw.data_dir.clone().unwrap();
    let provider = app.signed_in("provider").await;
    let app = Arc::new(app);
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (app, stop, made, token) = (
            app.clone(),
            stop.clone(),
            made.clone(),
            provider.access.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 2_000 {
                patient_with_note(&app, &token, w * 10_000 + i).await;
                made.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    // Let the writers get going, then back up while they write.
    let t0 = Instant::now();
    while made.load(Ordering::Relaxed) < 20 && t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let archive = dir.join("during-writes.amalbak");
    let before = made.load(Ordering::Relaxed);
    let out = amal_ok(&dir, &url, &["backup", "--to", archive.to_str().unwrap()]).await;
    let after_backup = made.load(Ordering::Relaxed);
    assert!(
        out.contains("backup written") && out.contains("during-writes.amalbak"),
        "{out}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let total = made.load(Ordering::Relaxed);
    assert!(
        after_backup > before || total > after_backup,
        "writers kept writing"
    );

    // The archive verifies on its own.
    let out = amal_ok(&dir, &url, &["backup", "verify", archive.to_str().unwrap()]).await;
    assert!(out.contains("backup verified"), "{out}");

    // Restore it into a scratch database and look inside.
    let (manifest, _, _) = unpack(&archive);
    let (sdir, surl) = fresh().await;
    let out = amal_ok(&sdir, &surl, &["restore", archive.to_str().unwrap()]).await;
    assert!(
        out.contains(&format!("schema version {}", latest_schema()))
            && out.contains("audit chain intact"),
        "{out}"
    );
    let db = store::Db::connect(&surl).await.unwrap();
    let patients = scalar(&db, "SELECT count(*) FROM patients").await;
    let notes = scalar(&db, "SELECT count(*) FROM notes").await;
    eprintln!(
        "writers: {before} patients before the backup started, {after_backup} when it ended, \
         {total} in all; the snapshot holds {patients} patients and {notes} notes"
    );
    assert!(patients >= 20, "{patients} patients in the snapshot");
    assert!(
        (patients as usize) < total,
        "the snapshot predates the last writes"
    );
    // A consistent snapshot: every note belongs to a patient in it, and every
    // patient and note has the audit event committed with it.
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM notes n WHERE NOT EXISTS (SELECT 1 FROM patients p WHERE p.id = n.patient_id)"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM patients p WHERE NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.resource_id = p.id AND a.action = 'patient.create')"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM notes n WHERE NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.resource_id = n.id AND a.action = 'note.create')"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM audit_events WHERE action = 'note.create'"
        )
        .await,
        notes
    );
    // The restored chain is the backup's, plus the restore's own event.
    let report = store::audit::verify(&db).await.unwrap();
    assert!(report.valid);
    let events = manifest["audit"]["events"].as_i64().unwrap();
    assert_eq!(report.events, events + 1);
    let head: (String,) = {
        let q = format!("SELECT hash FROM audit_events WHERE seq = {events}");
        match &db {
            store::Db::Sqlite(s) => sqlx::query_as(&q).fetch_one(&s.read).await.unwrap(),
            store::Db::Postgres(p) => sqlx::query_as(&q).fetch_one(p).await.unwrap(),
        }
    };
    assert_eq!(head.0, manifest["audit"]["headHash"].as_str().unwrap());
    let mut want = manifest_counts(&manifest);
    *want.get_mut("audit_events").unwrap() += 1;
    assert_eq!(store::backup::row_counts(&db).await.unwrap(), want);
    assert_eq!(manifest["schemaVersion"], latest_schema());
    assert_eq!(
        manifest["engine"],
        if is_postgres() { "postgres" } else { "sqlite" }
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_a_flipped_byte_and_a_tampered_audit_row() {
    let app = TestApp::spawn().await;
    let url = app.raw.database_url.clone().unwrap();
    let dir = app.raw.data_dir.clone().unwrap();
    let provider = app.signed_in("provider").await;
    for i in 0..3 {
        let id = patient_with_note(&app, &provider.access, i).await;
        let r = app
            .get(&format!("/api/patients/{id}"), Some(&provider.access))
            .await;
        assert_eq!(r.status(), 200);
    }
    let archive = dir.join("good.amalbak");
    amal_ok(&dir, &url, &["backup", "--to", archive.to_str().unwrap()]).await;
    amal_ok(&dir, &url, &["backup", "verify", archive.to_str().unwrap()]).await;

    // One flipped byte inside the compressed stream.
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let flipped = dir.join("flipped.amalbak");
    std::fs::write(&flipped, &bytes).unwrap();
    let all = amal_fails(&dir, &url, &["backup", "verify", flipped.to_str().unwrap()]).await;
    assert!(
        all.contains("corrupt") && all.contains("checksum"),
        "names the corruption: {all}"
    );
    // A restore refuses it before touching anything.
    let (tdir, turl) = fresh().await;
    let all = amal_fails(&tdir, &turl, &["restore", flipped.to_str().unwrap()]).await;
    assert!(all.contains("corrupt"), "{all}");

    // An archive whose database has one edited audit row, re-packed with a
    // correct checksum: only the audit chain can tell.
    let (manifest, name, image) = unpack(&archive);
    let tampered_image = tamper_image(
        &archive,
        &image,
        &[
            drop_update_trigger(),
            "UPDATE audit_events SET outcome = 'failure' WHERE seq = 3",
        ],
    )
    .await;
    // Without the checkpoint signing key the recomputed manifest's
    // signature does not verify: refused before the image is looked at.
    let tampered = dir.join("tampered.amalbak");
    repack(&manifest, &name, &tampered_image, &tampered);
    let all = amal_fails(
        &dir,
        &url,
        &["backup", "verify", tampered.to_str().unwrap()],
    )
    .await;
    assert!(all.contains("signature does not verify"), "{all}");
    let (tdir, turl) = fresh().await;
    let all = amal_fails(&tdir, &turl, &["restore", tampered.to_str().unwrap()]).await;
    assert!(all.contains("signature does not verify"), "{all}");
    assert!(all.contains("not touched"), "{all}");

    // Even re-signed with the real key (an insider with the key file but
    // not AUDIT_KEY), the keyed chain and the missing trigger give it away.
    let signed = dir.join("tampered-signed.amalbak");
    repack_signed(&manifest, &name, &tampered_image, &signed);
    let mut c = amal(&dir, &url);
    c.args(["backup", "verify", signed.to_str().unwrap()]);
    let (ok, out, err) = run(c).await;
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("signature and checksum ok"),
        "the signature and checksum matched: {err}"
    );
    assert!(
        err.contains("audit chain broken") && err.contains("sequence 3"),
        "names the audit chain: {err}"
    );
    assert!(err.contains("append-only triggers"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_non_empty_database_without_force() {
    let app = TestApp::spawn().await;
    let url = app.raw.database_url.clone().unwrap();
    let dir = app.raw.data_dir.clone().unwrap();
    let provider = app.signed_in("provider").await;
    for i in 0..5 {
        patient_with_note(&app, &provider.access, i).await;
    }
    let archive = dir.join("source.amalbak");
    amal_ok(&dir, &url, &["backup", "--to", archive.to_str().unwrap()]).await;

    // A target that already has a schema and an account of its own.
    let (tdir, turl) = occupied_target().await;

    let all = amal_fails(&tdir, &turl, &["restore", archive.to_str().unwrap()]).await;
    assert!(
        all.contains("not empty") && all.contains("--force") && all.contains("1 user"),
        "{all}"
    );
    let db = store::Db::connect(&turl).await.unwrap();
    assert!(store::users::by_email(&db, "keeper@clinic.test")
        .await
        .unwrap()
        .is_some());
    assert_eq!(scalar(&db, "SELECT count(*) FROM patients").await, 0);
    db.close().await;

    let out = amal_ok(
        &tdir,
        &turl,
        &["restore", archive.to_str().unwrap(), "--force"],
    )
    .await;
    assert!(
        out.contains(&format!("schema version {}", latest_schema()))
            && out.contains("audit chain intact"),
        "{out}"
    );
    let db = store::Db::connect(&turl).await.unwrap();
    assert_eq!(scalar(&db, "SELECT count(*) FROM patients").await, 5);
    assert_eq!(scalar(&db, "SELECT count(*) FROM notes").await, 5);
    assert!(store::users::by_email(&db, "keeper@clinic.test")
        .await
        .unwrap()
        .is_none());
    assert!(store::users::by_id(&db, provider.user_id)
        .await
        .unwrap()
        .is_some());
    db.close().await;
    let out = amal_ok(&tdir, &turl, &["audit", "verify"]).await;
    assert!(out.contains("intact"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_down_then_up_keeps_users_and_a_backup_brings_clinical_data_back() {
    let app = TestApp::spawn().await;
    let url = app.raw.database_url.clone().unwrap();
    let dir = app.raw.data_dir.clone().unwrap();
    let provider = app.signed_in("provider").await;
    app.create_user("nurse").await;
    for i in 0..4 {
        patient_with_note(&app, &provider.access, i).await;
    }
    let users = scalar(&app.state.db, "SELECT count(*) FROM users").await;
    app.state.db.close().await;

    // The rollback drill: a backup first (default name in <data dir>/backups).
    let out = amal_ok(&dir, &url, &["backup"]).await;
    assert!(out.contains("backup written"), "{out}");
    let backups: Vec<PathBuf> = std::fs::read_dir(dir.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let archive = backups[0].clone();
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("amal-backup-") && name.ends_with("Z.amalbak"),
        "{name}"
    );

    let out = amal_ok(&dir, &url, &["migrate", "down", "--to", "1"]).await;
    assert!(out.contains("to 1"), "{out}");
    let db = store::Db::connect(&url).await.unwrap();
    assert_eq!(scalar(&db, "SELECT count(*) FROM users").await, users);
    assert!(
        !table_exists(&db, "patients").await,
        "migration 2's tables are dropped"
    );
    db.close().await;
    let out = amal_ok(&dir, &url, &["version"]).await;
    assert!(out.contains("schema version (database) 1"), "{out}");

    let out = amal_ok(&dir, &url, &["migrate", "up"]).await;
    assert!(
        out.contains(&format!("version {}", latest_schema())),
        "{out}"
    );
    let db = store::Db::connect(&url).await.unwrap();
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM users").await,
        users,
        "users survive down and up"
    );
    assert_eq!(scalar(&db, "SELECT count(*) FROM patients").await, 0);
    db.close().await;

    // The backup brings the clinical data back.
    amal_ok(&dir, &url, &["backup", "verify", archive.to_str().unwrap()]).await;
    // A restore needs the server stopped; this one runs inside the test, so
    // end its remaining PostgreSQL sessions (its change listener) as
    // stopping it would.
    if is_postgres() {
        let admin = store::Db::connect(&std::env::var("AMAL_TEST_DATABASE_URL").unwrap())
            .await
            .unwrap();
        let name = store::pgurl::PgUrl::parse(&url).unwrap().database();
        execute(
            &admin,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ),
        )
        .await;
        admin.close().await;
    }
    amal_ok(
        &dir,
        &url,
        &["restore", archive.to_str().unwrap(), "--force"],
    )
    .await;
    let db = store::Db::connect(&url).await.unwrap();
    assert_eq!(scalar(&db, "SELECT count(*) FROM patients").await, 4);
    assert_eq!(scalar(&db, "SELECT count(*) FROM users").await, users);
    assert!(store::audit::verify(&db).await.unwrap().valid);
    db.close().await;
}

/// Prometheus text → value of `name`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_are_verified_counted_and_pruned() {
    let (dir, url) = fresh().await;
    let bdir = dir.join("scheduled");
    let token = "metrics-token-for-the-backup-test-0123456789";
    let mut c = amal(&dir, &url);
    c.env("AMAL_BIND", "127.0.0.1:0")
        .env("AMAL_BACKUP_INTERVAL", "1s")
        .env("AMAL_BACKUP_KEEP", "2")
        .env("AMAL_BACKUP_DIR", &bdir)
        .env("METRICS_TOKEN", token)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let keep = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "listening" {
                    let _ = tx.send(v["context"]["address"].as_str().unwrap_or("").to_string());
                }
            }
            keep.lock().unwrap().push(line);
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("started");
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut text = String::new();
    while started.elapsed() < Duration::from_secs(120) {
        text = client
            .get(format!("http://{addr}/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metric(&text, "backup_success_total").unwrap_or(0.0) >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        metric(&text, "backup_success_total").unwrap_or(0.0) >= 3.0,
        "three scheduled backups: {text}"
    );
    assert_eq!(metric(&text, "backup_failure_total"), Some(0.0), "{text}");
    let age = metric(&text, "backup_last_success_age_seconds").expect("age gauge");
    assert!((0.0..60.0).contains(&age), "{age}");
    let ts = metric(&text, "backup_last_success_timestamp").expect("timestamp gauge");
    assert!((ts - chrono::Utc::now().timestamp() as f64).abs() < 120.0);

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());

    let mut archives: Vec<PathBuf> = std::fs::read_dir(&bdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".amalbak"))
        .collect();
    archives.sort();
    assert!(
        !archives.is_empty() && archives.len() <= 2,
        "at most AMAL_BACKUP_KEEP=2 archives: {archives:?}"
    );
    let newest = archives.last().unwrap();
    let out = amal_ok(&dir, &url, &["backup", "verify", newest.to_str().unwrap()]).await;
    assert!(out.contains("backup verified"), "{out}");

    std::thread::sleep(Duration::from_millis(200));
    let lines = lines.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("scheduled backup written and verified")),
        "{lines:?}"
    );
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
        assert!(v["context"].is_object(), "{l}");
        assert!(!l.contains(&url), "a log line holds DATABASE_URL: {l}");
        assert!(!l.contains(token), "a log line holds METRICS_TOKEN: {l}");
    }
}

#[tokio::test]
async fn backup_of_postgres_names_a_missing_pg_dump() {
    if !postgres_only("pg_dump is only used for PostgreSQL") {
        return;
    }
    let (dir, url) = fresh().await;
    amal_ok(&dir, &url, &["migrate", "up"]).await;
    let mut c = amal(&dir, &url);
    c.env("PATH", "/nonexistent")
        .args(["backup", "--to", dir.join("x.amalbak").to_str().unwrap()]);
    let (ok, out, err) = run(c).await;
    assert!(!ok);
    let all = format!("{out}{err}");
    assert!(
        all.contains("pg_dump") && all.contains("postgresql-client"),
        "{all}"
    );
    assert!(!dir.join("x.amalbak").exists());
}

#[tokio::test]
async fn config_check_names_bad_backup_settings() {
    let dir = temp_dir();
    let check = |interval: &str, keep: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
        c.env_clear()
            .env("AMAL_DATA_DIR", &dir)
            .env("AMAL_BACKUP_INTERVAL", interval)
            .env("AMAL_BACKUP_KEEP", keep)
            .args(["config", "check"]);
        c
    };
    let (ok, out, err) = run(check("often", "0")).await;
    assert!(!ok);
    let all = format!("{out}{err}");
    assert!(
        all.contains("AMAL_BACKUP_INTERVAL") && all.contains("AMAL_BACKUP_KEEP"),
        "{all}"
    );
    let (ok, out, err) = run(check("6h", "28")).await;
    assert!(ok, "{out}{err}");
}

/// The newest schema version shipped (the highest up migration's number;
/// numbers may have gaps), so these tests need no edit when one is added.
fn latest_schema() -> usize {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/sqlite");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name.strip_suffix(".up.sql")
                .and_then(|n| n.split('_').next().and_then(|v| v.parse().ok()))
        })
        .max()
        .unwrap_or(0)
}

/// A backup restored where the clinic's `AUDIT_KEY` is not configured
/// (another machine, a lost key) cannot prove its audit trail: the restore
/// fails and says which key is missing, instead of "broken at sequence 1".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_without_the_clinics_audit_key_names_the_missing_key() {
    let app = TestApp::spawn().await;
    let url = app.raw.database_url.clone().unwrap();
    let dir = app.raw.data_dir.clone().unwrap();
    let provider = app.signed_in("provider").await;
    patient_with_note(&app, &provider.access, 1).await;
    let archive = dir.join("source.amalbak");
    amal_ok(&dir, &url, &["backup", "--to", archive.to_str().unwrap()]).await;

    let (tdir, turl) = fresh().await;
    std::fs::remove_file(tdir.join("audit.key")).unwrap();
    let all = amal_fails(&tdir, &turl, &["restore", archive.to_str().unwrap()]).await;
    assert!(all.contains("unknown key"), "{all}");
    assert!(all.contains("AUDIT_KEY"), "{all}");

    // With the clinic's key in place the same archive restores.
    let (tdir, turl) = fresh().await;
    let out = amal_ok(&tdir, &turl, &["restore", archive.to_str().unwrap()]).await;
    assert!(out.contains("audit chain intact"), "{out}");
}

/// A target that already holds data of its own: one admin, `keeper@clinic.test`.
async fn occupied_target() -> (PathBuf, String) {
    let (tdir, turl) = fresh().await;
    amal_ok(&tdir, &turl, &["migrate", "up"]).await;
    let out = cli_user_create(
        amal(&tdir, &turl),
        "keeper@clinic.test",
        "admin",
        "a long admin passphrase",
    );
    assert!(out.status.success());
    (tdir, turl)
}

/// The target still holds exactly what it held before a refused restore.
async fn assert_untouched(turl: &str) {
    let db = store::Db::connect(turl).await.unwrap();
    assert!(
        store::users::by_email(&db, "keeper@clinic.test")
            .await
            .unwrap()
            .is_some(),
        "the target's own account is still there"
    );
    assert_eq!(scalar(&db, "SELECT count(*) FROM patients").await, 0);
    db.close().await;
}

/// `amal` with these extra settings.
async fn amal_env(dir: &Path, url: &str, env: &[(&str, &Path)], args: &[&str]) -> (bool, String) {
    let mut c = amal(dir, url);
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args);
    let (ok, out, err) = run(c).await;
    (ok, format!("{out}{err}"))
}

/// With `AMAL_BACKUP_KEY_FILE` the archive is an age file that opens with
/// that key only; a restore with the wrong key (or none) is refused and
/// leaves the live database as it was; with the right key the restore swaps
/// the checked copy in and keeps the previous database aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_backup_opens_with_its_key_only_and_restore_keeps_the_previous_database() {
    let app = TestApp::spawn().await;
    let url = app.raw.database_url.clone().unwrap();
    let dir = app.raw.data_dir.clone().unwrap();
    let provider = app.signed_in("provider").await;
    for i in 0..3 {
        patient_with_note(&app, &provider.access, i).await;
    }
    let key = backup_key_file(&dir);
    let with_key = [("AMAL_BACKUP_KEY_FILE", key.as_path())];
    let archive = dir.join("sealed.amalbak");
    let (ok, out) = amal_env(
        &dir,
        &url,
        &with_key,
        &["backup", "--to", archive.to_str().unwrap()],
    )
    .await;
    assert!(ok && out.contains("encrypting (x25519)"), "{out}");
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"), "an age file");
    let (ok, out) = amal_env(
        &dir,
        &url,
        &with_key,
        &["backup", "verify", archive.to_str().unwrap()],
    )
    .await;
    assert!(ok && out.contains("backup verified"), "{out}");
    // Without the key: nothing opens.
    let all = amal_fails(&dir, &url, &["backup", "verify", archive.to_str().unwrap()]).await;
    assert!(all.contains("AMAL_BACKUP_KEY_FILE"), "{all}");

    let (tdir, turl) = occupied_target().await;
    let wrong = backup_key_file(&tdir);
    let (ok, out) = amal_env(
        &tdir,
        &turl,
        &[("AMAL_BACKUP_KEY_FILE", wrong.as_path())],
        &["restore", archive.to_str().unwrap(), "--force"],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("wrong key") && out.contains("not touched"),
        "{out}"
    );
    assert_untouched(&turl).await;

    let (ok, out) = amal_env(
        &tdir,
        &turl,
        &with_key,
        &["restore", archive.to_str().unwrap(), "--force"],
    )
    .await;
    assert!(ok && out.contains("audit chain intact"), "{out}");
    let db = store::Db::connect(&turl).await.unwrap();
    assert_eq!(scalar(&db, "SELECT count(*) FROM patients").await, 3);
    db.close().await;
    // The database it replaced is kept, whole.
    let kept = out
        .lines()
        .find_map(|l| l.strip_prefix("the previous database is kept as "))
        .and_then(|l| l.split_once(' '))
        .map(|(k, _)| k.to_string())
        .unwrap_or_else(|| panic!("names the kept database: {out}"));
    let kept_url = if is_postgres() {
        store::pgurl::PgUrl::parse(&turl)
            .unwrap()
            .with_database(&kept)
    } else {
        format!("sqlite://{kept}")
    };
    assert_untouched(&kept_url).await;
    // The restored chain verifies against the new checkpoint.
    let out = amal_ok(&tdir, &turl, &["audit", "verify"]).await;
    assert!(out.contains("intact"), "{out}");
}

/// An archive from a passphrase round-trips; another passphrase is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_backup_round_trips_and_another_passphrase_is_refused() {
    let app = TestApp::spawn().await;
    let url = app.raw.database_url.clone().unwrap();
    let dir = app.raw.data_dir.clone().unwrap();
    let provider = app.signed_in("provider").await;
    patient_with_note(&app, &provider.access, 1).await;
    let archive = dir.join("pass.amalbak");
    let with = |p: &'static str| {
        let mut c = amal(&dir, &url);
        c.env("AMAL_BACKUP_PASSPHRASE", p);
        c
    };
    let mut c = with("a clinic passphrase for backups");
    c.args(["backup", "--to", archive.to_str().unwrap()]);
    let (ok, out, err) = run(c).await;
    assert!(ok && err.contains("passphrase"), "{out}{err}");
    let mut c = with("a clinic passphrase for backups");
    c.args(["backup", "verify", archive.to_str().unwrap()]);
    let (ok, out, err) = run(c).await;
    assert!(ok, "{out}{err}");
    let mut c = with("not the clinic passphrase");
    c.args(["backup", "verify", archive.to_str().unwrap()]);
    let (ok, out, err) = run(c).await;
    assert!(!ok && err.contains("wrong key"), "{out}{err}");
}

/// An attacker with the database image (and even the checkpoint signing key,
/// but not `AUDIT_KEY`) cannot make a backup that restores: a cut-short
/// audit trail with a recomputed manifest, and an image without the
/// append-only triggers, are each refused, and the live database is left
/// as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_archives_are_refused_and_leave_the_live_database_untouched() {
    let app = TestApp::spawn().await;
    let url = app.raw.database_url.clone().unwrap();
    let dir = app.raw.data_dir.clone().unwrap();
    let provider = app.signed_in("provider").await;
    for i in 0..4 {
        patient_with_note(&app, &provider.access, i).await;
    }
    // A checkpoint of the chain as it is, then the backup.
    amal_ok(&dir, &url, &["audit", "checkpoint"]).await;
    let archive = dir.join("good.amalbak");
    amal_ok(&dir, &url, &["backup", "--to", archive.to_str().unwrap()]).await;
    let (manifest, name, image) = unpack(&archive);
    let events = manifest["audit"]["events"].as_i64().unwrap();
    let keep = events - 5;

    // 1. The last five events cut off, the manifest made to match.
    let (disable, enable): (Vec<&str>, Vec<&str>) = if is_postgres() {
        (
            vec!["ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update"],
            vec!["ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update"],
        )
    } else {
        (
            vec![
                "DROP TRIGGER audit_events_no_update",
                "DROP TRIGGER audit_events_no_delete",
            ],
            vec![
                "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events \
                 BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
                "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events \
                 BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
            ],
        )
    };
    let delete = format!("DELETE FROM audit_events WHERE seq > {keep}");
    let mut sqls = disable.clone();
    sqls.push(&delete);
    sqls.extend(enable);
    let cut = tamper_image(&archive, &image, &sqls).await;
    let head: (String,) = {
        let q = format!("SELECT hash FROM audit_events WHERE seq = {keep}");
        match &app.state.db {
            store::Db::Sqlite(s) => sqlx::query_as(&q).fetch_one(&s.read).await.unwrap(),
            store::Db::Postgres(p) => sqlx::query_as(&q).fetch_one(p).await.unwrap(),
        }
    };
    let mut m = manifest.clone();
    m["audit"]["events"] = json!(keep);
    m["audit"]["headHash"] = json!(head.0);
    m["rowCounts"]["audit_events"] = json!(keep);
    let (tdir, turl) = occupied_target().await;
    // Someone without the signing key: the signature gives it away.
    let outsider = dir.join("cut.amalbak");
    repack(&m, &name, &cut, &outsider);
    let all = amal_fails(
        &dir,
        &url,
        &["backup", "verify", outsider.to_str().unwrap()],
    )
    .await;
    assert!(all.contains("signature does not verify"), "{all}");
    // Someone with it: the installation's checkpoint, taken before the
    // backup, names events the archive no longer has.
    let insider = dir.join("cut-signed.amalbak");
    repack_signed(&m, &name, &cut, &insider);
    let all = amal_fails(&dir, &url, &["backup", "verify", insider.to_str().unwrap()]).await;
    assert!(all.contains("checkpoint"), "{all}");
    // The restore target shares the clinic's checkpoints (same installation).
    let ckpt = "audit-checkpoints";
    std::fs::create_dir_all(tdir.join(ckpt)).unwrap();
    std::fs::copy(
        dir.join(ckpt).join("audit-checkpoints.jsonl"),
        tdir.join(ckpt).join("audit-checkpoints.jsonl"),
    )
    .unwrap();
    for bad in [&outsider, &insider] {
        let all = amal_fails(&tdir, &turl, &["restore", bad.to_str().unwrap(), "--force"]).await;
        assert!(all.contains("not touched"), "{all}");
        assert_untouched(&turl).await;
    }

    // 2. The append-only triggers removed, nothing else changed.
    let mut drop_all = disable.clone();
    if is_postgres() {
        drop_all = vec![
            "DROP TRIGGER audit_events_no_update ON audit_events",
            "DROP TRIGGER audit_events_no_truncate ON audit_events",
        ];
    }
    let open = tamper_image(&archive, &image, &drop_all).await;
    let unguarded = dir.join("unguarded.amalbak");
    repack_signed(&manifest, &name, &open, &unguarded);
    let all = amal_fails(
        &dir,
        &url,
        &["backup", "verify", unguarded.to_str().unwrap()],
    )
    .await;
    assert!(all.contains("append-only triggers"), "{all}");
    let all = amal_fails(
        &tdir,
        &turl,
        &["restore", unguarded.to_str().unwrap(), "--force"],
    )
    .await;
    assert!(
        all.contains("append-only triggers") && all.contains("not touched"),
        "{all}"
    );
    assert_untouched(&turl).await;

    // The untampered archive still restores.
    amal_ok(
        &tdir,
        &turl,
        &["restore", archive.to_str().unwrap(), "--force"],
    )
    .await;
}

/// Backups, restores and schema migrations run by the operator are in the
/// audit trail: the backup in the live database, the restore in the
/// restored one, a rollback before it runs and the upgrade after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_and_migrations_are_audited() {
    let app = TestApp::spawn().await;
    let url = app.raw.database_url.clone().unwrap();
    let dir = app.raw.data_dir.clone().unwrap();
    let provider = app.signed_in("provider").await;
    patient_with_note(&app, &provider.access, 1).await;
    let archive = dir.join("audited.amalbak");
    amal_ok(&dir, &url, &["backup", "--to", archive.to_str().unwrap()]).await;
    let details = |db: store::Db, action: &'static str| async move {
        let q = format!("SELECT detail FROM audit_events WHERE action = '{action}' ORDER BY seq");
        let rows: Vec<(Option<String>,)> = match &db {
            store::Db::Sqlite(s) => sqlx::query_as(&q).fetch_all(&s.read).await.unwrap(),
            store::Db::Postgres(p) => sqlx::query_as(&q).fetch_all(p).await.unwrap(),
        };
        db.close().await;
        rows.into_iter()
            .map(|(d,)| serde_json::from_str::<Value>(&d.unwrap_or_default()).unwrap())
            .collect::<Vec<Value>>()
    };
    let db = store::Db::connect(&url).await.unwrap();
    let made = details(db, "backup.create").await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["via"], "cli");
    assert_eq!(made[0]["file"], "audited.amalbak");

    let (tdir, turl) = fresh().await;
    amal_ok(&tdir, &turl, &["restore", archive.to_str().unwrap()]).await;
    let restored = details(store::Db::connect(&turl).await.unwrap(), "backup.restore").await;
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(restored[0]["file"], "audited.amalbak");
    // The restored chain, with its restore event, still verifies.
    let out = amal_ok(&tdir, &turl, &["audit", "verify"]).await;
    assert!(out.contains("intact"), "{out}");

    amal_ok(&tdir, &turl, &["migrate", "down", "--to", "2"]).await;
    amal_ok(&tdir, &turl, &["migrate", "up"]).await;
    let migrations = details(store::Db::connect(&turl).await.unwrap(), "schema.migrate").await;
    let dirs: Vec<&str> = migrations
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, ["down", "up"], "{migrations:?}");
    assert_eq!(migrations[0]["to"], 2);
    assert_eq!(migrations[1]["from"], 2);
}
