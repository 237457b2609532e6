//! The medication dictionary and the checks that need it (issue 12):
//! resolving free text to ingredients (with fuzzy matching of misspellings),
//! duplicate therapy and drug–drug interactions.
//!
//! The data ships in the binary: `data/medications.json` (INN/RxNorm
//! ingredient names, brand names and combination products, WHO ATC codes)
//! and `data/drug_interactions.json` (a curated table of high-priority
//! pairs, each with its source). See docs/MEDICATION_SAFETY.md.
//!
//! Text is resolved phrase by phrase, longest phrase first, after the same
//! folding as the allergy check; strengths, forms, routes and salts are
//! ignored. A word that names nothing is compared with every dictionary
//! name by edit distance (Damerau–Levenshtein, adjacent transpositions
//! counted once), so "amoxicilin" is offered as "amoxicillin" — but only
//! offered: the caller decides whether a correction needs confirmation.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::allergy::is_noise;
use crate::text::fold;

/// One ingredient of the dictionary.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ingredient {
    /// INN, lowercase ("paracetamol").
    pub name: String,
    /// The RxNorm (US) name where it differs ("acetaminophen").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rxnorm: Option<String>,
    /// Other spellings ("amoxycillin").
    #[serde(default, skip_serializing)]
    pub also: Vec<String>,
    /// WHO ATC codes (level 5, or the combination's code).
    pub atc: Vec<String>,
    #[serde(default, skip_serializing)]
    pub brands: Vec<String>,
}

impl Ingredient {
    /// "paracetamol (acetaminophen)", or the name alone.
    pub fn display(&self) -> String {
        match &self.rxnorm {
            Some(us) => format!("{} ({us})", self.name),
            None => self.name.clone(),
        }
    }

    /// The ATC level-4 groups ("N06AB"), the drug classes used for
    /// duplicate therapy.
    fn classes(&self) -> impl Iterator<Item = &str> {
        self.atc.iter().filter_map(|c| c.get(..5))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DictionaryFile {
    sources: String,
    classes: HashMap<String, String>,
    #[serde(default)]
    duplicate_exempt: Vec<Exempt>,
    ingredients: Vec<Ingredient>,
    #[serde(default)]
    products: Vec<ProductFile>,
}

#[derive(Debug, Deserialize)]
struct Exempt {
    atc: String,
    #[allow(dead_code)] // documentation in the data file
    why: String,
}

#[derive(Debug, Deserialize)]
struct ProductFile {
    names: Vec<String>,
    ingredients: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct InteractionFile {
    sources: String,
    groups: HashMap<String, GroupFile>,
    interactions: Vec<InteractionEntry>,
}

#[derive(Debug, Deserialize)]
struct GroupFile {
    members: Vec<String>,
    #[allow(dead_code)] // documentation in the data file
    source: String,
}

/// One row of the interaction table, as written in the data file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractionEntry {
    pub a: Vec<String>,
    pub b: Vec<String>,
    /// "contraindicated" or "major".
    pub severity: String,
    pub effect: String,
    pub advice: String,
    pub source: String,
}

/// A dictionary name (ingredient, spelling or brand) and what it stands for.
#[derive(Debug)]
struct Name {
    /// As written in the data ("Augmentin", "amoxicillin").
    display: String,
    /// Folded tokens joined by single spaces.
    key: String,
    ingredients: Vec<usize>,
}

#[derive(Debug, Default)]
struct Dictionary {
    sources: String,
    interaction_sources: String,
    ingredients: Vec<Ingredient>,
    classes: HashMap<String, String>,
    exempt: HashSet<String>,
    names: Vec<Name>,
    by_key: HashMap<String, usize>,
    max_phrase: usize,
    interactions: Vec<(InteractionEntry, HashSet<usize>, HashSet<usize>)>,
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("{0}: unknown ingredient {1:?}")]
    UnknownIngredient(&'static str, String),
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error("selector {0:?} matches no ingredient")]
    EmptySelector(String),
    #[error("name {0:?} is empty or names two different things")]
    BadName(String),
}

const DICTIONARY_JSON: &str = include_str!("../data/medications.json");
const INTERACTIONS_JSON: &str = include_str!("../data/drug_interactions.json");

/// Parsed once; a unit test guarantees the compiled-in files load. Should
/// they ever not, nothing resolves, so every medication needs the
/// "checks could not run" acknowledgement instead of passing silently.
static DICTIONARY: LazyLock<Dictionary> =
    LazyLock::new(|| load(DICTIONARY_JSON, INTERACTIONS_JSON).unwrap_or_default());

fn load(dictionary: &str, interactions: &str) -> Result<Dictionary, LoadError> {
    let file: DictionaryFile = serde_json::from_str(dictionary)?;
    let mut d = Dictionary {
        sources: file.sources,
        classes: file.classes,
        exempt: file.duplicate_exempt.into_iter().map(|e| e.atc).collect(),
        ingredients: file.ingredients,
        ..Dictionary::default()
    };
    let index: HashMap<String, usize> = d
        .ingredients
        .iter()
        .enumerate()
        .map(|(i, ing)| (ing.name.clone(), i))
        .collect();
    let mut entries: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, ing) in d.ingredients.iter().enumerate() {
        let spellings = std::iter::once(&ing.name)
            .chain(ing.rxnorm.iter())
            .chain(&ing.also)
            .chain(&ing.brands);
        entries.extend(spellings.map(|n| (n.clone(), vec![i])));
    }
    for p in file.products {
        let parts = p
            .ingredients
            .iter()
            .map(|n| {
                index
                    .get(n)
                    .copied()
                    .ok_or_else(|| LoadError::UnknownIngredient("products", n.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        entries.extend(p.names.into_iter().map(|n| (n, parts.clone())));
    }
    for (display, ingredients) in entries {
        let key = key_of(&display);
        if key.is_empty() {
            return Err(LoadError::BadName(display));
        }
        match d.by_key.get(&key) {
            Some(&j) if d.names[j].ingredients == ingredients => continue,
            Some(_) => return Err(LoadError::BadName(display)),
            None => {}
        }
        d.max_phrase = d.max_phrase.max(key.split(' ').count());
        d.by_key.insert(key.clone(), d.names.len());
        d.names.push(Name {
            display,
            key,
            ingredients,
        });
    }

    let file: InteractionFile = serde_json::from_str(interactions)?;
    d.interaction_sources = file.sources;
    for entry in file.interactions {
        let a = d.select(&entry.a, &file.groups, &index)?;
        let b = d.select(&entry.b, &file.groups, &index)?;
        d.interactions.push((entry, a, b));
    }
    Ok(d)
}

fn key_of(name: &str) -> String {
    spans(name)
        .into_iter()
        .map(|t| t.text)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Dictionary {
    /// The ingredients a list of selectors (name, `atc:` prefix, `group:`)
    /// stands for.
    fn select(
        &self,
        selectors: &[String],
        groups: &HashMap<String, GroupFile>,
        index: &HashMap<String, usize>,
    ) -> Result<HashSet<usize>, LoadError> {
        let mut out = HashSet::new();
        for s in selectors {
            let found: HashSet<usize> = if let Some(prefix) = s.strip_prefix("atc:") {
                (0..self.ingredients.len())
                    .filter(|&i| {
                        self.ingredients[i]
                            .atc
                            .iter()
                            .any(|c| c.starts_with(prefix))
                    })
                    .collect()
            } else if let Some(g) = s.strip_prefix("group:") {
                let group = groups
                    .get(g)
                    .ok_or_else(|| LoadError::UnknownGroup(g.to_string()))?;
                self.select(&group.members, groups, index)?
            } else {
                let i = index
                    .get(s)
                    .ok_or_else(|| LoadError::UnknownIngredient("interactions", s.clone()))?;
                HashSet::from([*i])
            };
            if found.is_empty() {
                return Err(LoadError::EmptySelector(s.clone()));
            }
            out.extend(found);
        }
        Ok(out)
    }
}

/// A folded word of the input and where it is in the original text.
#[derive(Debug, Clone)]
struct Span {
    text: String,
    range: Range<usize>,
}

/// Split into folded word tokens, with byte ranges into `s`. Letters and
/// digits separate ("500mg" → "500", "mg"), as in the allergy check.
fn spans(s: &str) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut cur: Option<(String, Range<usize>, bool)> = None;
    let mut buf = [0u8; 4];
    for (at, c) in s.char_indices() {
        let end = at + c.len_utf8();
        let folded = fold(c.encode_utf8(&mut buf));
        // Whitespace folds to nothing, and separates words.
        if folded.is_empty() {
            if let Some((text, range, _)) = cur.take() {
                out.push(Span { text, range });
            }
        }
        for f in folded.chars() {
            if !f.is_alphanumeric() {
                if let Some((text, range, _)) = cur.take() {
                    out.push(Span { text, range });
                }
                continue;
            }
            let digit = f.is_numeric();
            match &mut cur {
                Some((text, range, d)) if *d == digit => {
                    text.push(f);
                    range.end = end;
                }
                _ => {
                    if let Some((text, range, _)) = cur.take() {
                        out.push(Span { text, range });
                    }
                    cur = Some((f.to_string(), at..end, digit));
                }
            }
        }
    }
    if let Some((text, range, _)) = cur {
        out.push(Span { text, range });
    }
    out
}

/// Words of a medication line that say nothing about what it is, beyond the
/// allergy check's strengths, forms, routes and salts.
const MORE_NOISE: &str = "extra strength forte junior infant infants child children childrens \
     paediatric pediatric adult adults regular original max maximum rapid fast generic brand \
     hfa mdi dpi take use apply day days times one two three four half mr";

fn is_filler(t: &str) -> bool {
    t.chars().count() < 3 || is_noise(t) || MORE_NOISE.split_whitespace().any(|w| w == t)
}

/// A misspelt part of the input and the dictionary names it may mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Correction {
    /// The words as typed.
    pub typed: String,
    /// Closest dictionary names first, each standing for different
    /// ingredients; the first is the one a confirmation accepts.
    pub suggestions: Vec<String>,
    #[serde(skip)]
    range: Range<usize>,
}

/// How a medication text resolved against the dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchStatus {
    /// Every word is a dictionary name or a strength, form or route.
    Exact,
    /// Some words are close to a dictionary name but not equal to one.
    Suggested,
    /// Something names nothing the dictionary knows: the allergy,
    /// duplicate and interaction checks cannot be trusted.
    Unrecognised,
}

impl MatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchStatus::Exact => "exact",
            MatchStatus::Suggested => "suggested",
            MatchStatus::Unrecognised => "unrecognised",
        }
    }
}

/// The result of resolving one medication text.
#[derive(Debug, Clone)]
pub struct Resolved {
    text: String,
    /// Dictionary indices: exact matches, then the first suggestion of each
    /// correction (so checks on an unconfirmed spelling err on the side of
    /// warning).
    ingredients: Vec<usize>,
    /// How many of `ingredients` were matched exactly (they come first).
    exact: usize,
    pub corrections: Vec<Correction>,
    /// Words that match nothing, not even approximately.
    pub unknown: Vec<String>,
}

impl Resolved {
    pub fn status(&self) -> MatchStatus {
        if !self.unknown.is_empty() || self.ingredients.is_empty() {
            MatchStatus::Unrecognised
        } else if !self.corrections.is_empty() {
            MatchStatus::Suggested
        } else {
            MatchStatus::Exact
        }
    }

    /// The ingredients found (with the first suggestion of each correction).
    pub fn ingredients(&self) -> Vec<&'static Ingredient> {
        let d: &'static Dictionary = &DICTIONARY;
        self.ingredients
            .iter()
            .map(|&i| &d.ingredients[i])
            .collect()
    }

    /// Ingredient names, for display ("paracetamol (acetaminophen)").
    pub fn ingredient_names(&self) -> Vec<String> {
        self.ingredients().iter().map(|i| i.display()).collect()
    }

    /// The text with every correction's first suggestion put in place of
    /// the typed words ("amoxicilin 500 mg" → "amoxicillin 500 mg"); `None`
    /// when a correction is ambiguous (two names equally close).
    pub fn corrected(&self) -> Option<String> {
        let mut out = String::new();
        let mut at = 0;
        for c in &self.corrections {
            if c.suggestions.len() != 1 && !self.first_is_clear(c) {
                return None;
            }
            let s = c.suggestions.first()?;
            out.push_str(self.text.get(at..c.range.start)?);
            out.push_str(s);
            at = c.range.end;
        }
        out.push_str(self.text.get(at..)?);
        Some(out)
    }

    /// For each suggestion of the first correction, that suggestion and the
    /// text with it in place (the other corrections take their first):
    /// the choices a form offers as "Did you mean …?" buttons.
    pub fn alternatives(&self) -> Vec<(String, String)> {
        let Some(first) = self.corrections.first() else {
            return Vec::new();
        };
        first
            .suggestions
            .iter()
            .filter_map(|s| {
                let mut out = String::new();
                let mut at = 0;
                for (k, c) in self.corrections.iter().enumerate() {
                    let pick = if k == 0 { s } else { c.suggestions.first()? };
                    out.push_str(self.text.get(at..c.range.start)?);
                    out.push_str(pick);
                    at = c.range.end;
                }
                out.push_str(self.text.get(at..)?);
                Some((s.clone(), out))
            })
            .collect()
    }

    fn first_is_clear(&self, c: &Correction) -> bool {
        // Only one suggestion is at the best distance (the others are
        // listed as alternatives one edit further away).
        let typed = fold(&c.typed);
        let mut d = c.suggestions.iter().map(|s| distance(&typed, &key_of(s)));
        match (d.next(), d.next()) {
            (Some(a), Some(b)) => a < b,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// The text the allergy check compares: the text itself and the
    /// generic names of its ingredients, so that "Augmentin" meets a
    /// penicillin allergy and "Zoloft" a sertraline one. `suggested` adds
    /// the ingredients of unconfirmed corrections too (right for a
    /// medication, where a false alarm is the safe error; wrong for an
    /// allergy's text, where "eggs" must not become a drug).
    pub fn allergy_terms(&self, suggested: bool) -> String {
        let mut s = self.text.clone();
        let n = if suggested {
            self.ingredients.len()
        } else {
            self.exact
        };
        let d: &Dictionary = &DICTIONARY;
        for i in self.ingredients[..n].iter().map(|&i| &d.ingredients[i]) {
            s.push_str(" / ");
            s.push_str(&i.name);
            if let Some(us) = &i.rxnorm {
                s.push_str(" / ");
                s.push_str(us);
            }
        }
        s
    }
}

/// The maximum edit distance accepted for a typed word of `len` letters.
fn tolerance(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=5 => 1,
        6..=9 => 2,
        _ => 3,
    }
}

/// Optimal string alignment distance (Damerau–Levenshtein with adjacent
/// transpositions), over chars.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Resolve a medication text against the dictionary.
pub fn resolve(text: &str) -> Resolved {
    let d: &Dictionary = &DICTIONARY;
    let toks = spans(text);
    let mut out = Resolved {
        text: text.to_string(),
        ingredients: Vec::new(),
        exact: 0,
        corrections: Vec::new(),
        unknown: Vec::new(),
    };
    let mut suggested: Vec<usize> = Vec::new();
    let mut i = 0;
    'outer: while i < toks.len() {
        // 1. The longest exact phrase starting here.
        for len in (1..=d.max_phrase.min(toks.len() - i)).rev() {
            let key = join(&toks[i..i + len]);
            if let Some(&n) = d.by_key.get(&key) {
                for &ing in &d.names[n].ingredients {
                    push_unique(&mut out.ingredients, ing);
                }
                i += len;
                continue 'outer;
            }
        }
        if is_filler(&toks[i].text) {
            i += 1;
            continue;
        }
        // 2. The closest name to one, two or three words starting here.
        match d.closest(&toks[i..]) {
            Some((len, names)) => {
                let range = toks[i].range.start..toks[i + len - 1].range.end;
                for &ing in &d.names[names[0]].ingredients {
                    push_unique(&mut suggested, ing);
                }
                out.corrections.push(Correction {
                    typed: text.get(range.clone()).unwrap_or_default().to_string(),
                    suggestions: names.iter().map(|&n| d.names[n].display.clone()).collect(),
                    range,
                });
                i += len;
            }
            None => {
                out.unknown.push(toks[i].text.clone());
                i += 1;
            }
        }
    }
    out.exact = out.ingredients.len();
    for ing in suggested {
        push_unique(&mut out.ingredients, ing);
    }
    out
}

fn join(toks: &[Span]) -> String {
    toks.iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// (edit distance, index into `Dictionary::names`), closest first.
type Hits = Vec<(usize, usize)>;

impl Dictionary {
    /// The names closest to the words at the start of `toks`: how many
    /// words were matched and up to three names (distinct ingredients),
    /// closest first.
    fn closest(&self, toks: &[Span]) -> Option<(usize, Vec<usize>)> {
        // The best distance, how many words, and every (distance, name) hit.
        let mut best: Option<(usize, usize, Hits)> = None;
        for len in 1..=toks.len().min(3) {
            let words = &toks[..len];
            if words.iter().any(|t| t.text.chars().any(char::is_numeric)) {
                break;
            }
            let typed = join(words);
            let n = typed.chars().count();
            let tol = tolerance(n);
            if tol == 0 {
                continue;
            }
            let mut hits: Vec<(usize, usize)> = self
                .names
                .iter()
                .enumerate()
                .filter(|(_, name)| name.key.chars().count().abs_diff(n) <= tol)
                .map(|(j, name)| (distance(&typed, &name.key), j))
                .filter(|&(dist, _)| dist <= tol)
                .collect();
            hits.sort();
            let Some(&(top, _)) = hits.first() else {
                continue;
            };
            // Prefer fewer edits; on a tie, the longer match explains more.
            if best.as_ref().is_none_or(|(b, _, _)| top <= *b) {
                best = Some((top, len, hits));
            }
        }
        let (top, len, hits) = best?;
        let mut names: Vec<usize> = Vec::new();
        // Alternatives at most one edit further than the best: "amoxicilin"
        // offers amoxicillin, not ampicillin three edits away.
        for (_, j) in hits.into_iter().filter(|(dist, _)| *dist <= top + 1) {
            let same = names
                .iter()
                .any(|&k| self.names[k].ingredients == self.names[j].ingredients);
            if !same {
                names.push(j);
            }
            if names.len() == 3 {
                break;
            }
        }
        Some((len, names))
    }
}

/// Why two medications duplicate each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateKind {
    SameIngredient,
    SameClass,
}

/// A duplicate of the new medication among the patient's active ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Duplicate<K> {
    /// The active prescription it duplicates.
    pub with: K,
    pub kind: DuplicateKind,
    /// The new medication's ingredient.
    pub ingredient: String,
    /// The active prescription's ingredient.
    pub other_ingredient: String,
    /// The shared ATC level-4 class, for a class duplicate.
    pub class_code: Option<String>,
    pub class_name: Option<String>,
}

impl<K> Duplicate<K> {
    /// One sentence, no trailing period.
    pub fn explanation(&self) -> String {
        match (self.kind, &self.class_name, &self.class_code) {
            (DuplicateKind::SameIngredient, _, _) => format!(
                "{} is already prescribed and active for this patient",
                self.ingredient
            ),
            (DuplicateKind::SameClass, Some(name), Some(code)) => format!(
                "{} and the active {} are both {name} (ATC {code})",
                self.ingredient, self.other_ingredient
            ),
            (DuplicateKind::SameClass, _, _) => format!(
                "{} and the active {} belong to the same drug class",
                self.ingredient, self.other_ingredient
            ),
        }
    }
}

/// Same ingredient or same ATC level-4 class between `new` and each of the
/// `active` medications (one finding per active prescription, the same
/// ingredient first). Classes where combining members is routine (dual
/// antiplatelet therapy, reliever plus long-acting inhaler, insulins…) are
/// exempt from the class comparison, as the data file says.
pub fn duplicates<'a, K: Clone + 'a>(
    new: &Resolved,
    active: impl IntoIterator<Item = (K, &'a Resolved)>,
) -> Vec<Duplicate<K>> {
    let d: &Dictionary = &DICTIONARY;
    let mut out = Vec::new();
    'rx: for (id, other) in active {
        for &a in &new.ingredients {
            if other.ingredients.contains(&a) {
                let name = d.ingredients[a].display();
                out.push(Duplicate {
                    with: id.clone(),
                    kind: DuplicateKind::SameIngredient,
                    other_ingredient: name.clone(),
                    ingredient: name,
                    class_code: None,
                    class_name: None,
                });
                continue 'rx;
            }
        }
        for &a in &new.ingredients {
            for &b in &other.ingredients {
                let (ia, ib) = (&d.ingredients[a], &d.ingredients[b]);
                let shared = ia
                    .classes()
                    .find(|c| !d.exempt.contains(*c) && ib.classes().any(|o| o == *c));
                if let Some(code) = shared {
                    out.push(Duplicate {
                        with: id.clone(),
                        kind: DuplicateKind::SameClass,
                        ingredient: ia.display(),
                        other_ingredient: ib.display(),
                        class_code: Some(code.to_string()),
                        class_name: d.classes.get(code).cloned(),
                    });
                    continue 'rx;
                }
            }
        }
    }
    out
}

/// A drug–drug interaction between the new medication and an active one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interaction<K> {
    pub with: K,
    /// The new medication's ingredient.
    pub drug: String,
    /// The active prescription's ingredient.
    pub other_drug: String,
    pub severity: String,
    pub effect: String,
    pub advice: String,
    pub source: String,
}

impl<K> Interaction<K> {
    /// One sentence, no trailing period.
    pub fn explanation(&self) -> String {
        format!(
            "{} with the active {} ({}): {}; {}",
            self.drug, self.other_drug, self.severity, self.effect, self.advice
        )
    }
}

/// Interactions of the table between `new` and each of the `active`
/// medications: at most one per pair of ingredients, the first row of the
/// table that covers it.
pub fn interactions<'a, K: Clone + 'a>(
    new: &Resolved,
    active: impl IntoIterator<Item = (K, &'a Resolved)>,
) -> Vec<Interaction<K>> {
    let d: &Dictionary = &DICTIONARY;
    let mut out = Vec::new();
    for (id, other) in active {
        for &x in &new.ingredients {
            for &y in &other.ingredients {
                if x == y {
                    continue;
                }
                let hit = d.interactions.iter().find(|(_, a, b)| {
                    (a.contains(&x) && b.contains(&y)) || (a.contains(&y) && b.contains(&x))
                });
                if let Some((e, _, _)) = hit {
                    out.push(Interaction {
                        with: id.clone(),
                        drug: d.ingredients[x].display(),
                        other_drug: d.ingredients[y].display(),
                        severity: e.severity.clone(),
                        effect: e.effect.clone(),
                        advice: e.advice.clone(),
                        source: e.source.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Number of ingredients in the dictionary.
pub fn ingredient_count() -> usize {
    DICTIONARY.ingredients.len()
}

/// Number of names (ingredients, other spellings, brands, products).
pub fn name_count() -> usize {
    DICTIONARY.names.len()
}

/// The rows of the interaction table.
pub fn interaction_table() -> Vec<&'static InteractionEntry> {
    DICTIONARY.interactions.iter().map(|(e, _, _)| e).collect()
}

/// Where the dictionary and the interaction table come from.
pub fn sources() -> (&'static str, &'static str) {
    (&DICTIONARY.sources, &DICTIONARY.interaction_sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        resolve(text)
            .ingredients()
            .iter()
            .map(|i| i.name.clone())
            .collect()
    }

    #[test]
    fn data_files_load_and_are_consistent() {
        let d = load(DICTIONARY_JSON, INTERACTIONS_JSON).expect("data loads");
        assert!(d.ingredients.len() >= 400, "{}", d.ingredients.len());
        assert!(d.interactions.len() >= 20);
        for ing in &d.ingredients {
            assert!(!ing.atc.is_empty(), "{} has no ATC code", ing.name);
            assert_eq!(ing.name, ing.name.to_lowercase(), "{}", ing.name);
            for code in &ing.atc {
                assert_eq!(code.len(), 7, "{}: {code}", ing.name);
                assert!(
                    d.classes.contains_key(code.get(..5).unwrap_or_default()),
                    "{}: no class name for {code}",
                    ing.name
                );
            }
        }
        for (e, a, b) in &d.interactions {
            assert!(!a.is_empty() && !b.is_empty());
            assert!(
                e.source.contains('['),
                "every pair cites its source: {:?}",
                e.a
            );
            assert!(["contraindicated", "major"].contains(&e.severity.as_str()));
        }
        assert_eq!(ingredient_count(), d.ingredients.len());
        assert!(name_count() > ingredient_count());
        assert!(!sources().0.is_empty() && !sources().1.is_empty());
        assert_eq!(interaction_table().len(), d.interactions.len());
    }

    #[test]
    fn exact_names_brands_and_both_spellings() {
        assert_eq!(names("Amoxicillin 500 mg capsule"), ["amoxicillin"]);
        assert_eq!(names("Augmentin 625"), ["amoxicillin", "clavulanic acid"]);
        assert_eq!(
            names("co-amoxiclav 500/125"),
            ["amoxicillin", "clavulanic acid"]
        );
        assert_eq!(names("Tylenol Extra Strength"), ["paracetamol"]);
        assert_eq!(names("acetaminophen 500mg"), ["paracetamol"]);
        assert_eq!(names("Paracetamol"), ["paracetamol"]);
        assert_eq!(names("Advil"), ["ibuprofen"]);
        assert_eq!(names("MOTRIN IB"), names("ibuprofen"));
        assert_eq!(names("Coumadin 5 mg"), ["warfarin"]);
        assert_eq!(names("Zoloft"), ["sertraline"]);
        assert_eq!(names("albuterol HFA inhaler"), ["salbutamol"]);
        assert_eq!(
            names("Potassium chloride 20 mEq ER"),
            ["potassium chloride"]
        );
        assert_eq!(names("Metformin HCl 500 mg ER tab"), ["metformin"]);
        assert_eq!(names("Insulin glargine pen"), ["insulin glargine"]);
        assert_eq!(names("Vitamin D3 1000 IU"), ["colecalciferol"]);
        assert_eq!(names("St John's Wort"), ["hypericum perforatum"]);
        assert_eq!(names("Bactrim DS"), ["sulfamethoxazole", "trimethoprim"]);
        assert_eq!(resolve("Motrin IB").status(), MatchStatus::Exact);
        let r = resolve("Lipitor 40 mg");
        assert_eq!(r.status(), MatchStatus::Exact);
        assert_eq!(r.corrected().as_deref(), Some("Lipitor 40 mg"));
        assert_eq!(
            resolve("Tylenol").ingredient_names(),
            ["paracetamol (acetaminophen)"]
        );
    }

    #[test]
    fn misspellings_are_suggested_not_accepted() {
        let r = resolve("amoxicilin 500 mg");
        assert_eq!(r.status(), MatchStatus::Suggested);
        assert_eq!(r.corrections[0].typed, "amoxicilin");
        assert_eq!(r.corrections[0].suggestions, ["amoxicillin"]);
        assert_eq!(r.corrected().as_deref(), Some("amoxicillin 500 mg"));
        assert_eq!(
            r.alternatives()[0],
            ("amoxicillin".to_string(), "amoxicillin 500 mg".to_string())
        );
        assert_eq!(names("amoxicilin"), ["amoxicillin"]);
        for (typed, meant) in [
            ("Augmentn", "Augmentin"),
            ("ibuprofin", "ibuprofen"),
            ("sertralin", "sertraline"),
            ("Warfrin", "warfarin"),
            ("metfromin", "metformin"),
            ("atorvastatine", "atorvastatin"),
            ("acetominophen", "acetaminophen"),
            ("ciprofloxacine", "ciprofloxacin"),
        ] {
            let r = resolve(typed);
            assert_eq!(r.status(), MatchStatus::Suggested, "{typed}");
            assert_eq!(r.corrections[0].suggestions[0], meant, "{typed}");
        }
        // The typed capitalisation and the rest of the text are kept.
        assert_eq!(
            resolve("Amoxicilin 250mg/5ml suspension")
                .corrected()
                .as_deref(),
            Some("amoxicillin 250mg/5ml suspension")
        );
    }

    #[test]
    fn unknown_words_are_unrecognised() {
        for text in [
            "Zyxorbital 10 mg",
            "",
            "   ",
            "500 mg",
            "qwerty",
            "<script>",
        ] {
            let r = resolve(text);
            assert_eq!(r.status(), MatchStatus::Unrecognised, "{text:?}");
            assert!(r.corrections.is_empty(), "{text:?}: {:?}", r.corrections);
        }
        let r = resolve("amoxicillin zyxorbital");
        assert_eq!(r.status(), MatchStatus::Unrecognised);
        assert_eq!(r.unknown, ["zyxorbital"]);
        assert_eq!(names("amoxicillin zyxorbital"), ["amoxicillin"]);
        // Short words are never guessed at.
        assert_eq!(resolve("abc").status(), MatchStatus::Unrecognised);
    }

    #[test]
    fn allergy_terms_carry_the_generic_names() {
        let t = resolve("Augmentin").allergy_terms(false);
        assert!(
            t.contains("amoxicillin") && t.contains("clavulanic acid"),
            "{t}"
        );
        assert!(resolve("Tylenol")
            .allergy_terms(false)
            .contains("acetaminophen"));
        let c = crate::allergy::find_conflict(
            &resolve("Augmentin").allergy_terms(false),
            ["penicillin"],
        );
        assert!(c.is_some());
        // An unconfirmed correction counts for a medication only.
        let r = resolve("amoxicilin");
        assert!(r.allergy_terms(true).contains("/ amoxicillin"));
        assert!(!r.allergy_terms(false).contains("/ amoxicillin"));
    }

    fn dup(new: &str, active: &[&str]) -> Vec<Duplicate<usize>> {
        let active: Vec<Resolved> = active.iter().map(|a| resolve(a)).collect();
        duplicates(&resolve(new), active.iter().enumerate())
    }

    #[test]
    fn duplicate_therapy() {
        let d = dup("Amoxicillin 500 mg", &["amoxicillin 250 mg", "metformin"]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].with, 0);
        assert_eq!(d[0].kind, DuplicateKind::SameIngredient);
        assert!(d[0].explanation().contains("amoxicillin"));
        // A brand and its generic are the same ingredient.
        assert_eq!(
            dup("Augmentin", &["amoxicillin"])[0].kind,
            DuplicateKind::SameIngredient
        );
        let d = dup("sertraline", &["Prozac"]);
        assert_eq!(d[0].kind, DuplicateKind::SameClass);
        assert_eq!(d[0].class_code.as_deref(), Some("N06AB"));
        assert!(
            d[0].explanation().contains("fluoxetine"),
            "{}",
            d[0].explanation()
        );
        assert_eq!(
            dup("atorvastatin", &["Zocor"])[0].kind,
            DuplicateKind::SameClass
        );
        // Routine combinations are not duplicates.
        assert!(dup("aspirin 75 mg", &["clopidogrel"]).is_empty());
        assert!(dup("salbutamol inhaler", &["salmeterol"]).is_empty());
        assert!(dup("insulin aspart", &["insulin glargine"]).is_empty());
        assert!(dup("metformin", &["lisinopril", "atorvastatin"]).is_empty());
        assert!(dup("zyxorbital", &["zyxorbital"]).is_empty());
    }

    fn ddi(new: &str, active: &[&str]) -> Vec<Interaction<usize>> {
        let active: Vec<Resolved> = active.iter().map(|a| resolve(a)).collect();
        interactions(&resolve(new), active.iter().enumerate())
    }

    #[test]
    fn drug_interactions() {
        let i = ddi("ibuprofen 400 mg", &["warfarin 5 mg"]);
        assert_eq!(i.len(), 1);
        assert_eq!(i[0].drug, "ibuprofen");
        assert_eq!(i[0].other_drug, "warfarin");
        assert!(i[0].source.contains("Malone"));
        // Either order, brands, and class-level rows.
        assert_eq!(ddi("Coumadin", &["Advil"]).len(), 1);
        assert_eq!(ddi("apixaban", &["naproxen"]).len(), 1);
        assert_eq!(
            ddi("phenelzine", &["Zoloft"])[0].severity,
            "contraindicated"
        );
        assert_eq!(ddi("linezolid", &["citalopram"]).len(), 1);
        assert_eq!(ddi("Bactrim DS", &["methotrexate 15 mg weekly"]).len(), 1);
        assert_eq!(ddi("clarithromycin", &["simvastatin"]).len(), 1);
        assert_eq!(ddi("potassium chloride", &["spironolactone"]).len(), 1);
        assert_eq!(ddi("sildenafil", &["isosorbide mononitrate"]).len(), 1);
        assert_eq!(ddi("azithromycin", &["citalopram"]).len(), 1);
        assert_eq!(ddi("tizanidine", &["Cipro"]).len(), 1);
        assert_eq!(ddi("oxycodone", &["alprazolam"]).len(), 1);
        // No interaction.
        assert!(ddi("paracetamol", &["warfarin"]).is_empty());
        assert!(ddi("pravastatin", &["clarithromycin"]).is_empty());
        assert!(ddi("amoxicillin", &["metformin", "lisinopril"]).is_empty());
        // One QT drug alone is not a pair.
        assert!(ddi("citalopram", &["citalopram"]).is_empty());
    }

    #[test]
    fn edit_distance() {
        assert_eq!(distance("amoxicilin", "amoxicillin"), 1);
        assert_eq!(distance("warfrain", "warfarin"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
        assert_eq!(tolerance(3), 0);
        assert_eq!(tolerance(10), 3);
    }

    #[test]
    fn spans_keep_positions() {
        let s = spans("Amoxicilin 500mg");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].text, "amoxicilin");
        assert_eq!(s[0].range, 0..10);
        assert_eq!(s[2].text, "mg");
        assert_eq!(key_of("Co-Amoxiclav"), "co amoxiclav");
        assert_eq!(key_of("Céfalexine"), "cefalexine");
    }
}
