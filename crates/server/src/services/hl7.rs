//! HL7 v2 ORU^R01 lab results in, for `POST /api/labs/hl7` and
//! `amal import hl7`: parse (`domain::hl7`), match the patient, validate
//! every OBX, store all results or none with their audit events in one
//! transaction, answer an ACK. Idempotent on the sender's message control id:
//! a repeat changes nothing and gets the first answer again. The message's
//! contents are never logged; the audit trail holds ids, codes and counts.

use chrono::Utc;
use domain::audit::AuditAction;
use domain::hl7::{self, AckCode, ErrorCode, Issue, Message, OruR01};
use domain::labs::LabFlag;
use domain::roles::Action;
use serde_json::json;
use store::labs::NewLab;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::services::audit_event;
use crate::services::labs::{loinc, parse_lab, LabInput};

/// What became of one message.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub code: AckCode,
    /// The ACK (ER7, segments ending in CR).
    pub ack: String,
    /// A repeat of a message accepted before: nothing was stored now.
    pub duplicate: bool,
    /// The lab results stored (empty unless accepted now).
    pub stored: Vec<Uuid>,
    pub issues: Vec<Issue>,
}

/// A result ready to store, with the sender's view of it.
struct Prepared {
    lab: NewLab,
    position: usize,
    sender_flag: Option<String>,
    sender_range: Option<String>,
    our_flag: Option<String>,
}

fn ack_id() -> String {
    let id = Uuid::now_v7().simple().to_string();
    format!("AMAL{}", id.get(..16).unwrap_or_default())
}

fn sender_of(h: &hl7::Header) -> String {
    format!("{}|{}", h.sending_application, h.sending_facility)
}

/// Our own flag and the sender's, reconciled: the more serious one is
/// stored, and a disagreement is written into the result's warning.
fn reconcile(ours: Option<LabFlag>, theirs: Option<LabFlag>) -> (Option<LabFlag>, Option<String>) {
    match (ours, theirs) {
        (Some(o), Some(t)) if o != t => {
            let kept = if hl7::severity(t) > hl7::severity(o) {
                t
            } else {
                o
            };
            let note = format!(
                "The laboratory flagged this result {}; our reference check gives {}. The more serious flag is shown.",
                t.as_str(),
                o.as_str()
            );
            (Some(kept), Some(note))
        }
        (Some(o), _) => (Some(o), None),
        (None, t) => (t, None),
    }
}

/// Check one OBX and turn it into a result, or say why it cannot be stored.
fn prepare(
    m: &Message,
    msg: &OruR01,
    order: usize,
    o: &hl7::Observation,
) -> Result<Option<Prepared>, Issue> {
    let at = |f: usize, code: ErrorCode, why: &str| {
        Issue::new(code, why.to_string()).at("OBX", o.position, f)
    };
    match o.status.as_str() {
        "F" | "C" | "" => {}
        // "Results cannot be obtained" / deleted: nothing to store.
        "X" | "D" => return Ok(None),
        _ => {
            return Err(at(
                11,
                ErrorCode::TableValueNotFound,
                "OBX-11 result status must be F (final) or C (corrected); preliminary results are not stored",
            ))
        }
    }
    let system = o.code.system.to_ascii_uppercase();
    if !(system == "LN" || system == "LOINC" || system == "HTTP://LOINC.ORG") {
        return Err(at(
            3,
            ErrorCode::TableValueNotFound,
            "OBX-3 must be a LOINC code (coding system LN)",
        ));
    }
    let code = loinc(&o.code.code).map_err(|_| {
        at(
            3,
            ErrorCode::DataType,
            "OBX-3 is not a well-formed LOINC code",
        )
    })?;
    let value = hl7::numeric_value(m, o).ok_or_else(|| {
        at(
            5,
            ErrorCode::DataType,
            "OBX-5 must be an exact number (value type NM, or SN without a comparator)",
        )
    })?;
    let unit = if o.units.code.is_empty() {
        &o.units.text
    } else {
        &o.units.code
    };
    if unit.is_empty() {
        return Err(at(
            6,
            ErrorCode::RequiredFieldMissing,
            "OBX-6 units are required",
        ));
    }
    let collected = o
        .observed_at
        .or(msg.orders[order].observed_at)
        .ok_or_else(|| {
            at(
                14,
                ErrorCode::RequiredFieldMissing,
                "OBX-14 or OBR-7 observation time is required",
            )
        })?;
    let (low, high, range_note) = match hl7::reference_range(&o.range) {
        Some((l, h)) => (l, h, None),
        None => (
            None,
            None,
            Some("The laboratory's reference range could not be read.".to_string()),
        ),
    };
    let name = if o.code.text.is_empty() {
        domain::labs::reference(&code)
            .map(|r| r.name.clone())
            .unwrap_or_else(|| code.clone())
    } else {
        o.code.text.clone()
    };
    let input = LabInput {
        code,
        name: Some(name),
        value,
        unit: unit.clone(),
        reference_low: low,
        reference_high: high,
        collected_at: collected,
    };
    let mut lab = parse_lab(&input).map_err(|e| {
        let why = match e {
            AppError::Validation(errs) => errs
                .iter()
                .map(|f| format!("{} {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; "),
            _ => "the result is not valid".into(),
        };
        at(5, ErrorCode::DataType, &why)
    })?;
    let ours = lab.flag;
    let theirs = hl7::sender_flag(&o.flags);
    let (flag, disagreement) = reconcile(ours, theirs);
    lab.flag = flag;
    let comments =
        (!o.notes.is_empty()).then(|| format!("Laboratory comment: {}", o.notes.join(" ")));
    let warning: Vec<String> = [lab.warning.take(), disagreement, range_note, comments]
        .into_iter()
        .flatten()
        .collect();
    lab.warning = (!warning.is_empty()).then(|| {
        let w = warning.join(" ");
        w.chars().take(2000).collect()
    });
    Ok(Some(Prepared {
        lab,
        position: o.position,
        sender_flag: (!o.flags.is_empty()).then(|| o.flags.join("~")),
        sender_range: (!o.range.is_empty()).then(|| o.range.clone()),
        our_flag: ours.map(|f| f.as_str().to_string()),
    }))
}

/// Audit a message that stored nothing now (its own transaction):
/// `outcome` is `error` or `duplicate`.
async fn audit_unstored(
    db: &store::Db,
    user: &AuthUser,
    outcome: &str,
    code: AckCode,
    patient: Option<Uuid>,
    issues: &[Issue],
) -> Result<()> {
    let mut ev = audit_event(Some(user), AuditAction::Hl7Import, outcome);
    ev.resource_type = Some("hl7_message".into());
    ev.patient_id = patient;
    ev.detail = Some(
        json!({ "ack": code.as_str(), "errors": issues.iter().map(|i| i.code.code()).collect::<Vec<_>>() }).to_string(),
    );
    let mut tx = db.begin().await?;
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    Ok(())
}

fn refuse(h: &hl7::Header, code: AckCode, issues: Vec<Issue>) -> Outcome {
    let text = match code {
        AckCode::AR => "Message rejected; nothing was stored.",
        _ => "Message not processed; nothing was stored.",
    };
    Outcome {
        code,
        ack: hl7::ack(h, code, text, &issues, &ack_id(), Utc::now()),
        duplicate: false,
        stored: vec![],
        issues,
    }
}

/// The header of a message that failed to parse, read from its MSH alone.
fn header_of_unparsed(raw: &str) -> hl7::Header {
    let first = hl7::unframe(raw).split(['\r', '\n']).next().unwrap_or("");
    hl7::parse(first)
        .map(|m| hl7::header(&m))
        .unwrap_or_default()
}

/// The account that imports arrive under when no one signs in (the CLI's
/// `--user`, the MLLP listener's `AMAL_HL7_MLLP_USER`): an active account
/// whose role may import lab results.
pub async fn acting_user(db: &store::Db, email: &str) -> anyhow::Result<AuthUser> {
    let Some(u) = store::users::by_email(db, &email.trim().to_lowercase()).await? else {
        anyhow::bail!("no account has the e-mail {email}");
    };
    let role = u.role;
    if !u.status.is_active() || !role.may(Action::ImportLabResults) {
        anyhow::bail!("{email} must be an active provider account to import lab results");
    }
    Ok(AuthUser {
        id: u.id,
        role,
        session: Uuid::nil(),
    })
}

/// A message longer than `limit` bytes (of which `head` is the start): not
/// read, answered AR, audited.
pub async fn refuse_oversized(
    db: &store::Db,
    user: &AuthUser,
    head: &str,
    limit: usize,
) -> Result<Outcome> {
    user.require(Action::ImportLabResults)?;
    let issue = Issue::new(
        ErrorCode::ApplicationError,
        format!("the message is longer than {limit} bytes and was not read"),
    );
    let out = refuse(&header_of_unparsed(head), AckCode::AR, vec![issue]);
    audit_unstored(db, user, "error", AckCode::AR, None, &out.issues).await?;
    Ok(out)
}

/// The answer when our own side fails (database unavailable): AE with
/// table 0357 code 207, nothing stored, so the sender sends it again.
pub fn unavailable(raw: &str) -> Outcome {
    let issue = Issue::new(
        ErrorCode::ApplicationError,
        "the record system cannot store results right now; send the message again later",
    );
    refuse(&header_of_unparsed(raw), AckCode::AE, vec![issue])
}

/// Import one ORU^R01 message as `user`. Errors are `Err` only for our own
/// failures (database); every answer about the message is an [`Outcome`].
pub async fn import(db: &store::Db, user: &AuthUser, raw: &str) -> Result<Outcome> {
    user.require(Action::ImportLabResults)?;
    let m = match hl7::parse(raw) {
        Ok(m) => m,
        Err(issue) => {
            let out = refuse(&header_of_unparsed(raw), AckCode::AR, vec![issue]);
            audit_unstored(db, user, "error", AckCode::AR, None, &out.issues).await?;
            return Ok(out);
        }
    };
    let h = hl7::header(&m);
    let msg = match hl7::oru_r01(&m) {
        Ok(o) => o,
        Err(issue) => {
            let out = refuse(&h, AckCode::AR, vec![issue]);
            audit_unstored(db, user, "error", AckCode::AR, None, &out.issues).await?;
            return Ok(out);
        }
    };
    let sender = sender_of(&h);
    if let Some(prev) = store::hl7::find(db, &sender, &h.control_id).await? {
        return replay(db, user, prev).await;
    }

    // The patient: MRN in PID-3, checked against birth date and family name.
    let pid = &msg.patient;
    let pid_issue = |f: usize, code: ErrorCode, why: &str| {
        Issue::new(code, why.to_string()).at("PID", pid.position, f)
    };
    let Some(mrn) = pid.mrn() else {
        let out = refuse(
            &h,
            AckCode::AE,
            vec![pid_issue(
                3,
                ErrorCode::RequiredFieldMissing,
                "PID-3 must carry the patient's MRN",
            )],
        );
        audit_unstored(db, user, "error", AckCode::AE, None, &out.issues).await?;
        return Ok(out);
    };
    let filter = store::fhir::PatientFilter {
        mrn: Some(mrn.to_string()),
        ..Default::default()
    };
    let search = store::fhir::Search {
        limit: 1,
        ..Default::default()
    };
    let patient = store::fhir::patients(db, &search, &filter)
        .await?
        .into_iter()
        .next();
    let check = match &patient {
        None => Some(pid_issue(
            3,
            ErrorCode::UnknownKey,
            "no patient has the MRN in PID-3",
        )),
        Some(p) => {
            if pid
                .birth_date
                .map(|d| d.format("%Y-%m-%d").to_string())
                .as_deref()
                != Some(p.birth_date.as_str())
            {
                Some(pid_issue(
                    7,
                    ErrorCode::UnknownKey,
                    "PID-7 birth date does not match the patient with this MRN",
                ))
            } else if domain::text::fold(&pid.family) != domain::text::fold(&p.family_name) {
                Some(pid_issue(
                    5,
                    ErrorCode::UnknownKey,
                    "PID-5 family name does not match the patient with this MRN",
                ))
            } else {
                None
            }
        }
    };
    let patient = match (check, patient) {
        (None, Some(p)) => p,
        (issue, p) => {
            let issues = issue.into_iter().collect();
            let out = refuse(&h, AckCode::AE, issues);
            audit_unstored(db, user, "error", AckCode::AE, p.map(|p| p.id), &out.issues).await?;
            return Ok(out);
        }
    };

    // Every result, or none.
    let mut prepared = Vec::new();
    let mut issues = Vec::new();
    for (i, order) in msg.orders.iter().enumerate() {
        for o in &order.results {
            match prepare(&m, &msg, i, o) {
                Ok(Some(p)) => prepared.push(p),
                Ok(None) => {}
                Err(e) => issues.push(e),
            }
        }
    }
    if prepared.is_empty() && issues.is_empty() {
        issues.push(Issue::new(
            ErrorCode::RequiredFieldMissing,
            "no OBX carries a result that can be stored",
        ));
    }
    if !issues.is_empty() {
        let out = refuse(&h, AckCode::AE, issues);
        audit_unstored(
            db,
            user,
            "error",
            AckCode::AE,
            Some(patient.id),
            &out.issues,
        )
        .await?;
        return Ok(out);
    }

    let message_id = Uuid::now_v7();
    let text = format!("{} result(s) stored.", prepared.len());
    let ack = hl7::ack(&h, AckCode::AA, &text, &[], &ack_id(), Utc::now());
    let mut tx = db.begin().await?;
    let fresh = store::hl7::insert_message(
        &mut tx,
        &store::hl7::NewMessage {
            id: message_id,
            sender: &sender,
            control_id: &h.control_id,
            patient_id: patient.id,
            ack_code: AckCode::AA.as_str(),
            ack: &ack,
            result_count: prepared.len() as i64,
            received_by: user.id,
        },
    )
    .await?;
    if !fresh {
        // The same message arrived concurrently and won.
        drop(tx);
        let prev = store::hl7::find(db, &sender, &h.control_id)
            .await?
            .ok_or(AppError::NotFound)?;
        return replay(db, user, prev).await;
    }
    let mut stored = Vec::with_capacity(prepared.len());
    let mut events = Vec::with_capacity(prepared.len() + 1);
    for p in &prepared {
        let row = store::labs::insert(&mut tx, patient.id, user.id, &p.lab).await?;
        store::hl7::insert_result(
            &mut tx,
            &store::hl7::NewResult {
                lab_id: row.id,
                message_id,
                obx_position: p.position as i64,
                sender_flag: p.sender_flag.as_deref(),
                sender_range: p.sender_range.as_deref(),
                our_flag: p.our_flag.as_deref(),
            },
        )
        .await?;
        let mut ev = audit_event(Some(user), AuditAction::LabCreate, "success");
        ev.resource_type = Some("lab".into());
        ev.resource_id = Some(row.id);
        ev.patient_id = Some(patient.id);
        ev.detail = Some(
            json!({ "code": row.code, "flag": row.flag, "source": "hl7", "messageId": message_id })
                .to_string(),
        );
        events.push(ev);
        stored.push(row.id);
    }
    let mut ev = audit_event(Some(user), AuditAction::Hl7Import, "success");
    ev.resource_type = Some("hl7_message".into());
    ev.resource_id = Some(message_id);
    ev.patient_id = Some(patient.id);
    ev.detail = Some(json!({ "ack": "AA", "results": stored.len() }).to_string());
    events.push(ev);
    store::audit::append(&mut tx, &events).await?;
    tx.commit().await?;
    tracing::info!(messageId = %message_id, patientId = %patient.id, results = stored.len(), "hl7 lab results imported");
    Ok(Outcome {
        code: AckCode::AA,
        ack,
        duplicate: false,
        stored,
        issues: vec![],
    })
}

/// A repeated message: audited, nothing stored, the first ACK again.
async fn replay(db: &store::Db, user: &AuthUser, prev: store::hl7::MessageRow) -> Result<Outcome> {
    let code = AckCode::parse(&prev.ack_code).unwrap_or(AckCode::AA);
    audit_unstored(db, user, "duplicate", code, Some(prev.patient_id), &[]).await?;
    Ok(Outcome {
        code,
        ack: prev.ack,
        duplicate: true,
        stored: vec![],
        issues: vec![],
    })
}
