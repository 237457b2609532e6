//! `amal demo`: a throw-away clinic with synthetic (clearly fictional)
//! patients and one demo user of every role, for exploring and benchmarks.
//! The generator is deterministic (fixed seed), so two runs with the same
//! `--patients` build the same clinic.

use std::io::Write;

use anyhow::Context;
use chrono::{Duration, Utc};
use domain::clinical::{AllergySeverity, Sex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store::Db;
use uuid::Uuid;

/// Syllables for invented names: nobody is called this, so nobody mistakes
/// demo data for a real patient.
const GIVEN: &[&str] = &[
    "Zarel", "Quorin", "Ilvena", "Maroth", "Tesska", "Orvid", "Yulani", "Brevik", "Selka",
    "Dumari", "Fenwix", "Calyra", "Juvo", "Nerissa", "Pelgar", "Wenlow", "Ostra", "Kimbel",
    "Aveline", "Thessaly",
];
const FAMILY: &[&str] = &[
    "Quellmoor",
    "Vantrick",
    "Ostrander-Demo",
    "Pellwhistle",
    "Grimsvale",
    "Dunmarrow",
    "Fairhollow",
    "Kestrelby",
    "Mornwick",
    "Ashgrove",
    "Brindlecombe",
    "Thistlewood",
    "Corvane",
    "Lindqvale",
    "Harrowgate",
    "Wyndmere",
    "Esterbrook",
    "Falkenrath",
    "Gildermoor",
    "Norrington",
];
const ALLERGIES: &[(&str, &str)] = &[
    ("Penicillin", "hives"),
    ("Sulfa drugs", "rash"),
    ("Ibuprofen", "wheeze"),
    ("Codeine", "nausea"),
    ("Latex", "itching"),
    ("Peanuts", "swelling"),
];
const PROBLEMS: &[(&str, &str)] = &[
    ("Type 2 diabetes mellitus", "E11.9"),
    ("Essential hypertension", "I10"),
    ("Hyperlipidaemia", "E78.5"),
    ("Asthma", "J45.909"),
    ("Hypothyroidism", "E03.9"),
    ("Chronic kidney disease stage 3", "N18.3"),
    ("Osteoarthritis of knee", "M17.9"),
];
const MEDS: &[(&str, &str, &str)] = &[
    ("Metformin", "500 mg", "twice daily"),
    ("Lisinopril", "10 mg", "once daily"),
    ("Atorvastatin", "20 mg", "at night"),
    ("Levothyroxine", "50 mcg", "once daily"),
    ("Amlodipine", "5 mg", "once daily"),
    ("Salbutamol inhaler", "100 mcg", "as needed"),
    ("Amoxicillin", "500 mg", "three times daily"),
];
/// Medication, dose, frequency.
type Med = (&'static str, &'static str, &'static str);
/// LOINC codes followed over time: glucose, HbA1c, potassium, creatinine, LDL, TSH.
const LAB_CODES: &[&str] = &["2345-7", "4548-4", "2823-3", "2160-0", "13457-7", "3016-3"];

pub const DEMO_ROLES: [&str; 4] = ["admin", "provider", "nurse", "staff"];

pub fn demo_email(role: &str) -> String {
    format!("{role}@demo.amal.test")
}

/// A progress line on stderr (`\r`-updated on a terminal).
pub struct Progress {
    label: &'static str,
    total: usize,
    last: usize,
}

impl Progress {
    pub fn new(label: &'static str, total: usize) -> Progress {
        Progress {
            label,
            total,
            last: usize::MAX,
        }
    }

    pub fn set(&mut self, done: usize) {
        let pct = (done * 100).checked_div(self.total).unwrap_or(100);
        if pct != self.last {
            self.last = pct;
            let width = 30;
            let filled = pct * width / 100;
            eprint!(
                "\r{} [{}{}] {:>3}% ({done}/{})",
                self.label,
                "#".repeat(filled),
                ".".repeat(width - filled),
                pct,
                self.total
            );
            if done >= self.total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    }
}

/// Create the demo users (all with `password`); returns their ids by role.
pub async fn create_users(db: &Db, password: &str) -> anyhow::Result<Vec<(String, Uuid)>> {
    let hash = server::credentials::password::hash_blocking(password)?;
    let mut out = Vec::new();
    let mut tx = db.begin().await?;
    for role in DEMO_ROLES {
        let email = demo_email(role);
        let name = format!(
            "Demo {}",
            role.get(..1).unwrap_or_default().to_uppercase() + role.get(1..).unwrap_or_default()
        );
        let u = store::users::insert(
            &mut tx,
            &store::users::NewUser {
                email: &email,
                name: &name,
                role: domain::roles::Role::parse(role).context("a demo role")?,
                status: domain::account::UserStatus::Active,
                password_hash: &hash,
            },
        )
        .await?;
        out.push((role.to_string(), u.id));
    }
    tx.commit().await?;
    Ok(out)
}

/// Fill the clinic with `patients` synthetic patients and their records.
pub async fn seed(db: &Db, patients: usize, provider: Uuid, nurse: Uuid) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(20_261_125);
    let mut progress = Progress::new("generating patients", patients);
    let batch = 100;
    let mut done = 0;
    let mut first = None;
    while done < patients {
        let mut tx = db.begin().await?;
        for _ in 0..batch.min(patients - done) {
            let id = one_patient(&mut tx, &mut rng, provider, nurse).await?;
            first.get_or_insert(id);
            done += 1;
        }
        tx.commit().await?;
        progress.set(done);
    }
    progress.set(patients);
    if let Some(id) = first {
        let mut tx = db.begin().await?;
        showcase(&mut tx, id, provider, nurse).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// A lab result as the server would record it (flagged from the table).
async fn lab(
    tx: &mut store::Tx,
    patient: Uuid,
    by: Uuid,
    code: &str,
    value: f64,
    unit: &str,
    collected_at: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let name = domain::labs::reference(code)
        .map(|r| r.name.clone())
        .unwrap_or_else(|| code.to_string());
    let i = domain::labs::interpret(code, value, unit, None, None);
    store::labs::insert(
        tx,
        patient,
        by,
        &store::labs::NewLab {
            code: code.into(),
            name,
            value,
            unit: unit.into(),
            reference_low: i.reference_low,
            reference_high: i.reference_high,
            flag: i.flag,
            warning: i.warning,
            collected_at,
        },
    )
    .await?;
    Ok(())
}

/// A set of vital signs as the server would record it (checked, flagged).
async fn vitals(
    tx: &mut store::Tx,
    patient: Uuid,
    by: Uuid,
    e: domain::vitals::Entered,
    recorded_at: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let c = domain::vitals::check(&e, None)
        .map_err(|errs| anyhow::anyhow!("demo vitals invalid: {}", errs.len()))?;
    let flags: std::collections::BTreeMap<&str, &str> =
        c.flags.iter().map(|(k, f)| (*k, f.as_str())).collect();
    store::vitals::insert(
        tx,
        patient,
        by,
        &store::vitals::NewVitals {
            recorded_at,
            entered: e,
            bmi: c.bmi,
            flags: serde_json::to_string(&flags)?,
            critical: c.critical,
            abnormal: c.abnormal,
        },
    )
    .await?;
    Ok(())
}

/// The first patient shows every list of the day at once: a critical
/// potassium recorded now (and a newer result in a unit the table cannot
/// flag), critical vital signs, a nurse's draft awaiting co-signature, and
/// an allergy entered in error beside a severe one.
async fn showcase(
    tx: &mut store::Tx,
    patient: Uuid,
    provider: Uuid,
    nurse: Uuid,
) -> anyhow::Result<()> {
    let now = store::now();
    lab(
        tx,
        patient,
        nurse,
        "2823-3",
        6.8,
        "mmol/L",
        now - Duration::minutes(20),
    )
    .await?;
    lab(
        tx,
        patient,
        nurse,
        "2823-3",
        6.8,
        "mg/dL",
        now - Duration::minutes(5),
    )
    .await?;
    lab(
        tx,
        patient,
        nurse,
        "2345-7",
        525.0,
        "mg/dL",
        now - Duration::days(3),
    )
    .await?;
    lab(
        tx,
        patient,
        nurse,
        "2345-7",
        95.0,
        "mg/dL",
        now - Duration::days(1),
    )
    .await?;
    let e = domain::vitals::Entered {
        systolic: Some(186.0),
        diastolic: Some(112.0),
        heart_rate: Some(118.0),
        spo2: Some(89.0),
        temperature: Some(38.4),
        respiratory_rate: Some(26.0),
        ..Default::default()
    };
    vitals(tx, patient, nurse, e, now - Duration::minutes(10)).await?;
    let wrong = store::patients::add_allergy(
        tx,
        patient,
        "Sulfa drugs",
        None,
        AllergySeverity::Mild,
        nurse,
    )
    .await?;
    store::patients::update_allergy(
        tx,
        wrong.id,
        wrong.version,
        &store::patients::AllergyFields {
            substance: wrong.substance.clone(),
            reaction: None,
            severity: wrong.severity,
            status: domain::chart::EntryStatus::EnteredInError,
            resolved_on: None,
        },
        provider,
    )
    .await?;
    store::patients::add_allergy(
        tx,
        patient,
        "Penicillin",
        Some("anaphylaxis"),
        AllergySeverity::Severe,
        nurse,
    )
    .await?;
    let draft = store::notes::NoteContent {
        title: "Triage: breathless".into(),
        subjective: "Short of breath since this morning.".into(),
        objective: "SpO2 89 % on air, RR 26.".into(),
        ..Default::default()
    };
    store::notes::insert(tx, patient, nurse, &draft, false).await?;
    Ok(())
}

/// A draft prescription of 30 (inhalers are inhaled, the rest oral).
async fn new_draft(
    tx: &mut store::Tx,
    patient: Uuid,
    provider: Uuid,
    (med, dose, freq): Med,
    refills: i64,
) -> anyhow::Result<store::prescriptions::PrescriptionRow> {
    let route = if med.contains("inhaler") {
        "inhaled"
    } else {
        "oral"
    };
    let p = store::prescriptions::NewPrescription {
        medication: med.into(),
        dose: dose.into(),
        route: route.into(),
        frequency: freq.into(),
        quantity: 30,
        refills,
        instructions: None,
    };
    Ok(store::prescriptions::insert(tx, patient, provider, &p).await?)
}

async fn one_patient(
    tx: &mut store::Tx,
    rng: &mut StdRng,
    provider: Uuid,
    nurse: Uuid,
) -> anyhow::Result<Uuid> {
    let given = GIVEN[rng.gen_range(0..GIVEN.len())];
    let family = FAMILY[rng.gen_range(0..FAMILY.len())];
    let age_days = rng.gen_range(18 * 365..90 * 365);
    let birth = (Utc::now() - Duration::days(age_days))
        .format("%Y-%m-%d")
        .to_string();
    let d = store::patients::Demographics {
        given_name: given.to_string(),
        family_name: family.to_string(),
        birth_date: birth,
        sex: if rng.gen_bool(0.5) {
            Sex::Female
        } else {
            Sex::Male
        },
        phone: Some(format!("555 01{:02}", rng.gen_range(0..100))),
        email: None,
        address: None,
    };
    let p = store::patients::insert(tx, &d, nurse, server::services::patients::new_mrn).await?;
    let mut allergies = Vec::new();
    if rng.gen_bool(0.4) {
        let (s, r) = ALLERGIES[rng.gen_range(0..ALLERGIES.len())];
        store::patients::add_allergy(
            tx,
            p.id,
            s,
            Some(r),
            [
                AllergySeverity::Mild,
                AllergySeverity::Moderate,
                AllergySeverity::Severe,
            ]
            .get(rng.gen_range(0..3))
            .copied()
            .unwrap_or_default(),
            nurse,
        )
        .await?;
        allergies.push(s);
    } else if rng.gen_bool(0.5) {
        store::patients::state_nkda(tx, p.id, nurse).await?;
    }
    let problem_of =
        |description: &str, code: &str, resolved: bool| store::patients::ProblemFields {
            description: description.into(),
            code: Some(code.into()),
            status: if resolved {
                domain::chart::EntryStatus::Resolved
            } else {
                domain::chart::EntryStatus::Active
            },
            resolved_on: resolved.then(|| {
                (Utc::now() - Duration::days(400))
                    .format("%Y-%m-%d")
                    .to_string()
            }),
        };
    let (problem, code) = PROBLEMS[rng.gen_range(0..PROBLEMS.len())];
    store::patients::add_problem(tx, p.id, &problem_of(problem, code, false), provider).await?;
    if rng.gen_bool(0.3) {
        let (old, code) = PROBLEMS[rng.gen_range(0..PROBLEMS.len())];
        store::patients::add_problem(tx, p.id, &problem_of(old, code, true), provider).await?;
    }
    // Vital signs at the last three visits; now and then a high pressure.
    let height = rng.gen_range(150.0_f64..190.0).round();
    let weight = rng.gen_range(50.0_f64..110.0).round();
    for visit in (0..3).rev() {
        let e = domain::vitals::Entered {
            systolic: Some(if rng.gen_bool(0.15) {
                150.0
            } else {
                rng.gen_range(105.0_f64..128.0).round()
            }),
            diastolic: Some(rng.gen_range(62.0_f64..79.0).round()),
            heart_rate: Some(rng.gen_range(58.0_f64..96.0).round()),
            respiratory_rate: Some(rng.gen_range(12.0_f64..19.0).round()),
            temperature: Some((rng.gen_range(36.2_f64..37.6) * 10.0).round() / 10.0),
            spo2: Some(rng.gen_range(96.0_f64..100.0).round()),
            weight_kg: Some(weight + f64::from(visit)),
            height_cm: Some(height),
        };
        vitals(
            tx,
            p.id,
            nurse,
            e,
            store::now() - Duration::days(90 * i64::from(visit) + 1),
        )
        .await?;
    }
    // Notes: a signed visit note, and sometimes a draft still open.
    let content = store::notes::NoteContent {
        title: format!("Follow-up: {problem}"),
        subjective: format!(
            "Attends for review of {}. Reports adherence to treatment.",
            problem.to_lowercase()
        ),
        objective: format!(
            "BP {}/{} mmHg, HR {} bpm.",
            rng.gen_range(105..165),
            rng.gen_range(60..100),
            rng.gen_range(55..100)
        ),
        assessment: format!("{problem}: stable."),
        plan: "Continue current treatment. Review in 3 months.".into(),
    };
    let note = store::notes::insert(tx, p.id, provider, &content, false).await?;
    store::notes::finalize(
        tx,
        note.id,
        note.version,
        provider,
        &server::services::notes::signed_hash(&note, provider),
    )
    .await?;
    if rng.gen_bool(0.3) {
        let draft = store::notes::NoteContent {
            title: "Telephone contact".into(),
            subjective: "Called about results.".into(),
            ..Default::default()
        };
        store::notes::insert(
            tx,
            p.id,
            [provider, nurse][rng.gen_range(0..2)],
            &draft,
            false,
        )
        .await?;
    }
    // Prescriptions: skip a drug the patient is allergic to.
    for _ in 0..rng.gen_range(1..3) {
        let (med, dose, freq) = MEDS[rng.gen_range(0..MEDS.len())];
        if domain::allergy::find_conflict(med, allergies.iter().copied()).is_some() {
            continue;
        }
        let refills = rng.gen_range(0..3);
        let rx = new_draft(tx, p.id, provider, (med, dose, freq), refills).await?;
        match rng.gen_range(0..10) {
            0 => {}
            1 => {
                store::prescriptions::cancel(tx, rx.id, provider, "Stopped at review").await?;
            }
            _ => {
                store::prescriptions::issue(tx, rx.id, provider, &Default::default()).await?;
            }
        }
    }
    // Medication safety scenarios (issue 12): an active prescription and a
    // draft that a provider's issue will stop, for a drug interaction
    // (warfarin + ibuprofen), a duplicate therapy (sertraline twice, once by
    // brand) and a misspelt, unrecognised medication.
    const SCENARIOS: &[(Option<Med>, Med)] = &[
        (
            Some(("Warfarin", "5 mg", "once daily")),
            ("Ibuprofen", "400 mg", "three times daily"),
        ),
        (
            Some(("Sertraline", "50 mg", "once daily")),
            ("Zoloft", "100 mg", "once daily"),
        ),
        (
            Some(("Simvastatin", "40 mg", "at night")),
            ("Clarithromycin", "500 mg", "twice daily"),
        ),
        (None, ("Amoxicilin", "500 mg", "three times daily")),
    ];
    if rng.gen_bool(0.3) {
        let (active, draft) = SCENARIOS[rng.gen_range(0..SCENARIOS.len())];
        for (i, (med, dose, freq)) in active.into_iter().chain([draft]).enumerate() {
            let rx = new_draft(tx, p.id, provider, (med, dose, freq), 0).await?;
            if i == 0 && active.is_some() {
                store::prescriptions::issue(tx, rx.id, provider, &Default::default()).await?;
            }
        }
    }
    // Lab series: monthly results of two codes, with abnormal values.
    for code in [
        LAB_CODES[rng.gen_range(0..LAB_CODES.len())],
        LAB_CODES[rng.gen_range(0..LAB_CODES.len())],
    ] {
        let Some(r) = domain::labs::reference(code) else {
            continue;
        };
        let (lo, hi) = (r.low.unwrap_or(0.0), r.high.unwrap_or(1.0));
        let span = (hi - lo).max(0.1);
        let mut value = lo + span * rng.gen_range(0.2..0.8);
        for month in (0..6).rev() {
            let roll: f64 = rng.gen();
            value = if roll < 0.08 {
                hi + span * rng.gen_range(0.05..0.6)
            } else if roll < 0.12 {
                (lo - span * rng.gen_range(0.05..0.4)).max(0.01)
            } else if roll < 0.13 {
                r.critical_high.unwrap_or(hi * 2.0) * 1.05
            } else {
                (value + span * rng.gen_range(-0.15..0.15)).clamp(lo * 0.9, hi * 1.1)
            };
            let value = (value * 100.0).round() / 100.0;
            let collected = store::now() - Duration::days(30 * month + rng.gen_range(0..20));
            lab(tx, p.id, nurse, code, value, &r.unit, collected).await?;
        }
    }
    Ok(p.id)
}

/// A fresh folder for a throw-away demo database.
pub fn scratch_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("amal-demo-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).context("cannot create the demo folder")?;
    Ok(dir)
}
