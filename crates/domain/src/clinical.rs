//! Parsing of clinical input: demographics and free text. Each function
//! returns the cleaned value or a [`FieldError`] naming the JSON field.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::account::FieldError;

/// Control characters other than newline, carriage return and tab have no
/// place in clinical text (they break printing and exports).
fn has_bad_controls(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

/// Free text of at most `max` characters; `required` refuses blank text.
/// Stored exactly as given (no trimming inside), only outer whitespace of a
/// single-line field is removed by the caller's choice of `single_line`.
pub fn text(
    field: &'static str,
    raw: &str,
    max: usize,
    required: bool,
    single_line: bool,
) -> Result<String, FieldError> {
    let s = if single_line { raw.trim() } else { raw };
    if required && s.trim().is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if s.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if has_bad_controls(s) || (single_line && s.contains(['\n', '\r'])) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s.to_string())
}

/// Optional text: `None` or blank becomes `None`.
pub fn opt_text(
    field: &'static str,
    raw: Option<&str>,
    max: usize,
    single_line: bool,
) -> Result<Option<String>, FieldError> {
    match raw {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => text(field, s, max, false, single_line).map(Some),
    }
}

/// A birth date `YYYY-MM-DD`, not in the future and not before 1900.
pub fn birth_date(raw: &str, today: NaiveDate) -> Result<String, FieldError> {
    let d = NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| FieldError::new("birthDate", "must be a date as YYYY-MM-DD"))?;
    if d > today {
        return Err(FieldError::new("birthDate", "must not be in the future"));
    }
    if d < NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(d) {
        return Err(FieldError::new("birthDate", "must be after 1900-01-01"));
    }
    Ok(d.format("%Y-%m-%d").to_string())
}

/// Administrative sex as registered (FHIR `AdministrativeGender`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Female,
    Male,
    Other,
    #[default]
    Unknown,
}

impl Sex {
    pub const ALL: [Sex; 4] = [Sex::Female, Sex::Male, Sex::Other, Sex::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Sex> {
        Sex::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

crate::states::decode_from_string!(Sex, "sex");

impl std::fmt::Display for Sex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sex as typed (any case, surrounding blanks), or the field error.
pub fn sex(raw: &str) -> Result<Sex, FieldError> {
    Sex::parse(&raw.trim().to_lowercase())
        .ok_or_else(|| FieldError::new("sex", "must be one of female, male, other, unknown"))
}

/// A phone number: digits with the usual separators, 3–40 characters.
pub fn phone(raw: Option<&str>) -> Result<Option<String>, FieldError> {
    let Some(s) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let ok = s.len() <= 40
        && s.chars().filter(char::is_ascii_digit).count() >= 3
        && s.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if ok {
        Ok(Some(s.to_string()))
    } else {
        Err(FieldError::new(
            "phone",
            "must be a phone number (digits, spaces, + - ( ) .)",
        ))
    }
}

/// How severe a recorded allergy is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllergySeverity {
    Mild,
    Moderate,
    Severe,
    #[default]
    Unknown,
}

impl AllergySeverity {
    pub const ALL: [AllergySeverity; 4] = [
        AllergySeverity::Mild,
        AllergySeverity::Moderate,
        AllergySeverity::Severe,
        AllergySeverity::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AllergySeverity::Mild => "mild",
            AllergySeverity::Moderate => "moderate",
            AllergySeverity::Severe => "severe",
            AllergySeverity::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<AllergySeverity> {
        AllergySeverity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the severity is known (FHIR `reaction.severity` is then set).
    pub fn is_known(self) -> bool {
        self != AllergySeverity::Unknown
    }
}

crate::states::decode_from_string!(AllergySeverity, "allergy severity");

impl std::fmt::Display for AllergySeverity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity as typed (absent: unknown), or the field error.
pub fn severity(raw: Option<&str>) -> Result<AllergySeverity, FieldError> {
    AllergySeverity::parse(&raw.unwrap_or("unknown").trim().to_lowercase()).ok_or_else(|| {
        FieldError::new("severity", "must be one of mild, moderate, severe, unknown")
    })
}

/// Age in whole years on `today` of someone born on `birth` (YYYY-MM-DD).
pub fn age_years(birth: &str, today: NaiveDate) -> Option<i64> {
    use chrono::Datelike;
    let b = NaiveDate::parse_from_str(birth.trim(), "%Y-%m-%d").ok()?;
    let mut years = i64::from(today.year() - b.year());
    if (today.month(), today.day()) < (b.month(), b.day()) {
        years -= 1;
    }
    Some(years)
}

/// Collects field errors while parsing several fields.
#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    /// Keep the value, or record the error and return `T::default()`.
    pub fn take<T: Default>(&mut self, r: Result<T, FieldError>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => {
                self.0.push(e);
                T::default()
            }
        }
    }

    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert!(text("t", "  ", 10, true, true).is_err());
        assert!(text("t", "a\u{0}b", 10, false, false).is_err());
        assert!(text("t", "line\nbreak", 20, false, true).is_err());
        assert_eq!(
            text("t", "line\nbreak", 20, false, false).unwrap(),
            "line\nbreak"
        );
        assert!(text("t", &"x".repeat(11), 10, false, false).is_err());
        assert_eq!(
            text("t", "'; DROP TABLE x;--", 50, true, true).unwrap(),
            "'; DROP TABLE x;--"
        );
    }

    #[test]
    fn dates_and_codes() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        assert_eq!(birth_date("1980-02-29", today).unwrap(), "1980-02-29");
        assert!(birth_date("1981-02-29", today).is_err());
        assert!(birth_date("2027-01-01", today).is_err());
        assert!(birth_date("1899-12-31", today).is_err());
        assert_eq!(sex("Female").unwrap(), Sex::Female);
        assert!(sex("x").is_err());
        assert!(phone(Some("+44 (0)20 7946-0958")).unwrap().is_some());
        assert!(phone(Some("call me")).is_err());
        assert_eq!(severity(None).unwrap(), AllergySeverity::Unknown);
        assert_eq!(age_years("1980-11-26", today), Some(45));
        assert_eq!(age_years("1980-11-25", today), Some(46));
        assert_eq!(age_years("soon", today), None);
    }
}
