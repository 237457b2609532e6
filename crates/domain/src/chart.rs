//! The life of chart entries (allergies and problems) and the keys that
//! spot a likely duplicate registration.
//!
//! Entries are never deleted. An entry can be active, inactive or resolved
//! (and back, e.g. a problem that recurs); "entered in error" keeps the row,
//! shown struck through in the history, and is final: a wrong entry is
//! re-recorded, not resurrected, so the history shows what was believed when.

use serde::{Deserialize, Serialize};

use crate::account::FieldError;
use crate::states::IllegalTransition;

/// Status of an allergy or a problem (after FHIR `clinicalStatus`, with
/// `verificationStatus = entered-in-error` folded in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    Active,
    Inactive,
    Resolved,
    EnteredInError,
}

impl EntryStatus {
    pub const ALL: [EntryStatus; 4] = [
        EntryStatus::Active,
        EntryStatus::Inactive,
        EntryStatus::Resolved,
        EntryStatus::EnteredInError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Active => "active",
            EntryStatus::Inactive => "inactive",
            EntryStatus::Resolved => "resolved",
            EntryStatus::EnteredInError => "entered_in_error",
        }
    }

    pub fn parse(s: &str) -> Option<EntryStatus> {
        EntryStatus::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// A status typed by a user, or the field error listing the choices.
    pub fn parse_field(raw: &str) -> Result<EntryStatus, FieldError> {
        EntryStatus::parse(raw.trim()).ok_or_else(|| {
            FieldError::new(
                "status",
                "must be one of active, inactive, resolved, entered_in_error",
            )
        })
    }
}

crate::states::decode_from_string!(EntryStatus, "chart entry status");

/// Whether an entry in `current` may be changed at all (edited or given a
/// new status). Only "entered in error" is final.
pub fn may_change(resource: &'static str, current: EntryStatus) -> Result<(), IllegalTransition> {
    match current {
        EntryStatus::EnteredInError => Err(IllegalTransition {
            resource,
            current: current.as_str(),
            action: "change",
        }),
        EntryStatus::Active | EntryStatus::Inactive | EntryStatus::Resolved => Ok(()),
    }
}

/// The date an entry resolved: the one given, else `today` when it becomes
/// resolved now; any other status has none.
pub fn resolved_on(
    status: EntryStatus,
    given: Option<&str>,
    kept: Option<&str>,
    today: chrono::NaiveDate,
) -> Result<Option<String>, FieldError> {
    if status != EntryStatus::Resolved {
        return match given.map(str::trim).filter(|s| !s.is_empty()) {
            Some(_) => Err(FieldError::new(
                "resolvedOn",
                "is only allowed when the status is resolved",
            )),
            None => Ok(None),
        };
    }
    match given.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(Some(
            kept.map(str::to_string)
                .unwrap_or_else(|| today.format("%Y-%m-%d").to_string()),
        )),
        Some(s) => {
            let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| FieldError::new("resolvedOn", "must be a date as YYYY-MM-DD"))?;
            if d > today {
                return Err(FieldError::new("resolvedOn", "must not be in the future"));
            }
            Ok(Some(d.format("%Y-%m-%d").to_string()))
        }
    }
}

/// The digits of a phone number: "+44 (0)20 7946-0958" and
/// "44020 79460958" are the same phone for duplicate detection. The
/// migration computes the same key with nested `replace` for existing rows
/// (the separators `domain::clinical::phone` accepts).
pub fn phone_key(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entered_in_error_is_final() {
        assert!(may_change("allergy", EntryStatus::Active).is_ok());
        assert!(may_change("allergy", EntryStatus::Resolved).is_ok());
        let e = may_change("allergy", EntryStatus::EnteredInError).unwrap_err();
        assert_eq!(e.to_string(), "cannot change an entered_in_error allergy");
        for s in EntryStatus::ALL {
            assert_eq!(EntryStatus::parse(s.as_str()), Some(s));
        }
        assert!(EntryStatus::parse_field("deleted").is_err());
    }

    #[test]
    fn resolved_dates() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
        let r = EntryStatus::Resolved;
        assert_eq!(
            resolved_on(r, None, None, today).unwrap().as_deref(),
            Some("2026-05-01")
        );
        assert_eq!(
            resolved_on(r, None, Some("2026-01-02"), today)
                .unwrap()
                .as_deref(),
            Some("2026-01-02")
        );
        assert_eq!(
            resolved_on(r, Some("2025-12-31"), None, today)
                .unwrap()
                .as_deref(),
            Some("2025-12-31")
        );
        assert!(resolved_on(r, Some("2026-05-02"), None, today).is_err());
        assert!(resolved_on(r, Some("yesterday"), None, today).is_err());
        assert!(resolved_on(EntryStatus::Active, Some("2026-01-01"), None, today).is_err());
        assert_eq!(
            resolved_on(EntryStatus::Active, None, Some("2026-01-01"), today).unwrap(),
            None
        );
    }

    #[test]
    fn phone_keys_ignore_separators() {
        assert_eq!(phone_key("+44 (0)20 7946-0958"), "4402079460958");
        assert_eq!(phone_key("555.0100"), "5550100");
    }
}
