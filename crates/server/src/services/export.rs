//! FHIR bulk export (`$export`): asynchronous kick-off, status polling with
//! progress, one NDJSON file per resource type, a manifest, and files
//! removed after the retention period. A system-level export (every
//! patient) is for admins only and is audited and alerted (admins see no
//! patient data in the app, so a clinical export by one must be noticed);
//! one patient's export is for providers; a Group's (a care team's
//! patients) for the team's providers, or admins (alerted like a system
//! export). One code path: the scope only narrows the same queries.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use domain::audit::AuditAction;
use domain::roles::Action;
use domain::states::ExportStatus;
use serde_json::{json, Value};
use store::export::ExportJob;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::fhir::params::{Parsed, ResourceType};
use crate::services::fhir::fetch;
use crate::services::{audit_event, record_durably};
use crate::state::AppState;

/// How long export files are kept after the kick-off.
pub const RETENTION_HOURS: i64 = 24;

/// The types an export writes, in `ResourceType::ALL` order. Practitioners
/// are not patient data: they come with a system-level export only.
fn export_types(system: bool) -> Vec<ResourceType> {
    ResourceType::ALL
        .into_iter()
        .filter(|t| system || *t != ResourceType::Practitioner)
        .collect()
}

/// Where a job's files live.
pub fn job_dir(st: &AppState, id: Uuid) -> PathBuf {
    st.config.data_dir.join("exports").join(id.to_string())
}

/// What a kick-off asks for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub types: Vec<ResourceType>,
    /// `_since`: only resources last updated at or after this instant.
    pub since: Option<DateTime<Utc>>,
}

/// `_type=Patient,Observation` (default: every type the export covers) and
/// `_since`.
fn parse_request(system: bool, pairs: &[(String, String)]) -> Result<Request> {
    let all = export_types(system);
    let mut chosen = None;
    let mut since = None;
    for (k, v) in pairs {
        match k.as_str() {
            "_since" => {
                since = Some(crate::fhir::params::since(v).map_err(|e| AppError::BadRequest(e.0))?);
            }
            "_type" => {
                let mut list = Vec::new();
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    match ResourceType::parse(t).filter(|t| all.contains(t)) {
                        Some(t) if !list.contains(&t) => list.push(t),
                        Some(_) => {}
                        None => {
                            return Err(AppError::BadRequest(
                                "_type names a resource type this export does not cover".into(),
                            ))
                        }
                    }
                }
                chosen = Some(list);
            }
            "_outputFormat" => {
                if !matches!(
                    v.as_str(),
                    "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                ) {
                    return Err(AppError::BadRequest(
                        "_outputFormat must be application/fhir+ndjson".into(),
                    ));
                }
            }
            _ => {
                return Err(AppError::BadRequest(
                    "$export takes only _type, _since and _outputFormat here".into(),
                ))
            }
        }
    }
    Ok(Request {
        types: chosen.filter(|l| !l.is_empty()).unwrap_or(all),
        since,
    })
}

/// What an export covers, as the kick-off URL names it.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// `$export`: every patient (admins).
    System,
    /// `Patient/{id}/$export`: one patient (providers with access).
    Patient(&'a str),
    /// `Group/{id}/$export`: a care team's patients (its providers, or
    /// admins, audited and alerted as a system export).
    Group(&'a str),
}

/// A scope checked against the user: the ids that narrow the queries.
struct Resolved {
    patient: Option<Uuid>,
    group: Option<Uuid>,
    /// Started by an admin: alerted (admins see no patient data in the app).
    by_admin: bool,
}

impl Resolved {
    fn name(&self) -> &'static str {
        match (self.patient, self.group) {
            (Some(_), _) => "patient",
            (None, Some(_)) => "group",
            (None, None) => "system",
        }
    }
}

async fn resolve(st: &AppState, user: &AuthUser, scope: Scope<'_>) -> Result<Resolved> {
    Ok(match scope {
        Scope::System => {
            user.require(Action::ExportAll)?;
            Resolved {
                patient: None,
                group: None,
                by_admin: true,
            }
        }
        Scope::Patient(id) => {
            user.require(Action::ExportPatient)?;
            let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound)?;
            crate::services::require_patient(st, user, id).await?;
            Resolved {
                patient: Some(id),
                group: None,
                by_admin: false,
            }
        }
        Scope::Group(id) => {
            let (team, grounds) = crate::services::group::require(
                st,
                user,
                id,
                Action::ExportPatient,
                Action::ExportAll,
            )
            .await?;
            Resolved {
                patient: None,
                group: Some(team.id),
                by_admin: grounds == crate::services::group::Grounds::Admin,
            }
        }
    })
}

/// Start an export of `scope`. Answers the new job's id; the work runs in
/// the background.
pub async fn kickoff(
    st: &AppState,
    user: &AuthUser,
    scope: Scope<'_>,
    prefer_async: bool,
    pairs: &[(String, String)],
) -> Result<Uuid> {
    let scope = resolve(st, user, scope).await?;
    if !prefer_async {
        return Err(AppError::BadRequest(
            "$export is asynchronous: send `Prefer: respond-async`.".into(),
        ));
    }
    let system = scope.name() == "system";
    let req = parse_request(system, pairs)?;
    let types = req.types.clone();
    let now = store::now();
    let job = ExportJob {
        id: Uuid::now_v7(),
        patient_id: scope.patient,
        group_id: scope.group,
        requested_by: user.id,
        types: types
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(","),
        status: ExportStatus::Running,
        progress: "queued".into(),
        output: None,
        created_at: now,
        completed_at: None,
        expires_at: now + chrono::Duration::hours(RETENTION_HOURS),
    };
    let mut tx = st.db.begin().await?;
    store::export::insert(&mut tx, &job).await?;
    let mut ev = audit_event(Some(user), AuditAction::FhirExport, "success");
    ev.resource_type = Some("export".into());
    ev.resource_id = Some(job.id);
    ev.patient_id = scope.patient;
    ev.detail = Some(json!({ "scope": scope.name(), "groupId": scope.group, "types": job.types, "since": req.since.map(crate::fhir::resources::instant) }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    if scope.by_admin {
        // Alerted: counted (the AdminBulkExport rule) and logged at warn.
        st.metrics.incr("fhir.export.admin");
        tracing::warn!(exportId = %job.id, userId = %user.id, scope = scope.name(), "FHIR bulk export of clinical data started by an administrator");
    }
    st.metrics.incr("fhir.export.started");
    let st2 = st.clone();
    let id = job.id;
    tokio::spawn(async move {
        if let Err(e) = run(&st2, &job, &types, req.since).await {
            tracing::error!(exportId = %id, error = %e, "FHIR export failed");
            let _ = store::export::finish(&st2.db, id, ExportStatus::Failed, "failed", None).await;
        }
    });
    Ok(id)
}

/// Write the NDJSON files of a job, updating its progress as it goes.
async fn run(
    st: &AppState,
    job: &ExportJob,
    types: &[ResourceType],
    since: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let dir = job_dir(st, job.id);
    std::fs::create_dir_all(&dir)?;
    let mut output = Vec::new();
    for (i, ty) in types.iter().enumerate() {
        let path = dir.join(format!("{}.ndjson", ty.as_str()));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut p = Parsed::default();
        p.search.patient = job.patient_id;
        p.search.team = job.group_id;
        p.search.limit = 1000;
        p.search.updated = since
            .map(store::fhir::Bound::AtOrAfter)
            .into_iter()
            .collect();
        let mut n = 0usize;
        loop {
            let page = fetch(st, *ty, &p)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let full = page.len() as i64 == p.search.limit;
            crate::services::fhir::resume(&mut p, page.last());
            for f in page {
                serde_json::to_writer(&mut file, &f.resource)?;
                file.write_all(b"\n")?;
                n += 1;
            }
            if !full {
                break;
            }
            let progress = format!(
                "{} of {} types; {}: {n} written",
                i,
                types.len(),
                ty.as_str()
            );
            store::export::set_progress(&st.db, job.id, &progress).await?;
        }
        file.flush()?;
        output.push(json!({ "type": ty.as_str(), "count": n }));
        let progress = format!("{} of {} types done", i + 1, types.len());
        store::export::set_progress(&st.db, job.id, &progress).await?;
    }
    store::export::finish(
        &st.db,
        job.id,
        ExportStatus::Complete,
        "complete",
        Some(&Value::Array(output).to_string()),
    )
    .await?;
    st.metrics.incr("fhir.export.completed");
    Ok(())
}

/// A job, for its requester only (anyone else: 404, nothing is revealed).
pub async fn job_for(st: &AppState, user: &AuthUser, id: &str) -> Result<ExportJob> {
    let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound)?;
    store::export::get(&st.db, id)
        .await?
        .filter(|j| j.requested_by == user.id && j.expires_at > store::now())
        .ok_or(AppError::NotFound)
}

/// What a status poll answers.
pub enum Status {
    Running(String),
    Complete(Value),
    Failed,
}

/// `GET …/$export-status/{id}`: progress, or the manifest.
pub async fn status(st: &AppState, user: &AuthUser, id: &str, base: &str) -> Result<Status> {
    let job = job_for(st, user, id).await?;
    Ok(match job.status {
        ExportStatus::Running => Status::Running(job.progress),
        ExportStatus::Complete => {
            let outputs: Vec<Value> =
                serde_json::from_str(job.output.as_deref().unwrap_or("[]")).unwrap_or_default();
            let output: Vec<Value> = outputs
                .iter()
                .map(|o| {
                    let ty = o["type"].as_str().unwrap_or_default();
                    json!({ "type": ty, "url": format!("{base}/$export-file/{}/{ty}.ndjson", job.id), "count": o["count"] })
                })
                .collect();
            let request = match (job.patient_id, job.group_id) {
                (Some(p), _) => format!("{base}/Patient/{p}/$export"),
                (None, Some(g)) => format!("{base}/Group/{g}/$export"),
                (None, None) => format!("{base}/$export"),
            };
            Status::Complete(json!({
                "transactionTime": crate::fhir::resources::instant(job.created_at),
                "request": request,
                "requiresAccessToken": true,
                "output": output,
                "error": [],
            }))
        }
        ExportStatus::Failed => Status::Failed,
    })
}

/// `GET …/$export-file/{id}/{Type}.ndjson`: one file of a finished job.
pub async fn file(st: &AppState, user: &AuthUser, id: &str, name: &str) -> Result<Vec<u8>> {
    let job = job_for(st, user, id).await?;
    let ty = name
        .strip_suffix(".ndjson")
        .and_then(ResourceType::parse)
        .filter(|t| job.types.split(',').any(|x| x == t.as_str()))
        .ok_or(AppError::NotFound)?;
    if job.status != ExportStatus::Complete {
        return Err(AppError::NotFound);
    }
    let bytes = std::fs::read(job_dir(st, job.id).join(format!("{}.ndjson", ty.as_str())))
        .map_err(|_| AppError::NotFound)?;
    let mut ev = audit_event(Some(user), AuditAction::FhirExportDownload, "success");
    ev.resource_type = Some("export".into());
    ev.resource_id = Some(job.id);
    ev.patient_id = job.patient_id;
    ev.detail = Some(json!({ "fhirType": ty.as_str() }).to_string());
    record_durably(st, ev).await?;
    Ok(bytes)
}

/// `DELETE …/$export-status/{id}`: forget the job and remove its files now.
pub async fn cancel(st: &AppState, user: &AuthUser, id: &str) -> Result<()> {
    let job = job_for(st, user, id).await?;
    remove(st, job.id).await
}

async fn remove(st: &AppState, id: Uuid) -> Result<()> {
    let dir = job_dir(st, id);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| AppError::Internal(e.into()))?;
    }
    store::export::delete(&st.db, id).await?;
    Ok(())
}

/// Remove the files and jobs whose retention has passed (housekeeping).
pub async fn sweep(st: &AppState, now: DateTime<Utc>) -> Result<usize> {
    let ids = store::export::expired(&st.db, now).await?;
    for id in &ids {
        remove(st, *id).await?;
    }
    Ok(ids.len())
}
