//! The clinical core: patients, notes, prescriptions, labs, overview.

use domain::roles::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::spec_roles::*;
use crate::helpers::*;

/// A clinic with one user of every role, one patient and one of each record.
struct Clinic {
    app: TestApp,
    tokens: Vec<(Role, Session)>,
    patient: String,
    note: String,
    rx: String,
    lab: String,
}

impl Clinic {
    async fn new() -> Clinic {
        let app = TestApp::spawn().await;
        let mut tokens = Vec::new();
        for r in Role::ALL {
            tokens.push((r, app.signed_in(r.as_str()).await));
        }
        let prov = tokens[1].1.access.clone();
        let p = app.create_patient(&prov, "Amira", "Haddad").await;
        let patient = sid(&p);
        let note = sid(&app
            .json_ok(
                app.post(
                    &format!("/api/patients/{patient}/notes"),
                    Some(&prov),
                    json!({"title": "Visit", "subjective": "cough"}),
                )
                .await,
                201,
            )
            .await);
        let rx = sid(&app.json_ok(app.post(&format!("/api/patients/{patient}/prescriptions"), Some(&prov), json!({"medication": "Metformin 500 mg", "dose": "500 mg", "route": "oral", "frequency": "twice daily", "quantity": 60})).await, 201).await);
        let lab = sid(&app.json_ok(app.post(&format!("/api/patients/{patient}/labs"), Some(&prov), json!({"code": "2345-7", "value": 250.0, "unit": "mg/dL", "collectedAt": "2026-01-01T08:00:00Z"})).await, 201).await);
        Clinic {
            app,
            tokens,
            patient,
            note,
            rx,
            lab,
        }
    }

    fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|t| t.0 == role).unwrap().1.access
    }
}

#[tokio::test]
async fn every_role_against_every_clinical_endpoint() {
    let c = Clinic::new().await;
    let p = &c.patient;
    // (method, path, body, action, success status). Bodies are invalid where a
    // valid one would change state, so the check is purely about permission:
    // an allowed role gets past authorization (2xx or 422), others get 403.
    type Case = (
        Method,
        String,
        Option<Value>,
        &'static [&'static str],
        &'static [u16],
    );
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/api/patients".into(),
            None,
            DESK_AND_CLINICIANS,
            &[200],
        ),
        (
            Method::POST,
            "/api/patients".into(),
            Some(json!({"givenName": ""})),
            DESK_AND_CLINICIANS,
            &[422],
        ),
        (
            Method::GET,
            format!("/api/patients/{p}"),
            None,
            DESK_AND_CLINICIANS,
            &[200],
        ),
        (
            Method::PATCH,
            format!("/api/patients/{p}"),
            Some(json!({"birthDate": "not a date", "version": 1})),
            DESK_AND_CLINICIANS,
            &[422],
        ),
        (
            Method::POST,
            format!("/api/patients/{p}/allergies"),
            Some(json!({"substance": ""})),
            CLINICIANS,
            &[422],
        ),
        (
            Method::POST,
            format!("/api/patients/{p}/problems"),
            Some(json!({"description": ""})),
            CLINICIANS,
            &[422],
        ),
        (
            Method::PATCH,
            format!("/api/patients/{p}/allergies/{}", c.note),
            Some(json!({"version": 1})),
            CLINICIANS,
            &[404],
        ),
        (
            Method::PATCH,
            format!("/api/patients/{p}/problems/{}", c.note),
            Some(json!({"version": 1})),
            CLINICIANS,
            &[404],
        ),
        (
            Method::GET,
            format!("/api/patients/{p}/vitals"),
            None,
            CLINICIANS,
            &[200],
        ),
        (
            Method::POST,
            format!("/api/patients/{p}/vitals"),
            Some(json!({})),
            CLINICIANS,
            &[422],
        ),
        (
            Method::GET,
            format!("/api/patients/{p}/banner"),
            None,
            CLINICIANS,
            &[200],
        ),
        (
            Method::GET,
            format!("/api/patients/{p}/overview"),
            None,
            CLINICIANS,
            &[200],
        ),
        (
            Method::GET,
            "/api/overview".into(),
            None,
            CLINICIANS,
            &[200],
        ),
        (
            Method::GET,
            format!("/api/patients/{p}/notes"),
            None,
            CLINICIANS,
            &[200],
        ),
        (
            Method::POST,
            format!("/api/patients/{p}/notes"),
            Some(json!({"title": ""})),
            CLINICIANS,
            &[422],
        ),
        (
            Method::GET,
            format!("/api/notes/{}", c.note),
            None,
            CLINICIANS,
            &[200],
        ),
        (
            Method::PATCH,
            format!("/api/notes/{}", c.note),
            Some(json!({"title": ""})),
            CLINICIANS,
            &[403, 422, 428],
        ),
        (
            Method::POST,
            format!("/api/notes/{}/finalize", uuid::Uuid::nil()),
            None,
            PROVIDERS,
            &[404],
        ),
        (
            Method::POST,
            format!("/api/notes/{}/addenda", c.note),
            Some(json!({"text": ""})),
            CLINICIANS,
            &[422],
        ),
        (
            Method::DELETE,
            format!("/api/notes/{}", uuid::Uuid::nil()),
            None,
            CLINICIANS,
            &[404],
        ),
        (
            Method::GET,
            format!("/api/patients/{p}/prescriptions"),
            None,
            CLINICIANS,
            &[200],
        ),
        (
            Method::POST,
            format!("/api/patients/{p}/prescriptions"),
            Some(
                json!({"medication": "", "dose": "", "route": "", "frequency": "", "quantity": 0}),
            ),
            CLINICIANS,
            &[422],
        ),
        (
            Method::GET,
            format!("/api/prescriptions/{}", c.rx),
            None,
            CLINICIANS,
            &[200],
        ),
        (
            Method::POST,
            format!("/api/prescriptions/{}/issue", uuid::Uuid::nil()),
            None,
            PROVIDERS,
            &[404],
        ),
        (
            Method::POST,
            format!("/api/prescriptions/{}/cancel", c.rx),
            Some(json!({})),
            PROVIDERS,
            &[422],
        ),
        (
            Method::GET,
            format!("/api/patients/{p}/labs"),
            None,
            CLINICIANS,
            &[200],
        ),
        (
            Method::GET,
            format!("/api/patients/{p}/labs/trend?code=2345-7"),
            None,
            CLINICIANS,
            &[200],
        ),
        (
            Method::POST,
            format!("/api/patients/{p}/labs"),
            Some(json!({"code": "bad"})),
            CLINICIANS,
            &[422],
        ),
        (
            Method::GET,
            format!("/api/labs/{}", c.lab),
            None,
            CLINICIANS,
            &[200],
        ),
        (
            Method::POST,
            format!("/api/labs/{}/review", uuid::Uuid::nil()),
            None,
            PROVIDERS,
            &[404],
        ),
    ];
    for (method, path, body, action, ok) in &cases {
        let r = c
            .app
            .request(method.clone(), path, None, body.clone())
            .await;
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        for role in Role::ALL {
            let r = c
                .app
                .request(method.clone(), path, Some(c.token(role)), body.clone())
                .await;
            let got = r.status().as_u16();
            if action.contains(&role.as_str()) {
                assert!(
                    ok.contains(&got),
                    "{method} {path} as {role}: {got}, expected one of {ok:?}"
                );
            } else {
                assert_eq!(got, 403, "{method} {path} as {role}");
            }
        }
    }
}

#[tokio::test]
async fn patients_create_read_update_with_optimistic_concurrency() {
    let app = TestApp::spawn().await;
    let staff = app.signed_in("staff").await;
    let p = app.create_patient(&staff.access, "José", "Núñez").await;
    let id = sid(&p);
    assert_eq!(p["mrn"].as_str().unwrap().len(), 10);
    assert_eq!(p["version"], 1);
    let r = app
        .get(&format!("/api/patients/{id}"), Some(&staff.access))
        .await;
    assert_eq!(r.headers()["etag"], "\"1\"");
    // Missing version → 428.
    assert_problem(
        app.patch(
            &format!("/api/patients/{id}"),
            &staff.access,
            None,
            json!({"phone": "555 0100"}),
        )
        .await,
        428,
        "precondition_required",
    )
    .await;
    // Two PATCHes with the same version: one wins, one 409.
    let a = app
        .patch(
            &format!("/api/patients/{id}"),
            &staff.access,
            Some(1),
            json!({"phone": "555 0100"}),
        )
        .await;
    let b = app
        .patch(
            &format!("/api/patients/{id}"),
            &staff.access,
            Some(1),
            json!({"phone": "555 0199"}),
        )
        .await;
    assert_eq!(a.status(), StatusCode::OK);
    assert_problem(b, 409, "conflict").await;
    let now: Value = app
        .get(&format!("/api/patients/{id}"), Some(&staff.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["phone"], "555 0100");
    assert_eq!(now["version"], 2);
    // Version in the body works too; validation reports fields.
    let v = assert_problem(
        app.patch(
            &format!("/api/patients/{id}"),
            &staff.access,
            Some(2),
            json!({"birthDate": "2999-01-01", "sex": "robot"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
    assert_problem(
        app.get(
            &format!("/api/patients/{}", uuid::Uuid::nil()),
            Some(&staff.access),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.get("/api/patients/not-a-uuid", Some(&staff.access))
            .await,
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn concurrent_patches_with_one_version_let_exactly_one_win() {
    let app = TestApp::spawn().await;
    let staff = app.signed_in("staff").await;
    let id = sid(&app.create_patient(&staff.access, "Ana", "Silva").await);
    let mut handles = Vec::new();
    for i in 0..8 {
        let client = app.client.clone();
        let url = app.url(&format!("/api/patients/{id}"));
        let token = staff.access.clone();
        handles.push(tokio::spawn(async move {
            client
                .patch(url)
                .bearer_auth(token)
                .header("If-Match", "1")
                .json(&json!({"phone": format!("555 010{i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut codes = Vec::new();
    for h in handles {
        codes.push(h.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 7, "{codes:?}");
}

#[tokio::test]
async fn search_by_name_prefix_mrn_and_birth_date() {
    let app = TestApp::spawn().await;
    let n = app.signed_in("nurse").await;
    let jose = app.create_patient(&n.access, "José", "Núñez").await;
    app.create_patient(&n.access, "Joseph", "Smith").await;
    app.create_patient(&n.access, "Maria", "O'Brien").await;
    app.create_patient(&n.access, "100%", "Under_Score").await;
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["familyName"].as_str().unwrap().to_string())
            .collect()
    };
    let get = |q: &str| {
        let url = format!("/api/patients?q={}", urlencode(q));
        let t = n.access.clone();
        let app = &app;
        async move { app.json_ok(app.get(&url, Some(&t)).await, 200).await }
    };
    assert_eq!(names(&get("nun").await), ["Núñez"]);
    assert_eq!(names(&get("NÚÑ").await), ["Núñez"]);
    assert_eq!(names(&get("jos").await).len(), 2);
    assert_eq!(names(&get("jose nu").await), ["Núñez"]);
    assert_eq!(names(&get("nunez jo").await), ["Núñez"]);
    assert_eq!(names(&get("o'b").await), ["O'Brien"]);
    assert!(names(&get("%").await).is_empty(), "% is not a wildcard");
    assert!(names(&get("_").await).is_empty(), "_ is not a wildcard");
    assert_eq!(names(&get("100%").await), ["Under_Score"]);
    assert_eq!(names(&get("' OR '1'='1").await).len(), 0);
    assert_eq!(names(&get(jose["mrn"].as_str().unwrap()).await), ["Núñez"]);
    assert_eq!(names(&get("1980-04-12").await).len(), 4);
    assert_eq!(names(&get("").await).len(), 4);
}

/// A name prefix matches by family name or by given name; the pages merge
/// both in (family, given) order, every match exactly once (W2's search is
/// two separately limited index scans, issue 9).
#[tokio::test]
async fn name_prefix_pages_merge_family_and_given_matches_in_order() {
    let app = TestApp::spawn().await;
    let n = app.signed_in("nurse").await;
    let mut want = Vec::new();
    for i in 0..7 {
        // Family matches, given matches, and both.
        let (g, f) = match i % 3 {
            0 => (format!("Zed{i}"), format!("Kalo{i}")),
            1 => (format!("Kami{i}"), format!("Abel{i}")),
            _ => (format!("Kato{i}"), format!("Kane{i}")),
        };
        app.create_patient(&n.access, &g, &f).await;
        want.push(format!("{} {}", f.to_lowercase(), g.to_lowercase()));
        app.create_patient(&n.access, &format!("Other{i}"), "Nomatch")
            .await;
    }
    want.sort();
    let mut got = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = format!("/api/patients?q=ka&limit=3{cursor}");
        let v = app.json_ok(app.get(&url, Some(&n.access)).await, 200).await;
        for p in v["items"].as_array().unwrap() {
            got.push(format!(
                "{} {}",
                p["familyName"].as_str().unwrap().to_lowercase(),
                p["givenName"].as_str().unwrap().to_lowercase()
            ));
        }
        match v["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(got, want);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn keyset_pagination_sees_every_patient_once_during_inserts() {
    let app = TestApp::spawn().await;
    let n = app.signed_in("staff").await;
    for i in 0..60 {
        app.create_patient(
            &n.access,
            &format!("Given{i:03}"),
            &format!("Family{:03}", (i * 37) % 60),
        )
        .await;
    }
    let initial: Vec<String> = {
        let v = app
            .json_ok(
                app.get("/api/patients?limit=200", Some(&n.access)).await,
                200,
            )
            .await;
        v["items"].as_array().unwrap().iter().map(sid).collect()
    };
    // Page through while another task keeps inserting patients.
    let writer = {
        let client = app.client.clone();
        let url = app.url("/api/patients");
        let token = n.access.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let body = json!({"givenName": format!("Late{i}"), "familyName": format!("Family{:03}", i % 60), "birthDate": "1990-01-01", "sex": "male"});
                client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/patients?limit=7&cursor={c}"),
            None => "/api/patients?limit=7".into(),
        };
        let v = app
            .json_ok(app.get(&path, Some(&n.access)).await, 200)
            .await;
        seen.extend(v["items"].as_array().unwrap().iter().map(sid));
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    writer.await.unwrap();
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len(), "no patient twice");
    for id in &initial {
        assert!(
            seen.contains(id),
            "patient {id} present before paging was missed"
        );
    }
    assert_problem(
        app.get("/api/patients?cursor=garbage!!", Some(&n.access))
            .await,
        422,
        "validation_failed",
    )
    .await;
    let v = app
        .json_ok(
            app.get("/api/patients?limit=100000", Some(&n.access)).await,
            200,
        )
        .await;
    assert!(
        v["items"].as_array().unwrap().len() <= 200,
        "limit is clamped"
    );
}

#[tokio::test]
async fn note_state_machine() {
    let c = Clinic::new().await;
    let app = &c.app;
    let prov = c.token(Role::Provider).to_string();
    let nurse = c.token(Role::Nurse).to_string();
    let other_provider = app.signed_in("provider").await.access;
    let p = &c.patient;
    let create = |token: String| async move {
        app.json_ok(app.post(&format!("/api/patients/{p}/notes"), Some(&token), json!({"title": "Follow-up", "subjective": "feels better", "plan": "review in 2 weeks"})).await, 201).await
    };
    // Draft edits: author only, with a version.
    let note = create(prov.clone()).await;
    let id = sid(&note);
    assert_eq!(note["status"], "draft");
    assert_problem(
        app.patch(
            &format!("/api/notes/{id}"),
            &nurse,
            Some(1),
            json!({"title": "x"}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    let edited = app
        .json_ok(
            app.patch(
                &format!("/api/notes/{id}"),
                &prov,
                Some(1),
                json!({"assessment": "improving"}),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(edited["assessment"], "improving");
    assert_eq!(edited["version"], 2);
    assert_problem(
        app.patch(
            &format!("/api/notes/{id}"),
            &prov,
            Some(1),
            json!({"title": "stale"}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    // Another provider may not sign it; the author may.
    assert_problem(
        app.post(
            &format!("/api/notes/{id}/finalize"),
            Some(&other_provider),
            json!({}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        app.post(
            &format!("/api/notes/{id}/finalize"),
            Some(&nurse),
            json!({}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    let signed = app
        .json_ok(
            app.post(
                &format!("/api/notes/{id}/finalize"),
                Some(&prov),
                json!({"version": 2}),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(signed["status"], "final");
    assert_eq!(signed["signedBy"], c.tokens[1].1.user_id.to_string());
    assert!(signed["signedAt"].is_string());
    assert_eq!(signed["contentHash"].as_str().unwrap().len(), 64);
    assert_eq!(app.state.metrics.counter("note.finalized"), 1);
    // Final: every change is a 409 naming the state.
    let v = assert_problem(
        app.patch(
            &format!("/api/notes/{id}"),
            &prov,
            Some(3),
            json!({"title": "changed"}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(v["currentState"], "final");
    assert_problem(
        app.post(&format!("/api/notes/{id}/finalize"), Some(&prov), json!({}))
            .await,
        409,
        "conflict",
    )
    .await;
    assert_problem(
        app.delete(&format!("/api/notes/{id}"), &prov).await,
        409,
        "conflict",
    )
    .await;
    // Corrections are addenda.
    let with = app
        .json_ok(
            app.post(
                &format!("/api/notes/{id}/addenda"),
                Some(&prov),
                json!({"text": "Correction: review in 3 weeks"}),
            )
            .await,
            201,
        )
        .await;
    assert_eq!(with["addenda"].as_array().unwrap().len(), 1);
    assert_eq!(
        with["subjective"], "feels better",
        "the signed content is unchanged"
    );
    let read = app
        .json_ok(
            app.get(&format!("/api/notes/{id}"), Some(&nurse)).await,
            200,
        )
        .await;
    assert_eq!(read["addenda"][0]["text"], "Correction: review in 3 weeks");
    assert_eq!(read["contentHash"], signed["contentHash"]);
    // Addenda on drafts are refused; drafts are edited instead.
    let draft = sid(&create(prov.clone()).await);
    assert_problem(
        app.post(
            &format!("/api/notes/{draft}/addenda"),
            Some(&prov),
            json!({"text": "x"}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    // Discard: author only, drafts only.
    assert_problem(
        app.delete(&format!("/api/notes/{draft}"), &nurse).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.delete(&format!("/api/notes/{draft}"), &prov)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        app.get(&format!("/api/notes/{draft}"), Some(&prov)).await,
        404,
        "not_found",
    )
    .await;
    // A provider co-signs a nurse's draft.
    let nurse_note = sid(&create(nurse.clone()).await);
    let cosigned = app
        .json_ok(
            app.post(
                &format!("/api/notes/{nurse_note}/finalize"),
                Some(&other_provider),
                json!({"version": 1}),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(cosigned["status"], "final");
    assert_eq!(cosigned["authorId"], c.tokens[2].1.user_id.to_string());
}

async fn new_rx(app: &TestApp, token: &str, patient: &str, medication: &str) -> String {
    sid(&app.json_ok(app.post(&format!("/api/patients/{patient}/prescriptions"), Some(token), json!({"medication": medication, "dose": "500 mg", "route": "oral", "frequency": "three times daily", "quantity": 21, "refills": 0})).await, 201).await)
}

#[tokio::test]
async fn prescription_state_machine() {
    let c = Clinic::new().await;
    let app = &c.app;
    let prov = c.token(Role::Provider).to_string();
    let nurse = c.token(Role::Nurse).to_string();
    let p = c.patient.clone();
    // A nurse drafts; only a provider issues.
    let rx = new_rx(app, &nurse, &p, "Metformin").await;
    assert_problem(
        app.post(
            &format!("/api/prescriptions/{rx}/issue"),
            Some(&nurse),
            json!({}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
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
    // issued → issued is illegal.
    let v = assert_problem(
        app.post(
            &format!("/api/prescriptions/{rx}/issue"),
            Some(&prov),
            json!({}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(v["currentState"], "issued");
    // Cancel needs a reason.
    assert_problem(
        app.post(
            &format!("/api/prescriptions/{rx}/cancel"),
            Some(&prov),
            json!({}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        app.post(
            &format!("/api/prescriptions/{rx}/cancel"),
            Some(&prov),
            json!({"reason": "  "}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        app.post(
            &format!("/api/prescriptions/{rx}/cancel"),
            Some(&nurse),
            json!({"reason": "x"}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    let cancelled = app
        .json_ok(
            app.post(
                &format!("/api/prescriptions/{rx}/cancel"),
                Some(&prov),
                json!({"reason": "switched to another drug"}),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancelReason"], "switched to another drug");
    // cancelled → anything is illegal.
    assert_problem(
        app.post(
            &format!("/api/prescriptions/{rx}/issue"),
            Some(&prov),
            json!({}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert_problem(
        app.post(
            &format!("/api/prescriptions/{rx}/cancel"),
            Some(&prov),
            json!({"reason": "again"}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    // draft → cancelled is legal; issuing it afterwards is not.
    let rx2 = new_rx(app, &prov, &p, "Lisinopril").await;
    app.json_ok(
        app.post(
            &format!("/api/prescriptions/{rx2}/cancel"),
            Some(&prov),
            json!({"reason": "entered in error"}),
        )
        .await,
        200,
    )
    .await;
    assert_problem(
        app.post(
            &format!("/api/prescriptions/{rx2}/issue"),
            Some(&prov),
            json!({}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(app.state.metrics.counter("prescription.issued"), 1);
    assert_eq!(app.state.metrics.counter("prescription.cancelled"), 2);
    // An issue body is optional: no body at all works.
    let rx3 = new_rx(app, &prov, &p, "Atorvastatin").await;
    let r = app
        .client
        .post(app.url(&format!("/api/prescriptions/{rx3}/issue")))
        .bearer_auth(&prov)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn allergy_conflict_blocks_issue_unless_overridden_and_audited() {
    let c = Clinic::new().await;
    let app = &c.app;
    let prov = c.token(Role::Provider).to_string();
    let p = c.patient.clone();
    app.json_ok(
        app.post(
            &format!("/api/patients/{p}/allergies"),
            Some(&prov),
            json!({"substance": "Penicillin", "reaction": "hives", "severity": "severe"}),
        )
        .await,
        201,
    )
    .await;
    let rx = new_rx(app, &prov, &p, "Amoxicillin 500 mg capsule").await;
    let v = assert_problem(
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
    assert_eq!(v["allergy"], "Penicillin");
    assert!(v["detail"].as_str().unwrap().contains("Penicillin"));
    let still: Value = app
        .json_ok(
            app.get(&format!("/api/prescriptions/{rx}"), Some(&prov))
                .await,
            200,
        )
        .await;
    assert_eq!(still["status"], "draft");
    let issued = app
        .json_ok(
            app.post(
                &format!("/api/prescriptions/{rx}/issue"),
                Some(&prov),
                json!({"overrideReason": "tolerated amoxicillin in 2024 under observation"}),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(issued["status"], "issued");
    assert_eq!(
        issued["overrideReason"],
        "tolerated amoxicillin in 2024 under observation"
    );
    assert_eq!(
        app.state.metrics.counter("prescription.allergy_override"),
        1
    );
    let events = audit_events(app).await;
    let ev = events
        .iter()
        .find(|e| e.action == "prescription.issue")
        .unwrap();
    assert!(ev
        .detail
        .as_deref()
        .unwrap()
        .contains("\"allergyOverride\":true"));
    assert!(
        !ev.detail.as_deref().unwrap().contains("tolerated"),
        "no clinical text in the audit trail"
    );
    // A medication without conflict issues directly.
    let ok = new_rx(app, &prov, &p, "Azithromycin").await;
    app.json_ok(
        app.post(
            &format!("/api/prescriptions/{ok}/issue"),
            Some(&prov),
            json!({}),
        )
        .await,
        200,
    )
    .await;
}

#[tokio::test]
async fn labs_are_flagged_by_the_server_at_each_boundary() {
    let c = Clinic::new().await;
    let app = &c.app;
    let nurse = c.token(Role::Nurse).to_string();
    let p = c.patient.clone();
    let entry = domain::labs::reference("2823-3").expect("potassium is in the table");
    let (low, high) = (entry.low.unwrap(), entry.high.unwrap());
    let (clow, chigh) = (entry.critical_low.unwrap(), entry.critical_high.unwrap());
    let cases = [
        (clow - 0.1, "critical_low"),
        (clow, "critical_low"),
        (clow + 0.1, "low"),
        (low - 0.1, "low"),
        (low, "normal"),
        (low + 0.1, "normal"),
        (high - 0.1, "normal"),
        (high, "normal"),
        (high + 0.1, "high"),
        (chigh - 0.1, "high"),
        (chigh, "critical_high"),
        (chigh + 0.1, "critical_high"),
    ];
    for (value, flag) in cases {
        let v = app.json_ok(app.post(&format!("/api/patients/{p}/labs"), Some(&nurse), json!({"code": "2823-3", "value": value, "unit": entry.unit, "collectedAt": "2026-02-01T08:00:00Z"})).await, 201).await;
        assert_eq!(v["flag"], flag, "potassium {value}");
        assert_eq!(v["referenceLow"], low);
    }
    // Unknown code without range → no flag; given range is used.
    let v = app.json_ok(app.post(&format!("/api/patients/{p}/labs"), Some(&nurse), json!({"code": "99999-9", "name": "Exotic marker", "value": 3.0, "unit": "U/L", "collectedAt": "2026-02-01T08:00:00Z"})).await, 201).await;
    assert_eq!(v["flag"], Value::Null);
    let v = app.json_ok(app.post(&format!("/api/patients/{p}/labs"), Some(&nurse), json!({"code": "99999-9", "name": "Exotic marker", "value": 3.0, "unit": "U/L", "referenceLow": 1.0, "referenceHigh": 2.0, "collectedAt": "2026-02-01T08:00:00Z"})).await, 201).await;
    assert_eq!(v["flag"], "high");
    // A unit the table cannot convert is stored unflagged with a warning.
    let v = app.json_ok(app.post(&format!("/api/patients/{p}/labs"), Some(&nurse), json!({"code": "2823-3", "value": 9.0, "unit": "furlongs", "collectedAt": "2026-02-01T08:00:00Z"})).await, 201).await;
    assert_eq!(v["flag"], Value::Null);
    assert!(v["warning"].is_string());
    // Glucose in mmol/L is converted, not mis-flagged: 5.0 mmol/L ≈ 90 mg/dL is normal.
    let v = app.json_ok(app.post(&format!("/api/patients/{p}/labs"), Some(&nurse), json!({"code": "2345-7", "value": 5.0, "unit": "mmol/L", "collectedAt": "2026-02-01T08:00:00Z"})).await, 201).await;
    assert_eq!(v["flag"], "normal", "{v}");
    assert_eq!(v["value"], 5.0);
}

#[tokio::test]
async fn lab_review_trend_and_overview() {
    let c = Clinic::new().await;
    let app = &c.app;
    let prov = c.token(Role::Provider).to_string();
    let nurse = c.token(Role::Nurse).to_string();
    let p = c.patient.clone();
    for (i, v) in [110.0, 130.0, 180.0].iter().enumerate() {
        app.json_ok(app.post(&format!("/api/patients/{p}/labs"), Some(&nurse), json!({"code": "2345-7", "value": v, "unit": "mg/dL", "collectedAt": format!("2026-03-0{}T08:00:00Z", i + 1)})).await, 201).await;
    }
    let trend = app
        .json_ok(
            app.get(
                &format!("/api/patients/{p}/labs/trend?code=2345-7"),
                Some(&nurse),
            )
            .await,
            200,
        )
        .await;
    let values: Vec<f64> = trend["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [250.0, 110.0, 130.0, 180.0], "oldest first");
    // The day view lists unreviewed abnormal results; review removes them.
    let day = app
        .json_ok(app.get("/api/overview", Some(&prov)).await, 200)
        .await;
    let abnormal = day["unreviewedResults"]["items"].as_array().unwrap().len();
    assert_eq!(day["unreviewedResults"]["total"], abnormal);
    assert!(abnormal >= 2);
    assert_eq!(day["patientCount"], 1);
    assert_eq!(day["draftNotes"]["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        day["draftNotes"]["items"][0]["patient"]["name"],
        "Haddad, Amira"
    );
    assert_problem(
        app.post(
            &format!("/api/labs/{}/review", c.lab),
            Some(&nurse),
            json!({}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    let reviewed = app
        .json_ok(
            app.post(
                &format!("/api/labs/{}/review", c.lab),
                Some(&prov),
                json!({}),
            )
            .await,
            200,
        )
        .await;
    assert!(reviewed["reviewedAt"].is_string());
    assert_problem(
        app.post(
            &format!("/api/labs/{}/review", c.lab),
            Some(&prov),
            json!({}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    let day = app
        .json_ok(app.get("/api/overview", Some(&prov)).await, 200)
        .await;
    assert_eq!(
        day["unreviewedResults"]["items"].as_array().unwrap().len(),
        abnormal - 1
    );
    // Chart overview: latest result per code with its flag.
    app.json_ok(
        app.post(
            &format!("/api/patients/{p}/allergies"),
            Some(&nurse),
            json!({"substance": "Latex"}),
        )
        .await,
        201,
    )
    .await;
    app.json_ok(
        app.post(
            &format!("/api/patients/{p}/problems"),
            Some(&nurse),
            json!({"description": "Type 2 diabetes", "code": "E11"}),
        )
        .await,
        201,
    )
    .await;
    app.json_ok(
        app.post(
            &format!("/api/patients/{p}/problems"),
            Some(&nurse),
            json!({"description": "Old sprain", "status": "resolved"}),
        )
        .await,
        201,
    )
    .await;
    app.json_ok(
        app.post(
            &format!("/api/prescriptions/{}/issue", c.rx),
            Some(&prov),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    let o = app
        .json_ok(
            app.get(&format!("/api/patients/{p}/overview"), Some(&nurse))
                .await,
            200,
        )
        .await;
    assert_eq!(o["patient"]["id"], p.as_str());
    assert_eq!(o["allergies"][0]["substance"], "Latex");
    assert_eq!(o["activeProblems"].as_array().unwrap().len(), 1);
    assert_eq!(o["activePrescriptions"].as_array().unwrap().len(), 1);
    let labs = o["recentLabs"].as_array().unwrap();
    assert_eq!(labs.len(), 1, "one entry per code");
    assert_eq!(labs[0]["value"], 180.0, "the latest result");
    assert_eq!(labs[0]["flag"], "high");
    assert_eq!(o["recentNotes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn each_phi_endpoint_leaves_exactly_the_expected_audit_event() {
    let c = Clinic::new().await;
    let app = &c.app;
    let prov = c.token(Role::Provider).to_string();
    let p = c.patient.clone();
    let cases: Vec<(Method, String, Option<Value>, &str)> = vec![
        (
            Method::GET,
            format!("/api/patients/{p}"),
            None,
            "patient.read",
        ),
        (
            Method::GET,
            "/api/patients?q=ham".into(),
            None,
            "patient.search",
        ),
        (
            Method::GET,
            format!("/api/patients/{p}/overview"),
            None,
            "patient.overview",
        ),
        (Method::GET, "/api/overview".into(), None, "overview.day"),
        (
            Method::GET,
            format!("/api/patients/{p}/notes"),
            None,
            "note.list",
        ),
        (
            Method::GET,
            format!("/api/notes/{}", c.note),
            None,
            "note.read",
        ),
        (
            Method::GET,
            format!("/api/patients/{p}/prescriptions"),
            None,
            "prescription.list",
        ),
        (
            Method::GET,
            format!("/api/prescriptions/{}", c.rx),
            None,
            "prescription.read",
        ),
        (
            Method::GET,
            format!("/api/patients/{p}/labs"),
            None,
            "lab.list",
        ),
        (
            Method::GET,
            format!("/api/labs/{}", c.lab),
            None,
            "lab.read",
        ),
        (
            Method::GET,
            format!("/api/patients/{p}/labs/trend?code=2345-7"),
            None,
            "lab.trend",
        ),
        (
            Method::PATCH,
            format!("/api/patients/{p}"),
            Some(json!({"phone": "555 0101", "version": 1})),
            "patient.update",
        ),
        (
            Method::POST,
            format!("/api/patients/{p}/allergies"),
            Some(json!({"substance": "Sulfa"})),
            "allergy.create",
        ),
        (
            Method::POST,
            format!("/api/patients/{p}/problems"),
            Some(json!({"description": "Asthma"})),
            "problem.create",
        ),
        (
            Method::POST,
            format!("/api/patients/{p}/notes"),
            Some(json!({"title": "T"})),
            "note.create",
        ),
        (
            Method::PATCH,
            format!("/api/notes/{}", c.note),
            Some(json!({"plan": "rest", "version": 1})),
            "note.update",
        ),
        (
            Method::POST,
            format!("/api/notes/{}/finalize", c.note),
            Some(json!({"version": 2})),
            "note.finalize",
        ),
        (
            Method::POST,
            format!("/api/notes/{}/addenda", c.note),
            Some(json!({"text": "late entry"})),
            "note.addendum",
        ),
        (
            Method::POST,
            format!("/api/prescriptions/{}/issue", c.rx),
            None,
            "prescription.issue",
        ),
        (
            Method::POST,
            format!("/api/prescriptions/{}/cancel", c.rx),
            Some(json!({"reason": "stopped"})),
            "prescription.cancel",
        ),
        (
            Method::POST,
            format!("/api/labs/{}/review", c.lab),
            None,
            "lab.review",
        ),
    ];
    for (method, path, body, action) in cases {
        let before = audit_events(app).await.len();
        let r = app.request(method.clone(), &path, Some(&prov), body).await;
        assert!(r.status().is_success(), "{method} {path}: {}", r.status());
        let events = audit_events(app).await;
        assert_eq!(
            events.len(),
            before + 1,
            "{method} {path} leaves exactly one event"
        );
        let ev = &events[0];
        assert_eq!(ev.action, action, "{method} {path}");
        assert_eq!(ev.actor_id, Some(c.tokens[1].1.user_id));
        assert_eq!(ev.actor_role.as_deref(), Some("provider"));
        assert_eq!(ev.outcome, "success");
        assert!(ev.request_id.is_some() && ev.client_ip.is_some());
        if !matches!(action, "patient.search" | "overview.day") {
            assert_eq!(
                ev.patient_id.map(|u| u.to_string()),
                Some(p.clone()),
                "{action} names the patient"
            );
        }
    }
    // Refused access to a patient is audited too (401 and 403).
    let before = audit_events(app).await.len();
    app.get(
        &format!("/api/patients/{p}/overview"),
        Some(c.token(Role::Staff)),
    )
    .await;
    app.get(&format!("/api/patients/{p}"), None).await;
    let events = audit_events(app).await;
    assert_eq!(events.len(), before + 2);
    assert!(events[..2].iter().all(|e| e.action == "access.refused"));
    assert!(events[..2]
        .iter()
        .any(|e| e.outcome == "forbidden" && e.actor_role.as_deref() == Some("staff")));
    // No names or clinical text anywhere in the trail.
    for e in &events {
        let text = serde_json::to_string(e).unwrap();
        for forbidden in [
            "Amira",
            "Haddad",
            "cough",
            "Metformin",
            "late entry",
            "stopped",
            "Sulfa",
        ] {
            assert!(
                !text.contains(forbidden),
                "audit event holds {forbidden}: {text}"
            );
        }
    }
    let report = store::audit::verify(&app.state.db).await.unwrap();
    assert!(report.valid);
}

#[tokio::test]
async fn hostile_input_in_clinical_text_fields() {
    let c = Clinic::new().await;
    let app = &c.app;
    let prov = c.token(Role::Provider).to_string();
    let p = c.patient.clone();
    let long = "x".repeat(100 * 1024);
    let hostile: Vec<Value> = vec![
        json!("'; DROP TABLE patients; --"),
        json!("<script>alert('x')</script>"),
        json!("Robert\"); DELETE FROM audit_events; --"),
        json!("bell\u{7}null\u{0}"),
        json!(long),
        json!(12345),
        json!(["array"]),
        json!({"o": 1}),
        json!(null),
    ];
    let targets: Vec<(String, Value, Vec<&str>)> = vec![
        (
            "/api/patients".into(),
            json!({"givenName": "A", "familyName": "B", "birthDate": "1970-01-01", "sex": "male", "phone": null, "email": null, "address": null}),
            vec!["givenName", "familyName", "address", "phone", "email"],
        ),
        (
            format!("/api/patients/{p}/allergies"),
            json!({"substance": "Dust", "reaction": "sneeze"}),
            vec!["substance", "reaction", "severity"],
        ),
        (
            format!("/api/patients/{p}/problems"),
            json!({"description": "Asthma", "code": "J45"}),
            vec!["description", "code", "status"],
        ),
        (
            format!("/api/patients/{p}/notes"),
            json!({"title": "T", "subjective": "s", "objective": "o", "assessment": "a", "plan": "p"}),
            vec!["title", "subjective", "objective", "assessment", "plan"],
        ),
        (
            format!("/api/patients/{p}/prescriptions"),
            json!({"medication": "Aspirin", "dose": "75 mg", "route": "oral", "frequency": "daily", "quantity": 28, "instructions": "with food"}),
            vec![
                "medication",
                "dose",
                "route",
                "frequency",
                "instructions",
                "quantity",
            ],
        ),
        (
            format!("/api/patients/{p}/labs"),
            json!({"code": "2345-7", "value": 100.0, "unit": "mg/dL", "collectedAt": "2026-01-01T00:00:00Z", "name": "Glucose"}),
            vec!["code", "name", "unit", "value", "collectedAt"],
        ),
    ];
    for (path, base, fields) in &targets {
        for field in fields {
            for h in &hostile {
                let mut body = base.clone();
                body[*field] = h.clone();
                let r = app.post(path, Some(&prov), body).await;
                let s = r.status().as_u16();
                let text = r.text().await.unwrap();
                assert!(
                    s == 201 || (400..500).contains(&s),
                    "{path} {field}={h}: {s} {text}"
                );
                assert!(!text.contains("<script>"), "unescaped: {text}");
                if s == 201 {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if let Some(stored) = v.get(*field) {
                        if h.is_string() && stored.is_string() {
                            let sent = h.as_str().unwrap();
                            assert_eq!(
                                stored.as_str().unwrap().trim(),
                                sent.trim(),
                                "{field} stored verbatim"
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(app.get("/api/health", None).await.status().is_success());
    assert_eq!(app.state.metrics.counter("http.5xx"), 0);
    assert!(store::audit::verify(&app.state.db).await.unwrap().valid);
}
