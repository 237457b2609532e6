//! Medication safety through the API (issue 12): dictionary resolution with
//! suggestions, allergies via resolved ingredients, drug interactions,
//! duplicate therapy and unrecognised medications, each overridable with a
//! stored, audited reason.

use serde_json::{json, Value};

use crate::helpers::*;

/// A provider and a fresh patient.
async fn setup() -> (TestApp, String, String) {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await.access;
    let p = sid(&app.create_patient(&prov, "Mina", "Sato").await);
    (app, prov, p)
}

fn rx_body(medication: &str) -> Value {
    json!({"medication": medication, "dose": "1 tablet", "route": "oral", "frequency": "once daily", "quantity": 30})
}

async fn draft(app: &TestApp, prov: &str, p: &str, body: Value) -> Value {
    app.json_ok(
        app.post(
            &format!("/api/patients/{p}/prescriptions"),
            Some(prov),
            body,
        )
        .await,
        201,
    )
    .await
}

async fn issue(app: &TestApp, prov: &str, rx: &str, body: Value) -> reqwest::Response {
    app.post(&format!("/api/prescriptions/{rx}/issue"), Some(prov), body)
        .await
}

/// Issue `rx` with `body`, expecting 200; the prescription.
async fn issue_ok(app: &TestApp, prov: &str, rx: &str, body: Value) -> Value {
    app.json_ok(issue(app, prov, rx, body).await, 200).await
}

async fn issued(app: &TestApp, prov: &str, p: &str, medication: &str) -> String {
    let rx = sid(&draft(app, prov, p, rx_body(medication)).await);
    issue_ok(app, prov, &rx, json!({})).await;
    rx
}

async fn status_of(app: &TestApp, prov: &str, rx: &str) -> Value {
    app.json_ok(
        app.get(&format!("/api/prescriptions/{rx}"), Some(prov))
            .await,
        200,
    )
    .await["status"]
        .clone()
}

async fn allergy(app: &TestApp, prov: &str, p: &str, substance: &str) {
    app.json_ok(
        app.post(
            &format!("/api/patients/{p}/allergies"),
            Some(prov),
            json!({"substance": substance, "reaction": "anaphylaxis", "severity": "severe"}),
        )
        .await,
        201,
    )
    .await;
}

async fn issue_events(app: &TestApp) -> Vec<String> {
    audit_events(app)
        .await
        .into_iter()
        .filter(|e| e.action == "prescription.issue")
        .filter_map(|e| e.detail)
        .collect()
}

#[tokio::test]
async fn misspelt_amoxicilin_needs_confirmation_and_then_meets_the_penicillin_allergy() {
    let (app, prov, p) = setup().await;
    allergy(&app, &prov, &p, "Penicillin").await;
    let v = assert_problem(
        app.post(
            &format!("/api/patients/{p}/prescriptions"),
            Some(&prov),
            rx_body("amoxicilin 500 mg"),
        )
        .await,
        422,
        "medication_unconfirmed",
    )
    .await;
    assert_eq!(v["suggestions"][0], "amoxicillin", "{v}");
    assert_eq!(v["resolved"], "amoxicillin 500 mg");
    assert_eq!(v["errors"][0]["field"], "medication");
    assert!(v["detail"]
        .as_str()
        .unwrap()
        .contains("Did you mean amoxicillin?"));
    // Nothing was stored.
    let list = app
        .json_ok(
            app.get(&format!("/api/patients/{p}/prescriptions"), Some(&prov))
                .await,
            200,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    // Confirming stores the corrected name, which the allergy check catches.
    let mut body = rx_body("amoxicilin 500 mg");
    body["medicationConfirmed"] = json!(true);
    let rx = draft(&app, &prov, &p, body).await;
    assert_eq!(rx["medication"], "amoxicillin 500 mg");
    assert_eq!(rx["medicationCheck"]["status"], "exact");
    let v = assert_problem(
        issue(&app, &prov, &sid(&rx), json!({})).await,
        409,
        "allergy_conflict",
    )
    .await;
    assert_eq!(v["allergy"], "Penicillin");
    assert_eq!(status_of(&app, &prov, &sid(&rx)).await, "draft");
    // Sending the suggested name is as good as confirming it.
    let rx = draft(&app, &prov, &p, rx_body("Amoxicillin")).await;
    assert_eq!(rx["medication"], "Amoxicillin");
}

#[tokio::test]
async fn brand_augmentin_meets_the_penicillin_allergy() {
    let (app, prov, p) = setup().await;
    allergy(&app, &prov, &p, "penicillin (anaphylaxis)").await;
    let rx = draft(&app, &prov, &p, rx_body("Augmentin 625 mg")).await;
    assert_eq!(
        rx["medicationCheck"]["ingredients"],
        json!(["amoxicillin", "clavulanic acid"])
    );
    let v = assert_problem(
        issue(&app, &prov, &sid(&rx), json!({})).await,
        409,
        "allergy_conflict",
    )
    .await;
    assert_eq!(v["allergy"], "penicillin (anaphylaxis)");
    assert!(v["detail"].as_str().unwrap().contains("amoxicillin"), "{v}");
    // An allergy recorded by brand meets the generic too.
    allergy(&app, &prov, &p, "Zoloft").await;
    let rx = draft(&app, &prov, &p, rx_body("sertraline 50 mg")).await;
    let v = assert_problem(
        issue(&app, &prov, &sid(&rx), json!({})).await,
        409,
        "allergy_conflict",
    )
    .await;
    assert_eq!(v["allergy"], "Zoloft");
}

#[tokio::test]
async fn warfarin_and_ibuprofen_is_a_409_naming_both_overridable_and_audited() {
    let (app, prov, p) = setup().await;
    let warfarin = issued(&app, &prov, &p, "Warfarin 5 mg").await;
    let rx = sid(&draft(&app, &prov, &p, rx_body("Ibuprofen 400 mg")).await);
    let v = assert_problem(
        issue(&app, &prov, &rx, json!({})).await,
        409,
        "drug_interaction",
    )
    .await;
    assert_eq!(v["drugs"], json!(["ibuprofen", "warfarin"]));
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("ibuprofen") && detail.contains("warfarin"),
        "{detail}"
    );
    assert_eq!(v["interactions"][0]["with"], warfarin);
    assert!(v["interactions"][0]["source"]
        .as_str()
        .unwrap()
        .contains("Malone"));
    assert_eq!(v["warnings"][0]["code"], "drug_interaction");
    assert_eq!(status_of(&app, &prov, &rx).await, "draft");
    // The allergy override does not override an interaction.
    assert_problem(
        issue(&app, &prov, &rx, json!({"overrideReason": "not this one"})).await,
        409,
        "drug_interaction",
    )
    .await;
    // A bad reason is a 422 that changes nothing.
    assert_problem(
        issue(
            &app,
            &prov,
            &rx,
            json!({"interactionOverrideReason": "x".repeat(1001)}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let done = issue_ok(
        &app,
        &prov,
        &rx,
        json!({"interactionOverrideReason": "short course, INR checked in 3 days"}),
    )
    .await;
    assert_eq!(done["status"], "issued");
    assert_eq!(
        done["interactionOverrideReason"],
        "short course, INR checked in 3 days"
    );
    assert_eq!(done["overrideReason"], Value::Null);
    assert_eq!(
        app.state
            .metrics
            .counter("prescription.interaction_override"),
        1
    );
    let events = issue_events(&app).await;
    let ev = events
        .iter()
        .find(|d| d.contains("interactionOverride"))
        .expect("the override is audited");
    assert!(ev.contains(&warfarin), "{ev}");
    assert!(!ev.contains("INR"), "no clinical text in the audit trail");
    // The other direction is caught too.
    let (app, prov, p) = setup().await;
    issued(&app, &prov, &p, "Advil").await;
    let rx = sid(&draft(&app, &prov, &p, rx_body("Coumadin")).await);
    let v = assert_problem(
        issue(&app, &prov, &rx, json!({})).await,
        409,
        "drug_interaction",
    )
    .await;
    assert_eq!(v["drugs"], json!(["warfarin", "ibuprofen"]));
}

#[tokio::test]
async fn duplicate_therapy_is_a_409_until_overridden() {
    let (app, prov, p) = setup().await;
    let first = issued(&app, &prov, &p, "Amoxicillin 500 mg").await;
    let rx = sid(&draft(&app, &prov, &p, rx_body("Amoxil 250 mg")).await);
    let v = assert_problem(
        issue(&app, &prov, &rx, json!({})).await,
        409,
        "duplicate_therapy",
    )
    .await;
    assert_eq!(v["duplicates"][0]["with"], first);
    assert_eq!(v["duplicates"][0]["kind"], "same_ingredient");
    assert!(v["detail"].as_str().unwrap().contains("amoxicillin"));
    let done = issue_ok(
        &app,
        &prov,
        &rx,
        json!({"duplicateOverrideReason": "second course for a new infection"}),
    )
    .await;
    assert_eq!(
        done["duplicateOverrideReason"],
        "second course for a new infection"
    );
    let events = issue_events(&app).await;
    assert!(events
        .iter()
        .any(|d| d.contains("\"duplicateOverride\":true")));
    // Same class, different ingredient.
    issued(&app, &prov, &p, "Sertraline 50 mg").await;
    let rx = sid(&draft(&app, &prov, &p, rx_body("Prozac 20 mg")).await);
    let v = assert_problem(
        issue(&app, &prov, &rx, json!({})).await,
        409,
        "duplicate_therapy",
    )
    .await;
    assert_eq!(v["duplicates"][0]["classCode"], "N06AB");
    // A cancelled prescription is no longer active.
    let (app, prov, p) = setup().await;
    let old = issued(&app, &prov, &p, "Metformin 500 mg").await;
    app.json_ok(
        app.post(
            &format!("/api/prescriptions/{old}/cancel"),
            Some(&prov),
            json!({"reason": "dose change"}),
        )
        .await,
        200,
    )
    .await;
    issued(&app, &prov, &p, "Metformin 850 mg").await;
}

#[tokio::test]
async fn unrecognised_medication_needs_the_acknowledgement_which_is_audited() {
    let (app, prov, p) = setup().await;
    let rx = draft(&app, &prov, &p, rx_body("Zyxorbital 10 mg")).await;
    assert_eq!(rx["medicationCheck"]["status"], "unrecognised");
    let id = sid(&rx);
    let v = assert_problem(
        issue(&app, &prov, &id, json!({})).await,
        409,
        "medication_unrecognised",
    )
    .await;
    assert!(v["detail"]
        .as_str()
        .unwrap()
        .contains("uncheckedAcknowledged"));
    assert_eq!(status_of(&app, &prov, &id).await, "draft");
    // Wrong JSON type: refused, nothing changes.
    let r = issue(&app, &prov, &id, json!({"uncheckedAcknowledged": "yes"})).await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(status_of(&app, &prov, &id).await, "draft");
    let done = issue_ok(&app, &prov, &id, json!({"uncheckedAcknowledged": true})).await;
    assert_eq!(done["uncheckedAcknowledged"], true);
    assert_eq!(app.state.metrics.counter("prescription.unchecked_issue"), 1);
    let events = issue_events(&app).await;
    assert!(events
        .iter()
        .any(|d| d.contains("\"uncheckedAcknowledged\":true")));
    // A recognised medication stores no acknowledgement even if sent.
    let rx = sid(&draft(&app, &prov, &p, rx_body("Lisinopril 10 mg")).await);
    let done = issue_ok(&app, &prov, &rx, json!({"uncheckedAcknowledged": true})).await;
    assert_eq!(done["uncheckedAcknowledged"], false);
}

#[tokio::test]
async fn every_warning_is_listed_and_all_overrides_are_stored() {
    let (app, prov, p) = setup().await;
    issued(&app, &prov, &p, "warfarin").await;
    let naproxen = sid(&draft(&app, &prov, &p, rx_body("naproxen")).await);
    issue_ok(
        &app,
        &prov,
        &naproxen,
        json!({"interactionOverrideReason": "INR clinic aware"}),
    )
    .await;
    allergy(&app, &prov, &p, "NSAIDs").await;
    let rx = sid(&draft(&app, &prov, &p, rx_body("ibuprofen")).await);
    let v = assert_problem(
        issue(&app, &prov, &rx, json!({})).await,
        409,
        "allergy_conflict",
    )
    .await;
    let codes: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["allergy_conflict", "drug_interaction", "duplicate_therapy"]
    );
    // Each warning's `finding` is its clinical sentence without the API's
    // how-to (which names the overriding member); `detail` is both.
    for (w, member) in v["warnings"].as_array().unwrap().iter().zip([
        "overrideReason",
        "interactionOverrideReason",
        "duplicateOverrideReason",
    ]) {
        let (finding, detail) = (
            w["finding"].as_str().unwrap(),
            w["detail"].as_str().unwrap(),
        );
        assert!(!finding.is_empty() && detail.starts_with(finding), "{w}");
        assert!(detail.contains(member) && !finding.contains(member), "{w}");
    }
    let done = issue_ok(&app, &prov, &rx, json!({"overrideReason": "a", "interactionOverrideReason": "b", "duplicateOverrideReason": "c"})).await;
    assert_eq!(
        (
            &done["overrideReason"],
            &done["interactionOverrideReason"],
            &done["duplicateOverrideReason"]
        ),
        (&json!("a"), &json!("b"), &json!("c"))
    );
    let events = issue_events(&app).await;
    let last = events
        .iter()
        .find(|d| d.contains("allergyOverride"))
        .unwrap();
    assert!(last.contains("interactionOverride") && last.contains("duplicateOverride"));
}
