//! Care teams as FHIR Groups: `Group/{id}` lists exactly the team's
//! patients, and `Group/{id}/$export` exports exactly their records (and
//! nothing of anyone else's) for the team's providers and for admins
//! (audited and alerted); anyone else is refused, and the refusal audited.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::access::{membership, new_team};
use crate::fhir::{chart, fhir_ok, files, kick_off, manifest, outcome, validate_fhir};
use crate::helpers::*;

/// Every patient reference of an exported line (its id for a Patient).
fn patient_of(ty: &str, line: &Value) -> String {
    if ty == "Patient" {
        return line["id"].as_str().unwrap().to_string();
    }
    let r = line["subject"]["reference"]
        .as_str()
        .or(line["patient"]["reference"].as_str())
        .unwrap_or_else(|| panic!("{ty} without a patient: {line}"));
    r.strip_prefix("Patient/").unwrap().to_string()
}

#[tokio::test]
async fn a_care_team_is_a_group_whose_export_holds_exactly_its_patients() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    let member = app.signed_in("provider").await;
    let other = app.signed_in("provider").await;
    let nurse = app.signed_in("nurse").await;
    let staff = app.signed_in("staff").await;
    let ward = new_team(&app, &admin.access, "Ward B").await;

    // Made before the provider joins Ward B: in the default team only.
    let outside = chart(&app, &member.access).await.patient;
    for who in [&member, &nurse] {
        let id = who.user_id.to_string();
        membership(&app, &admin.access, &ward, "member", &id, true).await;
    }
    // A new patient joins every team of its creator: the default and Ward B.
    let inside = [
        chart(&app, &member.access).await.patient,
        chart(&app, &member.access).await.patient,
    ];
    for pid in [&inside[0], &outside] {
        let r = app
            .post(
                &format!("/api/patients/{pid}/vitals"),
                Some(&member.access),
                json!({"systolic": 120, "diastolic": 80, "heartRate": 70}),
            )
            .await;
        app.json_ok(r, 201).await; // two Observations: the BP panel and the pulse
    }

    // The Group: the team's name and exactly its patients.
    let path = format!("/fhir/R4/Group/{ward}");
    let g = fhir_ok(&app, &path, &member.access).await;
    assert_eq!(g["resourceType"], "Group");
    assert_eq!(g["id"], ward.as_str());
    assert_eq!(g["type"], "person");
    assert_eq!(g["actual"], true);
    assert_eq!(g["name"], "Ward B");
    assert_eq!(g["quantity"], 2);
    let members: HashSet<String> = g["member"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["entity"]["reference"].as_str().unwrap().to_string())
        .collect();
    let expected: HashSet<String> = inside.iter().map(|p| format!("Patient/{p}")).collect();
    assert_eq!(members, expected);
    validate_fhir(&[g]);
    fhir_ok(&app, &path, &nurse.access).await;
    fhir_ok(&app, &path, &admin.access).await;
    outcome(&app, &path, Some(&other.access), 403, "forbidden").await;
    outcome(&app, &path, Some(&staff.access), 403, "forbidden").await;
    let unknown = format!("/fhir/R4/Group/{}", uuid::Uuid::now_v7());
    outcome(&app, &unknown, Some(&member.access), 404, "not-found").await;
    outcome(
        &app,
        "/fhir/R4/Group/ward-b",
        Some(&member.access),
        404,
        "not-found",
    )
    .await;
    outcome(&app, &path, None, 401, "login").await;

    // Export: refused to a provider outside the team (audited, no job), to a
    // nurse of the team (exports are for providers), unknown ids 404.
    let export = format!("/fhir/R4/Group/{ward}/$export");
    for who in [&other, &nurse, &staff] {
        let r = kick_off(&app, &export, &who.access).await;
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["content-type"], "application/fhir+json");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["issue"][0]["code"], "forbidden", "{v}");
    }
    let r = kick_off(&app, &format!("{unknown}/$export"), &member.access).await;
    assert_eq!(r.status(), 404);
    let events = audit_events(&app).await;
    let ward_id: uuid::Uuid = ward.parse().unwrap();
    let refused = |who: uuid::Uuid| {
        events
            .iter()
            .filter(|e| {
                e.action == "access.refused"
                    && e.actor_id == Some(who)
                    && e.resource_id == Some(ward_id)
            })
            .count()
    };
    assert_eq!(refused(other.user_id), 2, "the Group read and the export");
    assert!(!events
        .iter()
        .any(|e| e.action == "fhir.export" && e.actor_id == Some(other.user_id)));
    assert!(events.iter().any(|e| e.action == "fhir.read"
        && e.resource_id == Some(ward_id)
        && e.actor_id == Some(member.user_id)));

    // A member's export: every record of the team's patients, nothing else.
    let r = kick_off(&app, &export, &member.access).await;
    assert_eq!(r.status(), 202);
    let status_url = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let m = manifest(&app, &status_url, &member.access).await;
    assert!(m["request"].as_str().unwrap().ends_with(&export), "{m}");
    let out = files(&app, &m, &member.access).await;
    let types: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "Patient",
            "AllergyIntolerance",
            "Condition",
            "MedicationRequest",
            "Observation",
            "DocumentReference"
        ]
    );
    let db = &app.state.db;
    let mut everything = Vec::new();
    for (ty, lines) in &out {
        let table = match ty.as_str() {
            "Patient" => "patients",
            "AllergyIntolerance" => "allergies",
            "Condition" => "problems",
            "MedicationRequest" => "prescriptions",
            "Observation" => "labs",
            _ => "notes",
        };
        let mut want = 0;
        for pid in &inside {
            want += store::export::count(db, table, Some(pid.parse().unwrap()))
                .await
                .unwrap();
        }
        if ty == "Observation" {
            want += 2; // the vital-sign set of the first team patient
        }
        assert_eq!(lines.len() as i64, want, "{ty}");
        let ids: HashSet<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), lines.len(), "{ty}: each once");
        for l in lines {
            assert!(inside.contains(&patient_of(ty, l)), "{ty}: {l}");
            assert!(!l.to_string().contains(&outside), "{ty}: {l}");
        }
        everything.extend(lines.iter().cloned());
    }
    validate_fhir(&everything);

    // An admin may export any team: audited with its scope and alerted.
    let r = kick_off(&app, &export, &admin.access).await;
    assert_eq!(r.status(), 202);
    let admin_url = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let m2 = manifest(&app, &admin_url, &admin.access).await;
    assert_eq!(m2["output"].as_array().unwrap().len(), 6);
    for (a, b) in m["output"]
        .as_array()
        .unwrap()
        .iter()
        .zip(m2["output"].as_array().unwrap())
    {
        assert_eq!(a["count"], b["count"], "{a} {b}");
    }
    let events = audit_events(&app).await;
    for who in [member.user_id, admin.user_id] {
        let ev = events
            .iter()
            .find(|e| e.action == "fhir.export" && e.actor_id == Some(who))
            .expect("the kick-off is audited");
        let detail: Value = serde_json::from_str(ev.detail.as_deref().unwrap()).unwrap();
        assert_eq!(detail["scope"], "group", "{detail}");
        assert_eq!(detail["groupId"], ward.as_str(), "{detail}");
    }
    server::alert_task::tick(&app.state).await;
    let report = app.state.alerts.report();
    let alert = report
        .alerts
        .iter()
        .find(|a| a.name == "AdminBulkExport")
        .unwrap();
    assert_eq!(alert.state, telemetry::alerts::AlertStatus::Firing);
    // The member's job is theirs alone.
    let r = app
        .client
        .get(&status_url)
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_group_export_alone_fires_no_alert_and_a_removed_patient_leaves_the_group() {
    let app = TestApp::spawn().await;
    let admin = app.signed_in("admin").await;
    let prov = app.signed_in("provider").await;
    let team = new_team(&app, &admin.access, "Clinic North").await;
    let id = prov.user_id.to_string();
    membership(&app, &admin.access, &team, "member", &id, true).await;
    let kept = chart(&app, &prov.access).await.patient;
    let moved = chart(&app, &prov.access).await.patient;
    membership(&app, &admin.access, &team, "patient", &moved, false).await;

    let g = fhir_ok(&app, &format!("/fhir/R4/Group/{team}"), &prov.access).await;
    assert_eq!(g["quantity"], 1);
    assert_eq!(
        g["member"][0]["entity"]["reference"],
        format!("Patient/{kept}")
    );

    // A provider's group export is not an admin action: no alert.
    let r = kick_off(
        &app,
        &format!("/fhir/R4/Group/{team}/$export?_type=Patient"),
        &prov.access,
    )
    .await;
    assert_eq!(r.status(), 202);
    let url = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let m = manifest(&app, &url, &prov.access).await;
    let out = files(&app, &m, &prov.access).await;
    assert_eq!(out.len(), 1);
    let ids: Vec<&str> = out[0].1.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [kept.as_str()]);
    server::alert_task::tick(&app.state).await;
    let report = app.state.alerts.report();
    let alert = report
        .alerts
        .iter()
        .find(|a| a.name == "AdminBulkExport")
        .unwrap();
    assert_ne!(alert.state, telemetry::alerts::AlertStatus::Firing);
    // Practitioners are not patient data: a Group export does not offer them.
    let r = kick_off(
        &app,
        &format!("/fhir/R4/Group/{team}/$export?_type=Practitioner"),
        &prov.access,
    )
    .await;
    assert_eq!(r.status(), 400);
}
