//! The audit trail: append-only in the database, hash-chained, verified by
//! the API and by `amal audit verify`, filterable by administrators.

use serde_json::{json, Value};

use crate::helpers::*;

/// Run raw SQL as the database owner (the tests play the attacker here).
async fn exec(app: &TestApp, sql: &str) -> Result<u64, sqlx::Error> {
    match &app.state.db {
        store::Db::Sqlite(s) => sqlx::query(sql)
            .execute(&s.write)
            .await
            .map(|r| r.rows_affected()),
        store::Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
    }
}

async fn drop_guards(app: &TestApp) {
    if is_postgres() {
        exec(app, "DROP TRIGGER audit_events_no_update ON audit_events")
            .await
            .unwrap();
    } else {
        exec(app, "DROP TRIGGER audit_events_no_update")
            .await
            .unwrap();
        exec(app, "DROP TRIGGER audit_events_no_delete")
            .await
            .unwrap();
    }
}

/// An app with some history: sign-ins, a patient, reads.
async fn with_history() -> (TestApp, Session, Vec<store::audit::StoredEvent>) {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    let nurse = app.signed_in("nurse").await;
    let p = app.create_patient(&nurse.access, "Hana", "Yilmaz").await;
    for _ in 0..3 {
        app.get(&format!("/api/patients/{}", sid(&p)), Some(&nurse.access))
            .await;
    }
    let mut events = audit_events(&app).await;
    events.reverse();
    (app, admin, events)
}

#[tokio::test]
async fn the_database_refuses_edits_and_deletions() {
    let (app, _, _) = with_history().await;
    assert!(exec(&app, "UPDATE audit_events SET outcome = 'x'")
        .await
        .is_err());
    assert!(exec(&app, "DELETE FROM audit_events").await.is_err());
    assert!(store::audit::verify(&app.state.db).await.unwrap().valid);
}

#[tokio::test]
async fn verify_detects_an_edited_event() {
    let (app, admin, events) = with_history().await;
    let v = app
        .json_ok(app.get("/api/audit/verify", Some(&admin.access)).await, 200)
        .await;
    assert_eq!(v["valid"], true);
    assert_eq!(v["events"].as_i64().unwrap() as usize, events.len());
    assert!(cli_verify(&app).0);
    drop_guards(&app).await;
    let victim = &events[3];
    exec(
        &app,
        &format!(
            "UPDATE audit_events SET outcome = 'failure' WHERE seq = {}",
            victim.seq
        ),
    )
    .await
    .unwrap();
    let v = app
        .json_ok(app.get("/api/audit/verify", Some(&admin.access)).await, 200)
        .await;
    assert_eq!(v["valid"], false);
    assert_eq!(v["firstBrokenId"], victim.id.to_string());
    let (ok, out) = cli_verify(&app);
    assert!(!ok, "exit 1");
    assert!(out.contains(&victim.id.to_string()), "{out}");
}

#[tokio::test]
async fn verify_detects_a_deleted_event() {
    let (app, admin, events) = with_history().await;
    drop_guards(&app).await;
    exec(
        &app,
        &format!("DELETE FROM audit_events WHERE seq = {}", events[2].seq),
    )
    .await
    .unwrap();
    let v = app
        .json_ok(app.get("/api/audit/verify", Some(&admin.access)).await, 200)
        .await;
    assert_eq!(v["valid"], false);
    assert_eq!(
        v["firstBrokenId"],
        events[3].id.to_string(),
        "the event after the gap"
    );
    assert!(!cli_verify(&app).0);
}

#[tokio::test]
async fn verify_detects_an_inserted_event() {
    let (app, admin, events) = with_history().await;
    // Forge an event between two real ones, with a plausible but wrong hash.
    let before = &events[1];
    let forged_seq = events.last().unwrap().seq + 1;
    exec(&app, &format!(
        "INSERT INTO audit_events (seq, id, occurred_at, action, outcome, prev_hash, hash) VALUES ({forged_seq}, {}, {}, 'patient.read', 'success', '{}', '{}')",
        if is_postgres() { format!("'{}'", uuid::Uuid::now_v7()) } else { format!("x'{}'", uuid::Uuid::now_v7().simple()) },
        if is_postgres() { "now()".to_string() } else { "'2026-01-01T00:00:00+00:00'".to_string() },
        before.hash,
        "f".repeat(64)
    )).await.unwrap();
    let v = app
        .json_ok(app.get("/api/audit/verify", Some(&admin.access)).await, 200)
        .await;
    assert_eq!(v["valid"], false);
    assert_eq!(
        v["events"].as_i64().unwrap() as usize,
        events.len(),
        "every real event still verifies"
    );
    assert!(!cli_verify(&app).0);
}

#[tokio::test]
async fn audit_log_filters_and_pagination() {
    let (app, admin, events) = with_history().await;
    let patient = events.iter().find_map(|e| e.patient_id).unwrap();
    let v = app
        .json_ok(
            app.get(
                &format!("/api/audit?patientId={patient}"),
                Some(&admin.access),
            )
            .await,
            200,
        )
        .await;
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "create + 3 reads");
    assert!(items.iter().all(|e| e["patientId"] == patient.to_string()));
    let reads = app
        .json_ok(
            app.get(
                &format!("/api/audit?patientId={patient}&action=patient.read"),
                Some(&admin.access),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(reads["items"].as_array().unwrap().len(), 3);
    let user = events
        .iter()
        .find(|e| e.action == "patient.create")
        .unwrap()
        .actor_id
        .unwrap();
    let by_user = app
        .json_ok(
            app.get(
                &format!("/api/audit?userId={user}&limit=2"),
                Some(&admin.access),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(by_user["items"].as_array().unwrap().len(), 2);
    let next = by_user["nextCursor"].as_str().unwrap();
    let page2 = app
        .json_ok(
            app.get(
                &format!("/api/audit?userId={user}&limit=2&cursor={next}"),
                Some(&admin.access),
            )
            .await,
            200,
        )
        .await;
    let first_seq: Vec<i64> = by_user["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    let second_seq: Vec<i64> = page2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(
        first_seq[0] > first_seq[1] && first_seq[1] > second_seq[0],
        "newest first, no overlap"
    );
    let future = app
        .json_ok(
            app.get("/api/audit?from=2999-01-01T00:00:00Z", Some(&admin.access))
                .await,
            200,
        )
        .await;
    assert!(future["items"].as_array().unwrap().is_empty());
    assert_problem(
        app.get("/api/audit?patientId=nope", Some(&admin.access))
            .await,
        400,
        "bad_request",
    )
    .await;
}

/// Searches and the day's worklist record which patients they showed: an
/// administrator asking "who saw this patient" finds them.
#[tokio::test]
async fn search_and_worklist_record_the_patients_they_showed() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    let provider = app.signed_in("provider").await;
    let a = app
        .create_patient(&provider.access, "Shown", "Zebedee")
        .await;
    let b = app
        .create_patient(&provider.access, "Shown", "Zebedee")
        .await;
    let hidden = app.create_patient(&provider.access, "Other", "Quill").await;
    let found = app
        .json_ok(
            app.get("/api/patients?q=zebedee", Some(&provider.access))
                .await,
            200,
        )
        .await;
    assert_eq!(found["items"].as_array().unwrap().len(), 2);
    let seen_by_search = |id: Value| {
        let app = &app;
        let admin = &admin;
        async move {
            let v = app
                .json_ok(
                    app.get(
                        &format!(
                            "/api/audit?patientId={}&action=patient.search",
                            id.as_str().unwrap()
                        ),
                        Some(&admin.access),
                    )
                    .await,
                    200,
                )
                .await;
            v["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(seen_by_search(a["id"].clone()).await, 1);
    assert_eq!(seen_by_search(b["id"].clone()).await, 1);
    assert_eq!(seen_by_search(hidden["id"].clone()).await, 0);

    // A draft note puts the patient on the provider's day.
    let r = app
        .post(
            &format!("/api/patients/{}/notes", hidden["id"].as_str().unwrap()),
            Some(&provider.access),
            json!({"title": "Visit", "content": "Seen today."}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    app.json_ok(app.get("/api/overview", Some(&provider.access)).await, 200)
        .await;
    let v = app
        .json_ok(
            app.get(
                &format!(
                    "/api/audit?patientId={}&action=overview.day",
                    hidden["id"].as_str().unwrap()
                ),
                Some(&admin.access),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
}

/// Issue 11 item 4: each start records its settings; a changed setting is
/// named, a secret shows only as a keyed fingerprint, never as its value.
#[tokio::test]
async fn each_start_audits_its_settings_and_names_what_changed() {
    use secrecy::ExposeSecret;
    let app = TestApp::spawn().await;
    let loaded = |app: &TestApp| {
        let db = app.state.db.clone();
        async move {
            let f = store::audit::AuditFilter {
                action: Some("config.loaded".into()),
                ..Default::default()
            };
            let mut rows = store::audit::list(&db, &f, 100).await.unwrap();
            rows.reverse();
            rows.into_iter()
                .map(|e| serde_json::from_str::<serde_json::Value>(&e.detail.unwrap()).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let first = loaded(&app).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["first"], true);
    let settings = &first[0]["settings"];
    assert_eq!(settings["AMAL_RATE_LIMIT_READ"], "10000/60s");
    assert_eq!(settings["AMAL_RATE_LIMIT_UNAUTHENTICATED"], "60/60s");
    let jwt = app
        .raw
        .jwt_secret
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_string();
    let text = first[0].to_string();
    assert!(!text.contains(&jwt), "a secret's value is never audited");
    assert!(settings["JWT_SECRET"]
        .as_str()
        .unwrap()
        .starts_with("hmac:"));

    // Same database, two settings changed (one of them a secret).
    let mut raw = app.raw.clone();
    raw.log_level = Some("debug".into());
    raw.jwt_secret = Some(server::config::generate_secret().into());
    let again = TestApp::spawn_raw(raw.clone()).await;
    let events = loaded(&again).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["first"], false);
    assert_eq!(
        events[1]["changed"],
        serde_json::json!(["JWT_SECRET", "LOG_LEVEL"])
    );
    assert_ne!(events[1]["settings"]["JWT_SECRET"], settings["JWT_SECRET"]);

    // A restart with nothing changed names nothing.
    let third = TestApp::spawn_raw(raw).await;
    let events = loaded(&third).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["changed"], serde_json::json!([]));
    let (ok, out) = cli_verify(&third);
    assert!(ok, "{out}");
}

/// One append larger than a statement's chunk (32 rows on SQLite, 500 on
/// PostgreSQL) is stored whole, in order, and the chain verifies.
#[tokio::test]
async fn an_append_of_many_chunks_keeps_every_event_in_order() {
    let app = TestApp::spawn().await;
    let before = audit_events(&app).await.len();
    let events: Vec<store::audit::AuditEvent> = (0..1100)
        .map(|i| {
            let mut e = store::audit::AuditEvent::new("patient.read", "success");
            e.detail = Some(json!({ "n": i }).to_string());
            e
        })
        .collect();
    store::audit::append_now(&app.state.db, &events)
        .await
        .unwrap();
    let all = audit_events(&app).await;
    assert_eq!(all.len(), before + 1100);
    // Newest first: the last appended is n = 1099, seq ascending by one.
    let ns: Vec<i64> = all
        .iter()
        .take(1100)
        .map(|e| {
            serde_json::from_str::<Value>(e.detail.as_deref().unwrap()).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, (0..1100).rev().collect::<Vec<i64>>());
    let (ok, out) = cli_verify(&app);
    assert!(ok, "{out}");
}
