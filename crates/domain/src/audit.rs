//! Every audited action, in one place (SPEC §7). The audit trail stores the
//! dotted name; adding an action here is the only way to audit a new one.

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    AuthSignup,
    AuthSignin,
    AuthRefresh,
    AuthLogout,
    UserCreate,
    UserUpdate,
    InviteCreate,
    InviteRevoke,
    /// A 401/403 on a patient's resource (the request layer writes it).
    AccessRefused,
    PatientCreate,
    PatientDuplicateWarning,
    PatientRead,
    PatientUpdate,
    PatientSearch,
    PatientOverview,
    OverviewDay,
    AllergyCreate,
    AllergyUpdate,
    AllergyNoneStated,
    ProblemCreate,
    ProblemUpdate,
    NoteCreate,
    NoteList,
    NoteRead,
    NoteUpdate,
    NoteFinalize,
    NoteAddendum,
    NoteDiscard,
    PrescriptionCreate,
    PrescriptionList,
    PrescriptionRead,
    PrescriptionIssue,
    PrescriptionCancel,
    LabCreate,
    LabList,
    LabRead,
    LabTrend,
    LabReview,
    VitalsCreate,
    VitalsList,
    AiGenerateNote,
    AiExplain,
    /// A FHIR read of one resource (`GET /fhir/R4/{type}/{id}`).
    FhirRead,
    /// A FHIR search (one event per patient whose data the page shows).
    FhirSearch,
    /// `Patient/{id}/$everything`.
    FhirEverything,
    /// An HL7 v2 message received (accepted, errored or rejected).
    Hl7Import,
    /// A FHIR bulk export started (system level or one patient).
    FhirExport,
    /// A file of a FHIR bulk export downloaded.
    FhirExportDownload,
    /// A care team created, renamed, made default or deleted.
    CareTeamChange,
    /// A clinician or patient added to or removed from a care team.
    CareTeamMembership,
    /// Emergency access to a patient outside one's care teams began.
    BreakGlassStart,
    /// A break-glass session reached its time box.
    BreakGlassEnd,
    /// An admin reviewed a break-glass session.
    BreakGlassReview,
    /// A provider or nurse account created by an admin was flagged for review.
    AccountFlagged,
    /// An admin reviewed (and with the two-person rule approved) a flagged account.
    AccountReview,
    /// A TOTP second factor enrolled (started or confirmed).
    AuthMfaEnrol,
    /// A second-factor code checked at sign-in (success or failure).
    AuthMfaVerify,
    /// An administrator removed a user's second factor.
    AuthMfaReset,
    /// A user changed their own password.
    AuthPasswordChange,
    /// An administrator issued a set-password link.
    AuthPasswordReset,
    /// A password set through a set-password link.
    AuthPasswordSet,
    /// Sessions ended from the session list or by an administrator.
    AuthSessionRevoke,
    /// A backup archive written (`amal backup` or the schedule).
    BackupCreate,
    /// A backup restored over the database (written into the restored one).
    BackupRestore,
    /// The schema migrated up or rolled back (`amal migrate`, `serve`).
    SchemaMigrate,
    /// `serve` started with its settings: names of the settings that changed
    /// since the previous start, non-secret values, keyed fingerprints of secrets.
    ConfigLoaded,
}

impl AuditAction {
    pub const ALL: [AuditAction; 66] = [
        AuditAction::AuthSignup,
        AuditAction::AuthSignin,
        AuditAction::AuthRefresh,
        AuditAction::AuthLogout,
        AuditAction::UserCreate,
        AuditAction::UserUpdate,
        AuditAction::InviteCreate,
        AuditAction::InviteRevoke,
        AuditAction::AccessRefused,
        AuditAction::PatientCreate,
        AuditAction::PatientDuplicateWarning,
        AuditAction::PatientRead,
        AuditAction::PatientUpdate,
        AuditAction::PatientSearch,
        AuditAction::PatientOverview,
        AuditAction::OverviewDay,
        AuditAction::AllergyCreate,
        AuditAction::AllergyUpdate,
        AuditAction::AllergyNoneStated,
        AuditAction::ProblemCreate,
        AuditAction::ProblemUpdate,
        AuditAction::NoteCreate,
        AuditAction::NoteList,
        AuditAction::NoteRead,
        AuditAction::NoteUpdate,
        AuditAction::NoteFinalize,
        AuditAction::NoteAddendum,
        AuditAction::NoteDiscard,
        AuditAction::PrescriptionCreate,
        AuditAction::PrescriptionList,
        AuditAction::PrescriptionRead,
        AuditAction::PrescriptionIssue,
        AuditAction::PrescriptionCancel,
        AuditAction::LabCreate,
        AuditAction::LabList,
        AuditAction::LabRead,
        AuditAction::LabTrend,
        AuditAction::LabReview,
        AuditAction::VitalsCreate,
        AuditAction::VitalsList,
        AuditAction::AiGenerateNote,
        AuditAction::AiExplain,
        AuditAction::FhirRead,
        AuditAction::FhirSearch,
        AuditAction::FhirEverything,
        AuditAction::Hl7Import,
        AuditAction::FhirExport,
        AuditAction::FhirExportDownload,
        AuditAction::CareTeamChange,
        AuditAction::CareTeamMembership,
        AuditAction::BreakGlassStart,
        AuditAction::BreakGlassEnd,
        AuditAction::BreakGlassReview,
        AuditAction::AccountFlagged,
        AuditAction::AccountReview,
        AuditAction::AuthMfaEnrol,
        AuditAction::AuthMfaVerify,
        AuditAction::AuthMfaReset,
        AuditAction::AuthPasswordChange,
        AuditAction::AuthPasswordReset,
        AuditAction::AuthPasswordSet,
        AuditAction::AuthSessionRevoke,
        AuditAction::BackupCreate,
        AuditAction::BackupRestore,
        AuditAction::SchemaMigrate,
        AuditAction::ConfigLoaded,
    ];

    /// The name stored in the audit trail and used in `?action=` filters.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::AuthSignup => "auth.signup",
            AuditAction::AuthSignin => "auth.signin",
            AuditAction::AuthRefresh => "auth.refresh",
            AuditAction::AuthLogout => "auth.logout",
            AuditAction::UserCreate => "user.create",
            AuditAction::UserUpdate => "user.update",
            AuditAction::InviteCreate => "invite.create",
            AuditAction::InviteRevoke => "invite.revoke",
            AuditAction::AccessRefused => "access.refused",
            AuditAction::PatientCreate => "patient.create",
            AuditAction::PatientDuplicateWarning => "patient.duplicate_warning",
            AuditAction::PatientRead => "patient.read",
            AuditAction::PatientUpdate => "patient.update",
            AuditAction::PatientSearch => "patient.search",
            AuditAction::PatientOverview => "patient.overview",
            AuditAction::OverviewDay => "overview.day",
            AuditAction::AllergyCreate => "allergy.create",
            AuditAction::AllergyUpdate => "allergy.update",
            AuditAction::AllergyNoneStated => "allergy.none_stated",
            AuditAction::ProblemCreate => "problem.create",
            AuditAction::ProblemUpdate => "problem.update",
            AuditAction::NoteCreate => "note.create",
            AuditAction::NoteList => "note.list",
            AuditAction::NoteRead => "note.read",
            AuditAction::NoteUpdate => "note.update",
            AuditAction::NoteFinalize => "note.finalize",
            AuditAction::NoteAddendum => "note.addendum",
            AuditAction::NoteDiscard => "note.discard",
            AuditAction::PrescriptionCreate => "prescription.create",
            AuditAction::PrescriptionList => "prescription.list",
            AuditAction::PrescriptionRead => "prescription.read",
            AuditAction::PrescriptionIssue => "prescription.issue",
            AuditAction::PrescriptionCancel => "prescription.cancel",
            AuditAction::LabCreate => "lab.create",
            AuditAction::LabList => "lab.list",
            AuditAction::LabRead => "lab.read",
            AuditAction::LabTrend => "lab.trend",
            AuditAction::LabReview => "lab.review",
            AuditAction::VitalsCreate => "vitals.create",
            AuditAction::VitalsList => "vitals.list",
            AuditAction::AiGenerateNote => "ai.generate_note",
            AuditAction::AiExplain => "ai.explain",
            AuditAction::FhirRead => "fhir.read",
            AuditAction::FhirSearch => "fhir.search",
            AuditAction::FhirEverything => "fhir.everything",
            AuditAction::Hl7Import => "hl7.import",
            AuditAction::FhirExport => "fhir.export",
            AuditAction::FhirExportDownload => "fhir.export.download",
            AuditAction::CareTeamChange => "care_team.change",
            AuditAction::CareTeamMembership => "care_team.membership",
            AuditAction::BreakGlassStart => "break_glass.start",
            AuditAction::BreakGlassEnd => "break_glass.end",
            AuditAction::BreakGlassReview => "break_glass.review",
            AuditAction::AccountFlagged => "account.flagged",
            AuditAction::AccountReview => "account.review",
            AuditAction::AuthMfaEnrol => "auth.mfa.enrol",
            AuditAction::AuthMfaVerify => "auth.mfa.verify",
            AuditAction::AuthMfaReset => "auth.mfa.reset",
            AuditAction::AuthPasswordChange => "auth.password.change",
            AuditAction::AuthPasswordReset => "auth.password.reset",
            AuditAction::AuthPasswordSet => "auth.password.set",
            AuditAction::AuthSessionRevoke => "auth.session.revoke",
            AuditAction::BackupCreate => "backup.create",
            AuditAction::BackupRestore => "backup.restore",
            AuditAction::SchemaMigrate => "schema.migrate",
            AuditAction::ConfigLoaded => "config.loaded",
        }
    }

    /// The action with this stored name, if this release knows it.
    pub fn parse(s: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for a in AuditAction::ALL {
            assert!(seen.insert(a.as_str()), "duplicate {}", a.as_str());
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("note.sing"), None);
    }
}
