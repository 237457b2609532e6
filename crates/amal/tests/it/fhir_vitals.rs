//! Vital signs on FHIR: each stored set becomes vital-signs Observations
//! with the base profiles' LOINC codes and UCUM units, validated by the
//! independent validator; they are searchable (category, code, paging with
//! lab results), readable, in `$everything` and in bulk export; and `_since`
//! narrows `$everything` and export.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::fhir::{fhir_ok, files, ids, kick_off, manifest, outcome, validate_fhir};
use crate::helpers::*;

async fn vitals(app: &TestApp, token: &str, pid: &str, body: Value) -> String {
    let r = app
        .post(&format!("/api/patients/{pid}/vitals"), Some(token), body)
        .await;
    sid(&app.json_ok(r, 201).await)
}

fn resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn by_id<'a>(rs: &'a [Value], id: &str) -> &'a Value {
    rs.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {rs:?}"))
}

fn quantity(v: &Value) -> (f64, &str, &str) {
    (
        v["value"].as_f64().unwrap(),
        v["code"].as_str().unwrap(),
        v["system"].as_str().unwrap(),
    )
}

const UCUM: &str = "http://unitsofmeasure.org";

#[tokio::test]
async fn vital_signs_are_observations_with_loinc_codes_and_ucum_units() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await.access;
    let nurse = app.signed_in("nurse").await.access;
    let staff = app.signed_in("staff").await.access;
    let p = app.create_patient(&prov, "Vita", "Signa").await;
    let pid = sid(&p);
    let full = vitals(
        &app,
        &nurse,
        &pid,
        json!({"systolic": 182, "diastolic": 95, "heartRate": 72, "respiratoryRate": 16,
               "temperature": 37.2, "spo2": 97, "weightKg": 80, "heightCm": 180}),
    )
    .await;
    let pulse = vitals(&app, &prov, &pid, json!({"heartRate": 38})).await;
    let systolic_only = vitals(&app, &prov, &pid, json!({"systolic": 120})).await;
    let lab = sid(&app
        .json_ok(
            app.post(
                &format!("/api/patients/{pid}/labs"),
                Some(&prov),
                json!({"code": "2345-7", "value": 100.0, "unit": "mg/dL", "collectedAt": chrono::Utc::now().to_rfc3339()}),
            )
            .await,
            201,
        )
        .await);

    let b = fhir_ok(
        &app,
        &format!("/fhir/R4/Observation?patient={pid}&category=vital-signs&_count=200"),
        &nurse,
    )
    .await;
    validate_fhir(std::slice::from_ref(&b));
    let rs = resources(&b);
    let got: HashSet<String> = ids(&b).into_iter().collect();
    let mut want: HashSet<String> = ["bp", "hr", "rr", "temp", "spo2", "wt", "ht", "bmi"]
        .iter()
        .map(|s| format!("{full}-{s}"))
        .collect();
    want.insert(format!("{pulse}-hr"));
    want.insert(format!("{systolic_only}-bp"));
    assert_eq!(got, want, "one Observation per measurement; no lab result");
    for r in &rs {
        assert_eq!(r["status"], "final");
        assert_eq!(r["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(
            r["category"][0]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/observation-category"
        );
        assert_eq!(r["subject"]["reference"], format!("Patient/{pid}"));
        assert_eq!(r["code"]["coding"][0]["system"], "http://loinc.org");
        assert!(r["effectiveDateTime"].is_string());
    }
    let code = |r: &Value| r["code"]["coding"][0]["code"].as_str().unwrap().to_string();

    // Blood pressure: the panel with a systolic and a diastolic component.
    let bp = by_id(&rs, &format!("{full}-bp"));
    assert_eq!(code(bp), "85354-9");
    assert!(bp.get("valueQuantity").is_none());
    let comp = bp["component"].as_array().unwrap();
    assert_eq!(comp[0]["code"]["coding"][0]["code"], "8480-6");
    assert_eq!(quantity(&comp[0]["valueQuantity"]), (182.0, "mm[Hg]", UCUM));
    assert_eq!(comp[0]["interpretation"][0]["coding"][0]["code"], "HH");
    assert_eq!(comp[1]["code"]["coding"][0]["code"], "8462-4");
    assert_eq!(quantity(&comp[1]["valueQuantity"]), (95.0, "mm[Hg]", UCUM));
    assert_eq!(comp[1]["interpretation"][0]["coding"][0]["code"], "H");
    let half = by_id(&rs, &format!("{systolic_only}-bp"));
    let comp = half["component"].as_array().unwrap();
    assert_eq!(quantity(&comp[0]["valueQuantity"]), (120.0, "mm[Hg]", UCUM));
    assert_eq!(comp[0]["interpretation"][0]["coding"][0]["code"], "N");
    assert!(comp[1].get("valueQuantity").is_none());
    assert_eq!(
        comp[1]["dataAbsentReason"]["coding"][0]["code"],
        "not-performed"
    );

    // Each other measurement with its code, UCUM unit and flag.
    for (suffix, loinc, value, unit, flag) in [
        ("hr", "8867-4", 72.0, "/min", Some("N")),
        ("rr", "9279-1", 16.0, "/min", Some("N")),
        ("temp", "8310-5", 37.2, "Cel", Some("N")),
        ("spo2", "59408-5", 97.0, "%", Some("N")),
        ("wt", "29463-7", 80.0, "kg", None),
        ("ht", "8302-2", 180.0, "cm", None),
        ("bmi", "39156-5", 24.7, "kg/m2", Some("N")),
    ] {
        let o = by_id(&rs, &format!("{full}-{suffix}"));
        assert_eq!(code(o), loinc, "{suffix}");
        assert_eq!(
            quantity(&o["valueQuantity"]),
            (value, unit, UCUM),
            "{suffix}"
        );
        assert_eq!(
            o["interpretation"][0]["coding"][0]["code"].as_str(),
            flag,
            "{suffix}"
        );
    }
    let spo2 = by_id(&rs, &format!("{full}-spo2"));
    assert_eq!(spo2["code"]["coding"][1]["code"], "2708-6");
    let slow = by_id(&rs, &format!("{pulse}-hr"));
    assert_eq!(slow["interpretation"][0]["coding"][0]["code"], "LL");
    let rr = by_id(&rs, &format!("{full}-rr"));
    assert_eq!(quantity(&rr["referenceRange"][0]["low"]).0, 12.0);
    assert_eq!(quantity(&rr["referenceRange"][0]["high"]).0, 20.0);

    // Search by code (Observation.code: the panel for blood pressure) and
    // category; lab results stay where they were.
    for (q, want) in [
        (
            "code=http://loinc.org|8867-4".to_string(),
            vec![format!("{full}-hr"), format!("{pulse}-hr")],
        ),
        (
            "code=85354-9".into(),
            vec![format!("{full}-bp"), format!("{systolic_only}-bp")],
        ),
        ("code=2708-6".into(), vec![format!("{full}-spo2")]),
        ("code=8480-6".into(), vec![]),
        ("code=2345-7".into(), vec![lab.clone()]),
        ("category=laboratory".into(), vec![lab.clone()]),
        (
            "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory".into(),
            vec![lab.clone()],
        ),
        ("category=imaging".into(), vec![]),
        (format!("_id={full}-temp"), vec![format!("{full}-temp")]),
        (format!("_id={full}"), vec![]),
        (format!("_id={lab}-bp"), vec![]),
    ] {
        let b = fhir_ok(
            &app,
            &format!("/fhir/R4/Observation?patient={pid}&{q}"),
            &prov,
        )
        .await;
        let mut got = ids(&b);
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "{q}");
    }

    // Paging over labs and vital signs together: each resource once.
    let mut seen = Vec::new();
    let mut next = Some(format!("/fhir/R4/Observation?patient={pid}&_count=3"));
    while let Some(url) = next {
        let path = url
            .find("/fhir/R4")
            .map(|i| url.get(i..).unwrap_or_default().to_string())
            .unwrap();
        let page = fhir_ok(&app, &path, &prov).await;
        assert!(ids(&page).len() <= 3);
        seen.extend(ids(&page));
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 11, "{seen:?}");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 11);
    assert!(seen.contains(&lab));

    // Read by id; ids that are not ours are 404 OperationOutcomes.
    let one = fhir_ok(&app, &format!("/fhir/R4/Observation/{full}-bp"), &nurse).await;
    assert_eq!(&one, bp);
    validate_fhir(std::slice::from_ref(&one));
    for bad in [
        format!("{full}-xx"),
        format!("{lab}-bp"),
        full.clone(),
        format!("{full}-bp-bp"),
    ] {
        outcome(
            &app,
            &format!("/fhir/R4/Observation/{bad}"),
            Some(&prov),
            404,
            "not-found",
        )
        .await;
    }
    outcome(
        &app,
        &format!("/fhir/R4/Patient/{pid}-bp"),
        Some(&prov),
        404,
        "not-found",
    )
    .await;
    // Staff may not read vital signs on FHIR, as on the API.
    outcome(
        &app,
        &format!("/fhir/R4/Observation?patient={pid}"),
        Some(&staff),
        403,
        "forbidden",
    )
    .await;
    let r = app
        .get(&format!("/api/patients/{pid}/vitals"), Some(&staff))
        .await;
    assert_eq!(r.status(), 403);

    // $everything holds every vital-sign Observation, and their recorder.
    let everything = fhir_ok(&app, &format!("/fhir/R4/Patient/{pid}/$everything"), &prov).await;
    validate_fhir(std::slice::from_ref(&everything));
    let all: HashSet<String> = ids(&everything).into_iter().collect();
    for id in &want {
        assert!(all.contains(id), "{id} in $everything");
    }
    assert!(all.contains(&lab));
    let nurse_id = by_id(&rs, &format!("{full}-bp"))["performer"][0]["reference"]
        .as_str()
        .unwrap()
        .trim_start_matches("Practitioner/")
        .to_string();
    assert!(all.contains(&nurse_id), "the recording nurse is included");
}

/// An instant strictly between what was written before and after it (the
/// server runs in this process, on this clock).
async fn instant_between() -> String {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let t = store::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test]
async fn since_narrows_everything_and_export_and_vitals_are_exported() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await.access;
    let p = app.create_patient(&prov, "Sina", "Since").await;
    let pid = sid(&p);
    let old = vitals(&app, &prov, &pid, json!({"heartRate": 80, "spo2": 98})).await;
    let old_lab = sid(&app
        .json_ok(
            app.post(
                &format!("/api/patients/{pid}/labs"),
                Some(&prov),
                json!({"code": "2823-3", "value": 4.0, "unit": "mmol/L", "collectedAt": chrono::Utc::now().to_rfc3339()}),
            )
            .await,
            201,
        )
        .await);
    let since = instant_between().await;
    let new = vitals(&app, &prov, &pid, json!({"systolic": 150, "diastolic": 90})).await;

    // $everything: the Patient always, then only what changed since.
    let q = format!("_since={since}");
    let b = fhir_ok(
        &app,
        &format!("/fhir/R4/Patient/{pid}/$everything?{q}"),
        &prov,
    )
    .await;
    validate_fhir(std::slice::from_ref(&b));
    let got: HashSet<String> = ids(&b).into_iter().collect();
    assert!(got.contains(&pid));
    assert!(got.contains(&format!("{new}-bp")));
    assert!(!got.contains(&format!("{old}-hr")));
    assert!(!got.contains(&old_lab));
    let full = fhir_ok(&app, &format!("/fhir/R4/Patient/{pid}/$everything"), &prov).await;
    let all: HashSet<String> = ids(&full).into_iter().collect();
    assert!(all.contains(&format!("{old}-hr")) && all.contains(&old_lab));
    for bad in [
        "_since=yesterday",
        "_since=2026-01-01T00:00:00",
        "_type=Patient",
    ] {
        outcome(
            &app,
            &format!("/fhir/R4/Patient/{pid}/$everything?{bad}"),
            Some(&prov),
            400,
            "invalid",
        )
        .await;
    }

    // A patient export holds the vital signs, every line valid.
    let r = kick_off(&app, &format!("/fhir/R4/Patient/{pid}/$export"), &prov).await;
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let m = manifest(&app, &status, &prov).await;
    let out = files(&app, &m, &prov).await;
    let obs = &out.iter().find(|(t, _)| t == "Observation").unwrap().1;
    validate_fhir(obs);
    let ids: HashSet<&str> = obs.iter().map(|o| o["id"].as_str().unwrap()).collect();
    for id in [
        format!("{old}-hr"),
        format!("{old}-spo2"),
        format!("{new}-bp"),
        old_lab.clone(),
    ] {
        assert!(ids.contains(id.as_str()), "{id} exported");
    }
    assert_eq!(ids.len(), 4);

    // With _since: only what changed since (the Patient too is older).
    let r = kick_off(&app, &format!("/fhir/R4/Patient/{pid}/$export?{q}"), &prov).await;
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let m = manifest(&app, &status, &prov).await;
    let out = files(&app, &m, &prov).await;
    let count = |ty: &str| out.iter().find(|(t, _)| t == ty).map_or(0, |x| x.1.len());
    assert_eq!(count("Patient"), 0);
    let obs = &out.iter().find(|(t, _)| t == "Observation").unwrap().1;
    assert_eq!(
        obs.iter()
            .map(|o| o["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![format!("{new}-bp")]
    );
    let r = kick_off(
        &app,
        &format!("/fhir/R4/Patient/{pid}/$export?_since=soon"),
        &prov,
    )
    .await;
    assert_eq!(r.status(), 400);
}
