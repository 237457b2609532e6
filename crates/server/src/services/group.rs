//! The FHIR Group: a care team seen as the group of its patients
//! (`GET /fhir/R4/Group/{id}`, and the scope of `Group/{id}/$export`).
//!
//! Who may use a Group: the team's own clinicians (membership, not
//! break-glass: a Group is the whole team) and admins, who manage teams and
//! already see their patient lists. A clinician outside the team is refused
//! 403 and the refusal audited (`access.refused` on the team), as for a
//! chart outside one's teams. See docs/INTEROP.md.

use domain::audit::AuditAction;
use domain::roles::Action;
use serde_json::{json, Value};
use store::care::TeamRow;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::services::{audit_event, record_durably};
use crate::state::AppState;

/// On what grounds a user uses a Group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grounds {
    /// A clinician who is a member of the team.
    Member,
    /// An admin (the admin action of the use case).
    Admin,
}

/// The team behind `Group/{id}` if `user` may use it: admins with
/// `admin`, else the team's members with `clinician`. 404 for an unknown
/// team, 403 (audited) for anyone else.
pub async fn require(
    st: &AppState,
    user: &AuthUser,
    id: &str,
    clinician: Action,
    admin: Action,
) -> Result<(TeamRow, Grounds)> {
    let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound)?;
    let grounds = if user.role.may(admin) {
        Grounds::Admin
    } else {
        user.require(clinician)?;
        Grounds::Member
    };
    let team = store::care::team(&st.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    if grounds == Grounds::Member && !store::care::is_member(&st.db, id, user.id).await? {
        let mut ev = audit_event(Some(user), AuditAction::AccessRefused, "forbidden");
        ev.resource_type = Some("care_team".into());
        ev.resource_id = Some(id);
        ev.detail = Some(
            json!({ "fhirType": "Group", "reason": "not a member of the care team" }).to_string(),
        );
        record_durably(st, ev).await?;
        return Err(AppError::Forbidden(
            "You are not a member of this care team, so its group is not yours to read or export."
                .into(),
        ));
    }
    Ok((team, grounds))
}

/// `GET /fhir/R4/Group/{id}`: the team's name and its patients as
/// references. Audited as one `fhir.read` of the team with the member
/// count (the Group names no demographics; each patient's own data is
/// audited when it is read).
pub async fn read(st: &AppState, user: &AuthUser, id: &str) -> Result<Value> {
    let (team, _) = require(st, user, id, Action::ReadPatient, Action::ManageUsers).await?;
    let patients = store::care::patient_ids(&st.db, team.id).await?;
    let mut ev = audit_event(Some(user), AuditAction::FhirRead, "success");
    ev.resource_type = Some("Group".into());
    ev.resource_id = Some(team.id);
    ev.detail = Some(json!({ "fhirType": "Group", "count": patients.len() }).to_string());
    record_durably(st, ev).await?;
    Ok(crate::fhir::resources::group(&team, &patients))
}
