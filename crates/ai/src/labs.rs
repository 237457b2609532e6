//! Lab knowledge: the plain-language table (`data/labs.json`), flags and trends.

use crate::text::{decimals, fmt_num, round_dp};
use crate::types::{Audience, ExplainInput, Trend};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

const LABS_JSON: &str = include_str!("../data/labs.json");

/// One entry of the built-in lab table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabInfo {
    /// LOINC code.
    pub code: String,
    pub name: String,
    /// Completes "This test measures …" for patients.
    pub patient: String,
    /// Short technical description for clinicians.
    pub clinician: String,
}

#[derive(Deserialize)]
struct LabsFile {
    tests: Vec<LabInfo>,
}

fn table() -> &'static [LabInfo] {
    static T: OnceLock<Vec<LabInfo>> = OnceLock::new();
    T.get_or_init(|| {
        serde_json::from_str::<LabsFile>(LABS_JSON)
            .map(|f| f.tests)
            .unwrap_or_default()
    })
}

/// Looks a LOINC code up in the built-in table.
pub fn lookup(code: &str) -> Option<&'static LabInfo> {
    let code = code.trim();
    table().iter().find(|t| t.code == code)
}

/// Every LOINC code the built-in table describes.
pub fn known_codes() -> Vec<&'static str> {
    table().iter().map(|t| t.code.as_str()).collect()
}

/// Canonical flag: `normal`, `low`, `high`, `critical_low`, `critical_high`.
pub fn normalize_flag(flag: &str) -> Option<&'static str> {
    let f = flag.trim().to_lowercase().replace(['-', ' '], "_");
    Some(match f.as_str() {
        "normal" | "n" | "within_range" => "normal",
        "low" | "l" => "low",
        "high" | "h" => "high",
        "critical_low" | "ll" | "criticallow" | "panic_low" => "critical_low",
        "critical_high" | "hh" | "criticalhigh" | "panic_high" => "critical_high",
        _ => return None,
    })
}

/// Flag from the range, limits inclusive (a value equal to a limit is normal).
pub fn flag_from_range(value: f64, low: Option<f64>, high: Option<f64>) -> Option<&'static str> {
    if low.is_none() && high.is_none() {
        return None;
    }
    if low.is_some_and(|l| value < l) {
        Some("low")
    } else if high.is_some_and(|h| value > h) {
        Some("high")
    } else {
        Some("normal")
    }
}

/// Relative change below which a result counts as stable (5 %).
pub const STABLE_FRACTION: f64 = 0.05;

/// Trend of `value` against `history` (oldest first, excluding `value`).
pub fn trend(value: f64, history: &[f64]) -> Trend {
    let finite: Vec<f64> = history.iter().copied().filter(|v| v.is_finite()).collect();
    let Some(&previous) = finite.last() else {
        return Trend {
            direction: "first_result".into(),
            previous: None,
            change: None,
            points: 1,
        };
    };
    let dp = decimals(value).max(decimals(previous));
    let change = round_dp(value - previous, dp);
    let threshold = previous.abs() * STABLE_FRACTION;
    let direction = if change.abs() <= threshold || change == 0.0 {
        "stable"
    } else if change > 0.0 {
        "rising"
    } else {
        "falling"
    };
    Trend {
        direction: direction.into(),
        previous: Some(previous),
        change: Some(change),
        points: finite.len() + 1,
    }
}

/// Everything our own code knows about a result; the provider only writes
/// prose around these facts. Serialized into the remote prompt.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabFacts {
    pub audience: Audience,
    pub test_name: String,
    pub loinc_code: String,
    /// Plain-language (patient) or technical (clinician) description.
    pub measures: Option<String>,
    pub value: String,
    pub unit: String,
    pub reference_low: Option<String>,
    pub reference_high: Option<String>,
    pub flag: Option<String>,
    /// `within`, `above` or `below` the reference range.
    pub position: Option<String>,
    pub critical: bool,
    pub trend: Trend,
    /// Earlier results, oldest first (values only, no dates).
    pub earlier_values: Vec<String>,
    /// What the explanation must say when the value is critical.
    pub required_statement: Option<String>,
}

impl LabFacts {
    /// Computes the facts; `None` when the value is not a finite number. A
    /// result with no known range is still explained (`flag: None`): the
    /// value, that no range is recorded, and that the clinician interprets it.
    pub(crate) fn from_input(input: &ExplainInput) -> Option<Self> {
        if !input.value.is_finite() {
            return None;
        }
        let info = lookup(&input.code);
        let low = input.reference_low.filter(|v| v.is_finite());
        let high = input.reference_high.filter(|v| v.is_finite());
        let flag = input
            .flag
            .as_deref()
            .and_then(normalize_flag)
            .or_else(|| flag_from_range(input.value, low, high));
        let critical = flag.is_some_and(|f| f.starts_with("critical"));
        let position = flag.map(|f| match f {
            "normal" => "within",
            "high" | "critical_high" => "above",
            _ => "below",
        });
        let history: Vec<f64> = input.history.iter().map(|p| p.value).collect();
        let test_name = if input.name.trim().is_empty() {
            info.map(|i| i.name.clone()).unwrap_or_default()
        } else {
            crate::text::squash(&input.name)
        };
        let measures = info.map(|i| match input.audience {
            Audience::Patient => i.patient.clone(),
            Audience::Clinician => i.clinician.clone(),
        });
        let required_statement = critical.then(|| critical_statement(input.audience).to_string());
        Some(LabFacts {
            audience: input.audience,
            test_name,
            loinc_code: input.code.trim().to_string(),
            measures,
            value: fmt_num(input.value),
            unit: crate::text::squash(&input.unit),
            reference_low: low.map(fmt_num),
            reference_high: high.map(fmt_num),
            flag: flag.map(str::to_string),
            position: position.map(str::to_string),
            critical,
            trend: trend(input.value, &history),
            earlier_values: history
                .iter()
                .filter(|v| v.is_finite())
                .map(|v| fmt_num(*v))
                .collect(),
            required_statement,
        })
    }
}

/// The sentence a critical explanation must contain.
pub fn critical_statement(audience: Audience) -> &'static str {
    match audience {
        Audience::Patient => "This is a critical result: please contact your clinician promptly, today, about this result. If you feel unwell, seek urgent medical care.",
        Audience::Clinician => "CRITICAL VALUE: this result is critical and needs prompt clinical review and action under your critical-results procedure.",
    }
}

/// What an explanation of a result with no reference range must say.
pub fn no_range_statement(audience: Audience) -> &'static str {
    match audience {
        Audience::Patient => "No reference range is recorded for this result, so it is not flagged; your clinician interprets it together with your other results.",
        Audience::Clinician => "No reference range is recorded for this result, so it is not flagged: interpret the value clinically.",
    }
}

/// True when `text` already says that no reference range is recorded.
pub fn has_no_range_wording(text: &str) -> bool {
    text.to_lowercase().contains("no reference range")
}

/// True when `text` already carries the critical wording for `audience`.
pub fn has_critical_wording(text: &str, audience: Audience) -> bool {
    let t = text.to_lowercase();
    match audience {
        Audience::Patient => t.contains("contact your clinician"),
        Audience::Clinician => t.contains("critical"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_required_codes() {
        for code in [
            "2345-7", "4548-4", "2951-2", "2823-3", "2075-0", "1963-8", "3094-0", "2160-0",
            "33914-3", "17861-6", "19123-9", "2777-1", "6690-2", "718-7", "4544-3", "777-3",
            "787-2", "2093-3", "13457-7", "2089-1", "2085-9", "2571-8", "3016-3", "3024-7",
            "1742-6", "1920-8", "6768-6", "1975-2", "1751-7", "6301-6", "10839-9", "1988-5",
            "2524-7", "3084-1", "2276-4", "2132-9",
        ] {
            assert!(lookup(code).is_some(), "missing {code}");
        }
    }

    #[test]
    fn flags_and_trends() {
        assert_eq!(flag_from_range(5.5, Some(3.5), Some(5.5)), Some("normal"));
        assert_eq!(flag_from_range(5.6, Some(3.5), Some(5.5)), Some("high"));
        assert_eq!(normalize_flag("Critical-High"), Some("critical_high"));
        let t = trend(8.2, &[7.0, 7.1]);
        assert_eq!(t.direction, "rising");
        assert_eq!(t.change, Some(1.1));
        assert_eq!(t.points, 3);
        assert_eq!(trend(4.1, &[4.0]).direction, "stable");
        assert_eq!(trend(3.0, &[4.0]).direction, "falling");
        assert_eq!(trend(3.0, &[]).direction, "first_result");
    }
}
