//! Note and prescription state machines (SPEC §6).
//!
//! The server checks every change of a note or a prescription against these
//! tables before it touches the database, so an illegal step (editing a
//! signed note, issuing a cancelled prescription) is refused in one place and
//! answered with 409 whatever the route.

use serde::{Deserialize, Serialize};

/// A step the state machine refused.
///
/// `action` is a verb phrase and `current` a state name, so the message reads
/// as a sentence: "cannot edit a final note", "cannot issue an issued
/// prescription".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} {article} {current} {resource}", article = indefinite_article(self.current))]
pub struct IllegalTransition {
    /// "note" or "prescription".
    pub resource: &'static str,
    /// The state the resource is in (its `as_str`).
    pub current: &'static str,
    /// What was attempted, as a verb phrase.
    pub action: &'static str,
}

fn indefinite_article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// Where a clinical note is in its life.
///
/// A `final` note is signed and never changes again; corrections are added
/// as addenda so the signed text stays exactly what was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteStatus {
    Draft,
    Final,
}

/// What a user can do to a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoteAction {
    /// Change the title or SOAP sections.
    Edit,
    /// Sign the note.
    Finalize,
    /// Append a signed, timestamped addendum.
    AddAddendum,
    /// Throw a draft away (the caller deletes the row).
    Discard,
}

impl NoteAction {
    pub const ALL: [NoteAction; 4] = [
        NoteAction::Edit,
        NoteAction::Finalize,
        NoteAction::AddAddendum,
        NoteAction::Discard,
    ];

    /// A stable snake_case code, for logs and audit details.
    pub fn as_str(self) -> &'static str {
        match self {
            NoteAction::Edit => "edit",
            NoteAction::Finalize => "finalize",
            NoteAction::AddAddendum => "add_addendum",
            NoteAction::Discard => "discard",
        }
    }

    /// The verb phrase used in [`IllegalTransition`] messages.
    pub fn verb(self) -> &'static str {
        match self {
            NoteAction::Edit => "edit",
            NoteAction::Finalize => "finalize",
            NoteAction::AddAddendum => "add an addendum to",
            NoteAction::Discard => "discard",
        }
    }
}

impl NoteStatus {
    pub const ALL: [NoteStatus; 2] = [NoteStatus::Draft, NoteStatus::Final];

    pub fn as_str(self) -> &'static str {
        match self {
            NoteStatus::Draft => "draft",
            NoteStatus::Final => "final",
        }
    }

    pub fn parse(s: &str) -> Option<NoteStatus> {
        NoteStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The state after `action`, or why it is not allowed.
    ///
    /// Edit keeps a draft a draft; Finalize signs a draft; AddAddendum is for
    /// final notes only (a draft is simply edited); Discard is for drafts
    /// only and answers `Draft` because the caller deletes the note.
    pub fn apply(self, action: NoteAction) -> Result<NoteStatus, IllegalTransition> {
        use NoteAction as A;
        use NoteStatus as S;
        match (self, action) {
            (S::Draft, A::Edit) => Ok(S::Draft),
            (S::Draft, A::Finalize) => Ok(S::Final),
            (S::Draft, A::Discard) => Ok(S::Draft),
            (S::Final, A::AddAddendum) => Ok(S::Final),
            (S::Draft, A::AddAddendum) | (S::Final, A::Edit | A::Finalize | A::Discard) => {
                Err(IllegalTransition {
                    resource: "note",
                    current: self.as_str(),
                    action: action.verb(),
                })
            }
        }
    }
}

impl std::fmt::Display for NoteStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a prescription is in its life: draft → issued → cancelled, or
/// draft → cancelled. Cancelled is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrescriptionStatus {
    Draft,
    Issued,
    Cancelled,
}

/// What a prescriber can do to a prescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrescriptionAction {
    Issue,
    Cancel,
}

impl PrescriptionAction {
    pub const ALL: [PrescriptionAction; 2] =
        [PrescriptionAction::Issue, PrescriptionAction::Cancel];

    /// A stable snake_case code; also the verb used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            PrescriptionAction::Issue => "issue",
            PrescriptionAction::Cancel => "cancel",
        }
    }
}

impl PrescriptionStatus {
    pub const ALL: [PrescriptionStatus; 3] = [
        PrescriptionStatus::Draft,
        PrescriptionStatus::Issued,
        PrescriptionStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PrescriptionStatus::Draft => "draft",
            PrescriptionStatus::Issued => "issued",
            PrescriptionStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<PrescriptionStatus> {
        PrescriptionStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// The state after `action`, or why it is not allowed.
    ///
    /// Only a draft can be issued (re-issuing would duplicate a dispensable
    /// order); a draft or an issued prescription can be cancelled; a
    /// cancelled one is final.
    pub fn apply(
        self,
        action: PrescriptionAction,
    ) -> Result<PrescriptionStatus, IllegalTransition> {
        use PrescriptionAction as A;
        use PrescriptionStatus as S;
        match (self, action) {
            (S::Draft, A::Issue) => Ok(S::Issued),
            (S::Draft | S::Issued, A::Cancel) => Ok(S::Cancelled),
            (S::Issued | S::Cancelled, A::Issue) | (S::Cancelled, A::Cancel) => {
                Err(IllegalTransition {
                    resource: "prescription",
                    current: self.as_str(),
                    action: action.as_str(),
                })
            }
        }
    }

    /// Whether the prescription is in force (shown as an active medication).
    pub fn is_active(self) -> bool {
        self == PrescriptionStatus::Issued
    }
}

impl std::fmt::Display for PrescriptionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a FHIR bulk-export job is: running → complete or failed (both final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    Running,
    Complete,
    Failed,
}

impl ExportStatus {
    pub const ALL: [ExportStatus; 3] = [
        ExportStatus::Running,
        ExportStatus::Complete,
        ExportStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::Running => "running",
            ExportStatus::Complete => "complete",
            ExportStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ExportStatus> {
        ExportStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A stored value this release does not know (data from a newer schema?):
/// a state, role, flag, sex or severity column holding something else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {resource} `{value}`")]
pub struct UnknownState {
    /// What the value should have been, e.g. "note state", "lab flag".
    pub resource: &'static str,
    pub value: String,
}

/// Decoding at the row: the store hands out enums, never state strings.
/// `TryFrom<String>` (for sqlx's `#[sqlx(try_from = "String")]`) over the
/// type's `parse`.
macro_rules! decode_from_string {
    ($ty:ty, $resource:literal) => {
        impl TryFrom<String> for $ty {
            type Error = $crate::states::UnknownState;
            fn try_from(value: String) -> Result<Self, $crate::states::UnknownState> {
                <$ty>::parse(&value).ok_or($crate::states::UnknownState {
                    resource: $resource,
                    value,
                })
            }
        }
    };
}
pub(crate) use decode_from_string;

decode_from_string!(NoteStatus, "note state");
decode_from_string!(PrescriptionStatus, "prescription state");
decode_from_string!(ExportStatus, "export job state");

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value of a row enum: `as_str` → `parse` and `TryFrom<String>`
    /// give it back, serde writes the same string, and anything else is
    /// refused with an error naming the value.
    fn round_trip<T>(all: &[T], as_str: fn(T) -> &'static str, resource: &str, bad: &[&str])
    where
        T: Copy
            + PartialEq
            + std::fmt::Debug
            + TryFrom<String, Error = UnknownState>
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        for &v in all {
            let s = as_str(v);
            assert_eq!(T::try_from(s.to_string()), Ok(v));
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(s));
            let back: T = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(back, v);
        }
        for &b in bad {
            let e = T::try_from(b.to_string()).unwrap_err();
            assert_eq!(e.resource, resource);
            assert_eq!(e.value, b);
            assert_eq!(e.to_string(), format!("unknown {resource} `{b}`"));
        }
    }

    #[test]
    fn row_enums_round_trip_and_refuse_unknown_values() {
        use crate::account::UserStatus;
        use crate::chart::EntryStatus;
        use crate::clinical::{AllergySeverity, Sex};
        use crate::labs::LabFlag;
        use crate::roles::Role;
        round_trip(
            &NoteStatus::ALL,
            NoteStatus::as_str,
            "note state",
            &["signed", "Final", ""],
        );
        round_trip(
            &PrescriptionStatus::ALL,
            PrescriptionStatus::as_str,
            "prescription state",
            &["canceled", "ISSUED"],
        );
        round_trip(
            &EntryStatus::ALL,
            EntryStatus::as_str,
            "chart entry status",
            &["entered-in-error", "Active"],
        );
        round_trip(
            &ExportStatus::ALL,
            ExportStatus::as_str,
            "export job state",
            &["completed", "Running"],
        );
        round_trip(&Role::ALL, Role::as_str, "role", &["doctor", "Admin", ""]);
        round_trip(
            &UserStatus::ALL,
            UserStatus::as_str,
            "user status",
            &["locked", "ACTIVE"],
        );
        round_trip(
            &LabFlag::ALL,
            LabFlag::as_str,
            "lab flag",
            &["H", "critical", "Normal"],
        );
        round_trip(&Sex::ALL, Sex::as_str, "sex", &["f", "Female", "intersex"]);
        round_trip(
            &AllergySeverity::ALL,
            AllergySeverity::as_str,
            "allergy severity",
            &["life_threatening", "Severe", ""],
        );
    }

    #[test]
    fn note_status_round_trips() {
        for s in NoteStatus::ALL {
            assert_eq!(NoteStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
            let back: NoteStatus = serde_json::from_value(serde_json::json!(s.as_str())).unwrap();
            assert_eq!(back, s);
        }
        assert_eq!(NoteStatus::parse("Final"), None);
        assert_eq!(NoteStatus::parse("signed"), None);
        assert_eq!(NoteStatus::parse(""), None);
    }

    #[test]
    fn prescription_status_round_trips() {
        for s in PrescriptionStatus::ALL {
            assert_eq!(PrescriptionStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
            let back: PrescriptionStatus =
                serde_json::from_value(serde_json::json!(s.as_str())).unwrap();
            assert_eq!(back, s);
        }
        assert_eq!(PrescriptionStatus::parse("canceled"), None);
        assert_eq!(PrescriptionStatus::parse("ISSUED"), None);
    }

    #[test]
    fn every_note_transition() {
        use NoteAction as A;
        use NoteStatus as S;
        let table = [
            (S::Draft, A::Edit, Some(S::Draft)),
            (S::Draft, A::Finalize, Some(S::Final)),
            (S::Draft, A::AddAddendum, None),
            (S::Draft, A::Discard, Some(S::Draft)),
            (S::Final, A::Edit, None),
            (S::Final, A::Finalize, None),
            (S::Final, A::AddAddendum, Some(S::Final)),
            (S::Final, A::Discard, None),
        ];
        assert_eq!(table.len(), S::ALL.len() * A::ALL.len());
        for (state, action, expected) in table {
            match (state.apply(action), expected) {
                (Ok(next), Some(want)) => assert_eq!(next, want, "{state:?} {action:?}"),
                (Err(e), None) => {
                    assert_eq!(e.resource, "note");
                    assert_eq!(e.current, state.as_str());
                    assert_eq!(e.action, action.verb());
                }
                (got, want) => panic!("{state:?} {action:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn every_prescription_transition() {
        use PrescriptionAction as A;
        use PrescriptionStatus as S;
        let table = [
            (S::Draft, A::Issue, Some(S::Issued)),
            (S::Draft, A::Cancel, Some(S::Cancelled)),
            (S::Issued, A::Issue, None),
            (S::Issued, A::Cancel, Some(S::Cancelled)),
            (S::Cancelled, A::Issue, None),
            (S::Cancelled, A::Cancel, None),
        ];
        assert_eq!(table.len(), S::ALL.len() * A::ALL.len());
        for (state, action, expected) in table {
            match (state.apply(action), expected) {
                (Ok(next), Some(want)) => assert_eq!(next, want, "{state:?} {action:?}"),
                (Err(e), None) => {
                    assert_eq!(e.resource, "prescription");
                    assert_eq!(e.current, state.as_str());
                    assert_eq!(e.action, action.as_str());
                }
                (got, want) => panic!("{state:?} {action:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn messages_read_as_sentences() {
        let e = NoteStatus::Final.apply(NoteAction::Edit).unwrap_err();
        assert_eq!(e.to_string(), "cannot edit a final note");
        let e = NoteStatus::Draft
            .apply(NoteAction::AddAddendum)
            .unwrap_err();
        assert_eq!(e.to_string(), "cannot add an addendum to a draft note");
        let e = NoteStatus::Final.apply(NoteAction::Discard).unwrap_err();
        assert_eq!(e.to_string(), "cannot discard a final note");
        let e = PrescriptionStatus::Issued
            .apply(PrescriptionAction::Issue)
            .unwrap_err();
        assert_eq!(e.to_string(), "cannot issue an issued prescription");
        let e = PrescriptionStatus::Cancelled
            .apply(PrescriptionAction::Cancel)
            .unwrap_err();
        assert_eq!(e.to_string(), "cannot cancel a cancelled prescription");
    }

    #[test]
    fn only_issued_is_active() {
        assert!(!PrescriptionStatus::Draft.is_active());
        assert!(PrescriptionStatus::Issued.is_active());
        assert!(!PrescriptionStatus::Cancelled.is_active());
    }
}
