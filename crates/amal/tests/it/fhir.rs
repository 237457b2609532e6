//! The FHIR R4 API: every resource we emit validates with an independent
//! validator, search pages return each resource once, roles, rate limits
//! and the audit hold on `/fhir` exactly as on `/api`, and `$everything`
//! holds the whole chart.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// Validate resources with `scripts/fhir_validate.py` (PyPI `fhir.resources`).
/// Without the package the check is skipped, unless
/// `AMAL_REQUIRE_FHIR_VALIDATOR=1` makes that a failure (scripts/test.sh).
pub fn validate_fhir(resources: &[Value]) {
    let python = std::env::var("AMAL_FHIR_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = std::process::Command::new(&python)
        .args(["-c", "import fhir.resources.R4B.patient"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has {
        if std::env::var("AMAL_REQUIRE_FHIR_VALIDATOR").as_deref() == Ok("1") {
            panic!("AMAL_REQUIRE_FHIR_VALIDATOR=1 but {python} cannot import fhir.resources: pip install fhir.resources (scripts/test.sh does this)");
        }
        eprintln!("skipped FHIR validation: {python} cannot import fhir.resources (set AMAL_REQUIRE_FHIR_VALIDATOR=1 to make this a failure)");
        return;
    }
    let dir = temp_dir();
    let file = dir.join("resources.json");
    std::fs::write(&file, serde_json::to_vec(resources).unwrap()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/fhir_validate.py"
    );
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "FHIR validation failed:\n{text}");
    assert!(
        text.contains(&format!(
            "{} resource(s) checked, 0 invalid",
            count_resources(resources)
        )),
        "{text}"
    );
}

fn count_resources(rs: &[Value]) -> usize {
    rs.iter()
        .map(|r| 1 + r["entry"].as_array().map(|e| e.len()).unwrap_or(0))
        .sum()
}

pub(crate) async fn fhir(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let r = app.get(path, token).await;
    let status = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "application/fhir+json", "{path}");
    (status, r.json().await.unwrap())
}

pub(crate) async fn fhir_ok(app: &TestApp, path: &str, token: &str) -> Value {
    let (status, v) = fhir(app, path, Some(token)).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// An OperationOutcome with this status and issue code.
pub(crate) async fn outcome(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    status: u16,
    code: &str,
) -> Value {
    let (got, v) = fhir(app, path, token).await;
    assert_eq!(got, status, "{path}: {v}");
    assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
    assert_eq!(v["issue"][0]["code"], code, "{v}");
    v
}

pub(crate) fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|x| x["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A chart with one of everything (and a draft note, which FHIR does not show).
pub(crate) struct Chart {
    pub(crate) patient: String,
    allergy: String,
    problem: String,
    rx: [String; 3],
    labs: [String; 3],
    note: String,
    draft: String,
}

pub(crate) async fn chart(app: &TestApp, prov: &str) -> Chart {
    let p = app.create_patient(prov, "Amira", "Haddad").await;
    let pid = sid(&p);
    // POST and expect `status`; the answer's id.
    let send = |path: String, body: Value, status: u16| async move {
        sid(&app
            .json_ok(app.post(&path, Some(prov), body).await, status)
            .await)
    };
    let post = |path: String, body: Value| send(path, body, 201);
    let allergy = post(
        format!("/api/patients/{pid}/allergies"),
        json!({"substance": "Penicillin", "reaction": "hives", "severity": "moderate"}),
    )
    .await;
    let problem = post(
        format!("/api/patients/{pid}/problems"),
        json!({"description": "Type 2 diabetes", "code": "E11.9"}),
    )
    .await;
    let rx_body = |m: &str| json!({"medication": m, "dose": "500 mg", "route": "oral", "frequency": "twice daily", "quantity": 60, "refills": 2, "instructions": "with food"});
    let draft_rx = post(
        format!("/api/patients/{pid}/prescriptions"),
        rx_body("Metformin 500 mg"),
    )
    .await;
    let issued_rx = post(
        format!("/api/patients/{pid}/prescriptions"),
        rx_body("Lisinopril 10 mg"),
    )
    .await;
    send(
        format!("/api/prescriptions/{issued_rx}/issue"),
        json!({}),
        200,
    )
    .await;
    let cancelled_rx = post(
        format!("/api/patients/{pid}/prescriptions"),
        rx_body("Atorvastatin 20 mg"),
    )
    .await;
    send(
        format!("/api/prescriptions/{cancelled_rx}/cancel"),
        json!({"reason": "duplicate"}),
        200,
    )
    .await;
    let lab = |code: &str, v: f64, unit: &str| json!({"code": code, "value": v, "unit": unit, "collectedAt": "2026-11-01T08:00:00Z"});
    let normal = post(
        format!("/api/patients/{pid}/labs"),
        lab("2345-7", 92.0, "mg/dL"),
    )
    .await;
    let critical = post(
        format!("/api/patients/{pid}/labs"),
        lab("2823-3", 6.9, "mmol/L"),
    )
    .await;
    let unflagged = post(format!("/api/patients/{pid}/labs"), json!({"code": "1988-5", "name": "CRP <hs>", "value": 3.0, "unit": "furlongs", "collectedAt": "2026-11-01T08:00:00Z"})).await;
    let note = post(
        format!("/api/patients/{pid}/notes"),
        json!({"title": "Visit & review", "subjective": "cough", "plan": "rest"}),
    )
    .await;
    app.json_ok(
        app.client
            .post(app.url(&format!("/api/notes/{note}/finalize")))
            .bearer_auth(prov)
            .header("If-Match", "\"1\"")
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    post(
        format!("/api/notes/{note}/addenda"),
        json!({"text": "Chest clear on recheck."}),
    )
    .await;
    let draft = post(
        format!("/api/patients/{pid}/notes"),
        json!({"title": "Unsigned"}),
    )
    .await;
    Chart {
        patient: pid,
        allergy,
        problem,
        rx: [draft_rx, issued_rx, cancelled_rx],
        labs: [normal, critical, unflagged],
        note,
        draft,
    }
}

#[tokio::test]
async fn every_resource_we_emit_validates_and_says_what_the_chart_says() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await;
    let t = prov.access.as_str();
    let c = chart(&app, t).await;
    let mut emitted = Vec::new();

    // The CapabilityStatement is public and lists exactly what is served.
    let (status, cs) = fhir(&app, "/fhir/R4/metadata", None).await;
    assert_eq!(status, 200);
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let types: Vec<&str> = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "Patient",
            "AllergyIntolerance",
            "Condition",
            "MedicationRequest",
            "Observation",
            "DocumentReference",
            "Practitioner",
            "Group"
        ]
    );
    // Care teams as Groups: read and the group-level export, nothing else.
    let group = &cs["rest"][0]["resource"][7];
    assert_eq!(group["interaction"], json!([{ "code": "read" }]));
    assert!(group.get("searchParam").is_none());
    assert_eq!(group["operation"][0]["name"], "export");
    emitted.push(cs);

    let p = fhir_ok(&app, &format!("/fhir/R4/Patient/{}", c.patient), t).await;
    assert_eq!(p["name"][0]["family"], "Haddad");
    assert_eq!(p["birthDate"], "1980-04-12");
    assert_eq!(p["gender"], "female");
    assert_eq!(p["identifier"][0]["type"]["coding"][0]["code"], "MR");
    let mrn = p["identifier"][0]["value"].as_str().unwrap().to_string();
    emitted.push(p);

    let a = fhir_ok(
        &app,
        &format!("/fhir/R4/AllergyIntolerance/{}", c.allergy),
        t,
    )
    .await;
    assert_eq!(a["code"]["text"], "Penicillin");
    assert_eq!(a["reaction"][0]["severity"], "moderate");
    assert_eq!(a["patient"]["reference"], format!("Patient/{}", c.patient));
    emitted.push(a);
    let cond = fhir_ok(&app, &format!("/fhir/R4/Condition/{}", c.problem), t).await;
    assert_eq!(cond["clinicalStatus"]["coding"][0]["code"], "active");
    assert_eq!(cond["code"]["coding"][0]["code"], "E11.9");
    emitted.push(cond);

    for (id, status) in c.rx.iter().zip(["draft", "active", "cancelled"]) {
        let m = fhir_ok(&app, &format!("/fhir/R4/MedicationRequest/{id}"), t).await;
        assert_eq!(m["status"], status, "{m}");
        assert_eq!(m["dispenseRequest"]["numberOfRepeatsAllowed"], 2);
        emitted.push(m);
    }

    let normal = fhir_ok(&app, &format!("/fhir/R4/Observation/{}", c.labs[0]), t).await;
    assert_eq!(normal["code"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(normal["code"]["coding"][0]["code"], "2345-7");
    assert_eq!(normal["valueQuantity"]["value"], 92.0);
    assert_eq!(
        normal["valueQuantity"]["system"],
        "http://unitsofmeasure.org"
    );
    assert_eq!(normal["valueQuantity"]["code"], "mg/dL");
    assert_eq!(normal["referenceRange"][0]["low"]["value"], 70.0);
    assert_eq!(normal["referenceRange"][0]["high"]["value"], 99.0);
    assert_eq!(normal["interpretation"][0]["coding"][0]["code"], "N");
    assert_eq!(
        normal["interpretation"][0]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    );
    let critical = fhir_ok(&app, &format!("/fhir/R4/Observation/{}", c.labs[1]), t).await;
    assert_eq!(critical["interpretation"][0]["coding"][0]["code"], "HH");
    let unflagged = fhir_ok(&app, &format!("/fhir/R4/Observation/{}", c.labs[2]), t).await;
    assert!(unflagged.get("interpretation").is_none(), "{unflagged}");
    assert_eq!(unflagged["valueQuantity"]["unit"], "furlongs");
    assert!(
        unflagged["valueQuantity"].get("system").is_none(),
        "no UCUM code is guessed"
    );
    emitted.extend([normal, critical, unflagged]);

    let doc = fhir_ok(&app, &format!("/fhir/R4/DocumentReference/{}", c.note), t).await;
    assert_eq!(doc["docStatus"], "amended");
    let content = doc["content"].as_array().unwrap();
    assert_eq!(content.len(), 2, "the note and its addendum");
    use base64::Engine as _;
    let text = |i: usize| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(content[i]["attachment"]["data"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert!(text(0).contains("cough") && text(0).contains("rest"));
    assert_eq!(text(1), "Chest clear on recheck.");
    emitted.push(doc);
    // Drafts are not part of the record.
    outcome(
        &app,
        &format!("/fhir/R4/DocumentReference/{}", c.draft),
        Some(t),
        404,
        "not-found",
    )
    .await;

    let pr = fhir_ok(&app, &format!("/fhir/R4/Practitioner/{}", prov.user_id), t).await;
    assert_eq!(pr["active"], true);
    emitted.push(pr);

    // Searches by patient, for every type.
    for (ty, n) in [
        ("AllergyIntolerance", 1),
        ("Condition", 1),
        ("MedicationRequest", 3),
        ("Observation", 3),
        ("DocumentReference", 1),
    ] {
        let b = fhir_ok(&app, &format!("/fhir/R4/{ty}?patient={}", c.patient), t).await;
        assert_eq!(b["type"], "searchset");
        assert_eq!(ids(&b).len(), n, "{ty}: {b}");
        emitted.push(b);
    }
    let b = fhir_ok(&app, &format!("/fhir/R4/Patient?identifier={mrn}"), t).await;
    assert_eq!(ids(&b), std::slice::from_ref(&c.patient));
    emitted.push(b);

    // $everything holds every item of the chart (and no draft).
    let all = fhir_ok(
        &app,
        &format!("/fhir/R4/Patient/{}/$everything", c.patient),
        t,
    )
    .await;
    let got: HashSet<String> = ids(&all).into_iter().collect();
    let mut want: HashSet<String> = [&c.patient, &c.allergy, &c.problem, &c.note]
        .into_iter()
        .cloned()
        .collect();
    want.extend(c.rx.iter().cloned());
    want.extend(c.labs.iter().cloned());
    want.insert(prov.user_id.to_string());
    assert_eq!(got, want, "{all}");
    assert_eq!(all["total"], 10);
    emitted.push(all);

    validate_fhir(&emitted);
}

#[tokio::test]
async fn search_pages_return_each_resource_once_and_filters_narrow() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await;
    let t = prov.access.as_str();
    let mut made = Vec::new();
    for (g, f) in [
        ("Ana", "Núñez"),
        ("Bea", "Nunes"),
        ("Carl", "Olsen"),
        ("Dana", "Nuñez-Ruiz"),
        ("Eve", "Park"),
    ] {
        made.push(sid(&app.create_patient(t, g, f).await));
    }
    let pid = made[0].clone();
    let mut labs = HashSet::new();
    for i in 0..7 {
        let body = json!({"code": "2345-7", "value": 80.0 + i as f64, "unit": "mg/dL", "collectedAt": "2026-11-01T08:00:00Z"});
        labs.insert(sid(&app
            .json_ok(
                app.post(&format!("/api/patients/{pid}/labs"), Some(t), body)
                    .await,
                201,
            )
            .await));
    }
    // Follow `next` links at two per page: each result exactly once.
    let mut seen = Vec::new();
    let mut url = format!("{}/fhir/R4/Observation?patient={pid}&_count=2", app.base);
    let mut pages = 0;
    loop {
        let path = url.strip_prefix(&app.base).unwrap().to_string();
        let b = fhir_ok(&app, &path, t).await;
        pages += 1;
        seen.extend(ids(&b));
        validate_or_skip(&b);
        match b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(l) => url = l["url"].as_str().unwrap().to_string(),
            None => break,
        }
        // A result added mid-paging appears once, on a later page.
        if pages == 1 {
            let body = json!({"code": "2345-7", "value": 99.0, "unit": "mg/dL", "collectedAt": "2026-11-01T08:00:00Z"});
            labs.insert(sid(&app
                .json_ok(
                    app.post(&format!("/api/patients/{pid}/labs"), Some(t), body)
                        .await,
                    201,
                )
                .await));
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(seen.len(), 8);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), labs);

    let names = |q: &str| {
        let app = &app;
        let q = q.to_string();
        async move { ids(&fhir_ok(app, &format!("/fhir/R4/Patient?{q}"), t).await).len() }
    };
    assert_eq!(names("name=nun").await, 3, "accent-insensitive prefix");
    assert_eq!(names("family=N%C3%BA%C3%B1ez").await, 2);
    assert_eq!(names("given=car").await, 1);
    assert_eq!(names("name=nun&given=bea").await, 1);
    assert_eq!(names("birthdate=1980-04-12").await, 5);
    assert_eq!(names("birthdate=1980").await, 5);
    assert_eq!(names("birthdate=lt1980-04-12").await, 0);
    assert_eq!(names(&format!("_id={pid}")).await, 1);
    assert_eq!(names("_id=not-a-uuid").await, 0);
    assert_eq!(names("_lastUpdated=ge2020-01-01").await, 5);
    assert_eq!(names("_lastUpdated=lt2020-01-01").await, 0);
    assert_eq!(names("_lastUpdated=gt2099").await, 0);
    assert_eq!(names("identifier=https://other.example/mrn|123").await, 0);
    assert_eq!(
        names("name=%27%20OR%201%3D1--").await,
        0,
        "SQL in a parameter is text"
    );
    assert_eq!(names("name=%25").await, 0, "% is a plain character");
    // Patient paging: two per page, every patient once.
    let mut all = Vec::new();
    let mut path = "/fhir/R4/Patient?_count=2".to_string();
    loop {
        let b = fhir_ok(&app, &path, t).await;
        all.extend(ids(&b));
        match b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(l) => {
                path = l["url"]
                    .as_str()
                    .unwrap()
                    .strip_prefix(&app.base)
                    .unwrap()
                    .to_string()
            }
            None => break,
        }
    }
    assert_eq!(all.len(), 5);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 5);

    // Bad input: a clear 400 OperationOutcome, nothing else.
    let v = outcome(&app, "/fhir/R4/Patient?color=red", Some(t), 400, "invalid").await;
    assert!(v["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("`color`"));
    outcome(
        &app,
        "/fhir/R4/Observation?_lastUpdated=yesterday",
        Some(t),
        400,
        "invalid",
    )
    .await;
    outcome(
        &app,
        "/fhir/R4/Observation?_count=lots",
        Some(t),
        400,
        "invalid",
    )
    .await;
    outcome(
        &app,
        "/fhir/R4/Observation?_cursor=forged",
        Some(t),
        400,
        "invalid",
    )
    .await;
    outcome(
        &app,
        "/fhir/R4/Observation?_format=xml",
        Some(t),
        400,
        "invalid",
    )
    .await;
    outcome(&app, "/fhir/R4/Patient?name=a%00b", Some(t), 400, "invalid").await;
    outcome(&app, "/fhir/R4/Encounter", Some(t), 404, "not-found").await;
    outcome(
        &app,
        &format!("/fhir/R4/Observation/{}", uuid::Uuid::now_v7()),
        Some(t),
        404,
        "not-found",
    )
    .await;
    outcome(
        &app,
        "/fhir/R4/Observation/not-a-uuid",
        Some(t),
        404,
        "not-found",
    )
    .await;
}

fn validate_or_skip(b: &Value) {
    validate_fhir(std::slice::from_ref(b));
}

#[tokio::test]
async fn roles_rate_limits_and_audit_hold_on_fhir_as_on_the_api() {
    let app = TestApp::spawn_with(|raw| raw.rate_limit_read = Some("40/60s".into())).await;
    let prov = app.signed_in("provider").await;
    let nurse = app.signed_in("nurse").await;
    let staff = app.signed_in("staff").await;
    let admin = app.signed_in("admin").await;
    let c = chart(&app, &prov.access).await;
    let p = &c.patient;
    let paths = [
        (format!("/fhir/R4/Patient/{p}"), "patient"),
        ("/fhir/R4/Patient?name=had".to_string(), "patient"),
        (format!("/fhir/R4/Observation?patient={p}"), "clinical"),
        (format!("/fhir/R4/Observation/{}", c.labs[0]), "clinical"),
        (
            format!("/fhir/R4/AllergyIntolerance?patient={p}"),
            "clinical",
        ),
        (format!("/fhir/R4/Condition/{}", c.problem), "clinical"),
        (
            format!("/fhir/R4/MedicationRequest?patient={p}"),
            "clinical",
        ),
        (format!("/fhir/R4/DocumentReference/{}", c.note), "clinical"),
        (
            format!("/fhir/R4/Practitioner/{}", prov.user_id),
            "clinical",
        ),
        (format!("/fhir/R4/Patient/{p}/$everything"), "clinical"),
    ];
    for (path, kind) in &paths {
        let r = outcome(&app, path, None, 401, "login").await;
        assert!(r["issue"][0]["diagnostics"].as_str().is_some());
        for (who, s) in [
            ("provider", &prov),
            ("nurse", &nurse),
            ("staff", &staff),
            ("admin", &admin),
        ] {
            let allowed = match who {
                "provider" | "nurse" => true,
                "staff" => *kind == "patient",
                _ => false,
            };
            if allowed {
                fhir_ok(&app, path, &s.access).await;
            } else {
                outcome(&app, path, Some(&s.access), 403, "forbidden").await;
            }
        }
    }
    // A 401 carries the challenge; a refused patient read is audited.
    let r = app.get(&format!("/fhir/R4/Patient/{p}"), None).await;
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let events = audit_events(&app).await;
    let pid: uuid::Uuid = p.parse().unwrap();
    assert!(events.iter().any(|e| e.action == "access.refused"
        && e.patient_id == Some(pid)
        && e.actor_id == Some(admin.user_id)));
    assert!(events.iter().any(|e| e.action == "fhir.read"
        && e.patient_id == Some(pid)
        && e.actor_id == Some(nurse.user_id)));
    assert!(events.iter().any(|e| e.action == "fhir.search"
        && e.patient_id == Some(pid)
        && e.actor_id == Some(staff.user_id)));
    assert!(events
        .iter()
        .any(|e| e.action == "fhir.everything" && e.patient_id == Some(pid)));
    // Every FHIR read counts against the read limit, and a refusal is FHIR too.
    let mut last = None;
    for _ in 0..40 {
        let r = app
            .get(&format!("/fhir/R4/Patient/{p}"), Some(&prov.access))
            .await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            last = Some(r);
            break;
        }
        assert!(r.headers().contains_key("x-ratelimit-remaining"));
    }
    let r = last.expect("the read limit is reached");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["issue"][0]["code"], "throttled");
    // The CapabilityStatement is not rate limited.
    let (status, _) = fhir(&app, "/fhir/R4/metadata", None).await;
    assert_eq!(status, 200);
}

pub(crate) async fn kick_off(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(token)
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap()
}

/// Poll a status URL until the manifest is ready.
pub(crate) async fn manifest(app: &TestApp, status_url: &str, token: &str) -> Value {
    for _ in 0..3000 {
        let r = app
            .client
            .get(status_url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            202 => {
                assert!(r.headers().contains_key("x-progress"));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            200 => return r.json().await.unwrap(),
            s => panic!("status {s}: {}", r.text().await.unwrap()),
        }
    }
    panic!("the export did not finish");
}

/// The NDJSON files of a manifest: type → resources.
pub(crate) async fn files(
    app: &TestApp,
    manifest: &Value,
    token: &str,
) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for o in manifest["output"].as_array().unwrap() {
        let r = app
            .client
            .get(o["url"].as_str().unwrap())
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/fhir+ndjson");
        let text = r.text().await.unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, o["count"].as_u64().unwrap());
        out.push((o["type"].as_str().unwrap().to_string(), lines));
    }
    out
}

#[tokio::test]
async fn bulk_export_kicks_off_polls_writes_ndjson_and_expires() {
    let app = TestApp::spawn().await;
    let prov = app.signed_in("provider").await;
    let nurse = app.signed_in("nurse").await;
    let admin = app.signed_in("admin").await;
    let one = chart(&app, &prov.access).await;
    let two = chart(&app, &prov.access).await;

    // Who may: admins the whole clinic, providers one patient.
    let all = "/fhir/R4/$export";
    let mine = format!("/fhir/R4/Patient/{}/$export", one.patient);
    for (path, who) in [
        (all, &prov),
        (all, &nurse),
        (mine.as_str(), &admin),
        (mine.as_str(), &nurse),
    ] {
        let r = kick_off(&app, path, &who.access).await;
        assert_eq!(r.status(), 403, "{path}");
        assert_eq!(r.headers()["content-type"], "application/fhir+json");
    }
    outcome(&app, all, Some(&admin.access), 400, "invalid").await; // no Prefer: respond-async
    let r = kick_off(&app, "/fhir/R4/$export?_type=Encounter", &admin.access).await;
    assert_eq!(r.status(), 400);

    // System level, by an admin: every row of every type, once.
    let r = kick_off(&app, all, &admin.access).await;
    assert_eq!(r.status(), 202);
    let status_url = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let m = manifest(&app, &status_url, &admin.access).await;
    assert_eq!(m["requiresAccessToken"], true);
    let out = files(&app, &m, &admin.access).await;
    let db = &app.state.db;
    for (ty, table) in [
        ("Patient", "patients"),
        ("AllergyIntolerance", "allergies"),
        ("Condition", "problems"),
        ("MedicationRequest", "prescriptions"),
        ("Observation", "labs"),
        ("DocumentReference", "notes"),
    ] {
        let (_, lines) = out.iter().find(|(t, _)| t == ty).unwrap();
        assert_eq!(
            lines.len() as i64,
            store::export::count(db, table, None).await.unwrap(),
            "{ty}"
        );
        let ids: HashSet<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), lines.len(), "{ty}: each once");
    }
    assert!(out
        .iter()
        .any(|(t, l)| t == "Practitioner" && !l.is_empty()));
    let sample: Vec<Value> = out
        .iter()
        .flat_map(|(_, l)| l.iter().take(3).cloned())
        .collect();
    validate_fhir(&sample);
    // Audited and alerted; nobody else may poll or download.
    let events = audit_events(&app).await;
    assert!(events
        .iter()
        .any(|e| e.action == "fhir.export" && e.actor_id == Some(admin.user_id)));
    assert!(events
        .iter()
        .any(|e| e.action == "fhir.export.download" && e.actor_id == Some(admin.user_id)));
    server::alert_task::tick(&app.state).await;
    let report = app.state.alerts.report();
    let alert = report
        .alerts
        .iter()
        .find(|a| a.name == "AdminBulkExport")
        .unwrap();
    assert_eq!(alert.state, telemetry::alerts::AlertStatus::Firing);
    let r = app
        .client
        .get(&status_url)
        .bearer_auth(&prov.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // One patient, by a provider: that chart only.
    let r = kick_off(&app, &mine, &prov.access).await;
    assert_eq!(r.status(), 202);
    let mine_url = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let m = manifest(&app, &mine_url, &prov.access).await;
    let out = files(&app, &m, &prov.access).await;
    assert!(out.iter().all(|(t, _)| t != "Practitioner"));
    for (ty, lines) in &out {
        for l in lines {
            let subject = l["subject"]["reference"]
                .as_str()
                .or(l["patient"]["reference"].as_str());
            match ty.as_str() {
                "Patient" => assert_eq!(l["id"], one.patient.as_str()),
                _ => assert_eq!(
                    subject,
                    Some(format!("Patient/{}", one.patient).as_str()),
                    "{l}"
                ),
            }
            assert_ne!(l["id"], two.patient.as_str());
        }
    }
    assert_eq!(
        out.iter().map(|(_, l)| l.len()).sum::<usize>(),
        10,
        "patient, allergy, problem, 3 prescriptions, 3 results, 1 note"
    );

    // Cancel removes at once; retention removes the rest.
    let r = app
        .client
        .delete(&mine_url)
        .bearer_auth(&prov.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = app
        .client
        .get(&mine_url)
        .bearer_auth(&prov.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let exports = app.state.config.data_dir.join("exports");
    assert_eq!(std::fs::read_dir(&exports).unwrap().count(), 1);
    let later = store::now() + chrono::Duration::hours(25);
    assert_eq!(
        server::services::export::sweep(&app.state, later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(std::fs::read_dir(&exports).unwrap().count(), 0);
    let r = app
        .client
        .get(&status_url)
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
