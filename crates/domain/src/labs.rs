//! Lab reference ranges and result flagging (SPEC §6 "Labs").
//!
//! When a result arrives without a reference range the server fills one in
//! from `data/lab_reference.json` (common LOINC codes, adult ranges) and
//! computes the flag here. The rules put safety first:
//!
//! * limits are inclusive: a value equal to `low` or `high` is normal, and a
//!   value equal to a critical limit is critical (`value <= criticalLow` or
//!   `value >= criticalHigh`), because a panic limit is the first value that
//!   must be phoned through;
//! * a result in a unit the table does not use is flagged only when a known
//!   conversion exists; the *limits* are converted into the caller's unit so
//!   the stored value stays exactly as entered. Otherwise it is left
//!   unflagged with a warning: no flag is better than a wrong one;
//! * a range recorded with the result (the performing laboratory's own)
//!   always wins over the table.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// How a result compares with its reference range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabFlag {
    Normal,
    Low,
    High,
    CriticalLow,
    CriticalHigh,
}

impl LabFlag {
    pub const ALL: [LabFlag; 5] = [
        LabFlag::Normal,
        LabFlag::Low,
        LabFlag::High,
        LabFlag::CriticalLow,
        LabFlag::CriticalHigh,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LabFlag::Normal => "normal",
            LabFlag::Low => "low",
            LabFlag::High => "high",
            LabFlag::CriticalLow => "critical_low",
            LabFlag::CriticalHigh => "critical_high",
        }
    }

    pub fn parse(s: &str) -> Option<LabFlag> {
        LabFlag::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Anything but normal: what the clinician's day lists for review.
    pub fn is_abnormal(self) -> bool {
        self != LabFlag::Normal
    }

    /// A panic value that needs prompt action.
    pub fn is_critical(self) -> bool {
        matches!(self, LabFlag::CriticalLow | LabFlag::CriticalHigh)
    }
}

crate::states::decode_from_string!(LabFlag, "lab flag");

impl std::fmt::Display for LabFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the reference table: adult range and critical limits for a
/// LOINC code, in the table's unit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceEntry {
    pub code: String,
    pub name: String,
    pub unit: String,
    pub low: Option<f64>,
    pub high: Option<f64>,
    #[serde(default)]
    pub critical_low: Option<f64>,
    #[serde(default)]
    pub critical_high: Option<f64>,
    pub source: String,
}

#[derive(Debug, Deserialize)]
struct TableFile {
    sources: String,
    entries: Vec<ReferenceEntry>,
}

#[derive(Debug, Default)]
struct Table {
    sources: String,
    entries: Vec<ReferenceEntry>,
    by_code: HashMap<String, usize>,
}

const TABLE_JSON: &str = include_str!("../data/lab_reference.json");

fn parse_table(json: &str) -> Result<Table, serde_json::Error> {
    let file: TableFile = serde_json::from_str(json)?;
    let by_code = file
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.code.clone(), i))
        .collect();
    Ok(Table {
        sources: file.sources,
        entries: file.entries,
        by_code,
    })
}

/// The table is compiled in; a unit test guarantees it parses, and should it
/// ever not, lookups find nothing (results go unflagged) instead of the
/// server panicking.
static TABLE: LazyLock<Table> = LazyLock::new(|| parse_table(TABLE_JSON).unwrap_or_default());

/// The reference entry for a LOINC code, if the table has one.
pub fn reference(code: &str) -> Option<&'static ReferenceEntry> {
    let table: &'static Table = &TABLE;
    table.by_code.get(code.trim()).map(|&i| &table.entries[i])
}

/// Every entry of the table, in file order.
pub fn all_references() -> &'static [ReferenceEntry] {
    &TABLE.entries
}

/// Where the table's values come from (the file's top-level `sources`).
pub fn reference_sources() -> &'static str {
    &TABLE.sources
}

/// The range used for a result and the flag it earned.
///
/// The range is in the caller's unit. `flag` is `None` when no range is
/// known or the result cannot be compared safely; `warning` then says why
/// (except for the ordinary case of an unknown code with no range given).
#[derive(Debug, Clone, PartialEq)]
pub struct Interpretation {
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
    pub flag: Option<LabFlag>,
    pub warning: Option<String>,
}

/// Range and critical limits in the caller's unit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Limits {
    low: Option<f64>,
    high: Option<f64>,
    critical_low: Option<f64>,
    critical_high: Option<f64>,
}

/// Flag `value` (in `unit`) for LOINC `code`.
///
/// * A range given by the caller (either end, or both) is used as the normal
///   range; the table still contributes its critical limits when the unit
///   matches or converts, provided they lie outside the given range.
/// * Without a given range the table's range is used, converted into the
///   caller's unit when needed (see the module docs).
/// * Critical when `value <= critical_low` or `value >= critical_high`; low
///   when `value < low`; high when `value > high`; otherwise normal. A range
///   with one end flags one-sidedly.
pub fn interpret(
    code: &str,
    value: f64,
    unit: &str,
    given_low: Option<f64>,
    given_high: Option<f64>,
) -> Interpretation {
    let table_limits = reference(code).map(|entry| limits_in_unit(entry, unit));

    let (limits, mut warning) = if given_low.is_some() || given_high.is_some() {
        let mut limits = Limits {
            low: given_low,
            high: given_high,
            ..Limits::default()
        };
        if let Some(Ok(t)) = table_limits {
            // A critical limit inside the laboratory's own normal range would
            // contradict it; keep only those that lie beyond it.
            limits.critical_low = t
                .critical_low
                .filter(|cl| given_low.is_none_or(|l| *cl < l));
            limits.critical_high = t
                .critical_high
                .filter(|ch| given_high.is_none_or(|h| *ch > h));
        }
        let warning = given_range_problem(given_low, given_high);
        (limits, warning)
    } else {
        match table_limits {
            None => (Limits::default(), None),
            Some(Ok(t)) => (t, None),
            Some(Err(w)) => (Limits::default(), Some(w)),
        }
    };

    let flag = if warning.is_some() {
        None
    } else if !value.is_finite() {
        warning = Some(format!("value {value} is not a finite number; not flagged"));
        None
    } else {
        classify(value, &limits)
    };

    Interpretation {
        reference_low: limits.low,
        reference_high: limits.high,
        flag,
        warning,
    }
}

/// Why a caller-given range cannot be used, if it cannot.
fn given_range_problem(low: Option<f64>, high: Option<f64>) -> Option<String> {
    if low.is_some_and(|l| !l.is_finite()) || high.is_some_and(|h| !h.is_finite()) {
        return Some("reference range is not a finite number; not flagged".to_string());
    }
    match (low, high) {
        (Some(l), Some(h)) if l > h => Some(format!(
            "reference low {l} is above reference high {h}; not flagged"
        )),
        _ => None,
    }
}

/// Flag `value` against a range and critical limits given directly (vital
/// signs use the same inclusive rules as lab results).
pub fn classify_value(
    value: f64,
    low: Option<f64>,
    high: Option<f64>,
    critical_low: Option<f64>,
    critical_high: Option<f64>,
) -> Option<LabFlag> {
    classify(
        value,
        &Limits {
            low,
            high,
            critical_low,
            critical_high,
        },
    )
}

/// The table's unit for `code` when `unit` is neither it nor convertible to
/// it: what the web form offers as "did you mean …?".
pub fn unit_suggestion(code: &str, unit: &str) -> Option<&'static str> {
    let entry = reference(code)?;
    limits_in_unit(entry, unit)
        .is_err()
        .then_some(entry.unit.as_str())
}

fn classify(value: f64, limits: &Limits) -> Option<LabFlag> {
    if limits.low.is_none() && limits.high.is_none() {
        return None;
    }
    if limits.critical_low.is_some_and(|cl| value <= cl) {
        return Some(LabFlag::CriticalLow);
    }
    if limits.critical_high.is_some_and(|ch| value >= ch) {
        return Some(LabFlag::CriticalHigh);
    }
    if limits.low.is_some_and(|l| value < l) {
        return Some(LabFlag::Low);
    }
    if limits.high.is_some_and(|h| value > h) {
        return Some(LabFlag::High);
    }
    Some(LabFlag::Normal)
}

/// The entry's limits expressed in `unit`, or the warning explaining why
/// they cannot be.
fn limits_in_unit(entry: &ReferenceEntry, unit: &str) -> Result<Limits, String> {
    let theirs = canonical_unit(unit);
    let ours = canonical_unit(&entry.unit);
    // `None`: same unit, limits used as written; `Some(f)`: multiply by f.
    let factor = if theirs == ours {
        None
    } else if let Some(factor) = conversion_factor(&entry.code, &ours, &theirs) {
        Some(factor)
    } else {
        return Err(format!(
            "unit {} differs from reference unit {}; not flagged",
            display_unit(unit),
            entry.unit
        ));
    };
    let convert = |x: f64| match factor {
        None => x,
        Some(f) => round_significant(x * f, 4),
    };
    Ok(Limits {
        low: entry.low.map(&convert),
        high: entry.high.map(&convert),
        critical_low: entry.critical_low.map(&convert),
        critical_high: entry.critical_high.map(&convert),
    })
}

fn display_unit(unit: &str) -> &str {
    match unit.trim() {
        "" => "(none)",
        u => u,
    }
}

/// Unit conversions the table knows: for the listed codes, one `a` equals
/// `factor` `b`. Units are written in canonical form (see [`canonical_unit`]).
/// The factors are the standard molar-mass or scale factors used by
/// laboratories; divalent ions are deliberately absent from the mEq/L row.
const CONVERSIONS: &[(&[&str], &str, &str, f64)] = &[
    // Glucose: 1 mmol/L = 18.016 mg/dL.
    (&["2345-7", "2339-0", "14749-6"], "mmol/l", "mg/dl", 18.016),
    // Creatinine: 1 mg/dL = 88.42 umol/L.
    (&["2160-0"], "mg/dl", "umol/l", 88.42),
    // Total, LDL and HDL cholesterol: 1 mmol/L = 38.67 mg/dL.
    (
        &["2093-3", "13457-7", "2089-1", "2085-9"],
        "mmol/l",
        "mg/dl",
        38.67,
    ),
    // Triglycerides: 1 mmol/L = 88.57 mg/dL.
    (&["2571-8"], "mmol/l", "mg/dl", 88.57),
    // Hemoglobin, MCHC, albumin, total protein: 1 g/dL = 10 g/L.
    (&["718-7", "786-4", "1751-7", "2885-2"], "g/dl", "g/l", 10.0),
    // Calcium: 1 mmol/L = 4.008 mg/dL.
    (&["17861-6"], "mmol/l", "mg/dl", 4.008),
    // Urea (mmol/L) to urea nitrogen (mg/dL): 1 mmol/L = 2.801 mg/dL.
    (&["3094-0"], "mmol/l", "mg/dl", 2.801),
    // Magnesium: 1 mmol/L = 2.431 mg/dL.
    (&["19123-9"], "mmol/l", "mg/dl", 2.431),
    // Phosphate (as phosphorus): 1 mmol/L = 3.097 mg/dL.
    (&["2777-1"], "mmol/l", "mg/dl", 3.097),
    // Bilirubin: 1 mg/dL = 17.1 umol/L.
    (&["1975-2", "1968-7"], "mg/dl", "umol/l", 17.1),
    // Uric acid: 1 mg/dL = 59.48 umol/L.
    (&["3084-1"], "mg/dl", "umol/l", 59.48),
    // Lactate: 1 mmol/L = 9.008 mg/dL.
    (&["2524-7"], "mmol/l", "mg/dl", 9.008),
    // Hematocrit as a fraction: 1 L/L = 100 %.
    (&["4544-3"], "l/l", "%", 100.0),
    // CRP: 1 mg/dL = 10 mg/L.
    (&["1988-5"], "mg/dl", "mg/l", 10.0),
    // Free T4: 1 ng/dL = 12.87 pmol/L.
    (&["3024-7"], "ng/dl", "pmol/l", 12.87),
    // Vitamin B12: 1 pg/mL = 0.7378 pmol/L.
    (&["2132-9"], "pg/ml", "pmol/l", 0.7378),
    // Folate: 1 ng/mL = 2.266 nmol/L.
    (&["2284-8"], "ng/ml", "nmol/l", 2.266),
    // Iron: 1 ug/dL = 0.1791 umol/L.
    (&["2498-4"], "ug/dl", "umol/l", 0.1791),
    // Troponin I: 1 ng/mL = 1000 ng/L (canonical "pg/ml").
    (&["10839-9"], "ng/ml", "pg/ml", 1000.0),
    // Monovalent ions: 1 mEq/L = 1 mmol/L.
    (
        &["2951-2", "2823-3", "2075-0", "1963-8", "2028-9"],
        "meq/l",
        "mmol/l",
        1.0,
    ),
];

/// The factor that turns a quantity in `from` into one in `to` for `code`.
fn conversion_factor(code: &str, from: &str, to: &str) -> Option<f64> {
    CONVERSIONS.iter().find_map(|(codes, a, b, factor)| {
        if !codes.contains(&code.trim()) {
            None
        } else if (from, to) == (*a, *b) {
            Some(*factor)
        } else if (from, to) == (*b, *a) {
            Some(1.0 / *factor)
        } else {
            None
        }
    })
}

/// Round to `digits` significant digits so converted limits read like a
/// laboratory would print them (3.885, not 3.8854351687388987).
fn round_significant(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    // |log10| of a finite, non-zero f64 is below 330: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let magnitude = x.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits - 1 - magnitude);
    (x * scale).round() / scale
}

/// A comparable spelling of a unit: case, spaces, micro signs, `^` and the
/// common spellings of numerically identical units are unified, so
/// "mg/dl" = "mg/dL", "10^3/uL" = "10*3/uL" = "K/uL" = "10*9/L" and
/// "µIU/mL" = "mIU/L".
pub fn canonical_unit(unit: &str) -> String {
    let mut u: String = unit
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            'µ' | 'μ' => 'u',
            '^' => '*',
            '×' => 'x',
            _ => c,
        })
        .collect::<String>()
        .to_lowercase();
    for (from, to) in [
        ("mcmol", "umol"),
        ("mcg", "ug"),
        ("mcl", "ul"),
        ("10e", "10*"),
        ("x10*", "10*"),
    ] {
        u = u.replace(from, to);
    }
    let canonical = match u.as_str() {
        "k/ul" | "thou/ul" | "10*3/ul" | "10*9/l" | "giga/l" => "10*3/ul",
        "m/ul" | "mill/ul" | "10*6/ul" | "10*12/l" | "tera/l" => "10*6/ul",
        "u/l" | "iu/l" | "units/l" => "u/l",
        "miu/l" | "uiu/ml" | "mu/l" | "uu/ml" => "miu/l",
        "ng/ml" | "ug/l" => "ng/ml",
        "pg/ml" | "ng/l" => "pg/ml",
        "s" | "sec" | "secs" | "second" | "seconds" => "s",
        "mm/h" | "mm/hr" | "mm/hour" => "mm/h",
        "" | "1" | "ratio" | "{ratio}" | "inr" | "{inr}" => "{ratio}",
        "ml/min/1.73m2" | "ml/min/1.73m*2" | "ml/min/{1.73_m2}" | "ml/min/1.73" => "ml/min/1.73m2",
        "fl" | "um3" => "fl",
        "%" | "percent" => "%",
        other => return other.to_string(),
    };
    canonical.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_suggestions_only_for_units_that_do_not_fit() {
        assert_eq!(unit_suggestion("2823-3", "mg/dL"), Some("mmol/L"));
        assert_eq!(unit_suggestion("2823-3", "mmol/L"), None);
        assert_eq!(unit_suggestion("2823-3", "mEq/L"), None, "converts");
        assert_eq!(unit_suggestion("99999-9", "mg/dL"), None, "unknown code");
    }

    fn flag(code: &str, value: f64, unit: &str) -> Option<LabFlag> {
        interpret(code, value, unit, None, None).flag
    }

    #[test]
    fn table_parses_and_is_complete() {
        let table = parse_table(TABLE_JSON).expect("lab_reference.json parses");
        assert!(!table.sources.trim().is_empty());
        assert!(
            table.entries.len() >= 32,
            "only {} entries",
            table.entries.len()
        );
        assert_eq!(table.by_code.len(), table.entries.len(), "duplicate codes");
        assert_eq!(all_references().len(), table.entries.len());
        assert!(!reference_sources().is_empty());
        let required = [
            "2345-7", "4548-4", "2951-2", "2823-3", "2075-0", "1963-8", "3094-0", "2160-0",
            "98979-8", "17861-6", "19123-9", "2777-1", "6690-2", "718-7", "4544-3", "777-3",
            "787-2", "2093-3", "13457-7", "2085-9", "2571-8", "3016-3", "3024-7", "1742-6",
            "1920-8", "6768-6", "1975-2", "1751-7", "6301-6", "10839-9", "1988-5", "2524-7",
            "3084-1", "2276-4", "2132-9",
        ];
        for code in required {
            assert!(reference(code).is_some(), "{code} missing");
        }
    }

    #[test]
    fn entries_are_well_formed() {
        for e in all_references() {
            let c = &e.code;
            // LOINC: digits, a hyphen, one check digit.
            let (num, check) = c.split_once('-').expect("hyphen");
            assert!(
                !num.is_empty() && num.chars().all(|d| d.is_ascii_digit()),
                "{c}"
            );
            assert!(
                check.len() == 1 && check.chars().all(|d| d.is_ascii_digit()),
                "{c}"
            );
            assert!(
                loinc_check_digit_ok(c),
                "{c} fails the LOINC mod-10 check digit"
            );
            assert!(
                !e.name.trim().is_empty()
                    && !e.unit.trim().is_empty()
                    && !e.source.trim().is_empty(),
                "{c}"
            );
            assert!(e.low.is_some() || e.high.is_some(), "{c} has no range");
            if let (Some(l), Some(h)) = (e.low, e.high) {
                assert!(l < h, "{c}: low {l} >= high {h}");
            }
            if let Some(cl) = e.critical_low {
                assert!(
                    e.low.is_some_and(|l| cl < l),
                    "{c}: critical low must lie below low"
                );
            }
            if let Some(ch) = e.critical_high {
                assert!(
                    e.high.is_some_and(|h| ch > h),
                    "{c}: critical high must lie above high"
                );
            }
        }
    }

    /// LOINC check digit: Luhn-style mod 10 over the numeric part.
    fn loinc_check_digit_ok(code: &str) -> bool {
        let Some((num, check)) = code.split_once('-') else {
            return false;
        };
        let digits: Vec<u32> = num.chars().filter_map(|c| c.to_digit(10)).collect();
        let mut sum = 0;
        for (i, d) in digits.iter().rev().enumerate() {
            if i % 2 == 0 {
                let doubled = d * 2;
                sum += doubled / 10 + doubled % 10;
            } else {
                sum += d;
            }
        }
        let expected = (10 - sum % 10) % 10;
        check.parse::<u32>().ok() == Some(expected)
    }

    #[test]
    fn check_digit_helper_knows_good_and_bad_codes() {
        assert!(loinc_check_digit_ok("2345-7"));
        assert!(loinc_check_digit_ok("718-7"));
        assert!(!loinc_check_digit_ok("2345-8"));
    }

    /// A step small next to the limit but far above float noise.
    fn step(limit: f64) -> f64 {
        limit.abs().max(1.0) * 1e-6
    }

    #[test]
    fn every_limit_of_every_entry_flags_correctly() {
        for e in all_references() {
            let c = e.code.as_str();
            let u = e.unit.as_str();
            if let Some(l) = e.low {
                assert_eq!(
                    flag(c, l - step(l), u),
                    Some(LabFlag::Low),
                    "{c} just below low"
                );
                assert_eq!(flag(c, l, u), Some(LabFlag::Normal), "{c} at low");
                assert_eq!(
                    flag(c, l + step(l), u),
                    Some(LabFlag::Normal),
                    "{c} just above low"
                );
            }
            if let Some(h) = e.high {
                assert_eq!(
                    flag(c, h - step(h), u),
                    Some(LabFlag::Normal),
                    "{c} just below high"
                );
                assert_eq!(flag(c, h, u), Some(LabFlag::Normal), "{c} at high");
                assert_eq!(
                    flag(c, h + step(h), u),
                    Some(LabFlag::High),
                    "{c} just above high"
                );
            }
            if let Some(cl) = e.critical_low {
                assert_eq!(
                    flag(c, cl - step(cl), u),
                    Some(LabFlag::CriticalLow),
                    "{c} below critical low"
                );
                assert_eq!(
                    flag(c, cl, u),
                    Some(LabFlag::CriticalLow),
                    "{c} at critical low"
                );
                assert_eq!(
                    flag(c, cl + step(cl), u),
                    Some(LabFlag::Low),
                    "{c} above critical low"
                );
            }
            if let Some(ch) = e.critical_high {
                assert_eq!(
                    flag(c, ch - step(ch), u),
                    Some(LabFlag::High),
                    "{c} below critical high"
                );
                assert_eq!(
                    flag(c, ch, u),
                    Some(LabFlag::CriticalHigh),
                    "{c} at critical high"
                );
                assert_eq!(
                    flag(c, ch + step(ch), u),
                    Some(LabFlag::CriticalHigh),
                    "{c} above critical high"
                );
            }
            // One-sided ranges: far from the only limit is normal.
            if e.low.is_none() {
                let h = e.high.unwrap_or_default();
                assert_eq!(
                    flag(c, h / 10.0, u),
                    Some(LabFlag::Normal),
                    "{c} one-sided high"
                );
            }
            if e.high.is_none() {
                let l = e.low.unwrap_or_default();
                assert_eq!(
                    flag(c, l * 10.0, u),
                    Some(LabFlag::Normal),
                    "{c} one-sided low"
                );
            }
            // The table range comes back with the flag.
            let i = interpret(c, e.low.or(e.high).unwrap_or_default(), u, None, None);
            assert_eq!((i.reference_low, i.reference_high), (e.low, e.high), "{c}");
            assert_eq!(i.warning, None, "{c}");
        }
    }

    #[test]
    fn critical_limit_itself_is_critical() {
        // Potassium: 3.5–5.1, critical 2.8 / 6.2.
        assert_eq!(flag("2823-3", 6.2, "mmol/L"), Some(LabFlag::CriticalHigh));
        assert_eq!(flag("2823-3", 6.19, "mmol/L"), Some(LabFlag::High));
        assert_eq!(flag("2823-3", 2.8, "mmol/L"), Some(LabFlag::CriticalLow));
        assert_eq!(flag("2823-3", 2.81, "mmol/L"), Some(LabFlag::Low));
        assert_eq!(flag("2823-3", 5.1, "mmol/L"), Some(LabFlag::Normal));
        assert_eq!(flag("2823-3", 3.5, "mmol/L"), Some(LabFlag::Normal));
    }

    #[test]
    fn unit_aliases_match() {
        assert_eq!(flag("2345-7", 150.0, "mg/dl"), Some(LabFlag::High));
        assert_eq!(flag("2345-7", 150.0, " MG/DL "), Some(LabFlag::High));
        for unit in [
            "10*3/uL", "10^3/uL", "K/uL", "10^9/L", "x10^9/L", "10*9/L", "10^3/µL", "x10E3/uL",
        ] {
            assert_eq!(flag("6690-2", 12.0, unit), Some(LabFlag::High), "{unit}");
        }
        assert_eq!(flag("6301-6", 3.0, ""), Some(LabFlag::High));
        assert_eq!(flag("6301-6", 1.0, "INR"), Some(LabFlag::Normal));
        assert_eq!(flag("6301-6", 5.0, "{INR}"), Some(LabFlag::CriticalHigh));
        assert_eq!(flag("3016-3", 5.0, "uIU/mL"), Some(LabFlag::High));
        assert_eq!(flag("3016-3", 1.0, "µIU/mL"), Some(LabFlag::Normal));
        assert_eq!(flag("1742-6", 80.0, "IU/L"), Some(LabFlag::High));
        assert_eq!(flag("2276-4", 5.0, "ug/L"), Some(LabFlag::Low));
        assert_eq!(
            flag("98979-8", 45.0, "mL/min/{1.73_m2}"),
            Some(LabFlag::Low)
        );
        assert_eq!(flag("2951-2", 150.0, "mEq/L"), Some(LabFlag::High));
        assert_eq!(flag("2498-4", 50.0, "mcg/dL"), Some(LabFlag::Low));
    }

    #[test]
    fn converts_limits_into_callers_unit() {
        // Glucose 70–99 mg/dL, critical 40/500, in mmol/L.
        let i = interpret("2345-7", 5.0, "mmol/L", None, None);
        assert_eq!(i.reference_low, Some(3.885));
        assert_eq!(i.reference_high, Some(5.495));
        assert_eq!(i.flag, Some(LabFlag::Normal));
        assert_eq!(i.warning, None);
        assert_eq!(flag("2345-7", 3.8, "mmol/L"), Some(LabFlag::Low));
        assert_eq!(flag("2345-7", 7.0, "mmol/L"), Some(LabFlag::High));
        assert_eq!(flag("2345-7", 2.2, "mmol/L"), Some(LabFlag::CriticalLow));
        assert_eq!(flag("2345-7", 28.0, "mmol/L"), Some(LabFlag::CriticalHigh));
        // And the mmol/L entry in mg/dL.
        let i = interpret("14749-6", 100.0, "mg/dL", None, None);
        assert_eq!(i.reference_high, Some(99.09));
        assert_eq!(i.flag, Some(LabFlag::High));

        // Creatinine 0.6–1.3 mg/dL in umol/L (53.05–114.9).
        let i = interpret("2160-0", 120.0, "µmol/L", None, None);
        assert_eq!(i.reference_low, Some(53.05));
        assert_eq!(i.reference_high, Some(114.9));
        assert_eq!(i.flag, Some(LabFlag::High));
        assert_eq!(flag("2160-0", 80.0, "umol/L"), Some(LabFlag::Normal));

        // Cholesterol < 200 mg/dL: 199 / 38.67 = 5.146 mmol/L.
        let i = interpret("2093-3", 5.2, "mmol/L", None, None);
        assert_eq!(i.reference_high, Some(5.146));
        assert_eq!(i.flag, Some(LabFlag::High));
        assert_eq!(flag("2085-9", 0.9, "mmol/L"), Some(LabFlag::Low));
        assert_eq!(flag("13457-7", 2.0, "mmol/L"), Some(LabFlag::Normal));
        // Triglycerides 149 mg/dL = 1.682 mmol/L.
        assert_eq!(
            interpret("2571-8", 1.0, "mmol/L", None, None).reference_high,
            Some(1.682)
        );
        // Hemoglobin 12.0–17.5 g/dL = 120–175 g/L, critical 70/200 g/L.
        let i = interpret("718-7", 110.0, "g/L", None, None);
        assert_eq!(
            (i.reference_low, i.reference_high),
            (Some(120.0), Some(175.0))
        );
        assert_eq!(i.flag, Some(LabFlag::Low));
        assert_eq!(flag("718-7", 70.0, "g/L"), Some(LabFlag::CriticalLow));
        assert_eq!(flag("718-7", 175.0, "g/L"), Some(LabFlag::Normal));
        // Calcium 8.5–10.2 mg/dL = 2.121–2.545 mmol/L; critical 6.0 mg/dL = 1.497.
        let i = interpret("17861-6", 2.3, "mmol/L", None, None);
        assert_eq!(
            (i.reference_low, i.reference_high),
            (Some(2.121), Some(2.545))
        );
        assert_eq!(i.flag, Some(LabFlag::Normal));
        assert_eq!(flag("17861-6", 1.4, "mmol/L"), Some(LabFlag::CriticalLow));
        // Urea 6–20 mg/dL BUN = 2.142–7.140 mmol/L urea.
        let i = interpret("3094-0", 8.0, "mmol/L", None, None);
        assert_eq!(
            (i.reference_low, i.reference_high),
            (Some(2.142), Some(7.14))
        );
        assert_eq!(i.flag, Some(LabFlag::High));
    }

    #[test]
    fn converted_limits_are_inclusive_too() {
        let i = interpret("2345-7", 0.0, "mmol/L", None, None);
        let (low, high) = (i.reference_low.unwrap(), i.reference_high.unwrap());
        assert_eq!(flag("2345-7", low, "mmol/L"), Some(LabFlag::Normal));
        assert_eq!(flag("2345-7", high, "mmol/L"), Some(LabFlag::Normal));
        assert_eq!(flag("2345-7", high + 0.001, "mmol/L"), Some(LabFlag::High));
        assert_eq!(flag("2345-7", low - 0.001, "mmol/L"), Some(LabFlag::Low));
    }

    #[test]
    fn unknown_unit_is_not_flagged() {
        let i = interpret("2345-7", 5.0, "g/L", None, None);
        assert_eq!(i.flag, None);
        assert_eq!((i.reference_low, i.reference_high), (None, None));
        assert_eq!(
            i.warning.as_deref(),
            Some("unit g/L differs from reference unit mg/dL; not flagged")
        );
        // HbA1c in IFCC mmol/mol has an offset, not a factor: never guessed.
        assert_eq!(flag("4548-4", 48.0, "mmol/mol"), None);
        // A missing unit is not mg/dL.
        let i = interpret("2345-7", 90.0, "", None, None);
        assert_eq!(i.flag, None);
        assert!(i.warning.unwrap().contains("(none)"));
        // mEq/L is not mmol/L for a divalent ion.
        assert_eq!(flag("17861-6", 4.5, "mEq/L"), None);
    }

    #[test]
    fn unknown_code_without_range_is_unflagged() {
        let i = interpret("99999-9", 5.0, "mg/dL", None, None);
        assert_eq!(
            i,
            Interpretation {
                reference_low: None,
                reference_high: None,
                flag: None,
                warning: None
            }
        );
    }

    #[test]
    fn given_range_overrides_table() {
        // Potassium with the lab's own 3.6–5.0 range.
        let i = interpret("2823-3", 5.05, "mmol/L", Some(3.6), Some(5.0));
        assert_eq!((i.reference_low, i.reference_high), (Some(3.6), Some(5.0)));
        assert_eq!(i.flag, Some(LabFlag::High));
        // Table critical limits still apply with a given range in the same unit.
        assert_eq!(
            interpret("2823-3", 6.5, "mmol/L", Some(3.6), Some(5.0)).flag,
            Some(LabFlag::CriticalHigh)
        );
        assert_eq!(
            interpret("2823-3", 2.8, "mmol/L", Some(3.6), Some(5.0)).flag,
            Some(LabFlag::CriticalLow)
        );
        // ... converted when the unit converts.
        assert_eq!(
            interpret("2345-7", 1.5, "mmol/L", Some(4.0), Some(6.0)).flag,
            Some(LabFlag::CriticalLow)
        );
        // ... but not when the unit is unknown: then only the given range counts.
        let i = interpret("2345-7", 1.0, "g/L", Some(0.7), Some(1.1));
        assert_eq!(i.flag, Some(LabFlag::Normal));
        assert_eq!(i.warning, None);
        // A critical limit inside the given normal range is ignored.
        assert_eq!(
            interpret("2823-3", 2.7, "mmol/L", Some(2.5), Some(5.0)).flag,
            Some(LabFlag::Normal)
        );
        // Unknown code with a given range.
        let i = interpret("99999-9", 12.0, "widgets", Some(1.0), Some(10.0));
        assert_eq!(i.flag, Some(LabFlag::High));
        assert_eq!((i.reference_low, i.reference_high), (Some(1.0), Some(10.0)));
        assert_eq!(
            interpret("99999-9", 10.0, "widgets", Some(1.0), Some(10.0)).flag,
            Some(LabFlag::Normal)
        );
        assert_eq!(
            interpret("99999-9", 1.0, "widgets", Some(1.0), Some(10.0)).flag,
            Some(LabFlag::Normal)
        );
        assert_eq!(
            interpret("99999-9", 0.99, "widgets", Some(1.0), Some(10.0)).flag,
            Some(LabFlag::Low)
        );
    }

    #[test]
    fn one_sided_given_ranges() {
        let only_high = |v| interpret("99999-9", v, "x", None, Some(5.0));
        assert_eq!(only_high(-100.0).flag, Some(LabFlag::Normal));
        assert_eq!(only_high(5.0).flag, Some(LabFlag::Normal));
        assert_eq!(only_high(5.1).flag, Some(LabFlag::High));
        assert_eq!(only_high(5.1).reference_low, None);
        let only_low = |v| interpret("99999-9", v, "x", Some(60.0), None);
        assert_eq!(only_low(59.0).flag, Some(LabFlag::Low));
        assert_eq!(only_low(60.0).flag, Some(LabFlag::Normal));
        assert_eq!(only_low(1e9).flag, Some(LabFlag::Normal));
        // A given high replaces the table range entirely (no table low).
        let i = interpret("2823-3", 3.0, "mmol/L", None, Some(5.0));
        assert_eq!((i.reference_low, i.reference_high), (None, Some(5.0)));
        assert_eq!(i.flag, Some(LabFlag::Normal));
        assert_eq!(
            interpret("2823-3", 2.0, "mmol/L", None, Some(5.0)).flag,
            Some(LabFlag::CriticalLow)
        );
    }

    #[test]
    fn bad_values_and_ranges_are_not_flagged() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let i = interpret("2823-3", v, "mmol/L", None, None);
            assert_eq!(i.flag, None);
            assert!(i.warning.unwrap().contains("not a finite number"));
            assert_eq!(i.reference_low, Some(3.5));
        }
        let i = interpret("2823-3", 4.0, "mmol/L", Some(5.0), Some(3.0));
        assert_eq!(i.flag, None);
        assert_eq!(
            i.warning.as_deref(),
            Some("reference low 5 is above reference high 3; not flagged")
        );
        let i = interpret("2823-3", 4.0, "mmol/L", Some(f64::NAN), Some(5.0));
        assert_eq!(i.flag, None);
        assert!(i.warning.is_some());
        // A degenerate range (low == high) is valid: only that value is normal.
        assert_eq!(
            interpret("x", 1.0, "", Some(1.0), Some(1.0)).flag,
            Some(LabFlag::Normal)
        );
    }

    #[test]
    fn code_is_trimmed() {
        assert!(reference(" 2823-3 ").is_some());
        assert_eq!(flag(" 2823-3", 7.0, "mmol/L"), Some(LabFlag::CriticalHigh));
        assert!(reference("").is_none());
    }

    #[test]
    fn flag_helpers() {
        for f in LabFlag::ALL {
            assert_eq!(LabFlag::parse(f.as_str()), Some(f));
            assert_eq!(
                serde_json::to_value(f).unwrap(),
                serde_json::json!(f.as_str())
            );
            assert_eq!(f.to_string(), f.as_str());
        }
        assert_eq!(LabFlag::parse("H"), None);
        assert!(!LabFlag::Normal.is_abnormal());
        assert!(LabFlag::Low.is_abnormal() && LabFlag::High.is_abnormal());
        assert!(LabFlag::CriticalLow.is_abnormal() && LabFlag::CriticalHigh.is_abnormal());
        assert!(
            !LabFlag::Low.is_critical()
                && !LabFlag::High.is_critical()
                && !LabFlag::Normal.is_critical()
        );
        assert!(LabFlag::CriticalLow.is_critical() && LabFlag::CriticalHigh.is_critical());
    }

    #[test]
    fn reference_entry_serializes_camel_case() {
        let e = reference("2823-3").unwrap();
        let v = serde_json::to_value(e).unwrap();
        assert_eq!(v["criticalLow"], serde_json::json!(2.8));
        assert_eq!(v["criticalHigh"], serde_json::json!(6.2));
        assert_eq!(v["unit"], "mmol/L");
    }

    #[test]
    fn significant_rounding() {
        assert_eq!(round_significant(3.885_435, 4), 3.885);
        assert_eq!(round_significant(114.946, 4), 114.9);
        assert_eq!(round_significant(0.0, 4), 0.0);
        assert_eq!(round_significant(-2.12345, 3), -2.12);
    }
}
