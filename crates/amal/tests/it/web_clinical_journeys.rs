//! Issue 12's screens in a real browser (Debian's chromium through
//! chromedriver), on the database under test: a critical result recorded
//! now heads the provider's day and the chart's critical box until it is
//! reviewed; vital signs entered twice show a trend; an allergy and an
//! interaction override each need a reason, which is stored and audited; a
//! likely duplicate registration warns and can be confirmed. Elements are
//! found by id and name only (the look of the pages may change). Each step
//! leaves a screenshot in `target/screenshots/`.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::browser::{css, Browser, Res, Screen};
use crate::helpers::*;

async fn post_ok(app: &TestApp, token: &str, path: &str, body: Value, status: u16) -> Value {
    app.json_ok(app.post(path, Some(token), body).await, status)
        .await
}

async fn draft(app: &TestApp, token: &str, pid: &str, medication: &str) -> String {
    sid(&post_ok(
        app,
        token,
        &format!("/api/patients/{pid}/prescriptions"),
        json!({"medication": medication, "dose": "1 tablet", "route": "oral", "frequency": "once daily", "quantity": 10}),
        201,
    )
    .await)
}

/// The prescription.issue audit event of `rx`.
async fn issue_event(app: &TestApp, rx: &str) -> store::audit::StoredEvent {
    audit_events(app)
        .await
        .into_iter()
        .find(|e| {
            e.action == "prescription.issue"
                && e.outcome == "success"
                && e.resource_id.map(|u| u.to_string()).as_deref() == Some(rx)
        })
        .unwrap_or_else(|| panic!("an issue event for {rx}"))
}

const ALLERGY_REASON: &str = "Tolerated amoxicillin in 2024; reaction was to another drug";
const INTERACTION_REASON: &str = "Short course; INR checked in 3 days";

/// Issue the prescription at `url`: the warning (mentioning each of
/// `names`) asks for a reason in `field`; without one the form is not sent
/// (the field is required); with one the prescription is issued.
async fn override_flow(
    b: &Browser,
    url: &str,
    field: &str,
    names: &[&str],
    reason: &str,
    shot: &str,
) -> Res<()> {
    let c = &b.c;
    let reason_field = format!("#issue-{field}");
    c.goto(url).await?;
    c.wait()
        .for_element(css("#issue button[type=submit]"))
        .await?
        .click()
        .await?;
    c.wait().for_element(css(&reason_field)).await?;
    let warning = c.find(css("#issue")).await?.text().await?.to_lowercase();
    for n in names {
        assert!(warning.contains(n), "{n} in {warning}");
    }
    b.shot(&format!("{shot}-warning")).await?;
    c.find(css("#issue button[type=submit]"))
        .await?
        .click()
        .await?;
    assert_eq!(c.find(css("#rx-status")).await?.text().await?, "draft");
    c.find(css(&reason_field)).await?.send_keys(reason).await?;
    c.find(css("#issue button[type=submit]"))
        .await?
        .click()
        .await?;
    assert_eq!(
        b.text_once("#rx-status", |t| t == "issued").await?,
        "issued"
    );
    b.shot(&format!("{shot}-override-issued")).await
}

#[tokio::test]
async fn web_browser_clinical_journeys_worklist_vitals_overrides_and_duplicates() {
    let Some(b) = Browser::start("clinical", Screen::Desktop).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await.access;

    // The records the journeys start from, made through the API.
    let older = sid(&app.create_patient(&api, "Olga", "Older").await);
    post_ok(
        &app,
        &api,
        &format!("/api/patients/{older}/labs"),
        json!({"code": "2345-7", "value": 220.0, "unit": "mg/dL",
               "collectedAt": (Utc::now() - Duration::days(20)).to_rfc3339()}),
        201,
    )
    .await;
    let kalia = sid(&app.create_patient(&api, "Kalia", "Potassio").await);
    let potassium = sid(&post_ok(
        &app,
        &api,
        &format!("/api/patients/{kalia}/labs"),
        json!({"code": "2823-3", "value": 6.8, "unit": "mmol/L", "collectedAt": Utc::now().to_rfc3339()}),
        201,
    )
    .await);
    let vera = sid(&app.create_patient(&api, "Vera", "Vitalis").await);
    let penny = sid(&app.create_patient(&api, "Penny", "Cillin").await);
    post_ok(
        &app,
        &api,
        &format!("/api/patients/{penny}/allergies"),
        json!({"substance": "Penicillin", "reaction": "anaphylaxis", "severity": "severe"}),
        201,
    )
    .await;
    let warfarin = draft(&app, &api, &penny, "Warfarin").await;
    post_ok(
        &app,
        &api,
        &format!("/api/prescriptions/{warfarin}/issue"),
        json!({}),
        200,
    )
    .await;
    let amox = draft(&app, &api, &penny, "Amoxicillin").await;
    let ibu = draft(&app, &api, &penny, "Ibuprofen").await;
    let existing = app
        .json_ok(
            app.post(
                "/api/patients",
                Some(&api),
                json!({"givenName": "José", "familyName": "Núñez", "birthDate": "1970-03-04", "sex": "male"}),
            )
            .await,
            201,
        )
        .await;
    let existing = sid(&existing);
    let user = app.create_user("provider").await;

    let c = &b.c;
    let step = std::cell::Cell::new("start");
    let outcome: Res<()> = async {
        step.set("sign in");
        c.goto(&app.url("/login")).await?;
        c.find(css("#login-email"))
            .await?
            .send_keys(&user.email)
            .await?;
        c.find(css("#login-password"))
            .await?
            .send_keys(&user.password)
            .await?;
        c.find(css("form[action='/login'] button[type=submit]"))
            .await?
            .click()
            .await?;
        c.wait().for_element(css("#results")).await?;

        // 1. The new critical potassium is the first row of the day …
        step.set("worklist");
        let first = c
            .find(css("#results tbody tr:first-child a[href^='/labs/']"))
            .await?;
        assert_eq!(
            first.attr("href").await?.as_deref(),
            Some(format!("/labs/{potassium}").as_str())
        );
        let row = c.find(css("#results tbody tr:first-child")).await?;
        let text = row.text().await?;
        assert!(text.contains("Potassio, Kalia"), "{text}");
        assert!(text.contains("6.8"), "{text}");
        b.shot("worklist-critical-first").await?;

        // … and in the chart's critical box until reviewed.
        step.set("chart box");
        c.find(css(&format!(
            "#results tbody tr:first-child a[href='/patients/{kalia}']"
        )))
        .await?
        .click()
        .await?;
        let boxed = c.wait().for_element(css("#critical")).await?;
        assert!(boxed.text().await?.contains("6.8"));
        b.shot("chart-critical-box").await?;
        step.set("review");
        c.find(css(&format!("#critical a[href='/labs/{potassium}']")))
            .await?
            .click()
            .await?;
        c.wait()
            .for_element(css("#review-action"))
            .await?
            .send_keys("patient called")
            .await?;
        c.find(css("#review-comment"))
            .await?
            .send_keys("Repeat potassium tomorrow")
            .await?;
        c.find(css("#review button[type=submit]"))
            .await?
            .click()
            .await?;
        let reviewed = b
            .text_once("#lab-reviewed", |t| t.starts_with("by "))
            .await?;
        assert!(reviewed.starts_with("by Test User"), "{reviewed}");
        b.shot("result-reviewed").await?;
        c.goto(&app.url(&format!("/patients/{kalia}"))).await?;
        c.wait().for_element(css("#allergy")).await?;
        assert!(
            c.find(css("#critical")).await.is_err(),
            "no box once reviewed"
        );
        c.goto(&app.url("/")).await?;
        c.wait().for_element(css("#results")).await?;
        assert!(c
            .find(css(&format!("#results a[href='/labs/{potassium}']")))
            .await
            .is_err());

        // 2. Vital signs entered twice show a trend.
        step.set("vitals");
        let vitals = app.url(&format!("/patients/{vera}/vitals"));
        c.goto(&vitals).await?;
        let yesterday = (Utc::now() - Duration::days(1))
            .format("%Y-%m-%dT%H:%M")
            .to_string();
        for (i, (fields, at)) in [
            (
                [
                    ("systolic", "128"),
                    ("diastolic", "78"),
                    ("heartRate", "70"),
                ],
                Some(yesterday.as_str()),
            ),
            (
                [
                    ("systolic", "182"),
                    ("diastolic", "100"),
                    ("heartRate", "112"),
                ],
                None,
            ),
        ]
        .into_iter()
        .enumerate()
        {
            c.wait().for_element(css("#vitals-systolic")).await?;
            for (name, value) in fields {
                c.find(css(&format!("#vitals-{name}")))
                    .await?
                    .send_keys(value)
                    .await?;
            }
            if let Some(at) = at {
                c.execute(
                    "document.getElementById('vitals-recordedAt').value = arguments[0];",
                    vec![json!(at)],
                )
                .await?;
            }
            c.find(css("form[action$='/vitals'] button[type=submit]"))
                .await?
                .click()
                .await?;
            // The page after the redirect has one more flowsheet row.
            let mut rows = 0;
            for _ in 0..100 {
                rows = c.find_all(css("table.flowsheet tbody tr")).await?.len();
                if rows == i + 1 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert_eq!(rows, i + 1, "the set is in the flowsheet");
            assert!(c
                .find(css(".notice"))
                .await?
                .text()
                .await?
                .contains("recorded"));
        }
        // The trend chart (server-drawn SVG) says what it shows.
        c.wait()
            .for_element(css("figure.chart polyline.chart-line"))
            .await?;
        let charts = c.find_all(css("figure.chart svg.trend-chart")).await?;
        let mut trend = Vec::new();
        for f in charts {
            trend.push(f.attr("aria-label").await?.unwrap_or_default());
        }
        assert!(
            trend
                .iter()
                .any(|t| t.starts_with("Systolic") && t.contains("from 128 to 182")),
            "{trend:?}"
        );
        let critical = c.find(css("table.flowsheet .flag-critical")).await?;
        assert_eq!(critical.text().await?, "182");
        b.shot("vitals-trend").await?;

        // 3. An allergy override and an interaction override (naming both
        // drugs) each need a reason.
        step.set("allergy override");
        override_flow(
            &b,
            &app.url(&format!("/prescriptions/{amox}")),
            "overrideReason",
            &["penicillin"],
            ALLERGY_REASON,
            "allergy",
        )
        .await?;
        step.set("interaction override");
        override_flow(
            &b,
            &app.url(&format!("/prescriptions/{ibu}")),
            "interactionOverrideReason",
            &["warfarin", "ibuprofen"],
            INTERACTION_REASON,
            "interaction",
        )
        .await?;

        // 4. A likely duplicate registration warns and can be confirmed.
        step.set("duplicate registration");
        c.goto(&app.url("/patients/new")).await?;
        c.wait()
            .for_element(css("#patient-givenName"))
            .await?
            .send_keys("Jose")
            .await?;
        c.find(css("#patient-familyName"))
            .await?
            .send_keys("Nunez")
            .await?;
        c.execute(
            "document.getElementById('patient-birthDate').value = '1970-03-04';",
            vec![],
        )
        .await?;
        c.find(css("#patient-sex"))
            .await?
            .select_by_value("male")
            .await?;
        c.find(css(
            "form[method='post'][action='/patients'] button[type=submit]",
        ))
        .await?
        .click()
        .await?;
        let dup = c.wait().for_element(css("#duplicates")).await?;
        assert!(dup
            .find(css(&format!("a[href^='/patients/{existing}']")))
            .await
            .is_ok());
        b.shot("duplicate-warning").await?;
        c.find(css("#confirm-duplicate")).await?.click().await?;
        c.wait().for_element(css("#allergy")).await?;
        let url = c.current_url().await?.to_string();
        assert!(
            url.contains("/patients/") && !url.contains(&existing),
            "{url}"
        );
        b.shot("duplicate-registered").await?;
        Ok(())
    }
    .await;
    b.finish(&step, outcome).await;

    // What the browser did is stored and audited.
    let review = audit_events(&app)
        .await
        .into_iter()
        .find(|e| e.action == "lab.review" && e.actor_id == Some(user.id))
        .expect("the review is audited");
    assert_eq!(
        review.resource_id.map(|u| u.to_string()),
        Some(potassium.clone())
    );
    let rx = app
        .json_ok(
            app.get(&format!("/api/prescriptions/{amox}"), Some(&api))
                .await,
            200,
        )
        .await;
    assert_eq!(rx["overrideReason"], ALLERGY_REASON);
    let e = issue_event(&app, &amox).await;
    assert_eq!(e.actor_id, Some(user.id));
    assert!(e
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("\"allergyOverride\":true")));
    let rx = app
        .json_ok(
            app.get(&format!("/api/prescriptions/{ibu}"), Some(&api))
                .await,
            200,
        )
        .await;
    assert_eq!(rx["interactionOverrideReason"], INTERACTION_REASON);
    let e = issue_event(&app, &ibu).await;
    assert!(e
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("\"interactionOverride\":true")));
    let vitals = app
        .json_ok(
            app.get(&format!("/api/patients/{vera}/vitals"), Some(&api))
                .await,
            200,
        )
        .await;
    assert_eq!(vitals["items"].as_array().unwrap().len(), 2);
    let found = app
        .json_ok(app.get("/api/patients?q=nunez", Some(&api)).await, 200)
        .await;
    assert_eq!(
        found["items"].as_array().unwrap().len(),
        2,
        "registered twice, deliberately"
    );
}

/// The `/labs/{id}` ids linked from the day page's results list.
async fn result_ids(b: &Browser) -> Res<Vec<String>> {
    let mut ids = Vec::new();
    for a in
        b.c.find_all(css("#results tbody a[href^='/labs/']"))
            .await?
    {
        let href = a.attr("href").await?.unwrap_or_default();
        ids.push(href.trim_start_matches("/labs/").to_string());
    }
    Ok(ids)
}

#[tokio::test]
async fn web_browser_day_pages_one_hundred_twenty_abnormal_results_without_loss() {
    let Some(b) = Browser::start("worklist-paging", Screen::Desktop).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await.access;
    // Three patients, 40 raised glucose results each (none critical), one
    // a minute apart so the order is newest first.
    let mut recorded = std::collections::HashSet::new();
    for who in ["Ana", "Ben", "Cora"] {
        let pid = sid(&app.create_patient(&api, who, "Paginata").await);
        for i in 0..40 {
            let at = (Utc::now() - Duration::minutes(i64::from(i) * 3 + 1)).to_rfc3339();
            let lab = post_ok(
                &app,
                &api,
                &format!("/api/patients/{pid}/labs"),
                json!({"code": "2345-7", "value": 150.0 + f64::from(i), "unit": "mg/dL", "collectedAt": at}),
                201,
            )
            .await;
            recorded.insert(sid(&lab));
        }
    }
    assert_eq!(recorded.len(), 120);
    let user = app.create_user("provider").await;
    let step = std::cell::Cell::new("start");
    let outcome: Res<()> = async {
        step.set("sign in");
        b.sign_in(&app, &user.email, &user.password).await?;
        b.wait_for("#results").await?;
        let mut seen = Vec::new();
        for page in 1.. {
            step.set("a page of the worklist");
            let ids = result_ids(&b).await?;
            assert!(!ids.is_empty(), "page {page} has rows");
            // The total is shown on every page, and that this is part of it.
            assert_eq!(b.text("#results h2 .count").await?, "120");
            let said = b.text("#results p.muted").await?;
            assert_eq!(
                said,
                format!(
                    "Showing {} of 120, critical first, then newest first.",
                    ids.len()
                )
            );
            // Every row names its patient with MRN.
            for row in b.c.find_all(css("#results tbody tr")).await? {
                let t = row.text().await?;
                assert!(t.contains("Paginata, ") && t.contains("MRN "), "{t}");
            }
            seen.extend(ids);
            b.shot(&format!("page-{page}")).await?;
            if !b.exists("#results a.button").await? {
                break;
            }
            let before = b.path().await?;
            b.click("#results a.button").await?;
            let mut moved = false;
            for _ in 0..100 {
                if b.path().await? != before {
                    moved = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert!(moved, "the next page opened");
            b.wait_for("#results").await?;
        }
        step.set("every result once");
        assert_eq!(seen.len(), 120, "no row lost or shown twice");
        let unique: std::collections::HashSet<_> = seen.into_iter().collect();
        assert_eq!(unique, recorded);
        Ok(())
    }
    .await;
    b.finish(&step, outcome).await;
}

/// Fill the prescription form of the patient's prescriptions page and save.
async fn draft_in_form(b: &Browser, app: &TestApp, pid: &str, medication: &str) -> Res<()> {
    b.goto(&app.url(&format!("/patients/{pid}/prescriptions")))
        .await?;
    b.wait_for("#rx-medication").await?;
    for (field, value) in [
        ("medication", medication),
        ("dose", "1 tablet"),
        ("route", "oral"),
        ("frequency", "three times daily"),
        ("quantity", "21"),
    ] {
        b.fill(&format!("#rx-{field}"), value).await?;
    }
    b.click(&format!(
        "form[action='/patients/{pid}/prescriptions']:not([class]) button[type=submit]"
    ))
    .await
}

/// The id of the prescription page the browser is on, once it is there.
async fn on_prescription(b: &Browser) -> Res<String> {
    for _ in 0..100 {
        let path = b.path().await?;
        if let Some(rest) = path.strip_prefix("/prescriptions/") {
            b.wait_for("#rx-status").await?;
            return Ok(rest.split('?').next().unwrap_or_default().to_string());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("not on a prescription page: {}", b.path().await?);
}

/// The API's member names, which a page's message must not show.
const API_WORDS: [&str; 5] = [
    "overrideReason",
    "OverrideReason",
    "uncheckedAcknowledged",
    "medicationConfirmed",
    ": true",
];

fn in_clinical_words(text: &str) {
    for w in API_WORDS {
        assert!(!text.contains(w), "{w:?} in {text}");
    }
}

/// Press "Issue" and return the warning section's text (lower case).
async fn issue_warnings(b: &Browser) -> Res<String> {
    b.click("#issue button[type=submit]").await?;
    b.wait_for("#issue .alert-danger").await?;
    let text = b.text("#issue").await?;
    in_clinical_words(&text);
    Ok(text.to_lowercase())
}

const DUPLICATE_REASON: &str = "Second course; the first is being stopped today";

#[tokio::test]
async fn web_browser_medication_safety_misspelt_brand_duplicate_unrecognised_and_allergy_in_error()
{
    let Some(b) = Browser::start("medication", Screen::Desktop).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await.access;
    let pid = sid(&app.create_patient(&api, "Pen", "Allergica").await);
    let allergy = sid(&post_ok(
        &app,
        &api,
        &format!("/api/patients/{pid}/allergies"),
        json!({"substance": "Penicillin", "reaction": "anaphylaxis", "severity": "severe"}),
        201,
    )
    .await);
    let user = app.create_user("provider").await;
    let step = std::cell::Cell::new("start");
    let ids = std::cell::RefCell::new(Vec::<String>::new());
    let outcome: Res<()> = async {
        b.sign_in(&app, &user.email, &user.password).await?;

        step.set("a misspelt amoxicilin asks to confirm amoxicillin");
        draft_in_form(&b, &app, &pid, "amoxicilin 500 mg").await?;
        b.wait_for("#rx-suggest").await?;
        assert!(b.in_view("#rx-suggest").await?);
        in_clinical_words(&b.text("#problem").await?);
        assert!(b.text("#problem").await?.contains("Did you mean amoxicillin?"));
        let yes = b.text("#rx-suggest button").await?;
        assert_eq!(yes, "Yes, amoxicillin");
        b.shot("misspelt-suggestion").await?;
        b.click("#rx-suggest button").await?;
        let amox = on_prescription(&b).await?;
        assert_eq!(b.text("#h-rx").await?, "amoxicillin 500 mg 1 tablet");
        assert_eq!(b.text("#rx-check").await?, "amoxicillin");

        step.set("then the penicillin allergy is caught on issue");
        let w = issue_warnings(&b).await?;
        assert!(w.contains("allergy conflict") && w.contains("penicillin"), "{w}");
        assert!(b.exists("#issue-overrideReason").await?);
        b.shot("misspelt-allergy-warning").await?;

        step.set("the brand Augmentin is amoxicillin: the allergy is caught");
        draft_in_form(&b, &app, &pid, "Augmentin 625 mg").await?;
        let augmentin = on_prescription(&b).await?;
        assert!(!b.exists("#rx-suggest").await?);
        assert!(b.text("#rx-check").await?.contains("amoxicillin"));
        let w = issue_warnings(&b).await?;
        assert!(w.contains("penicillin"), "{w}");
        b.shot("brand-allergy-warning").await?;

        step.set("the allergy marked entered in error");
        b.goto(&app.url(&format!("/patients/{pid}"))).await?;
        let form = format!("allergy-{allergy}");
        b.click("#allergy ul.allergies details summary").await?;
        b.c.find(css(&format!("#{form}-status")))
            .await?
            .select_by_value("entered_in_error")
            .await?;
        b.click(&format!("form[action$='/allergies/{allergy}'] button[type=submit]"))
            .await?;
        let struck = b
            .text_once("#allergy-history del", |t| t.contains("Penicillin"))
            .await?;
        assert!(struck.contains("Penicillin"), "struck through: {struck}");
        let history = b.text("#allergy-history").await?;
        assert!(history.contains("entered in error"), "{history}");
        assert!(!b.exists("#allergy ul.allergies").await?, "no active allergy");
        assert!(!b.text("#banner-allergies").await?.contains("Penicillin"));
        b.shot("allergy-entered-in-error").await?;

        step.set("it no longer blocks the amoxicillin");
        b.goto(&app.url(&format!("/prescriptions/{amox}"))).await?;
        b.click("#issue button[type=submit]").await?;
        assert_eq!(b.text_once("#rx-status", |t| t == "issued").await?, "issued");

        step.set("Augmentin now duplicates the active amoxicillin");
        let url = app.url(&format!("/prescriptions/{augmentin}"));
        b.goto(&url).await?;
        let w = issue_warnings(&b).await?;
        assert!(w.contains("duplicate therapy") && w.contains("amoxicillin"), "{w}");
        assert!(!w.contains("penicillin"), "{w}");
        assert!(!b.exists("#issue-overrideReason").await?);
        override_flow(&b, &url, "duplicateOverrideReason", &["amoxicillin"], DUPLICATE_REASON, "duplicate")
            .await?;

        step.set("an unrecognised medication needs the acknowledgement");
        draft_in_form(&b, &app, &pid, "Zyxorbital 10 mg").await?;
        let unknown = on_prescription(&b).await?;
        assert!(b.text("#rx-check").await?.contains("not recognised"));
        let w = issue_warnings(&b).await?;
        assert!(w.contains("medication not recognised"), "{w}");
        let tick = "#issue input[type=checkbox][name=uncheckedAcknowledged]";
        assert!(b.exists(tick).await?);
        b.shot("unrecognised-warning").await?;
        // The browser will not send the form without the tick; the server
        // refuses it too (the check lifted here).
        b.click("#issue button[type=submit]").await?;
        assert_eq!(b.text("#rx-status").await?, "draft");
        b.js("document.querySelector('#issue input[name=uncheckedAcknowledged]').removeAttribute('required');")
            .await?;
        b.click_and_load("#issue button[type=submit]").await?;
        assert_eq!(b.text("#rx-status").await?, "draft");
        assert!(b.text("#issue").await?.to_lowercase().contains("medication not recognised"));
        b.click(tick).await?;
        b.click("#issue button[type=submit]").await?;
        assert_eq!(b.text_once("#rx-status", |t| t == "issued").await?, "issued");
        assert!(b.text("dl.pairs").await?.contains("Issued without the dictionary checks"));
        b.shot("unrecognised-issued").await?;
        ids.borrow_mut().extend([amox, augmentin, unknown]);
        Ok(())
    }
    .await;
    b.finish(&step, outcome).await;

    // Stored and audited as the API would.
    let ids = ids.into_inner();
    let rx = |i: usize| {
        let id = ids[i].clone();
        let (app, api) = (&app, &api);
        async move {
            app.json_ok(
                app.get(&format!("/api/prescriptions/{id}"), Some(api))
                    .await,
                200,
            )
            .await
        }
    };
    let amox = rx(0).await;
    assert_eq!(amox["status"], "issued");
    assert_eq!(amox["medication"], "amoxicillin 500 mg");
    assert!(
        amox["overrideReason"].is_null(),
        "no allergy left to override"
    );
    let augmentin = rx(1).await;
    assert_eq!(augmentin["duplicateOverrideReason"], DUPLICATE_REASON);
    let unknown = rx(2).await;
    assert_eq!(unknown["uncheckedAcknowledged"], true);
    let e = issue_event(&app, &ids[2]).await;
    assert_eq!(e.actor_id, Some(user.id));
    assert!(e
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("\"uncheckedAcknowledged\":true")));
    let o = app
        .json_ok(
            app.get(&format!("/api/patients/{pid}/overview"), Some(&api))
                .await,
            200,
        )
        .await;
    assert_eq!(o["allergies"], json!([]));
    let entry = o["allergyHistory"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == allergy.as_str())
        .expect("kept, never deleted");
    assert_eq!(entry["status"], "entered_in_error");
}
