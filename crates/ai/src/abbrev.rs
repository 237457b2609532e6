//! Clinical abbreviation expansion, driven by `data/abbreviations.json`.

use crate::text::lazy_regex;
use regex::Regex;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE_JSON: &str = include_str!("../data/abbreviations.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    abbr: String,
    expansion: String,
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default)]
    after_number: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TableFile {
    entries: Vec<Entry>,
}

struct Table {
    entries: Vec<Entry>,
    phrases: Vec<(Regex, usize)>,
    exact: HashMap<String, usize>,
    folded: HashMap<String, usize>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let entries = serde_json::from_str::<TableFile>(TABLE_JSON)
            .map(|t| t.entries)
            .unwrap_or_default();
        let mut phrases = Vec::new();
        let mut exact = HashMap::new();
        let mut folded = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if e.abbr.contains(' ') {
                let body = e
                    .abbr
                    .split_whitespace()
                    .map(regex::escape)
                    .collect::<Vec<_>>()
                    .join(r"\s+");
                let flags = if e.case_sensitive { "" } else { "(?i)" };
                if let Ok(re) = Regex::new(&format!(r"{flags}\b{body}\b")) {
                    phrases.push((re, i));
                }
            } else if e.case_sensitive {
                exact.insert(e.abbr.clone(), i);
            } else {
                folded.insert(e.abbr.to_lowercase(), i);
            }
        }
        Table {
            entries,
            phrases,
            exact,
            folded,
        }
    })
}

/// Number of entries in the abbreviation table.
pub fn table_len() -> usize {
    table().entries.len()
}

/// Every expansion in the table (the words the built-in provider may add).
pub fn expansions() -> Vec<String> {
    table()
        .entries
        .iter()
        .flat_map(|e| std::iter::once(e.expansion.clone()).chain(e.after_number.clone()))
        .collect()
}

/// The expansion of one abbreviation, as the built-in provider would write it.
pub fn lookup(abbr: &str) -> Option<&'static str> {
    let t = table();
    t.exact
        .get(abbr)
        .or_else(|| t.folded.get(&abbr.to_lowercase()))
        .map(|&i| t.entries[i].expansion.as_str())
}

static AGE_RE: OnceLock<Option<Regex>> = OnceLock::new();
static TOKEN_RE: OnceLock<Option<Regex>> = OnceLock::new();

/// Expands the clinical abbreviations in `text` (word-bounded, placeholders
/// such as `[MRN]` untouched).
pub fn expand(text: &str) -> String {
    let t = table();
    // "54yo", "54 y.o." → "54 year-old"
    let mut s = match lazy_regex(&AGE_RE, r"(?i)(\d+)\s?(?:y\.o\.|y/o\b|yo\b)") {
        Some(re) => re.replace_all(text, "$1 year-old").into_owned(),
        None => text.to_string(),
    };
    for (re, i) in &t.phrases {
        let exp = t.entries[*i].expansion.as_str();
        s = re.replace_all(&s, regex::NoExpand(exp)).into_owned();
    }
    let Some(token_re) = lazy_regex(&TOKEN_RE, r"[A-Za-z0-9]+(?:[/&][A-Za-z0-9]+)*/?") else {
        return s;
    };
    let mut out = String::with_capacity(s.len() + 16);
    let mut last = 0;
    for m in token_re.find_iter(&s) {
        let before = s.get(..m.start()).unwrap_or_default().chars().next_back();
        let after = s.get(m.end()..).unwrap_or_default().chars().next();
        if matches!(before, Some('[' | '_' | '-' | '\''))
            || matches!(after, Some(']' | '_' | '-' | '\''))
        {
            continue;
        }
        let tok = m.as_str();
        let idx = t
            .exact
            .get(tok)
            .or_else(|| t.folded.get(&tok.to_lowercase()))
            .copied();
        // A trailing "/" may belong to the token ("w/") or be punctuation.
        let (idx, tok_end) = match idx {
            Some(i) => (Some(i), m.end()),
            None if tok.ends_with('/') && tok.len() > 1 => {
                let core = tok.get(..tok.len() - 1).unwrap_or_default();
                (
                    t.exact
                        .get(core)
                        .or_else(|| t.folded.get(&core.to_lowercase()))
                        .copied(),
                    m.end() - 1,
                )
            }
            None => (None, m.end()),
        };
        let Some(i) = idx else { continue };
        let e = &t.entries[i];
        // "24 hr" = hours, but "T 37 HR 80" and "150/90 HR 98" = heart rate.
        let prev_token = s
            .get(..m.start())
            .unwrap_or_default()
            .split_whitespace()
            .next_back()
            .unwrap_or("");
        let next_token = s
            .get(tok_end..)
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("");
        let after_number = !prev_token.is_empty()
            && prev_token.chars().all(|c| c.is_ascii_digit() || c == '.')
            && !next_token.starts_with(|c: char| c.is_ascii_digit());
        let exp = match (&e.after_number, after_number) {
            (Some(alt), true) => alt.as_str(),
            _ => e.expansion.as_str(),
        };
        out.push_str(s.get(last..m.start()).unwrap_or_default());
        out.push_str(exp);
        last = tok_end;
    }
    out.push_str(s.get(last..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_loads_and_compiles() {
        let t = table();
        assert!(t.entries.len() >= 100, "abbreviation table did not load");
        let phrase_count = t.entries.iter().filter(|e| e.abbr.contains(' ')).count();
        assert_eq!(t.phrases.len(), phrase_count);
    }

    #[test]
    fn expansions_are_not_themselves_abbreviations() {
        // Expansion must be idempotent: no expansion contains a key token.
        for e in expansions() {
            assert_eq!(expand(&e), e, "expansion {e:?} re-expands");
        }
    }

    #[test]
    fn expands_common_abbreviations() {
        assert_eq!(
            expand("54 y/o pt c/o SOB and N/V, hx HTN, DM2"),
            "54 year-old patient complains of shortness of breath and nausea and vomiting, history hypertension, type 2 diabetes mellitus"
        );
        assert_eq!(
            expand("BP 150/90 HR 98 RR 18"),
            "blood pressure 150/90 heart rate 98 respiratory rate 18"
        );
        assert_eq!(expand("f/u 2 wks PRN"), "follow-up 2 weeks as needed");
        assert_eq!(expand("abd soft, NAD"), "abdomen soft, no acute distress");
        assert_eq!(expand("abd pain x 2 days"), "abdominal pain x 2 days");
        assert_eq!(
            expand("SpO2 96% on RA"),
            "oxygen saturation 96% on room air"
        );
        assert_eq!(expand("cough for 24 hr"), "cough for 24 hours");
        assert_eq!(
            expand("cough w/ sputum, w/o fever"),
            "cough with sputum, without fever"
        );
        assert_eq!(expand("67yo F"), "67 year-old F");
        assert_eq!(expand("[MRN] PT referral"), "[MRN] PT referral");
    }
}
