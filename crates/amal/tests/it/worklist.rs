//! Nothing clinical slips through (issue 12): the day's worklist, the
//! chart's critical box and banner, vital signs, the lifecycle of allergies
//! and problems, duplicate registrations and lab units.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

fn ids(v: &Value, list: &str) -> Vec<String> {
    v[list]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["lab"]["id"].as_str().unwrap().to_string())
        .collect()
}

async fn record_lab(
    app: &TestApp,
    token: &str,
    patient: &str,
    code: &str,
    value: f64,
    unit: &str,
    at: &str,
) -> Value {
    app.json_ok(
        app.post(
            &format!("/api/patients/{patient}/labs"),
            Some(token),
            json!({"code": code, "value": value, "unit": unit, "collectedAt": at}),
        )
        .await,
        201,
    )
    .await
}

async fn overview(app: &TestApp, token: &str, pid: &str) -> Value {
    let r = app
        .get(&format!("/api/patients/{pid}/overview"), Some(token))
        .await;
    app.json_ok(r, 200).await
}

async fn day_of(app: &TestApp, token: &str) -> Value {
    app.json_ok(app.get("/api/overview", Some(token)).await, 200)
        .await
}

fn days_ago(n: i64) -> String {
    (Utc::now() - Duration::days(n)).to_rfc3339()
}

#[tokio::test]
async fn a_critical_result_recorded_now_is_the_first_row_of_the_providers_day() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await.access;
    let nurse = app.signed_in("nurse").await.access;
    let old = sid(&app.create_patient(&prov, "Olga", "Older").await);
    // Older abnormal and critical results, all unreviewed.
    for i in 0..5 {
        record_lab(
            &app,
            &nurse,
            &old,
            "2345-7",
            200.0 + f64::from(i),
            "mg/dL",
            &days_ago(30 + i64::from(i)),
        )
        .await;
    }
    record_lab(&app, &nurse, &old, "2345-7", 510.0, "mg/dL", &days_ago(60)).await;
    let p = app.create_patient(&prov, "Kalia", "Potassio").await;
    let pid = sid(&p);
    let k = record_lab(
        &app,
        &nurse,
        &pid,
        "2823-3",
        6.8,
        "mmol/L",
        &Utc::now().to_rfc3339(),
    )
    .await;
    assert_eq!(k["flag"], "critical_high");

    let day = day_of(&app, &prov).await;
    let results = &day["unreviewedResults"];
    assert_eq!(results["total"], 7);
    assert_eq!(results["criticalTotal"], 2);
    let first = &results["items"][0];
    assert_eq!(
        first["lab"]["id"], k["id"],
        "the new potassium leads the day"
    );
    assert_eq!(first["patient"]["name"], "Potassio, Kalia");
    assert_eq!(first["patient"]["mrn"], p["mrn"]);
    assert!(first["patient"]["age"].as_i64().unwrap() >= 40);
    assert_eq!(
        results["items"][1]["lab"]["value"], 510.0,
        "then the older critical"
    );
    assert_eq!(results["items"][2]["lab"]["flag"], "high", "then abnormal");

    // Drafts carry the patient; a nurse's draft waits for a provider's
    // co-signature, and is not on the nurse's own co-sign list.
    let n = app
        .json_ok(
            app.post(
                &format!("/api/patients/{pid}/notes"),
                Some(&nurse),
                json!({"title": "Triage"}),
            )
            .await,
            201,
        )
        .await;
    let day = day_of(&app, &prov).await;
    assert_eq!(day["cosignDrafts"]["total"], 1);
    assert_eq!(day["cosignDrafts"]["items"][0]["note"]["id"], n["id"]);
    assert_eq!(
        day["cosignDrafts"]["items"][0]["patient"]["name"],
        "Potassio, Kalia"
    );
    let nday = day_of(&app, &nurse).await;
    assert!(nday["cosignDrafts"].is_null());
    assert_eq!(nday["draftNotes"]["items"][0]["patient"]["mrn"], p["mrn"]);

    // Today's prescriptions carry the patient too.
    let rx = app.json_ok(app.post(&format!("/api/patients/{pid}/prescriptions"), Some(&prov), json!({"medication": "Furosemide", "dose": "40 mg", "route": "oral", "frequency": "once daily", "quantity": 30})).await, 201).await;
    app.json_ok(
        app.post(
            &format!("/api/prescriptions/{}/issue", sid(&rx)),
            Some(&prov),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    let day = day_of(&app, &prov).await;
    assert_eq!(day["prescriptionsIssuedToday"]["total"], 1);
    assert_eq!(
        day["prescriptionsIssuedToday"]["items"][0]["patient"]["name"],
        "Potassio, Kalia"
    );

    // A tampered cursor is a 422 problem.
    assert_problem(
        app.get("/api/overview?resultsCursor=bm9wZQ", Some(&prov))
            .await,
        422,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn one_hundred_twenty_abnormal_results_page_without_loss() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await.access;
    let pid = sid(&app.create_patient(&prov, "Pagina", "Longlist").await);
    let mut recorded = HashSet::new();
    for i in 0..120 {
        // Every sixth is critical; the rest high.
        let value = if i % 6 == 0 {
            600.0
        } else {
            150.0 + f64::from(i)
        };
        let lab = record_lab(
            &app,
            &prov,
            &pid,
            "2345-7",
            value,
            "mg/dL",
            &days_ago(i64::from(i % 7)),
        )
        .await;
        recorded.insert(sid(&lab));
    }
    let mut seen = Vec::new();
    let mut flags = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/api/overview?limit=50".to_string(),
            Some(c) => format!("/api/overview?limit=50&resultsCursor={c}"),
        };
        let day = app.json_ok(app.get(&path, Some(&prov)).await, 200).await;
        assert_eq!(day["unreviewedResults"]["total"], 120);
        assert_eq!(day["unreviewedResults"]["criticalTotal"], 20);
        seen.extend(ids(&day, "unreviewedResults"));
        for w in day["unreviewedResults"]["items"].as_array().unwrap() {
            flags.push(w["lab"]["flag"].as_str().unwrap().to_string());
        }
        pages += 1;
        match day["unreviewedResults"]["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 120, "no row lost or repeated");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), recorded);
    let criticals = flags
        .iter()
        .take_while(|f| f.starts_with("critical"))
        .count();
    assert_eq!(criticals, 20, "all critical results come first");
}

#[tokio::test]
async fn an_older_unreviewed_critical_shows_in_the_chart_box_after_a_newer_normal_result() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await;
    let nurse = app.signed_in("nurse").await.access;
    let pid = sid(&app.create_patient(&prov.access, "Gluco", "Hidden").await);
    let crit = record_lab(&app, &nurse, &pid, "2345-7", 525.0, "mg/dL", &days_ago(3)).await;
    record_lab(&app, &nurse, &pid, "2345-7", 95.0, "mg/dL", &days_ago(1)).await;
    let o = overview(&app, &nurse, &pid).await;
    assert_eq!(o["recentLabs"][0]["value"], 95.0, "the latest is normal");
    assert_eq!(o["unreviewedCriticalCount"], 1);
    assert_eq!(o["unreviewedCriticalLabs"][0]["id"], crit["id"]);
    let b = app
        .json_ok(
            app.get(&format!("/api/patients/{pid}/banner"), Some(&nurse))
                .await,
            200,
        )
        .await;
    assert_eq!(b["unreviewedCriticalCount"], 1);
    assert!(b["age"].is_number());

    // Review with an action taken and a comment; the box empties and the
    // result says who reviewed it, when and what was done.
    assert_problem(
        app.post(
            &format!("/api/labs/{}/review", sid(&crit)),
            Some(&prov.access),
            json!({"action": "x".repeat(201)}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let r = app
        .json_ok(
            app.post(
                &format!("/api/labs/{}/review", sid(&crit)),
                Some(&prov.access),
                json!({"action": "patient called", "comment": "Repeat fasting glucose tomorrow."}),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(r["reviewAction"], "patient called");
    assert_eq!(r["reviewComment"], "Repeat fasting glucose tomorrow.");
    assert_eq!(r["reviewedBy"], json!(prov.user_id));
    let o = overview(&app, &nurse, &pid).await;
    assert_eq!(o["unreviewedCriticalCount"], 0);
    assert_eq!(o["unreviewedCriticalLabs"], json!([]));
}

#[tokio::test]
async fn a_unit_that_does_not_fit_is_stored_unflagged_and_never_hides_a_flagged_result() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await.access;
    let pid = sid(&app.create_patient(&prov, "Unita", "Mismatch").await);
    let flagged = record_lab(&app, &prov, &pid, "2823-3", 6.8, "mmol/L", &days_ago(2)).await;
    let odd = record_lab(&app, &prov, &pid, "2823-3", 6.8, "mg/dL", &days_ago(1)).await;
    assert!(odd["flag"].is_null());
    assert!(odd["warning"]
        .as_str()
        .unwrap()
        .contains("differs from reference unit mmol/L"));
    let o = overview(&app, &prov, &pid).await;
    let shown: Vec<&Value> = o["recentLabs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["code"] == "2823-3")
        .collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown
        .iter()
        .any(|l| l["id"] == flagged["id"] && l["flag"] == "critical_high"));
    assert_eq!(o["unreviewedCriticalLabs"][0]["id"], flagged["id"]);
}

async fn vitals(app: &TestApp, token: &str, pid: &str, body: Value) -> reqwest::Response {
    app.post(&format!("/api/patients/{pid}/vitals"), Some(token), body)
        .await
}

#[tokio::test]
async fn vitals_are_validated_and_flagged_at_the_limits() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await.access;
    let nurse = app.signed_in("nurse").await.access;
    let staff = app.signed_in("staff").await.access;
    let pid = sid(&app.create_patient(&prov, "Vita", "Signs").await);

    // At the limits: normal limits are normal, critical limits critical.
    let v = app.json_ok(vitals(&app, &nurse, &pid, json!({"systolic": 129, "diastolic": 79, "heartRate": 100, "respiratoryRate": 20, "temperature": 38.0, "spo2": 96, "weightKg": 80, "heightCm": 180, "recordedAt": days_ago(2)})).await, 201).await;
    for k in [
        "systolic",
        "diastolic",
        "heartRate",
        "respiratoryRate",
        "temperature",
        "spo2",
        "bmi",
    ] {
        assert_eq!(v["flags"][k], "normal", "{k}: {v}");
    }
    assert_eq!(v["bmi"], 24.7);
    assert_eq!(v["critical"], false);
    let v = app.json_ok(vitals(&app, &nurse, &pid, json!({"systolic": 130, "diastolic": 80, "heartRate": 101, "respiratoryRate": 21, "temperature": 38.1, "spo2": 95, "weightKg": 81, "recordedAt": days_ago(1)})).await, 201).await;
    for k in [
        "systolic",
        "diastolic",
        "heartRate",
        "respiratoryRate",
        "temperature",
    ] {
        assert_eq!(v["flags"][k], "high", "{k}: {v}");
    }
    assert_eq!(v["flags"]["spo2"], "low");
    assert_eq!(v["bmi"], 25.0, "BMI from the latest recorded height");
    assert_eq!(v["flags"]["bmi"], "high");
    let crit = app.json_ok(vitals(&app, &prov, &pid, json!({"systolic": 180, "diastolic": 120, "heartRate": 131, "respiratoryRate": 8, "temperature": 35.0, "spo2": 91})).await, 201).await;
    assert_eq!(crit["flags"]["systolic"], "critical_high");
    assert_eq!(crit["flags"]["diastolic"], "critical_high");
    assert_eq!(crit["flags"]["heartRate"], "critical_high");
    assert_eq!(crit["flags"]["respiratoryRate"], "critical_low");
    assert_eq!(crit["flags"]["temperature"], "critical_low");
    assert_eq!(crit["flags"]["spo2"], "critical_low");
    assert_eq!(crit["critical"], true);

    // Bad input: clear 422s naming the fields, nothing stored.
    let e = assert_problem(
        vitals(&app, &nurse, &pid, json!({"temperature": 98.6})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(e["errors"][0]["field"], "temperature");
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("°F"));
    assert_problem(
        vitals(&app, &nurse, &pid, json!({})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        vitals(&app, &nurse, &pid, json!({"systolic": 80, "diastolic": 90})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        vitals(&app, &nurse, &pid, json!({"spo2": "high"})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        vitals(
            &app,
            &nurse,
            &pid,
            json!({"heartRate": 70, "recordedAt": (Utc::now() + Duration::days(1)).to_rfc3339()}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        vitals(&app, &staff, &pid, json!({"heartRate": 70})).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        app.get(&format!("/api/patients/{pid}/vitals"), Some(&staff))
            .await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        vitals(
            &app,
            &nurse,
            "0190a4c2-0000-7000-8000-000000000000",
            json!({"heartRate": 70}),
        )
        .await,
        404,
        "not_found",
    )
    .await;

    let list = app
        .json_ok(
            app.get(&format!("/api/patients/{pid}/vitals?limit=2"), Some(&nurse))
                .await,
            200,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(list["items"][0]["id"], crit["id"], "newest first");
    let more = list["nextCursor"].as_str().unwrap();
    let rest = app
        .json_ok(
            app.get(
                &format!("/api/patients/{pid}/vitals?limit=2&cursor={more}"),
                Some(&nurse),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);

    let o = overview(&app, &nurse, &pid).await;
    assert_eq!(o["latestVitals"]["id"], crit["id"]);
    let day = day_of(&app, &prov).await;
    assert_eq!(day["criticalVitals"]["total"], 1);
    assert_eq!(
        day["criticalVitals"]["items"][0]["patient"]["name"],
        "Signs, Vita"
    );
    let created: Vec<_> = audit_events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "vitals.create")
        .collect();
    assert_eq!(created.len(), 3);
}

#[tokio::test]
async fn an_allergy_entered_in_error_stays_in_the_history_and_stops_blocking_prescriptions() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await.access;
    let nurse = app.signed_in("nurse").await.access;
    let pid = sid(&app.create_patient(&prov, "Erra", "Tum").await);
    // "No known drug allergies" first; a later allergy replaces it.
    let nkda = app
        .json_ok(
            app.post(
                &format!("/api/patients/{pid}/allergies/none"),
                Some(&nurse),
                json!({}),
            )
            .await,
            201,
        )
        .await;
    assert!(nkda["statedAt"].is_string());
    let o = overview(&app, &prov, &pid).await;
    assert!(o["noKnownDrugAllergies"]["statedAt"].is_string());
    let a = app
        .json_ok(
            app.post(
                &format!("/api/patients/{pid}/allergies"),
                Some(&nurse),
                json!({"substance": "Penicillin", "reaction": "anaphylaxis", "severity": "severe"}),
            )
            .await,
            201,
        )
        .await;
    assert_eq!(a["status"], "active");
    assert_eq!(a["version"], 1);
    let o = overview(&app, &prov, &pid).await;
    assert!(
        o["noKnownDrugAllergies"].is_null(),
        "the allergy replaced the statement"
    );
    assert_problem(
        app.post(
            &format!("/api/patients/{pid}/allergies/none"),
            Some(&nurse),
            json!({}),
        )
        .await,
        409,
        "conflict",
    )
    .await;

    let rx = sid(&app.json_ok(app.post(&format!("/api/patients/{pid}/prescriptions"), Some(&prov), json!({"medication": "Amoxicillin", "dose": "500 mg", "route": "oral", "frequency": "three times daily", "quantity": 21})).await, 201).await);
    assert_problem(
        app.post(
            &format!("/api/prescriptions/{rx}/issue"),
            Some(&prov),
            json!({}),
        )
        .await,
        409,
        "allergy_conflict",
    )
    .await;

    let path = format!("/api/patients/{pid}/allergies/{}", sid(&a));
    let body = json!({"status": "entered_in_error"});
    assert_problem(
        app.patch(&path, &nurse, None, body.clone()).await,
        428,
        "precondition_required",
    )
    .await;
    assert_problem(
        app.patch(&path, &nurse, Some(7), body.clone()).await,
        409,
        "conflict",
    )
    .await;
    assert_problem(
        app.patch(&path, &nurse, Some(1), json!({"status": "deleted"}))
            .await,
        422,
        "validation_failed",
    )
    .await;
    let other = sid(&app.create_patient(&prov, "Otra", "Persona").await);
    assert_problem(
        app.patch(
            &format!("/api/patients/{other}/allergies/{}", sid(&a)),
            &nurse,
            Some(1),
            body.clone(),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let r = app.patch(&path, &nurse, Some(1), body.clone()).await;
    assert_eq!(r.headers()["etag"], "\"2\"");
    let e = app.json_ok(r, 200).await;
    assert_eq!(e["status"], "entered_in_error");
    assert_eq!(e["version"], 2);
    // Final: no further change.
    assert_problem(
        app.patch(&path, &nurse, Some(2), json!({"status": "active"}))
            .await,
        409,
        "conflict",
    )
    .await;

    let o = overview(&app, &prov, &pid).await;
    assert_eq!(o["allergies"], json!([]));
    assert_eq!(o["allergyHistory"][0]["substance"], "Penicillin");
    assert_eq!(o["allergyHistory"][0]["status"], "entered_in_error");
    let issued = app
        .json_ok(
            app.post(
                &format!("/api/prescriptions/{rx}/issue"),
                Some(&prov),
                json!({}),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(issued["status"], "issued");

    // Problems: edit, resolve with a date, enter in error; all kept.
    let pr = app
        .json_ok(
            app.post(
                &format!("/api/patients/{pid}/problems"),
                Some(&nurse),
                json!({"description": "Hypertension", "code": "I10"}),
            )
            .await,
            201,
        )
        .await;
    let ppath = format!("/api/patients/{pid}/problems/{}", sid(&pr));
    let pr = app
        .json_ok(
            app.patch(
                &ppath,
                &nurse,
                Some(1),
                json!({"description": "Essential hypertension"}),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(pr["description"], "Essential hypertension");
    assert_problem(
        app.patch(
            &ppath,
            &nurse,
            Some(2),
            json!({"status": "resolved", "resolvedOn": "2999-01-01"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let pr = app
        .json_ok(
            app.patch(
                &ppath,
                &nurse,
                Some(2),
                json!({"status": "resolved", "resolvedOn": "2025-06-30"}),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(pr["resolvedOn"], "2025-06-30");
    let o = overview(&app, &prov, &pid).await;
    assert_eq!(o["activeProblems"], json!([]));
    assert_eq!(o["problemHistory"][0]["status"], "resolved");

    let actions: Vec<String> = audit_events(&app)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "allergy.update").count(), 1);
    assert_eq!(actions.iter().filter(|a| *a == "problem.update").count(), 2);
    assert!(actions.iter().any(|a| a == "allergy.none_stated"));
}

#[tokio::test]
async fn a_likely_duplicate_registration_is_warned_and_needs_confirmation() {
    let app = TestApp::spawn().await;
    let staff = app.signed_in("staff").await.access;
    let first = app.json_ok(app.post("/api/patients", Some(&staff), json!({"givenName": "José", "familyName": "Núñez", "birthDate": "1970-03-04", "sex": "male", "phone": "+44 20 7946 0958"})).await, 201).await;
    let again = json!({"givenName": "Jose", "familyName": "NUNEZ", "birthDate": "1970-03-04", "sex": "male"});
    let e = assert_problem(
        app.post("/api/patients", Some(&staff), again.clone()).await,
        409,
        "possible_duplicate",
    )
    .await;
    assert_eq!(e["matches"][0]["id"], first["id"]);
    assert_eq!(e["matches"][0]["mrn"], first["mrn"]);
    assert_eq!(e["matches"][0]["matchedOn"], "name_and_birth_date");
    // The same phone, written differently, under another name.
    let phone = json!({"givenName": "Maria", "familyName": "Other", "birthDate": "1990-01-01", "sex": "female", "phone": "+44 (20) 7946-0958"});
    let e = assert_problem(
        app.post("/api/patients", Some(&staff), phone).await,
        409,
        "possible_duplicate",
    )
    .await;
    assert_eq!(e["matches"][0]["matchedOn"], "phone");
    let mut confirmed = again.clone();
    confirmed["confirmDuplicate"] = json!(true);
    let second = app
        .json_ok(
            app.post("/api/patients", Some(&staff), confirmed).await,
            201,
        )
        .await;
    assert_ne!(second["mrn"], first["mrn"]);
    let warned = audit_events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "patient.duplicate_warning")
        .count();
    assert_eq!(warned, 2);
}
