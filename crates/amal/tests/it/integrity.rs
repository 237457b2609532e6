//! The keyed audit chain and its signed checkpoints against an attacker who
//! can write the database (disables the append-only triggers, edits rows,
//! recomputes hashes) but holds neither AUDIT_KEY nor the checkpoint key.
//! Each attack is detected by the API and by `amal audit verify`.

use std::process::Command;

use store::audit::{AuditEvent, AuditKey, StoredEvent};

use crate::helpers::*;

/// Raw SQL as the database owner.
async fn exec(app: &TestApp, sql: &str) -> u64 {
    let r = match &app.state.db {
        store::Db::Sqlite(s) => sqlx::query(sql)
            .execute(&s.write)
            .await
            .map(|r| r.rows_affected()),
        store::Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
    };
    r.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// What an attacker with the owner's rights does first.
async fn disable_guards(app: &TestApp) {
    if is_postgres() {
        exec(app, "ALTER TABLE audit_events DISABLE TRIGGER USER").await;
    } else {
        exec(app, "DROP TRIGGER audit_events_no_update").await;
        exec(app, "DROP TRIGGER audit_events_no_delete").await;
    }
}

/// An app whose chain holds `n` more events after its sign-ins, then a
/// signed checkpoint of the head.
async fn with_checkpointed_chain(n: usize) -> (TestApp, Session) {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    let events: Vec<AuditEvent> = (0..n)
        .map(|i| {
            let mut e = AuditEvent::new("patient.read", "success");
            e.detail = Some(format!("{{\"n\":{i}}}"));
            e
        })
        .collect();
    store::audit::append_now(&app.state.db, &events)
        .await
        .unwrap();
    let c = server::audit_checkpoint::take(&app.state.db, &app.state.config.audit)
        .await
        .unwrap();
    assert!(c.seq >= n as i64);
    assert_verified(&app, &admin).await;
    (app, admin)
}

async fn chain(app: &TestApp) -> Vec<StoredEvent> {
    let mut e = audit_events(app).await;
    e.reverse();
    e
}

async fn assert_verified(app: &TestApp, admin: &Session) {
    let v = app
        .json_ok(app.get("/api/audit/verify", Some(&admin.access)).await, 200)
        .await;
    assert_eq!(v["valid"], true, "{v}");
    assert!(v["checkpointsChecked"].as_i64().unwrap() >= 1, "{v}");
    let (ok, out) = cli_verify(app);
    assert!(ok, "{out}");
}

/// Both verifiers refuse the chain; returns the API's reason.
async fn assert_detected(app: &TestApp, admin: &Session) -> String {
    let v = app
        .json_ok(app.get("/api/audit/verify", Some(&admin.access)).await, 200)
        .await;
    assert_eq!(v["valid"], false, "{v}");
    let (ok, out) = cli_verify(app);
    assert!(!ok, "the CLI exits 1: {out}");
    assert!(out.contains("BROKEN"), "{out}");
    v["reason"].as_str().unwrap().to_string()
}

/// Rewrite `prev_hash`, `hash` and `key_id` of every event from `from_seq`
/// on, as an attacker would after editing or removing rows: `key` is the
/// key they guessed, or `None` for plain SHA-256.
async fn recompute(app: &TestApp, from_seq: i64, key: Option<&AuditKey>) {
    let rows = chain(app).await;
    let mut prev = store::audit::GENESIS.to_string();
    for r in rows {
        if r.seq >= from_seq {
            let e = r.event();
            let hash = match key {
                Some(k) => store::audit::keyed_hash(k, r.seq, &e, &prev),
                None => store::audit::legacy_hash(r.seq, &e, &prev),
            };
            let key_id = key
                .map(|k| format!("'{}'", k.id()))
                .unwrap_or("NULL".into());
            exec(
                app,
                &format!(
                    "UPDATE audit_events SET prev_hash = '{prev}', hash = '{hash}', key_id = {key_id} \
                     WHERE seq = {}",
                    r.seq
                ),
            )
            .await;
            prev = hash;
        } else {
            prev = r.hash.clone();
        }
    }
}

#[tokio::test]
async fn new_events_carry_a_keyed_hash_that_verifies_with_the_key_only() {
    let (app, _admin) = with_checkpointed_chain(5).await;
    let rows = chain(&app).await;
    let key_id = store::audit::current_key_id().unwrap();
    let mut prev = store::audit::GENESIS.to_string();
    for r in &rows {
        assert_eq!(r.key_id.as_deref(), Some(key_id.as_str()));
        assert_ne!(r.hash, store::audit::legacy_hash(r.seq, &r.event(), &prev));
        prev = r.hash.clone();
    }
    // The development key and checkpoint key live outside the database, 0600.
    #[cfg(unix)]
    for f in [
        "audit.key",
        "audit-signing.key",
        "audit-checkpoints/audit-checkpoints.jsonl",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let p = app.raw.data_dir.as_ref().unwrap().join(f);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is private", p.display());
    }
}

#[tokio::test]
async fn deleting_the_last_200_events_is_detected_by_the_checkpoint() {
    let (app, admin) = with_checkpointed_chain(250).await;
    let head = chain(&app).await.last().unwrap().seq;
    disable_guards(&app).await;
    assert_eq!(
        exec(
            &app,
            &format!("DELETE FROM audit_events WHERE seq > {}", head - 200)
        )
        .await,
        200
    );
    // What is left is a valid chain on its own: only the checkpoint shows
    // the loss.
    assert!(store::audit::verify(&app.state.db).await.unwrap().valid);
    let why = assert_detected(&app, &admin).await;
    assert!(why.contains("checkpoint"), "{why}");
}

#[tokio::test]
async fn editing_an_event_and_recomputing_with_plain_sha256_is_detected() {
    let (app, admin) = with_checkpointed_chain(20).await;
    let victim = chain(&app).await[10].clone();
    disable_guards(&app).await;
    exec(
        &app,
        &format!(
            "UPDATE audit_events SET outcome = 'failure' WHERE seq = {}",
            victim.seq
        ),
    )
    .await;
    recompute(&app, victim.seq, None).await;
    let why = assert_detected(&app, &admin).await;
    assert!(why.contains("unkeyed"), "{why}");
    // Rewriting the whole chain as legacy events passes the chain rule but
    // not the signed checkpoint.
    recompute(&app, 1, None).await;
    assert!(store::audit::verify(&app.state.db).await.unwrap().valid);
    let why = assert_detected(&app, &admin).await;
    assert!(why.contains("checkpoint"), "{why}");
}

#[tokio::test]
async fn editing_an_event_and_recomputing_with_a_guessed_key_is_detected() {
    let (app, admin) = with_checkpointed_chain(20).await;
    let victim = chain(&app).await[10].clone();
    disable_guards(&app).await;
    exec(
        &app,
        &format!(
            "UPDATE audit_events SET detail = NULL WHERE seq = {}",
            victim.seq
        ),
    )
    .await;
    let guess = AuditKey::new(b"a guess at the audit key");
    recompute(&app, victim.seq, Some(&guess)).await;
    let why = assert_detected(&app, &admin).await;
    assert!(why.contains("unknown key"), "{why}");
    // Keeping the real key id does not help: the HMAC does not match.
    let real = store::audit::current_key_id().unwrap();
    exec(
        &app,
        &format!(
            "UPDATE audit_events SET key_id = '{real}' WHERE key_id = '{}'",
            guess.id()
        ),
    )
    .await;
    let why = assert_detected(&app, &admin).await;
    assert!(why.contains("does not match"), "{why}");
}

#[tokio::test]
async fn deleting_an_event_and_renumbering_is_detected() {
    let (app, admin) = with_checkpointed_chain(20).await;
    let victim = chain(&app).await[8].clone();
    disable_guards(&app).await;
    exec(
        &app,
        &format!("DELETE FROM audit_events WHERE seq = {}", victim.seq),
    )
    .await;
    // Two steps, so no intermediate row collides on the primary key.
    exec(
        &app,
        &format!(
            "UPDATE audit_events SET seq = -seq WHERE seq > {}",
            victim.seq
        ),
    )
    .await;
    exec(&app, "UPDATE audit_events SET seq = -seq - 1 WHERE seq < 0").await;
    recompute(&app, victim.seq, None).await;
    assert_detected(&app, &admin).await;
    recompute(&app, 1, None).await;
    let why = assert_detected(&app, &admin).await;
    assert!(why.contains("checkpoint"), "{why}");
}

#[tokio::test]
async fn inserting_an_event_is_detected() {
    let (app, admin) = with_checkpointed_chain(20).await;
    let rows = chain(&app).await;
    let head = rows.last().unwrap();
    disable_guards(&app).await;
    // A forged event appended at the head, linked and hashed as well as the
    // attacker can (plain SHA-256; the key is not in the database).
    let forged = AuditEvent::new("patient.read", "success");
    let seq = head.seq + 1;
    let hash = store::audit::legacy_hash(seq, &forged, &head.hash);
    let at = forged.occurred_at.format("%Y-%m-%dT%H:%M:%S%.6fZ");
    let id = if is_postgres() {
        format!("'{}'", forged.id)
    } else {
        format!("X'{}'", forged.id.simple())
    };
    exec(
        &app,
        &format!(
            "INSERT INTO audit_events (seq, id, occurred_at, action, outcome, prev_hash, hash) \
             VALUES ({seq}, {id}, '{at}', 'patient.read', 'success', '{}', '{hash}')",
            head.hash
        ),
    )
    .await;
    let why = assert_detected(&app, &admin).await;
    assert!(why.contains("unkeyed"), "{why}");
}

#[tokio::test]
async fn an_emptied_audit_table_is_detected() {
    let (app, admin) = with_checkpointed_chain(20).await;
    disable_guards(&app).await;
    if is_postgres() {
        exec(&app, "TRUNCATE audit_events").await;
    } else {
        exec(&app, "DELETE FROM audit_events").await;
    }
    assert!(store::audit::verify(&app.state.db).await.unwrap().valid);
    let why = assert_detected(&app, &admin).await;
    assert!(why.contains("deleted from the end"), "{why}");
}

#[tokio::test]
async fn a_forged_checkpoint_line_is_refused() {
    let (app, admin) = with_checkpointed_chain(5).await;
    let dir = app.state.config.audit.checkpoint_dir.clone();
    let mut c = store::checkpoint::latest(&dir).unwrap().unwrap();
    c.seq += 1000;
    store::checkpoint::append(&dir, &c).unwrap();
    let why = assert_detected(&app, &admin).await;
    assert!(why.contains("signature"), "{why}");
}

#[tokio::test]
async fn serve_writes_a_checkpoint_after_n_events() {
    let app = TestApp::spawn_with(|r| r.audit_checkpoint_every = Some("5".into())).await;
    let nurse = app.signed_in("nurse").await;
    let p = app.create_patient(&nurse.access, "Lea", "Brandt").await;
    for _ in 0..6 {
        app.get(&format!("/api/patients/{}", sid(&p)), Some(&nurse.access))
            .await;
    }
    let dir = app.state.config.audit.checkpoint_dir.clone();
    // The task runs beside the requests: wait for its line (bounded).
    let mut found = None;
    for _ in 0..200 {
        if let Some(c) = store::checkpoint::latest(&dir).unwrap() {
            found = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let c = found.expect("a checkpoint was written");
    assert!(c.verify(&app.state.config.audit.verifying_key()));
    assert_eq!(
        c.audit_key_id.as_deref(),
        store::audit::current_key_id().as_deref()
    );
}

#[tokio::test]
async fn a_rotated_key_keeps_old_events_verifying() {
    let old = server::config::generate_secret();
    let app = TestApp::spawn_with(|r| r.audit_key = Some(old.clone().into())).await;
    app.signed_in("admin").await;
    // A second process (the CLI) after the rotation: new events under the
    // new key, old ones verify with AUDIT_KEY_PREVIOUS only.
    let new = server::config::generate_secret();
    let rotated = [
        ("AUDIT_KEY", new.as_str()),
        ("AUDIT_KEY_PREVIOUS", old.as_str()),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_amal"))
        .env_clear()
        .env("DATABASE_URL", app.raw.database_url.as_ref().unwrap())
        .env("AMAL_DATA_DIR", app.raw.data_dir.as_ref().unwrap())
        .envs(rotated)
        .args([
            "user",
            "create",
            "--email",
            "rotated@example.org",
            "--role",
            "admin",
            "--password-stdin",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"a long enough passphrase 42\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: std::collections::BTreeSet<Option<String>> =
        chain(&app).await.into_iter().map(|e| e.key_id).collect();
    assert_eq!(ids.len(), 2, "events under both keys: {ids:?}");
    let (ok, out) = cli_verify_with(&app, &rotated);
    assert!(ok, "{out}");
    let (ok, out) = cli_verify_with(&app, &[("AUDIT_KEY", new.as_str())]);
    assert!(
        !ok,
        "without the previous key the old events do not verify: {out}"
    );
    assert!(out.contains("unknown key"), "{out}");
}

/// PostgreSQL deployment with a restricted runtime role: migrations run as
/// the owner, `serve` connects as a role that may only SELECT and INSERT on
/// the audit table, so it cannot UPDATE, DELETE, TRUNCATE or disable the
/// triggers even if the server itself is taken over.
#[tokio::test]
async fn postgres_runtime_role_may_only_insert_and_select_audit_rows() {
    if !postgres_only("roles and grants are PostgreSQL's") {
        return;
    }
    let app = TestApp::spawn().await;
    let owner_url = app.raw.database_url.clone().unwrap();
    let role = format!("amal_app_{}", uuid::Uuid::new_v4().simple());
    let dbname = owner_url.rsplit('/').next().unwrap().to_string();
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT CONNECT ON DATABASE {dbname} TO {role}"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"),
        format!("REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM {role}"),
    ] {
        exec(&app, &sql).await;
    }
    let runtime_url = owner_url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(runtime_url, owner_url);
    // `serve --no-migrate` as the runtime role (the owner migrated).
    let mut raw = app.raw.clone();
    raw.database_url = Some(runtime_url.clone());
    let cfg = server::Config::resolve(raw).unwrap();
    let state = server::prepare(cfg, false).await.unwrap();
    let db = state.db.clone();
    store::audit::append_now(&db, &[AuditEvent::new("patient.read", "success")])
        .await
        .unwrap();
    assert!(store::audit::verify(&db).await.unwrap().valid);
    let store::Db::Postgres(pool) = &db else {
        unreachable!()
    };
    for sql in [
        "UPDATE audit_events SET outcome = 'failure'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER USER",
        "DROP TRIGGER audit_events_no_update ON audit_events",
    ] {
        let e = sqlx::query(sql).execute(pool).await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("permission denied") || msg.contains("must be owner"),
            "{sql}: {msg}"
        );
    }
    db.close().await;
}
