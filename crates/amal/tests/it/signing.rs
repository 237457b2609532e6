//! Issue 11, item 1: a signature covers exactly the version the signer
//! read. Finalize takes `If-Match` (428 without, 409 when stale), and an
//! edit racing a finalize can never leave a final note whose text differs
//! from what was signed or from its `contentHash`.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::helpers::{assert_problem, sid, TestApp};
use crate::web::{field_value, id_after, Web};

/// How many edit/finalize races the race test runs.
const RACES: usize = 200;

async fn finalize_at(
    app: &TestApp,
    token: &str,
    id: &str,
    version: Option<i64>,
) -> reqwest::Response {
    let mut rb = app
        .client
        .post(app.url(&format!("/api/notes/{id}/finalize")))
        .bearer_auth(token);
    if let Some(v) = version {
        rb = rb.header("If-Match", format!("\"{v}\""));
    }
    rb.send().await.expect("request sent")
}

/// The stored note as the store holds it, and whether its text hashes to
/// its `contentHash` under its signer.
async fn stored(app: &TestApp, id: &str) -> (store::notes::NoteRow, bool) {
    let row = store::notes::get(&app.state.db, id.parse().unwrap())
        .await
        .unwrap()
        .expect("the note exists");
    let sealed = match (row.signed_by, &row.content_hash) {
        (Some(signer), Some(h)) => server::services::notes::signed_hash(&row, signer) == *h,
        _ => false,
    };
    (row, sealed)
}

#[tokio::test]
async fn finalize_requires_if_match_and_refuses_a_stale_version() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await.access;
    let pid = sid(&app.create_patient(&prov, "Sam", "Signer").await);
    let note = app
        .json_ok(
            app.post(
                &format!("/api/patients/{pid}/notes"),
                Some(&prov),
                json!({"title": "Visit", "assessment": "stable"}),
            )
            .await,
            201,
        )
        .await;
    let id = sid(&note);
    // No version at all: 428, nothing signed.
    assert_problem(
        finalize_at(&app, &prov, &id, None).await,
        428,
        "precondition_required",
    )
    .await;
    // The note changes after the provider read version 1.
    app.json_ok(
        app.patch(
            &format!("/api/notes/{id}"),
            &prov,
            Some(1),
            json!({"assessment": "worse"}),
        )
        .await,
        200,
    )
    .await;
    let v = assert_problem(
        finalize_at(&app, &prov, &id, Some(1)).await,
        409,
        "conflict",
    )
    .await;
    assert!(
        v["detail"].as_str().unwrap().contains("current version 2"),
        "{v}"
    );
    let (row, _) = stored(&app, &id).await;
    assert_eq!(
        row.status.as_str(),
        "draft",
        "a refused finalize changes nothing"
    );
    assert!(row.content_hash.is_none());
    // A malformed If-Match is a 422; a body version works where headers cannot be sent.
    let bad = app
        .client
        .post(app.url(&format!("/api/notes/{id}/finalize")))
        .bearer_auth(&prov)
        .header("If-Match", "\"two\"")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
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
    assert_eq!(signed["assessment"], "worse");
    let (row, sealed) = stored(&app, &id).await;
    assert!(sealed, "the stored text hashes to its contentHash");
    assert_eq!(row.content_hash.as_deref(), signed["contentHash"].as_str());
    let ev = crate::helpers::audit_events(&app)
        .await
        .into_iter()
        .find(|e| e.action == "note.finalize")
        .expect("finalize audited");
    let detail: Value = serde_json::from_str(ev.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["signedVersion"], 2);
}

/// 200 races of a nurse editing her draft against a provider co-signing the
/// version he read. Afterwards exactly one of each pair succeeded, every
/// final note holds exactly the text of the version its signer sent, and
/// that text hashes to its `contentHash`.
#[tokio::test]
async fn concurrent_edits_and_finalizes_never_sign_what_was_not_seen() {
    let app = Arc::new(TestApp::spawn().await);
    let nurse = app.signed_in("nurse").await.access;
    let prov = app.signed_in("provider").await;
    let pid = sid(&app.create_patient(&prov.access, "Rhea", "Race").await);
    let mut notes = Vec::with_capacity(RACES);
    for i in 0..RACES {
        let n = app
            .json_ok(
                app.post(
                    &format!("/api/patients/{pid}/notes"),
                    Some(&nurse),
                    json!({"title": format!("Triage {i}"), "assessment": format!("seen {i}")}),
                )
                .await,
                201,
            )
            .await;
        notes.push(sid(&n));
    }
    // Both requests of a race are in flight together; a bounded number of
    // races run at once so the pool is not the thing under test.
    let gate = Arc::new(Semaphore::new(4));
    let mut races = Vec::with_capacity(RACES);
    for (i, id) in notes.iter().cloned().enumerate() {
        let (app, gate, nurse, prov) = (
            app.clone(),
            gate.clone(),
            nurse.clone(),
            prov.access.clone(),
        );
        races.push(tokio::spawn(async move {
            let _slot = gate.acquire_owned().await.unwrap();
            let path = format!("/api/notes/{id}");
            // A 503 (the pool's fail-fast acquire under this load) is a
            // refusal that changed nothing: the request is sent again, as a
            // client honouring Retry-After would.
            let edit = async {
                for _ in 0..50 {
                    let r = app
                        .patch(
                            &path,
                            &nurse,
                            Some(1),
                            json!({"assessment": format!("edited {i}")}),
                        )
                        .await;
                    if r.status() != StatusCode::SERVICE_UNAVAILABLE {
                        return r;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                panic!("race {i}: the edit stayed 503");
            };
            let sign = async {
                for _ in 0..50 {
                    let r = finalize_at(&app, &prov, &id, Some(1)).await;
                    if r.status() != StatusCode::SERVICE_UNAVAILABLE {
                        return r;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                panic!("race {i}: the finalize stayed 503");
            };
            let (e, s) = tokio::join!(edit, sign);
            (id, i, e.status(), s.status())
        }));
    }
    let (mut signed, mut edited) = (0, 0);
    for r in races {
        let (id, i, e, s) = r.await.unwrap();
        let (row, sealed) = stored(&app, &id).await;
        match (e, s) {
            (StatusCode::CONFLICT, StatusCode::OK) => {
                signed += 1;
                assert_eq!(row.status.as_str(), "final");
                assert_eq!(
                    row.assessment,
                    format!("seen {i}"),
                    "signed text is version 1's"
                );
                assert_eq!(row.signed_by, Some(prov.user_id));
                assert!(sealed, "note {id}: stored text hashes to contentHash");
            }
            (StatusCode::OK, StatusCode::CONFLICT) => {
                edited += 1;
                assert_eq!(row.status.as_str(), "draft");
                assert_eq!(row.assessment, format!("edited {i}"));
                assert_eq!(row.version, 2);
                assert!(row.content_hash.is_none());
            }
            other => panic!("race {i}: exactly one of edit/finalize must win, got {other:?}"),
        }
    }
    assert_eq!(signed + edited, RACES);
    eprintln!("{RACES} races: {signed} signed version 1, {edited} edited first");
    // Every final note in the database still matches its seal.
    let finals = store::notes::list_for_patient(&app.state.db, pid.parse().unwrap(), None, 1000)
        .await
        .unwrap();
    for n in finals.iter().filter(|n| n.status.as_str() == "final") {
        let signer = n.signed_by.unwrap();
        assert_eq!(
            server::services::notes::signed_hash(n, signer),
            n.content_hash.clone().unwrap()
        );
    }
}

/// The web note page signs the version it showed: a co-signer's stale page
/// is a 409 shown on the page, and the author's "Save and sign" saves the
/// text on screen and signs exactly that.
#[tokio::test]
async fn web_signs_only_what_the_page_showed() {
    let app = TestApp::spawn().await;
    let (nw, _) = Web::signed_in(&app, "nurse").await;
    let token = nw.token().await;
    let api = app.signed_in("provider").await.access;
    let pid = sid(&app.create_patient(&api, "Wes", "Web").await);
    let r = nw
        .post(
            &format!("/patients/{pid}/notes"),
            &[
                ("_csrf", &token),
                ("title", "Triage"),
                ("assessment", "as first written"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let nid = id_after(&r.location(), "/notes/");

    // The provider opens the nurse's draft (version 1) ...
    let (pw, _) = Web::signed_in(&app, "provider").await;
    let page = pw.get(&format!("/notes/{nid}")).await;
    assert!(page.body.contains("as first written"));
    let shown = field_value(&page.body, "version").expect("the version drawn");
    assert_eq!(shown, "1");
    // ... the nurse changes it meanwhile ...
    let npage = nw.get(&format!("/notes/{nid}")).await;
    let r = nw
        .post(
            &format!("/notes/{nid}/edit"),
            &[
                ("_csrf", &npage.csrf()),
                ("version", "1"),
                ("title", "Triage"),
                ("assessment", "changed behind his back"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // ... so signing the page he saw is refused with a clear message.
    let r = pw
        .post(
            &format!("/notes/{nid}/finalize"),
            &[("_csrf", &page.csrf()), ("version", &shown)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("changed by someone else"), "{}", r.body);
    let n = app
        .json_ok(app.get(&format!("/api/notes/{nid}"), Some(&api)).await, 200)
        .await;
    assert_eq!(n["status"], "draft");

    // The provider's own draft: unsaved text in the editor is saved and that
    // exact text signed, in one step.
    let r = pw
        .post(
            &format!("/patients/{pid}/notes"),
            &[
                ("_csrf", &page.csrf()),
                ("title", "Visit"),
                ("plan", "old plan"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let own = id_after(&r.location(), "/notes/");
    let editor = pw.get(&format!("/notes/{own}")).await;
    assert!(editor.body.contains("Save and sign"));
    assert!(
        !editor.body.contains("Finalize and sign"),
        "no sign button that would drop unsaved text"
    );
    let r = pw
        .post(
            &format!("/notes/{own}/finalize"),
            &[
                ("_csrf", &editor.csrf()),
                ("version", "1"),
                ("sign", "save"),
                ("title", "Visit"),
                ("plan", "plan typed just now"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let n: Value = app
        .json_ok(app.get(&format!("/api/notes/{own}"), Some(&api)).await, 200)
        .await;
    assert_eq!(n["status"], "final");
    assert_eq!(n["plan"], "plan typed just now");
    let (row, sealed) = stored(&app, &own).await;
    assert!(sealed);
    assert_eq!(row.version, 3, "saved (2) then signed (3)");
}

/// Issue 11 item 4 (part): a refused access to a note by its own id is
/// audited with the note's patient (the old code audited only paths under
/// `/patients/{id}`).
#[tokio::test]
async fn a_refused_access_to_a_note_by_id_is_audited_with_its_patient() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await.access;
    let nurse = app.signed_in("nurse").await;
    let pid = sid(&app.create_patient(&prov, "Ada", "Audit").await);
    let note = app
        .json_ok(
            app.post(
                &format!("/api/patients/{pid}/notes"),
                Some(&prov),
                json!({"title": "Visit"}),
            )
            .await,
            201,
        )
        .await;
    let id = sid(&note);
    assert_problem(
        finalize_at(&app, &nurse.access, &id, Some(1)).await,
        403,
        "forbidden",
    )
    .await;
    let events = crate::helpers::audit_events(&app).await;
    let refused = events
        .iter()
        .find(|e| e.action == "access.refused" && e.actor_id == Some(nurse.user_id))
        .expect("the refusal is audited");
    assert_eq!(refused.outcome, "forbidden");
    assert_eq!(refused.patient_id, Some(pid.parse().unwrap()));
}
