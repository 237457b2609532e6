//! The web UI side of issue 12: the day page, the chart's critical box and
//! banner, vital signs, allergy lifecycle, duplicate registration and the
//! lab unit question — through the same forms a browser submits.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::web::{field_value, id_after, Web};

async fn lab(
    app: &TestApp,
    token: &str,
    pid: &str,
    code: &str,
    value: f64,
    unit: &str,
    days_ago: i64,
) -> String {
    let at = (Utc::now() - Duration::days(days_ago)).to_rfc3339();
    let r = app
        .post(
            &format!("/api/patients/{pid}/labs"),
            Some(token),
            json!({"code": code, "value": value, "unit": unit, "collectedAt": at}),
        )
        .await;
    sid(&app.json_ok(r, 201).await)
}

/// Every `/labs/{id}` link of the results section of the day page.
fn result_links(body: &str) -> Vec<String> {
    let start = body.find("id=\"results\"").unwrap();
    let end = body
        .get(start..)
        .unwrap_or_default()
        .find("</section>")
        .unwrap()
        + start;
    body.get(start..end)
        .unwrap_or_default()
        .split("href=\"/labs/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn web_day_lists_a_critical_result_recorded_now_first_with_the_patient() {
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await.access;
    let old = sid(&app.create_patient(&api, "Olga", "Older").await);
    lab(&app, &api, &old, "2345-7", 220.0, "mg/dL", 20).await;
    lab(&app, &api, &old, "2345-7", 530.0, "mg/dL", 40).await;
    let p = app.create_patient(&api, "Kalia", "Potassio").await;
    let k = lab(&app, &api, &sid(&p), "2823-3", 6.8, "mmol/L", 0).await;
    let (w, _) = Web::signed_in(&app, "provider").await;
    let day = w.get("/").await;
    assert_eq!(day.status, StatusCode::OK);
    let links = result_links(&day.body);
    assert_eq!(links[0], k, "the new potassium is the first row");
    assert_eq!(links.len(), 3);
    let row = &day
        .body
        .get(day.body.find(&format!("/labs/{k}")).unwrap() - 400..)
        .unwrap_or_default();
    assert!(row.contains("Potassio, Kalia"));
    assert!(row.contains(&format!("MRN {}", p["mrn"].as_str().unwrap())));
    assert!(day.body.contains("2 critical"));
    assert!(!day.body.contains("style="));
}

#[tokio::test]
async fn web_day_pages_one_hundred_twenty_abnormal_results_without_loss() {
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await.access;
    let pid = sid(&app.create_patient(&api, "Pagina", "Longlist").await);
    let mut recorded = HashSet::new();
    for i in 0..120 {
        recorded.insert(
            lab(
                &app,
                &api,
                &pid,
                "2345-7",
                150.0 + f64::from(i),
                "mg/dL",
                i64::from(i % 5),
            )
            .await,
        );
    }
    let (w, _) = Web::signed_in(&app, "provider").await;
    let mut seen = Vec::new();
    let mut path = "/".to_string();
    for page in 0.. {
        let day = w.get(&path).await;
        assert_eq!(day.status, StatusCode::OK, "{path}");
        assert!(
            day.body.contains("Showing 50 of 120") || page == 2,
            "page {page}"
        );
        seen.extend(result_links(&day.body));
        let Some(i) = day.body.find("class=\"button\" href=\"/?results=") else {
            break;
        };
        let rest = &day
            .body
            .get(i + "class=\"button\" href=\"".len()..)
            .unwrap_or_default();
        path = rest.split('"').next().unwrap().replace("&amp;", "&");
    }
    assert_eq!(seen.len(), 120);
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), recorded);
}

#[tokio::test]
async fn web_chart_box_shows_an_older_unreviewed_critical_and_the_review_says_who() {
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await.access;
    let pid = sid(&app.create_patient(&api, "Gluco", "Hidden").await);
    let crit = lab(&app, &api, &pid, "2345-7", 525.0, "mg/dL", 3).await;
    lab(&app, &api, &pid, "2345-7", 95.0, "mg/dL", 1).await;
    let (w, _) = Web::signed_in(&app, "provider").await;
    let chart = w.get(&format!("/patients/{pid}")).await;
    assert_eq!(chart.status, StatusCode::OK);
    let (_, boxed) = chart
        .body
        .split_once("id=\"critical\"")
        .expect("the critical box");
    assert!(boxed
        .get(..boxed.find("</section>").unwrap())
        .unwrap_or_default()
        .contains(&format!("/labs/{crit}")));
    assert!(chart.body.contains("id=\"banner-critical\""));
    assert!(chart.body.contains("1 not reviewed"));
    // The banner is on the other patient pages too.
    for path in [
        format!("/patients/{pid}/labs"),
        format!("/patients/{pid}/notes"),
        format!("/patients/{pid}/prescriptions"),
        format!("/labs/{crit}"),
    ] {
        let p = w.get(&path).await;
        assert!(p.body.contains("1 not reviewed"), "{path}");
        assert!(p.body.contains("Not recorded — ask and record"), "{path}");
    }
    let page = w.get(&format!("/labs/{crit}")).await;
    let r = w
        .post(
            &format!("/labs/{crit}/review"),
            &[
                ("_csrf", &page.csrf()),
                ("action", "patient called"),
                ("comment", "Repeat tomorrow"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = w.get(&r.location()).await;
    assert!(page.body.contains("by Test User (provider)"));
    assert!(page.body.contains("patient called"));
    let chart = w.get(&format!("/patients/{pid}")).await;
    assert!(!chart.body.contains("id=\"critical\""));
    let list = w.get(&format!("/patients/{pid}/labs")).await;
    assert!(
        list.body.contains("Test User (provider), "),
        "the results list shows who reviewed"
    );
}

#[tokio::test]
async fn web_vitals_are_recorded_and_flagged_at_the_limits() {
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await.access;
    let pid = sid(&app.create_patient(&api, "Vita", "Signs").await);
    let (w, _) = Web::signed_in(&app, "nurse").await;
    let t = w.token().await;
    let path = format!("/patients/{pid}/vitals");
    let r = w
        .post(&path, &[("_csrf", &t), ("temperature", "98.6")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("this looks like °F"));
    let r = w
        .post(
            &path,
            &[
                ("_csrf", &t),
                ("systolic", "129"),
                ("diastolic", "79"),
                ("spo2", "96"),
                ("weightKg", "80"),
                ("heightCm", "180"),
                (
                    "recordedAt",
                    &(Utc::now() - Duration::days(1))
                        .format("%Y-%m-%dT%H:%M")
                        .to_string(),
                ),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = w
        .post(
            &path,
            &[
                ("_csrf", &t),
                ("systolic", "180"),
                ("diastolic", "100"),
                ("spo2", "91"),
                ("weightKg", "82"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let sheet = w.get(&r.location()).await;
    assert!(sheet.body.contains("Vital signs recorded."));
    assert!(sheet.body.contains("flag flag-critical\">180"));
    assert!(sheet.body.contains("flag flag-normal\">129"));
    assert!(
        sheet.body.contains("<polyline class=\"chart-line\""),
        "a trend"
    );
    assert!(!sheet.body.contains("<script>") && !sheet.body.contains("style="));
    let chart = w.get(&format!("/patients/{pid}")).await;
    assert!(chart.body.contains("Latest vital signs"));
    assert!(chart.body.contains("CRITICAL HIGH"));
    let (pw, _) = Web::signed_in(&app, "provider").await;
    let day = pw.get("/").await;
    assert!(day.body.contains("Critical vital signs"));
    assert!(day.body.contains("Systolic BP 180 mmHg CRITICAL HIGH"));
}

#[tokio::test]
async fn web_allergy_entered_in_error_stays_struck_through_and_stops_blocking() {
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await.access;
    let pid = sid(&app.create_patient(&api, "Erra", "Tum").await);
    let (w, _) = Web::signed_in(&app, "provider").await;
    let t = w.token().await;
    let r = w
        .post(&format!("/patients/{pid}/allergies/none"), &[("_csrf", &t)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let chart = w.get(&format!("/patients/{pid}")).await;
    assert!(chart.body.contains("id=\"nkda-statement\""));
    let r = w
        .post(
            &format!("/patients/{pid}/allergies"),
            &[
                ("_csrf", &t),
                ("substance", "Penicillin"),
                ("severity", "severe"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let chart = w.get(&format!("/patients/{pid}")).await;
    assert!(
        chart.body.contains("<strong>Penicillin (severe)</strong>"),
        "severe allergy prominent in the banner"
    );
    assert!(!chart.body.contains("id=\"nkda-statement\""));
    let action = chart
        .body
        .split(&format!("action=\"/patients/{pid}/allergies/"))
        .nth(1)
        .unwrap();
    let aid = action.split('"').next().unwrap().to_string();
    assert_ne!(aid, "none");
    let version = field_value(action, "version").unwrap();
    let rx = app.json_ok(app.post(&format!("/api/patients/{pid}/prescriptions"), Some(&api), json!({"medication": "Amoxicillin", "dose": "500 mg", "route": "oral", "frequency": "three times daily", "quantity": 21})).await, 201).await;
    let blocked = w
        .post(
            &format!("/prescriptions/{}/issue", sid(&rx)),
            &[("_csrf", &t)],
        )
        .await;
    assert_eq!(blocked.status, StatusCode::CONFLICT);
    // A stale version is refused on the form, and nothing changes.
    let stale = w
        .post(
            &format!("/patients/{pid}/allergies/{aid}"),
            &[
                ("_csrf", &t),
                ("version", "9"),
                ("substance", "Penicillin"),
                ("severity", "severe"),
                ("status", "entered_in_error"),
            ],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    let r = w
        .post(
            &format!("/patients/{pid}/allergies/{aid}"),
            &[
                ("_csrf", &t),
                ("version", &version),
                ("substance", "Penicillin"),
                ("severity", "severe"),
                ("status", "entered_in_error"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let chart = w.get(&r.location()).await;
    assert!(chart.body.contains("Allergy updated."));
    assert!(
        chart.body.contains("<del>Penicillin</del>"),
        "kept, struck through"
    );
    assert!(
        !chart.body.contains("Penicillin (severe)"),
        "no longer in the banner"
    );
    let issued = w
        .post(
            &format!("/prescriptions/{}/issue", sid(&rx)),
            &[("_csrf", &t)],
        )
        .await;
    assert_eq!(issued.status, StatusCode::SEE_OTHER, "{}", issued.body);
}

#[tokio::test]
async fn web_registration_warns_of_a_likely_duplicate_and_needs_confirmation() {
    let app = TestApp::spawn().await;
    let (w, _) = Web::signed_in(&app, "staff").await;
    let t = w.token().await;
    let fields = [
        ("_csrf", t.as_str()),
        ("givenName", "José"),
        ("familyName", "Núñez"),
        ("birthDate", "1970-03-04"),
        ("sex", "male"),
    ];
    let first = w.post("/patients", &fields).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    let first_id = id_after(&first.location(), "/patients/");
    let again = [
        ("_csrf", t.as_str()),
        ("givenName", "Jose"),
        ("familyName", "Nunez"),
        ("birthDate", "1970-03-04"),
        ("sex", "male"),
    ];
    let warned = w.post("/patients", &again).await;
    assert_eq!(warned.status, StatusCode::CONFLICT);
    assert!(warned.body.contains("may already be registered"));
    assert!(warned.body.contains(&format!("/patients/{first_id}/edit")));
    assert!(warned.body.contains("id=\"confirm-duplicate\""));
    let mut confirmed = again.to_vec();
    confirmed.push(("confirmDuplicate", "1"));
    let r = w.post("/patients", &confirmed).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_ne!(id_after(&r.location(), "/patients/"), first_id);
}

#[tokio::test]
async fn web_lab_unit_that_does_not_fit_asks_did_you_mean() {
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await.access;
    let pid = sid(&app.create_patient(&api, "Unita", "Mismatch").await);
    let (w, _) = Web::signed_in(&app, "nurse").await;
    let t = w.token().await;
    let at = Utc::now().format("%Y-%m-%dT%H:%M").to_string();
    let base = [
        ("_csrf", t.as_str()),
        ("code", "2823-3"),
        ("value", "6.8"),
        ("unit", "mg/dL"),
        ("collectedAt", at.as_str()),
    ];
    let asked = w.post(&format!("/patients/{pid}/labs"), &base).await;
    assert_eq!(asked.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(asked.body.contains("Did you mean mmol/L?"));
    let listed = app
        .json_ok(
            app.get(&format!("/api/patients/{pid}/labs"), Some(&api))
                .await,
            200,
        )
        .await;
    assert_eq!(
        listed["items"],
        json!([]),
        "nothing stored before the answer"
    );
    let mut take = base.to_vec();
    take.push(("unitChoice", "suggested"));
    let r = w.post(&format!("/patients/{pid}/labs"), &take).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = w.get(&r.location()).await;
    assert!(page.body.contains("CRITICAL HIGH"));
    let mut keep = base.to_vec();
    keep.push(("unitChoice", "keep"));
    let r = w.post(&format!("/patients/{pid}/labs"), &keep).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = w.get(&r.location()).await;
    assert!(page.body.contains("differs from reference unit"));
}

/// A problem and a patient's details changed by someone else since the
/// form was drawn: 409, nothing stored, "Reload to see their changes"
/// pointing at the page with the current version, and the typed text kept.
#[tokio::test]
async fn web_conflicting_problem_and_patient_edits_offer_the_reload_link() {
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await.access;
    let patient = app.create_patient(&api, "Ria", "Reloada").await;
    let pid = sid(&patient);
    let problem = app
        .json_ok(
            app.post(
                &format!("/api/patients/{pid}/problems"),
                Some(&api),
                json!({"description": "Asthma"}),
            )
            .await,
            201,
        )
        .await;
    let prid = sid(&problem);
    let (w, _) = Web::signed_in(&app, "provider").await;
    let chart = w.get(&format!("/patients/{pid}")).await;
    // A colleague changes both first.
    let r = app
        .patch(
            &format!("/api/patients/{pid}/problems/{prid}"),
            &api,
            Some(1),
            json!({"description": "Asthma, moderate persistent"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .patch(
            &format!("/api/patients/{pid}"),
            &api,
            Some(patient["version"].as_i64().unwrap()),
            json!({"phone": "+44 20 7946 0000"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let typed = "Asthma, mild intermittent";
    let r = w
        .post(
            &format!("/patients/{pid}/problems/{prid}"),
            &[
                ("_csrf", &chart.csrf()),
                ("version", "1"),
                ("description", typed),
                ("code", ""),
                ("status", "active"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains(&format!(
        "<a class=\"reload-link\" href=\"/patients/{pid}#problem\">Reload to see their changes</a>"
    )));
    assert!(
        r.body.contains(&format!("value=\"{typed}\"")),
        "typed text kept"
    );

    let edit = w.get(&format!("/patients/{pid}/edit")).await;
    let stale = patient["version"].as_i64().unwrap().to_string();
    let r = w
        .post(
            &format!("/patients/{pid}/edit"),
            &[
                ("_csrf", &edit.csrf()),
                ("version", &stale),
                ("givenName", "Ria"),
                ("familyName", "Reloada-Smith"),
                ("birthDate", "1980-04-12"),
                ("sex", "female"),
                ("phone", ""),
                ("email", ""),
                ("address", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains(&format!(
        "href=\"/patients/{pid}/edit\">Reload to see their changes"
    )));
    assert!(r.body.contains("value=\"Reloada-Smith\""));
    // Any other refusal has no reload link.
    let r = w
        .post(
            &format!("/patients/{pid}/problems/{prid}"),
            &[
                ("_csrf", &chart.csrf()),
                ("version", "2"),
                ("description", ""),
                ("status", "active"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!r.body.contains("reload-link"));
    // Nothing of the refused saves was stored.
    let o = app
        .json_ok(
            app.get(&format!("/api/patients/{pid}/overview"), Some(&api))
                .await,
            200,
        )
        .await;
    assert_eq!(
        o["activeProblems"][0]["description"],
        "Asthma, moderate persistent"
    );
    let p = app
        .json_ok(
            app.get(&format!("/api/patients/{pid}"), Some(&api)).await,
            200,
        )
        .await;
    assert_eq!(p["familyName"], "Reloada");
}
