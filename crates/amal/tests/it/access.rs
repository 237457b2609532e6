//! Care teams, break-glass, the access explanation, the review queue and
//! admin-created clinical accounts (docs/ACCESS_CONTROL.md).

use serde_json::{json, Value};

use crate::helpers::{assert_problem, audit_events, sid, Session, TestApp};

pub(crate) const DEFAULT_TEAM: &str = "00000000-0000-7000-8000-000000000001";

pub(crate) async fn membership(
    app: &TestApp,
    admin: &str,
    team: &str,
    kind: &str,
    id: &str,
    present: bool,
) {
    let r = app
        .post(
            &format!("/api/care-teams/{team}/membership"),
            Some(admin),
            json!({"kind": kind, "id": id, "present": present}),
        )
        .await;
    app.json_ok(r, 200).await;
}

/// Create a care team through the API; returns its id.
pub(crate) async fn new_team(app: &TestApp, admin: &str, name: &str) -> String {
    let r = app
        .post("/api/care-teams", Some(admin), json!({ "name": name }))
        .await;
    sid(&app.json_ok(r, 201).await)
}

/// A patient moved from the default team into a new team "Ward B", whose
/// only member is `inside`; `outside` stays in the default team only.
struct Split {
    app: TestApp,
    admin: Session,
    outside: Session,
    inside: Session,
    patient: String,
    ward: String,
}

async fn split(app: TestApp) -> Split {
    let admin = app.signed_in("admin").await;
    let outside = app.signed_in("provider").await;
    let inside = app.signed_in("nurse").await;
    let p = app.create_patient(&outside.access, "Rania", "Haddad").await;
    let patient = sid(&p);
    let ward = new_team(&app, &admin.access, "Ward B").await;
    membership(
        &app,
        &admin.access,
        DEFAULT_TEAM,
        "patient",
        &patient,
        false,
    )
    .await;
    membership(
        &app,
        &admin.access,
        DEFAULT_TEAM,
        "member",
        &inside.user_id.to_string(),
        false,
    )
    .await;
    membership(&app, &admin.access, &ward, "patient", &patient, true).await;
    membership(
        &app,
        &admin.access,
        &ward,
        "member",
        &inside.user_id.to_string(),
        true,
    )
    .await;
    Split {
        app,
        admin,
        outside,
        inside,
        patient,
        ward,
    }
}

async fn access(app: &TestApp, token: &str, patient: &str) -> Value {
    let r = app
        .get(&format!("/api/patients/{patient}/access"), Some(token))
        .await;
    app.json_ok(r, 200).await
}

#[tokio::test]
async fn clinician_outside_the_care_team_sees_demographics_only_and_gets_403_on_the_chart() {
    let s = split(TestApp::spawn().await).await;
    let (app, p) = (&s.app, s.patient.as_str());
    // Demographics: search and the patient record.
    let r = app
        .get(&format!("/api/patients/{p}"), Some(&s.outside.access))
        .await;
    app.json_ok(r, 200).await;
    let r = app
        .get("/api/patients?q=Haddad", Some(&s.outside.access))
        .await;
    let found = app.json_ok(r, 200).await;
    assert!(
        found["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == p),
        "{found}"
    );
    // The chart and every clinical resource: 403 naming the care team.
    for path in [
        format!("/api/patients/{p}/overview"),
        format!("/api/patients/{p}/banner"),
        format!("/api/patients/{p}/notes"),
        format!("/api/patients/{p}/labs"),
        format!("/api/patients/{p}/prescriptions"),
        format!("/api/patients/{p}/vitals"),
    ] {
        let v = assert_problem(
            app.get(&path, Some(&s.outside.access)).await,
            403,
            "outside_care_team",
        )
        .await;
        assert!(
            v["type"].as_str().unwrap().ends_with("/outside-care-team"),
            "{v}"
        );
        assert_eq!(v["patientId"], p, "{path}: {v}");
        assert_eq!(v["breakGlass"], format!("/api/patients/{p}/break-glass"));
    }
    // FHIR answers the same refusal as an OperationOutcome.
    for path in [
        format!("/fhir/R4/AllergyIntolerance?patient={p}"),
        format!("/fhir/R4/Patient/{p}/$everything"),
    ] {
        let r = app.get(&path, Some(&s.outside.access)).await;
        assert_eq!(r.status(), 403, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(
            v["issue"][0]["details"]["coding"][0]["code"], "outside_care_team",
            "{v}"
        );
    }
    let r = app
        .post(
            &format!("/api/patients/{p}/allergies"),
            Some(&s.outside.access),
            json!({"substance": "Penicillin", "severity": "severe"}),
        )
        .await;
    assert_problem(r, 403, "outside_care_team").await;
    // The FHIR Patient resource is demographics.
    let r = app
        .get(&format!("/fhir/R4/Patient/{p}"), Some(&s.outside.access))
        .await;
    assert_eq!(r.status(), 200);

    // The team member reads and writes the chart.
    let r = app
        .post(
            &format!("/api/patients/{p}/allergies"),
            Some(&s.inside.access),
            json!({"substance": "Penicillin", "severity": "severe"}),
        )
        .await;
    app.json_ok(r, 201).await;
    let r = app
        .get(
            &format!("/api/patients/{p}/overview"),
            Some(&s.inside.access),
        )
        .await;
    app.json_ok(r, 200).await;
    // A search across patients leaves out the ones outside the teams.
    let r = app
        .get("/fhir/R4/AllergyIntolerance", Some(&s.outside.access))
        .await;
    let bundle = app.json_ok(r, 200).await;
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 0, "{bundle}");
    let r = app
        .get("/fhir/R4/AllergyIntolerance", Some(&s.inside.access))
        .await;
    let bundle = app.json_ok(r, 200).await;
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 1, "{bundle}");

    // Why: the access explanation.
    let a = access(app, &s.outside.access, p).await;
    assert_eq!(a["basis"], "none", "{a}");
    assert_eq!(a["chart"], false);
    assert_eq!(a["demographics"], true);
    let a = access(app, &s.inside.access, p).await;
    assert_eq!(a["basis"], "team", "{a}");
    assert_eq!(a["teams"], json!(["Ward B"]));
    assert_eq!(a["chart"], true);
    let staff = app.signed_in("staff").await;
    let a = access(app, &staff.access, p).await;
    assert_eq!(a["basis"], "role", "{a}");
    assert_eq!(a["chart"], false);

    // The team admin view lists the member and the patient.
    let r = app
        .get(
            &format!("/api/care-teams/{}", s.ward),
            Some(&s.admin.access),
        )
        .await;
    let t = app.json_ok(r, 200).await;
    assert_eq!(t["patients"][0]["id"], p, "{t}");
    assert_eq!(t["members"][0]["id"], s.inside.user_id.to_string(), "{t}");
    // Only admins manage teams.
    let r = app.get("/api/care-teams", Some(&s.inside.access)).await;
    assert_problem(r, 403, "forbidden").await;
    let r = app
        .post(
            "/api/care-teams",
            Some(&s.admin.access),
            json!({"name": "Ward B"}),
        )
        .await;
    assert_problem(r, 409, "conflict").await;
    let r = app
        .post(
            "/api/care-teams",
            Some(&s.admin.access),
            json!({"name": "  "}),
        )
        .await;
    assert_problem(r, 422, "validation_failed").await;
}

#[tokio::test]
async fn break_glass_grants_the_chart_for_the_time_box_only_with_start_and_end_events_and_review() {
    let s = split(
        TestApp::spawn_with(|r| {
            r.break_glass_duration = Some("4s".into());
            r.alert_interval = Some("1h".into());
        })
        .await,
    )
    .await;
    let (app, p) = (&s.app, s.patient.as_str());
    // A provider of the default team only, whose password the test knows.
    let u = app.create_user("provider").await;
    let bg_user = app.sign_in(&u).await;
    let pw = u.password.clone();
    let bg_path = format!("/api/patients/{p}/break-glass");
    // Bad requests change nothing.
    let r = app
        .post(
            &bg_path,
            Some(&bg_user.access),
            json!({"reasonCode": "whim", "reasonText": "short", "password": ""}),
        )
        .await;
    let v = assert_problem(r, 422, "validation_failed").await;
    assert_eq!(v["errors"].as_array().unwrap().len(), 3, "{v}");
    let r = app
        .post(&bg_path, Some(&bg_user.access), json!({"reasonCode": "emergency", "reasonText": "Unconscious in the waiting room", "password": "not-my-password-at-all"}))
        .await;
    let v = assert_problem(r, 422, "validation_failed").await;
    assert_eq!(v["errors"][0]["field"], "password");
    // A team member does not need it.
    let r = app
        .post(&bg_path, Some(&s.inside.access), json!({"reasonCode": "emergency", "reasonText": "Unconscious in the waiting room", "password": "whatever-it-is"}))
        .await;
    assert_problem(r, 409, "conflict").await;
    assert_problem(
        app.get(
            &format!("/api/patients/{p}/overview"),
            Some(&bg_user.access),
        )
        .await,
        403,
        "outside_care_team",
    )
    .await;

    let r = app
        .post(&bg_path, Some(&bg_user.access), json!({"reasonCode": "emergency", "reasonText": "Unconscious in the waiting room", "password": pw}))
        .await;
    let bg = app.json_ok(r, 201).await;
    let started = chrono::DateTime::parse_from_rfc3339(bg["startedAt"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(bg["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!((expires - started).num_seconds(), 4, "{bg}");
    let bg_id = sid(&bg);
    // In force: the chart opens and the explanation says why.
    let r = app
        .get(
            &format!("/api/patients/{p}/overview"),
            Some(&bg_user.access),
        )
        .await;
    app.json_ok(r, 200).await;
    let a = access(app, &bg_user.access, p).await;
    assert_eq!(a["basis"], "break_glass", "{a}");
    assert_eq!(a["breakGlass"]["id"], bg_id.as_str());
    // The alert fires on the next evaluation.
    server::alert_task::tick(&app.state).await;
    let r = app.get("/api/alerts", Some(&s.admin.access)).await;
    let report = app.json_ok(r, 200).await;
    let alert = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "BreakGlassInvoked")
        .unwrap()
        .clone();
    assert_eq!(alert["state"], "firing", "{alert}");

    // After the time box: refused again (poll; no timing assertion).
    let mut refused = false;
    for _ in 0..200 {
        let r = app
            .get(
                &format!("/api/patients/{p}/overview"),
                Some(&bg_user.access),
            )
            .await;
        if r.status() == 403 {
            assert_problem(r, 403, "outside_care_team").await;
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "break-glass never expired");
    // The review queue lists it, with its end recorded.
    let r = app.get("/api/access/reviews", Some(&s.admin.access)).await;
    let q = app.json_ok(r, 200).await;
    let item = q["breakGlass"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == bg_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(item["reasonCode"], "emergency");
    assert_eq!(item["reasonText"], "Unconscious in the waiting room");
    assert!(item["endedAt"].is_string(), "{item}");
    let events = audit_events(app).await;
    let pid: uuid::Uuid = p.parse().unwrap();
    let starts = events
        .iter()
        .filter(|e| e.action == "break_glass.start" && e.patient_id == Some(pid))
        .count();
    let ends = events
        .iter()
        .filter(|e| e.action == "break_glass.end" && e.patient_id == Some(pid))
        .count();
    assert_eq!((starts, ends), (1, 1));
    // Expiry is recorded once, however often it is noticed.
    server::alert_task::tick(&app.state).await;
    let ends = audit_events(app)
        .await
        .iter()
        .filter(|e| e.action == "break_glass.end")
        .count();
    assert_eq!(ends, 1);

    // Only admins see and work the queue; a review takes it off.
    let r = app.get("/api/access/reviews", Some(&s.inside.access)).await;
    assert_problem(r, 403, "forbidden").await;
    let review = format!("/api/access/break-glass/{bg_id}/review");
    let r = app
        .post(&review, Some(&s.admin.access), json!({"note": ""}))
        .await;
    assert_problem(r, 422, "validation_failed").await;
    let r = app
        .post(
            &review,
            Some(&s.admin.access),
            json!({"note": "Confirmed with the ward: emergency admission."}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = app
        .post(&review, Some(&s.admin.access), json!({"note": "again"}))
        .await;
    assert_problem(r, 409, "conflict").await;
    let r = app.get("/api/access/reviews", Some(&s.admin.access)).await;
    let q = app.json_ok(r, 200).await;
    assert!(
        !q["breakGlass"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == bg_id.as_str()),
        "{q}"
    );
    let r = app
        .get("/api/access/reviews?open=false", Some(&s.admin.access))
        .await;
    let q = app.json_ok(r, 200).await;
    let item = q["breakGlass"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == bg_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(item["reviewedBy"], s.admin.user_id.to_string());
}

#[tokio::test]
async fn new_patients_join_the_default_team_and_the_day_view_lists_team_patients_only() {
    let s = split(TestApp::spawn().await).await;
    let app = &s.app;
    // A patient the outside provider registers now is theirs (default team).
    let q = app.create_patient(&s.outside.access, "Omar", "Saleh").await;
    let r = app
        .get(
            &format!("/api/patients/{}/overview", sid(&q)),
            Some(&s.outside.access),
        )
        .await;
    app.json_ok(r, 200).await;
    // The nurse is in Ward B only: the new patient is outside.
    assert_problem(
        app.get(
            &format!("/api/patients/{}/overview", sid(&q)),
            Some(&s.inside.access),
        )
        .await,
        403,
        "outside_care_team",
    )
    .await;
    // Critical vitals of the Ward B patient appear on the nurse's day, not the provider's.
    let r = app
        .post(
            &format!("/api/patients/{}/vitals", s.patient),
            Some(&s.inside.access),
            json!({"systolic": 230, "diastolic": 130, "heartRate": 80}),
        )
        .await;
    let status = r.status().as_u16();
    assert!(status == 201, "vitals: {}", r.text().await.unwrap());
    let day = |t: String| async move {
        let r = app.get("/api/overview", Some(&t)).await;
        app.json_ok(r, 200).await
    };
    let nurse_day = day(s.inside.access.clone()).await;
    let provider_day = day(s.outside.access.clone()).await;
    let text = |v: &Value| v.to_string();
    assert!(text(&nurse_day).contains(&s.patient), "{nurse_day}");
    assert!(!text(&provider_day).contains(&s.patient), "{provider_day}");
}

#[tokio::test]
async fn admin_created_clinical_accounts_are_flagged_queued_and_alerted() {
    let app = TestApp::spawn_with(|r| r.alert_interval = Some("1h".into())).await;
    let admin = app.signed_in("admin").await;
    let mk = |role: &str| json!({"email": format!("{role}-{}@clinic.test", uuid::Uuid::new_v4().simple()), "name": "New Colleague", "role": role, "password": "a-long-enough-password-42"});
    let r = app
        .post("/api/users", Some(&admin.access), mk("provider"))
        .await;
    let provider = app.json_ok(r, 201).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post("/api/users", Some(&admin.access), mk("staff"))
        .await;
    let staff = app.json_ok(r, 201).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // An invitation for a nurse, used.
    let r = app
        .post(
            "/api/invites",
            Some(&admin.access),
            json!({"role": "nurse"}),
        )
        .await;
    let code = app.json_ok(r, 201).await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post("/api/auth/signup", None, json!({"email": "invited.nurse@clinic.test", "password": "a-long-enough-password-42", "name": "Invited Nurse", "inviteCode": code}))
        .await;
    let nurse = app.json_ok(r, 201).await;
    let nurse = nurse["user"]["id"]
        .as_str()
        .or(nurse["id"].as_str())
        .unwrap()
        .to_string();

    let r = app.get("/api/access/reviews", Some(&admin.access)).await;
    let q = app.json_ok(r, 200).await;
    let accounts = q["accounts"].as_array().unwrap();
    let via = |id: &str| {
        accounts
            .iter()
            .find(|a| a["userId"] == id)
            .map(|a| a["via"].clone())
    };
    assert_eq!(via(&provider), Some(json!("api")), "{q}");
    assert_eq!(via(&nurse), Some(json!("invite")), "{q}");
    assert_eq!(via(&staff), None, "staff is not clinical: {q}");
    let flagged = audit_events(&app)
        .await
        .iter()
        .filter(|e| e.action == "account.flagged")
        .count();
    assert_eq!(flagged, 2);
    server::alert_task::tick(&app.state).await;
    let r = app.get("/api/alerts", Some(&admin.access)).await;
    let report = app.json_ok(r, 200).await;
    let alert = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "AdminCreatedClinicalAccount")
        .unwrap()
        .clone();
    assert_eq!(alert["state"], "firing", "{alert}");
    assert_eq!(alert["value"], 2.0, "{alert}");
    // Without the two-person rule the account signs in at once; a review
    // takes it off the queue.
    let r = app.post("/api/auth/signin", None, json!({"email": accounts.iter().find(|a| a["userId"] == provider.as_str()).unwrap()["email"], "password": "a-long-enough-password-42"})).await;
    assert_eq!(r.status(), 200);
    let r = app
        .post(
            &format!("/api/access/accounts/{provider}/review"),
            Some(&admin.access),
            json!({"approve": false}),
        )
        .await;
    let v = app.json_ok(r, 200).await;
    assert!(v["reviewedAt"].is_string(), "{v}");
    let r = app.get("/api/access/reviews", Some(&admin.access)).await;
    let q = app.json_ok(r, 200).await;
    assert!(
        !q["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["userId"] == provider.as_str()),
        "{q}"
    );
}

#[tokio::test]
async fn two_person_rule_needs_a_second_admin_before_a_new_clinical_account_signs_in() {
    let app = TestApp::spawn_with(|r| r.two_person_rule = Some("on".into())).await;
    let first = app.signed_in("admin").await;
    let second = app.signed_in("admin").await;
    let email = format!("prov-{}@clinic.test", uuid::Uuid::new_v4().simple());
    let body = json!({"email": email, "name": "New Provider", "role": "provider", "password": "a-long-enough-password-42"});
    let r = app.post("/api/users", Some(&first.access), body).await;
    let id = app.json_ok(r, 201).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let signin = || {
        app.post(
            "/api/auth/signin",
            None,
            json!({"email": email, "password": "a-long-enough-password-42"}),
        )
    };
    let v = assert_problem(signin().await, 403, "forbidden").await;
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("second administrator"),
        "{v}"
    );
    // The creator may not approve their own account.
    let path = format!("/api/access/accounts/{id}/review");
    let r = app
        .post(&path, Some(&first.access), json!({"approve": true}))
        .await;
    assert_problem(r, 403, "forbidden").await;
    assert_problem(signin().await, 403, "forbidden").await;
    let r = app
        .post(&path, Some(&second.access), json!({"approve": true}))
        .await;
    let v = app.json_ok(r, 200).await;
    assert_eq!(v["approvedBy"], second.user_id.to_string(), "{v}");
    assert_eq!(signin().await.status(), 200);
    let reviews = audit_events(&app)
        .await
        .iter()
        .filter(|e| e.action == "account.review")
        .count();
    assert_eq!(reviews, 1);
    // A staff account is not held.
    let staff_email = format!("desk-{}@clinic.test", uuid::Uuid::new_v4().simple());
    let r = app
        .post("/api/users", Some(&first.access), json!({"email": staff_email, "name": "Desk", "role": "staff", "password": "a-long-enough-password-42"}))
        .await;
    app.json_ok(r, 201).await;
    let r = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": staff_email, "password": "a-long-enough-password-42"}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn web_break_glass_page_opens_the_chart_and_the_admin_reviews_it_and_manages_teams() {
    use crate::web::Web;
    use reqwest::StatusCode;
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    let registrar = app.signed_in("provider").await;
    let p = sid(&app
        .create_patient(&registrar.access, "Layla", "Nasser")
        .await);
    let ward = new_team(&app, &admin.access, "Ward B").await;
    membership(&app, &admin.access, DEFAULT_TEAM, "patient", &p, false).await;
    membership(&app, &admin.access, &ward, "patient", &p, true).await;

    let (w, u) = Web::signed_in(&app, "provider").await;
    let page = w.get(&format!("/patients/{p}")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(
        page.body.contains("Not in your care teams"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Nasser, Layla"));
    assert!(page.body.contains("Break the glass"));
    let token = page.csrf();
    let path = format!("/patients/{p}/break-glass");
    let reason = "Collapsed at reception, own clinician away";
    let wrong = w
        .post(
            &path,
            &[
                ("_csrf", &token),
                ("reasonCode", "emergency"),
                ("reasonText", reason),
                ("password", "not the password at all"),
            ],
        )
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.body
    );
    assert!(
        wrong.body.contains("is not your password"),
        "{}",
        wrong.body
    );
    let ok = w
        .post(
            &path,
            &[
                ("_csrf", &token),
                ("reasonCode", "emergency"),
                ("reasonText", reason),
                ("password", &u.password),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let chart = w.get(&ok.location()).await;
    assert_eq!(chart.status, StatusCode::OK, "{}", chart.body);
    assert!(
        chart.body.contains("Break-glass access is open"),
        "{}",
        chart.body
    );

    let (aw, _) = Web::signed_in(&app, "admin").await;
    let queue = aw.get("/admin/reviews").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    assert!(queue.body.contains(reason), "{}", queue.body);
    let bg = app.get("/api/access/reviews", Some(&admin.access)).await;
    let bg = app.json_ok(bg, 200).await["breakGlass"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let atoken = queue.csrf();
    let r = aw
        .post(
            &format!("/admin/reviews/break-glass/{bg}"),
            &[("_csrf", &atoken), ("note", "Checked with reception.")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let queue = aw.get("/admin/reviews").await;
    assert!(
        !queue.body.contains(reason),
        "reviewed items leave the open queue"
    );
    let teams = aw.get("/admin/teams").await;
    assert!(
        teams.body.contains("Ward B") && teams.body.contains("Whole clinic"),
        "{}",
        teams.body
    );
    let r = aw
        .post("/admin/teams", &[("_csrf", &atoken), ("name", "Ward C")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let team = aw.get(&r.location()).await;
    assert_eq!(team.status, StatusCode::OK, "{}", team.body);
    assert!(team.body.contains("Care team Ward C"));
    let tid = r.location().trim_start_matches("/admin/teams/").to_string();
    let r = aw
        .post(
            &format!("/admin/teams/{tid}/membership"),
            &[
                ("_csrf", &atoken),
                ("kind", "member"),
                ("id", &u.id.to_string()),
                ("present", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let team = aw.get(&format!("/admin/teams/{tid}")).await;
    assert!(team.body.contains("Remove"), "{}", team.body);
}

/// A patient of "Ward B" only (moved out of the default team).
async fn ward_patient(s: &Split, given: &str) -> String {
    let p = sid(&s
        .app
        .create_patient(&s.inside.access, given, "Haddad")
        .await);
    let admin = s.admin.access.as_str();
    membership(&s.app, admin, DEFAULT_TEAM, "patient", &p, false).await;
    membership(&s.app, admin, &s.ward, "patient", &p, true).await;
    p
}

async fn break_glass_with(
    app: &TestApp,
    token: &str,
    p: &str,
    pw: &str,
    code: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({"reasonCode": "emergency", "reasonText": "Unconscious in the waiting room", "password": pw});
    if let Some(c) = code {
        body["mfaCode"] = json!(c);
    }
    app.post(&format!("/api/patients/{p}/break-glass"), Some(token), body)
        .await
}

#[tokio::test]
async fn break_glass_asks_an_enrolled_user_for_a_current_unused_second_factor() {
    use crate::identity::{code, enrol};
    let s = split(TestApp::spawn().await).await;
    let app = &s.app;
    let u = app.create_user("provider").await;
    let me = app.sign_in(&u).await;
    let (secret, recovery) = enrol(app, &me).await;
    let (p1, p2, p3) = (
        s.patient.clone(),
        ward_patient(&s, "Noor").await,
        ward_patient(&s, "Samir").await,
    );
    let pw = u.password.as_str();

    // Missing, wrong: 422 on mfaCode and no access.
    for c in [None, Some(""), Some("000000"), Some("not-a-code")] {
        let r = break_glass_with(app, &me.access, &p1, pw, c).await;
        let v = assert_problem(r, 422, "validation_failed").await;
        assert_eq!(v["errors"][0]["field"], "mfaCode", "{c:?}: {v}");
    }
    assert_eq!(access(app, &me.access, &p1).await["basis"], "none");
    // The password is still checked first.
    let r = break_glass_with(
        app,
        &me.access,
        &p1,
        "not-my-password-at-all",
        Some(&code(&secret, 1)),
    )
    .await;
    let v = assert_problem(r, 422, "validation_failed").await;
    assert_eq!(v["errors"][0]["field"], "password");

    // A current code (the next step's: enrolment used this one) opens it.
    let next = code(&secret, 1);
    let r = break_glass_with(app, &me.access, &p1, pw, Some(&next)).await;
    app.json_ok(r, 201).await;
    assert_eq!(access(app, &me.access, &p1).await["basis"], "break_glass");
    // The same code again, for another patient: a replay, refused.
    let r = break_glass_with(app, &me.access, &p2, pw, Some(&next)).await;
    let v = assert_problem(r, 422, "validation_failed").await;
    assert_eq!(v["errors"][0]["field"], "mfaCode");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{v}"
    );
    // A recovery code works, once.
    let r = break_glass_with(app, &me.access, &p2, pw, Some(&recovery[0])).await;
    app.json_ok(r, 201).await;
    let r = break_glass_with(app, &me.access, &p3, pw, Some(&recovery[0])).await;
    assert_problem(r, 422, "validation_failed").await;
    assert_eq!(access(app, &me.access, &p3).await["basis"], "none");

    let ev = audit_events(app).await;
    let mine = |outcome: &str| {
        ev.iter()
            .filter(|e| {
                e.action == "auth.mfa.verify" && e.actor_id == Some(u.id) && e.outcome == outcome
            })
            .count()
    };
    assert_eq!(mine("success"), 2, "one TOTP and one recovery code");
    assert!(ev.iter().any(|e| e.action == "auth.mfa.verify"
        && e.actor_id == Some(u.id)
        && e.detail
            .as_deref()
            .is_some_and(|d| d.contains("break_glass") && d.contains("recovery_code"))));
    // Wrong and replayed codes: 2 wrong above, 1 replay, 1 used recovery code.
    assert_eq!(mine("failure"), 4);

    // Failures count against the sign-in code limit: 429 with Retry-After.
    let limit = app.state.config.rate_limits.account_failures.limit;
    let mut limited = false;
    for _ in 0..=limit {
        let r = break_glass_with(app, &me.access, &p3, pw, Some("000000")).await;
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_some());
            limited = true;
            break;
        }
        assert_eq!(r.status(), 422);
    }
    assert!(limited, "second-factor failures are rate-limited");
    // And the lock is the sign-in one: the code step of sign-in is refused too.
    let step = app
        .post(
            "/api/auth/signin",
            None,
            json!({"email": u.email, "password": u.password}),
        )
        .await;
    let step = app.json_ok(step, 200).await;
    let r = app
        .post(
            "/api/auth/mfa/verify",
            None,
            json!({"challengeToken": step["challengeToken"], "code": code(&secret, 0)}),
        )
        .await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn web_break_glass_form_asks_an_enrolled_user_for_the_code() {
    use crate::identity::{code, enrol};
    use crate::web::Web;
    use reqwest::StatusCode;
    let s = split(TestApp::spawn().await).await;
    let (app, p) = (&s.app, s.patient.as_str());
    let (w, u) = Web::signed_in(app, "provider").await;
    // Not enrolled: no code field.
    let page = w.get(&format!("/patients/{p}")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!page.body.contains("name=\"mfaCode\""), "{}", page.body);
    let api = app.sign_in(&u).await;
    let (secret, _) = enrol(app, &api).await;
    let page = w.get(&format!("/patients/{p}")).await;
    assert!(page.body.contains("name=\"mfaCode\""), "{}", page.body);
    let token = page.csrf();
    let path = format!("/patients/{p}/break-glass");
    let reason = "Collapsed at reception, own clinician away";
    let post = async |c: &str| {
        w.post(
            &path,
            &[
                ("_csrf", token.as_str()),
                ("reasonCode", "emergency"),
                ("reasonText", reason),
                ("password", u.password.as_str()),
                ("mfaCode", c),
            ],
        )
        .await
    };
    let r = post("").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        r.body.contains("enter the code from your authenticator"),
        "{}",
        r.body
    );
    assert!(r.body.contains("bg-mfaCode-err"), "{}", r.body);
    let r = post("000000").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("already used"), "{}", r.body);
    let ok = post(&code(&secret, 1)).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let chart = w.get(&ok.location()).await;
    assert!(
        chart.body.contains("Break-glass access is open"),
        "{}",
        chart.body
    );
}

/// Issue 11 item 4: a refusal whose patient id came in the body (the AI
/// routes) or a query (FHIR `?patient=`) is audited with that patient, for
/// a care-team refusal and for a role refusal alike.
#[tokio::test]
async fn refusals_by_an_id_in_the_body_or_query_are_audited_with_the_patient() {
    let s = split(TestApp::spawn().await).await;
    let (app, p) = (&s.app, s.patient.as_str());
    let staff = app.signed_in("staff").await;
    let lab = sid(&app
        .json_ok(
            app.post(
                &format!("/api/patients/{p}/labs"),
                Some(&s.inside.access),
                json!({"code": "2823-3", "value": 4.1, "unit": "mmol/L", "collectedAt": "2026-01-05T08:00:00Z"}),
            )
            .await,
            201,
        )
        .await);
    let explain = json!({"labId": lab, "audience": "clinician"});
    for (token, path, body, code) in [
        (
            &s.outside.access,
            "/api/ai/generate-note",
            json!({"patientId": p, "input": "cough for three days"}),
            "outside_care_team",
        ),
        (
            &s.outside.access,
            "/api/ai/explain",
            explain.clone(),
            "outside_care_team",
        ),
        (
            &staff.access,
            "/api/ai/explain",
            explain.clone(),
            "forbidden",
        ),
    ] {
        assert_problem(app.post(path, Some(token), body).await, 403, code).await;
    }
    let r = app
        .get(
            &format!("/fhir/R4/Observation?patient={p}"),
            Some(&s.outside.access),
        )
        .await;
    assert_eq!(r.status(), 403);

    let refusals = |actor: uuid::Uuid| async move {
        audit_events(app)
            .await
            .iter()
            .filter(|e| e.action == "access.refused" && e.actor_id == Some(actor))
            .map(|e| (e.outcome.clone(), e.patient_id.map(|u| u.to_string())))
            .collect::<Vec<_>>()
    };
    let want = |n: usize, outcome: &str| vec![(outcome.to_string(), Some(p.to_string())); n];
    assert_eq!(refusals(s.outside.user_id).await, want(3, "forbidden"));
    assert_eq!(refusals(staff.user_id).await, want(1, "forbidden"));
    // The team member's own AI call is not a refusal.
    let r = app
        .post(
            "/api/ai/explain",
            Some(&s.inside.access),
            json!({"labId": lab, "audience": "clinician"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(refusals(s.inside.user_id).await.is_empty());
}
