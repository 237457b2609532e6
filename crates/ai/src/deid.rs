//! De-identification: identifiers are replaced by placeholders before any
//! text reaches a provider, and restored in the provider's answer.
//!
//! Known identifiers come from [`PatientIdentifiers`]; e-mail addresses,
//! phone numbers and dates anywhere in free text are found by pattern.
//! Each distinct spelling gets its own placeholder (`[PATIENT_GIVEN_NAME]`,
//! `[PATIENT_GIVEN_NAME_2]`, …) so restoring gives back exactly what was written.

use crate::text::{compile_all, lazy_regex};
use crate::types::PatientIdentifiers;
use regex::Regex;
use std::sync::OnceLock;

/// Placeholder kinds, in the order they are applied.
const MONTHS: &str = "(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";

fn generic_patterns() -> &'static [(String, Vec<Regex>)] {
    static P: OnceLock<Vec<(String, Vec<Regex>)>> = OnceLock::new();
    P.get_or_init(|| {
        let date_month_first =
            format!(r"(?i)\b{MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b");
        let date_day_first =
            format!(r"(?i)\b\d{{1,2}}(?:st|nd|rd|th)?\s+{MONTHS}\.?,?\s+\d{{4}}\b");
        vec![
            (
                "EMAIL".to_string(),
                compile_all(&[r"(?i)\b[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}\b"]),
            ),
            (
                "PHONE".to_string(),
                compile_all(&[
                    // +44 20 7946 0958, (555) 010-9999, 555-010-9999, 555.010.9999
                    r"(?:\+\d{1,3}[\s.\-]?)?\(?\b\d{2,4}\)?[\s.\-]\d{3,4}[\s.\-]\d{3,4}\b",
                ]),
            ),
            (
                "DATE".to_string(),
                compile_all(&[
                    r"\b\d{4}-\d{1,2}-\d{1,2}\b",
                    r"\b\d{1,2}/\d{1,2}/\d{2,4}\b",
                    r"\b\d{1,2}\.\d{1,2}\.\d{4}\b",
                    &date_month_first,
                    &date_day_first,
                ]),
            ),
        ]
    })
}

/// Number of generic patterns expected (for the compile test).
#[cfg(test)]
const GENERIC_PATTERN_COUNT: usize = 7;

/// Maps placeholders to the text they replaced, for one request.
#[derive(Debug, Default)]
pub struct Vault {
    /// (kind, regex) for the known identifiers, in application order.
    known: Vec<(String, Regex)>,
    /// (placeholder, original text)
    entries: Vec<(String, String)>,
}

fn digits_pattern(digits: &str) -> String {
    digits
        .chars()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(r"[\s().\-]*")
}

fn word_pattern(literal: &str) -> Option<Regex> {
    let lit = literal.trim();
    if lit.chars().filter(|c| c.is_alphanumeric()).count() < 2 {
        return None;
    }
    let body = lit
        .split_whitespace()
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(r"[\s,]+");
    let starts_word = lit.chars().next().is_some_and(char::is_alphanumeric);
    let ends_word = lit.chars().next_back().is_some_and(char::is_alphanumeric);
    let pre = if starts_word { r"\b" } else { "" };
    let post = if ends_word { r"\b" } else { "" };
    Regex::new(&format!("(?i){pre}{body}{post}")).ok()
}

/// Other spellings of an ISO birth date (`1980-04-12` → `04/12/1980`, `12 April 1980`, …).
fn date_variants(date: &str) -> Vec<String> {
    let mut out = vec![date.trim().to_string()];
    let parts: Vec<&str> = date.trim().get(..10).unwrap_or("").split('-').collect();
    if let [y, m, d] = parts.as_slice() {
        if let (Ok(_), Ok(mi), Ok(di)) = (y.parse::<u32>(), m.parse::<usize>(), d.parse::<u32>()) {
            const NAMES: [&str; 12] = [
                "January",
                "February",
                "March",
                "April",
                "May",
                "June",
                "July",
                "August",
                "September",
                "October",
                "November",
                "December",
            ];
            out.push(format!("{m}/{d}/{y}"));
            out.push(format!("{d}/{m}/{y}"));
            out.push(format!("{mi}/{di}/{y}"));
            out.push(format!("{di}/{mi}/{y}"));
            out.push(format!("{d}.{m}.{y}"));
            if let Some(name) = mi.checked_sub(1).and_then(|i| NAMES.get(i)) {
                let short = name.get(..3).unwrap_or_default();
                out.push(format!("{name} {di}, {y}"));
                out.push(format!("{name} {di} {y}"));
                out.push(format!("{di} {name} {y}"));
                out.push(format!("{short} {di}, {y}"));
                out.push(format!("{short} {di} {y}"));
                out.push(format!("{di} {short} {y}"));
            }
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

impl Vault {
    /// Prepares the known identifiers of one patient.
    pub fn new(ids: &PatientIdentifiers) -> Self {
        let mut known: Vec<(String, Regex)> = Vec::new();
        let mut push = |kind: &str, re: Option<Regex>| {
            if let Some(re) = re {
                known.push((kind.to_string(), re));
            }
        };
        if let Some(email) = ids.email.as_deref().filter(|e| !e.trim().is_empty()) {
            push(
                "EMAIL",
                Regex::new(&format!("(?i){}", regex::escape(email.trim()))).ok(),
            );
        }
        if let Some(addr) = ids.address.as_deref().filter(|a| !a.trim().is_empty()) {
            push("ADDRESS", word_pattern(addr));
            // The street line alone ("12 Oak Street" of "12 Oak Street, Springfield").
            for line in addr
                .split([',', '\n'])
                .map(str::trim)
                .filter(|l| l.len() >= 6)
            {
                if line.chars().any(|c| c.is_ascii_digit()) {
                    push("ADDRESS", word_pattern(line));
                }
            }
        }
        if let Some(phone) = ids.phone.as_deref() {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            if digits.len() >= 7 {
                push(
                    "PHONE",
                    Regex::new(&format!(r"\+?{}\b", digits_pattern(&digits))).ok(),
                );
                // Without the country code.
                if digits.len() > 10 {
                    let local = digits.get(digits.len() - 10..).unwrap_or_default();
                    push(
                        "PHONE",
                        Regex::new(&format!(r"\b{}\b", digits_pattern(local))).ok(),
                    );
                }
            }
        }
        if let Some(bd) = ids.birth_date.as_deref().filter(|b| !b.trim().is_empty()) {
            for v in date_variants(bd) {
                push("BIRTH_DATE", word_pattern(&v));
            }
        }
        if !ids.mrn.trim().is_empty() {
            let mrn = ids.mrn.trim();
            let pre = if mrn.starts_with(|c: char| c.is_alphanumeric()) {
                r"\b"
            } else {
                ""
            };
            let post = if mrn.ends_with(|c: char| c.is_alphanumeric()) {
                r"\b"
            } else {
                ""
            };
            push(
                "MRN",
                Regex::new(&format!("(?i){pre}{}{post}", regex::escape(mrn))).ok(),
            );
        }
        let given = ids.given_name.trim();
        let family = ids.family_name.trim();
        if !given.is_empty() && !family.is_empty() {
            push("PATIENT_NAME", word_pattern(&format!("{given} {family}")));
            push("PATIENT_NAME", word_pattern(&format!("{family}, {given}")));
        }
        if !family.is_empty() {
            push("PATIENT_FAMILY_NAME", word_pattern(family));
        }
        if !given.is_empty() {
            push("PATIENT_GIVEN_NAME", word_pattern(given));
        }
        Vault {
            known,
            entries: Vec::new(),
        }
    }

    fn placeholder_for(&mut self, kind: &str, original: &str) -> String {
        if let Some((p, _)) = self
            .entries
            .iter()
            .find(|(p, o)| o == original && placeholder_kind(p) == kind)
        {
            return p.clone();
        }
        let n = self
            .entries
            .iter()
            .filter(|(p, _)| placeholder_kind(p) == kind)
            .count();
        let generic = matches!(kind, "EMAIL" | "PHONE" | "DATE")
            && !self.known.iter().any(|(k, _)| k == kind);
        let p = if n == 0 && !generic {
            format!("[{kind}]")
        } else {
            format!("[{kind}_{}]", n + 1)
        };
        self.entries.push((p.clone(), original.to_string()));
        p
    }

    /// Replaces identifiers in `text` by placeholders.
    pub fn redact(&mut self, text: &str) -> String {
        let mut s = text.to_string();
        for i in 0..self.known.len() {
            let (kind, re) = self.known[i].clone();
            s = self.replace_with(&s, &re, &kind);
        }
        for (kind, res) in generic_patterns() {
            for re in res {
                s = self.replace_with(&s, re, kind);
            }
        }
        s
    }

    fn replace_with(&mut self, s: &str, re: &Regex, kind: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for m in re.find_iter(s) {
            out.push_str(s.get(last..m.start()).unwrap_or_default());
            let p = self.placeholder_for(kind, m.as_str());
            out.push_str(&p);
            last = m.end();
        }
        out.push_str(s.get(last..).unwrap_or_default());
        out
    }

    /// Puts the original text back in place of every placeholder.
    pub fn restore(&self, text: &str) -> String {
        let mut s = text.to_string();
        for (p, o) in &self.entries {
            if s.contains(p.as_str()) {
                s = s.replace(p.as_str(), o);
            }
        }
        s
    }

    /// Placeholders handed out so far.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(p, _)| p.as_str())
    }

    /// The original texts that were replaced (for leak tests).
    pub fn originals(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(_, o)| o.as_str())
    }
}

fn placeholder_kind(p: &str) -> &str {
    let inner = p.trim_start_matches('[').trim_end_matches(']');
    match inner.rsplit_once('_') {
        Some((k, n)) if n.chars().all(|c| c.is_ascii_digit()) => k,
        _ => inner,
    }
}

static PLACEHOLDER_RE: OnceLock<Option<Regex>> = OnceLock::new();

/// Placeholder-shaped tokens left in `text` (`[MRN]`, `PATIENT_NAME`, `[DATE_3]`, …).
pub fn placeholder_like(text: &str) -> Vec<String> {
    lazy_regex(
        &PLACEHOLDER_RE,
        r"\[?\b(?:PATIENT_(?:GIVEN_|FAMILY_)?NAME|MRN|BIRTH_DATE|PHONE|EMAIL|ADDRESS|DATE)(?:_\d+)?\b\]?",
    )
    .map(|re| {
        re.find_iter(text)
            .map(|m| m.as_str().to_string())
            // A bare "MRN", "PHONE", "EMAIL", "DATE" or "ADDRESS" is an ordinary word.
            .filter(|t| t.starts_with('[') || t.contains('_'))
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> PatientIdentifiers {
        PatientIdentifiers {
            given_name: "Zelda".into(),
            family_name: "Quixote".into(),
            mrn: "MRN-884211".into(),
            birth_date: Some("1961-07-04".into()),
            phone: Some("+1 (555) 013-2477".into()),
            email: Some("zelda.q@example.org".into()),
            address: Some("42 Wallaby Way, Springfield".into()),
        }
    }

    #[test]
    fn generic_patterns_compile() {
        let n: usize = generic_patterns().iter().map(|(_, r)| r.len()).sum();
        assert_eq!(n, GENERIC_PATTERN_COUNT);
        assert_eq!(
            placeholder_like("see [MRN] and PATIENT_NAME, MRN"),
            vec!["[MRN]", "PATIENT_NAME"]
        );
    }

    #[test]
    fn redacts_and_restores() {
        let mut v = Vault::new(&ids());
        let text = "Zelda Quixote (MRN-884211), born 07/04/1961, phone 555-013-2477, \
                    zelda.q@example.org, lives at 42 Wallaby Way. zelda reports cough since 2024-03-01. \
                    Daughter's number (555) 222-3333, mail jo@kin.net. Seen July 4, 1961? Quixote agrees.";
        let red = v.redact(text);
        for canary in [
            "Zelda",
            "zelda",
            "Quixote",
            "884211",
            "1961",
            "013-2477",
            "example.org",
            "Wallaby",
            "2024-03-01",
            "222-3333",
            "jo@kin.net",
        ] {
            assert!(!red.contains(canary), "{canary} leaked in {red}");
        }
        assert!(red.contains("[PATIENT_NAME]"));
        assert!(red.contains("[MRN]"));
        assert!(red.contains("[EMAIL]"));
        assert!(red.contains("[PHONE]"));
        assert!(red.contains("[ADDRESS]"));
        assert!(red.contains("[BIRTH_DATE]"));
        assert!(red.contains("[DATE_1]"));
        assert_eq!(v.restore(&red), text);
    }

    #[test]
    fn clinical_numbers_survive() {
        let mut v = Vault::new(&ids());
        let text = "BP 150/90, HR 98, glucose 250 mg/dL, A1c 8.2%, pain 7/10, weight 82.5 kg";
        assert_eq!(v.redact(text), text);
    }
}
