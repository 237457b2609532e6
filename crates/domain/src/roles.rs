//! Roles and the role × action permission table (SPEC §2).
//!
//! This table is the single answer to "may role R do action A"; handlers ask
//! it, and the role-matrix tests walk it, so the two can never disagree.

use serde::{Deserialize, Serialize};

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Provider,
    Nurse,
    Staff,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Provider, Role::Nurse, Role::Staff];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Provider => "provider",
            Role::Nurse => "nurse",
            Role::Staff => "staff",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Providers and nurses: the roles that author clinical records and
    /// belong to care teams.
    pub fn is_clinician(self) -> bool {
        matches!(self, Role::Provider | Role::Nurse)
    }

    /// Whether this role may perform `action`.
    pub fn may(self, action: Action) -> bool {
        allowed_roles(action).contains(&self)
    }
}

crate::states::decode_from_string!(Role, "role");

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a signed-in user can ask the system to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    // Administration
    ManageUsers,
    ReadMetrics,
    ReadAudit,
    // Demographics
    SearchPatients,
    ReadPatient,
    CreatePatient,
    UpdatePatient,
    // Clinical chart
    ReadChart,
    RecordAllergy,
    RecordProblem,
    // Vital signs
    ReadVitals,
    RecordVitals,
    // Notes
    ReadNotes,
    WriteDraftNote,
    FinalizeNote,
    AddAddendum,
    // Prescriptions
    ReadPrescriptions,
    DraftPrescription,
    IssuePrescription,
    CancelPrescription,
    // Labs
    ReadLabs,
    RecordLab,
    ReviewLab,
    // AI assistance
    UseAi,
    // The signed-in clinician's day
    ReadOwnDay,
    // Interoperability: lab results arriving as HL7 v2 messages
    ImportLabResults,
    // FHIR bulk export of one patient's chart
    ExportPatient,
    // FHIR bulk export of every patient (audited and alerted)
    ExportAll,
}

impl Action {
    pub const ALL: [Action; 28] = [
        Action::ManageUsers,
        Action::ReadMetrics,
        Action::ReadAudit,
        Action::SearchPatients,
        Action::ReadPatient,
        Action::CreatePatient,
        Action::UpdatePatient,
        Action::ReadChart,
        Action::RecordAllergy,
        Action::RecordProblem,
        Action::ReadVitals,
        Action::RecordVitals,
        Action::ReadNotes,
        Action::WriteDraftNote,
        Action::FinalizeNote,
        Action::AddAddendum,
        Action::ReadPrescriptions,
        Action::DraftPrescription,
        Action::IssuePrescription,
        Action::CancelPrescription,
        Action::ReadLabs,
        Action::RecordLab,
        Action::ReviewLab,
        Action::UseAi,
        Action::ReadOwnDay,
        Action::ImportLabResults,
        Action::ExportPatient,
        Action::ExportAll,
    ];
}

use Role::{Admin, Nurse, Provider, Staff};

/// The permission table. Admins see no patient data at all; staff see
/// demographics only; nurses may not finalize notes or issue/cancel
/// prescriptions; providers may do everything clinical.
pub fn allowed_roles(action: Action) -> &'static [Role] {
    match action {
        // A system-level export is the one way an admin touches clinical
        // data: for moving the clinic to another system; audited and alerted.
        Action::ManageUsers | Action::ReadMetrics | Action::ReadAudit | Action::ExportAll => {
            &[Admin]
        }
        Action::SearchPatients
        | Action::ReadPatient
        | Action::CreatePatient
        | Action::UpdatePatient => &[Provider, Nurse, Staff],
        Action::ReadChart
        | Action::RecordAllergy
        | Action::RecordProblem
        | Action::ReadVitals
        | Action::RecordVitals
        | Action::ReadNotes
        | Action::WriteDraftNote
        | Action::ReadPrescriptions
        | Action::DraftPrescription
        | Action::ReadLabs
        | Action::RecordLab
        | Action::UseAi
        | Action::ReadOwnDay
        // An addendum is signed by its author; nurses correct their own
        // charting after co-signature this way too.
        | Action::AddAddendum => &[Provider, Nurse],
        Action::FinalizeNote
        | Action::IssuePrescription
        | Action::CancelPrescription
        | Action::ReviewLab
        // A lab interface feeds results for any patient: providers only.
        | Action::ImportLabResults
        | Action::ExportPatient => &[Provider],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_has_no_patient_access() {
        for a in Action::ALL {
            let admin_only = matches!(
                a,
                Action::ManageUsers | Action::ReadMetrics | Action::ReadAudit | Action::ExportAll
            );
            assert_eq!(Admin.may(a), admin_only, "{a:?}");
        }
    }

    #[test]
    fn staff_is_demographics_only() {
        assert!(Staff.may(Action::CreatePatient));
        assert!(!Staff.may(Action::ReadChart));
        assert!(!Staff.may(Action::ReadNotes));
        assert!(!Staff.may(Action::UseAi));
        assert!(!Staff.may(Action::RecordVitals));
        assert!(Nurse.may(Action::RecordVitals));
    }

    #[test]
    fn nurse_cannot_sign_or_issue() {
        assert!(Nurse.may(Action::WriteDraftNote));
        assert!(!Nurse.may(Action::FinalizeNote));
        assert!(!Nurse.may(Action::IssuePrescription));
        assert!(!Nurse.may(Action::CancelPrescription));
    }

    #[test]
    fn role_round_trips() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
