//! Dictation without punctuation: "she says … on exam … assessment … plan …".
//!
//! Long runs of words with no sentence punctuation are cut at spoken cue
//! words, and spoken section names become labels (`plan` → `plan:`), so the
//! sorter sees the same structure as typed notes. Only punctuation is
//! added (and a dangling "and"/"then" before a cut is dropped): no word is
//! invented.

use crate::text::lazy_regex;
use regex::Regex;
use std::sync::OnceLock;

/// Runs shorter than this are left alone (typed notes are punctuated).
const MIN_WORDS: usize = 10;

/// Spoken section names, with the words before or after that make them
/// ordinary words ("care plan", "plan to", "falls risk assessment").
const LABEL_CUES: &str =
    r"(?i)\b(assessment|impression|plan|on examination|on exam|o/e|examination)\b";
const LABEL_NOT_AFTER: &[&str] = &[
    "care",
    "treatment",
    "management",
    "action",
    "birth",
    "safety",
    "exercise",
    "diet",
    "meal",
    "the",
    "a",
    "an",
    "with",
    "of",
    "to",
    "this",
    "our",
    "his",
    "her",
    "your",
    "their",
    "current",
    "new",
    "same",
    "agreed",
    "discussed",
    "risk",
    "capacity",
    "needs",
    "falls",
    "functional",
    "nutritional",
    "formal",
    "full",
    "further",
    "initial",
    "for",
    "physical",
    "no",
    "on",
];
const LABEL_NOT_BEFORE: &[&str] = &[
    "to",
    "for",
    "is",
    "was",
    "agreed",
    "discussed",
    "of",
    "as",
    "and",
    "shows",
    "showed",
    "reveals",
    "revealed",
    "by",
    "with",
    "today",
];

/// Cue phrases that start a new sentence (who says what; measurements;
/// follow-up instructions).
const BREAK_CUES: &str = r"(?i)\b(?:(?:and |then |but )?(?:she|he|they|pt|patient|the patient|mum|mom|mother|dad|father) (?:says|said|reports|reported|states|stated|complains|describes|denies|mentions)|(?:and |then )?(?:come back|follow up in|follow-up in|f/u in|review in|return if|return to clinic|see again in|recheck in)|(?:bp|blood pressure|heart rate|hr|pulse|temp|temperature|sats|spo2|rr|respiratory rate|weight|wt|bmi|lying bp|standing bp)\s*(?:of|is|was)?\s*\d)\b";

fn label_re() -> Option<&'static Regex> {
    static C: OnceLock<Option<Regex>> = OnceLock::new();
    lazy_regex(&C, LABEL_CUES)
}

fn break_re() -> Option<&'static Regex> {
    static C: OnceLock<Option<Regex>> = OnceLock::new();
    lazy_regex(&C, BREAK_CUES)
}

fn last_word(s: &str) -> String {
    s.split_whitespace()
        .next_back()
        .unwrap_or("")
        .to_lowercase()
}

fn first_word(s: &str) -> String {
    s.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// One unpunctuated run with cuts and labels added.
fn punctuate_run(run: &str) -> String {
    // Typed text with commas is already structured.
    if run.split_whitespace().count() < MIN_WORDS || run.contains(',') {
        return run.to_string();
    }
    let lead = run.strip_suffix(run.trim_start()).unwrap_or_default();
    // (position, label word end or None for a plain cut)
    let mut cuts: Vec<(usize, Option<usize>)> = Vec::new();
    if let Some(re) = label_re() {
        for m in re.find_iter(run) {
            let before = run.get(..m.start()).unwrap_or_default();
            let after = run.get(m.end()..).unwrap_or_default();
            if after.trim_start().starts_with(':')
                || LABEL_NOT_AFTER.contains(&last_word(before).as_str())
                || LABEL_NOT_BEFORE.contains(&first_word(after).as_str())
                || after.trim().is_empty()
            {
                continue;
            }
            cuts.push((m.start(), Some(m.end())));
        }
    }
    if let Some(re) = break_re() {
        for m in re.find_iter(run) {
            if !cuts
                .iter()
                .any(|(p, e)| *p <= m.start() && e.is_some_and(|e| e > m.start()))
            {
                cuts.push((m.start(), None));
            }
        }
    }
    cuts.sort_unstable();
    let mut out = lead.to_string();
    let mut last = lead.len();
    for (pos, label_end) in cuts {
        if pos < last {
            continue;
        }
        let before = run.get(last..pos).unwrap_or_default().trim();
        if !before.is_empty() {
            out.push_str(before);
            out.push_str(". ");
        }
        let mut start = pos;
        // Drop a connective at the cut ("… swab and come back …").
        for conn in ["and ", "then ", "but "] {
            if run
                .get(start..)
                .unwrap_or_default()
                .to_lowercase()
                .starts_with(conn)
            {
                start += conn.len();
            }
        }
        match label_end {
            Some(end) => {
                out.push_str(run.get(start..end).unwrap_or_default());
                out.push_str(": ");
                last = end;
            }
            None => last = start,
        }
    }
    out.push_str(run.get(last..).unwrap_or_default().trim_start());
    out
}

/// Adds sentence breaks and labels to unpunctuated dictation, line by line.
pub(crate) fn punctuate(input: &str) -> String {
    static RUN: OnceLock<Option<Regex>> = OnceLock::new();
    let Some(run_re) = lazy_regex(&RUN, r"[^.!?;\n]+[.!?;]*") else {
        return input.to_string();
    };
    input
        .lines()
        .map(|line| {
            let mut out = String::with_capacity(line.len() + 16);
            let mut last = 0;
            for m in run_re.find_iter(line) {
                out.push_str(line.get(last..m.start()).unwrap_or_default()); // e.g. a leading "?"
                let s = m.as_str();
                let body = s.trim_end_matches(['.', '!', '?', ';']);
                out.push_str(&punctuate_run(body));
                out.push_str(s.get(body.len()..).unwrap_or_default());
                last = m.end();
            }
            out.push_str(line.get(last..).unwrap_or_default());
            out
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cues_compile() {
        assert!(label_re().is_some());
        assert!(break_re().is_some());
    }

    #[test]
    fn cuts_dictation_at_cue_words() {
        let p = punctuate(
            "she says the headaches started 3 weeks ago on exam fundi normal assessment tension type headache plan headache diary and review in 2 weeks",
        );
        assert_eq!(
            p,
            "she says the headaches started 3 weeks ago. on exam: fundi normal. assessment: tension type headache. plan: headache diary. review in 2 weeks"
        );
        // Short or punctuated text is left alone.
        assert_eq!(punctuate("?UTI. ?pyelo"), "?UTI. ?pyelo");
        assert_eq!(punctuate("Care plan agreed."), "Care plan agreed.");
        assert_eq!(
            punctuate("Continue the current care plan and review in 2 weeks with bloods."),
            "Continue the current care plan. review in 2 weeks with bloods."
        );
        assert_eq!(
            punctuate(
                "Cough x 3 days. BP 150/90, HR 98, lungs with crackles bilaterally likely CHF"
            ),
            "Cough x 3 days. BP 150/90, HR 98, lungs with crackles bilaterally likely CHF"
        );
    }
}
