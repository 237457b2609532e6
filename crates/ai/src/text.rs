//! Small text helpers: number formatting, tokenizing, hashing.

use regex::Regex;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// Compiles patterns, dropping any that fail (a unit test asserts none do,
/// so production code never has to unwrap).
pub(crate) fn compile_all(patterns: &[&str]) -> Vec<Regex> {
    patterns.iter().filter_map(|p| Regex::new(p).ok()).collect()
}

/// A single lazily compiled regex; `None` only if the pattern is invalid
/// (unit tests compile every pattern).
pub(crate) fn lazy_regex(
    cell: &'static OnceLock<Option<Regex>>,
    pattern: &str,
) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Number of decimals in the shortest representation of `v` (at most 4).
pub(crate) fn decimals(v: f64) -> usize {
    let s = format!("{v}");
    s.split_once('.').map_or(0, |(_, f)| f.len().min(4))
}

/// Formats a number the way a clinician writes it: no trailing zeros,
/// at most 4 decimals, no `-0`.
pub fn fmt_num(v: f64) -> String {
    fmt_num_dp(v, decimals(v))
}

pub(crate) fn fmt_num_dp(v: f64, dp: usize) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let mut s = format!("{v:.dp$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

pub(crate) fn round_dp(v: f64, dp: usize) -> f64 {
    let f = 10f64.powi(i32::try_from(dp).unwrap_or(4));
    let r = (v * f).round() / f;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// Canonical form of a numeric token (`"8.20"` → `"8.2"`, `"007"` → `"7"`).
pub(crate) fn canonical_number(tok: &str) -> String {
    tok.parse::<f64>().map_or_else(|_| tok.to_string(), fmt_num)
}

static WORD_RE: OnceLock<Option<Regex>> = OnceLock::new();
static NUM_RE: OnceLock<Option<Regex>> = OnceLock::new();

/// Lower-case alphabetic words of `text`.
pub fn words(text: &str) -> BTreeSet<String> {
    let lower = text.to_lowercase();
    lazy_regex(&WORD_RE, r"[\p{L}]+").map_or_else(BTreeSet::new, |re| {
        re.find_iter(&lower)
            .map(|m| m.as_str().to_string())
            .collect()
    })
}

/// Canonical numbers of `text`.
pub fn numbers(text: &str) -> BTreeSet<String> {
    lazy_regex(&NUM_RE, r"\d+(?:\.\d+)?").map_or_else(BTreeSet::new, |re| {
        re.find_iter(text)
            .map(|m| canonical_number(m.as_str()))
            .collect()
    })
}

/// Collapses runs of whitespace to one space and trims.
pub(crate) fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Titles: a period after one never ends a sentence ("Dr. Ferreira").
const TITLES: &[&str] = &["dr", "drs", "mr", "mrs", "ms", "mx", "prof", "sr", "st"];

/// Abbreviations whose period ends a sentence only when a capitalised word
/// follows ("pt. reports" is one sentence).
const ABBREVIATIONS: &[&str] = &[
    "vs", "e.g", "i.e", "approx", "pt", "pts", "hx", "dx", "tx", "rx", "sx", "no", "abd", "etc",
    "fig", "incl", "wk", "wks", "yr", "yrs", "mo", "mos", "min", "mins", "hr", "hrs", "o/e",
];

static SENT_RE: OnceLock<Option<Regex>> = OnceLock::new();

/// Splits text into sentences at `. ! ? ;` followed by whitespace. Titles
/// never end a sentence; other abbreviations only before a capital letter.
/// A question keeps its `?` (a question never becomes a statement); other
/// terminal punctuation is dropped.
pub(crate) fn sentences(text: &str) -> Vec<String> {
    let Some(re) = lazy_regex(&SENT_RE, r"[.!?;]+(\s+|$)") else {
        return vec![text.to_string()];
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut pending = String::new();
    for m in re.find_iter(text) {
        let before = text.get(start..m.start()).unwrap_or_default();
        let prev_word = before
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("")
            .trim_start_matches(['(', '[', '"', '\''])
            .to_lowercase();
        let next = text.get(m.end()..).unwrap_or_default().chars().next();
        let punct = m.as_str().trim();
        if punct == "."
            && (TITLES.contains(&prev_word.as_str())
                || (ABBREVIATIONS.contains(&prev_word.as_str())
                    && next.is_some_and(|c| c.is_lowercase() || c.is_ascii_digit())))
        {
            pending.push_str(text.get(start..m.end()).unwrap_or_default());
            start = m.end();
            continue;
        }
        pending.push_str(before);
        let s = squash(&pending);
        pending.clear();
        if !s.is_empty() {
            out.push(if punct.contains('?') {
                format!("{s}?")
            } else {
                s
            });
        }
        start = m.end();
    }
    pending.push_str(text.get(start..).unwrap_or_default());
    let tail = squash(&pending);
    if !tail.is_empty() {
        out.push(tail);
    }
    out
}

/// Upper-cases the first letter when the first word is all lower case
/// (so `eGFR` or `[PATIENT_NAME]` are left alone).
pub(crate) fn capitalize_first(s: &str) -> String {
    let first_word: &str = s.split_whitespace().next().unwrap_or("");
    let all_lower = first_word
        .chars()
        .filter(|c| c.is_alphabetic())
        .all(|c| c.is_lowercase());
    let starts_alpha = first_word.chars().next().is_some_and(|c| c.is_alphabetic());
    if !(all_lower && starts_alpha) {
        return s.to_string();
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Ensures the sentence ends with terminal punctuation.
pub(crate) fn end_sentence(s: &str) -> String {
    let t = s.trim_end();
    if t.ends_with(['.', '!', '?', ':']) {
        t.to_string()
    } else {
        format!("{t}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(fmt_num(140.0), "140");
        assert_eq!(fmt_num(8.2), "8.2");
        assert_eq!(fmt_num(-0.0), "0");
        assert_eq!(fmt_num_dp(8.2 - 7.1, 1), "1.1");
        assert_eq!(canonical_number("8.20"), "8.2");
        assert_eq!(canonical_number("007"), "7");
    }

    #[test]
    fn tokenizes() {
        assert!(words("Shortness of Breath").contains("breath"));
        assert!(numbers("BP 150/90, T 38.50").contains("38.5"));
    }

    #[test]
    fn splits_sentences() {
        assert_eq!(
            sentences("Seen with Dr. Ferreira. Pt. reports pain. Is it ok?"),
            vec!["Seen with Dr. Ferreira", "Pt. reports pain", "Is it ok?"]
        );
        assert_eq!(
            sentences("pt. reports cough; no fever"),
            vec!["pt. reports cough", "no fever"]
        );
    }

    #[test]
    fn capitalizes() {
        assert_eq!(capitalize_first("lungs clear"), "Lungs clear");
        assert_eq!(capitalize_first("eGFR 45"), "eGFR 45");
        assert_eq!(
            capitalize_first("[PATIENT_NAME] reports"),
            "[PATIENT_NAME] reports"
        );
    }
}
