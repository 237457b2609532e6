//! Drug–allergy conflict checking (SPEC §6 "Prescriptions").
//!
//! Issuing a prescription whose medication conflicts with a recorded allergy
//! is refused unless the prescriber gives an override reason. A conflict is
//! one of, strongest first:
//!
//! * the same substance ("amoxicillin" allergy, "Amoxicillin 500 mg capsule");
//! * a substance of the same drug class, or the class itself recorded as the
//!   allergy ("penicillin" or "PCN" allergy, amoxicillin);
//! * a class with documented cross-reactivity (penicillins and
//!   cephalosporins), reported as lower risk but still a conflict.
//!
//! Names are matched as whole words after folding case, accents and
//! punctuation (see [`crate::text::fold`]), never as substrings: an allergy
//! written "pen" does not match "pentoxifylline", and "penicillin" does not
//! match "penicillamine". Classes, synonyms and brand names come from
//! `data/drug_classes.json`.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::text::fold;

/// Why a medication conflicts with an allergy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    SameSubstance,
    SameClass,
    CrossReactivity,
}

impl ConflictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::SameSubstance => "same_substance",
            ConflictKind::SameClass => "same_class",
            ConflictKind::CrossReactivity => "cross_reactivity",
        }
    }

    /// Lower is stronger; used to report the most direct conflict.
    fn rank(self) -> u8 {
        match self {
            ConflictKind::SameSubstance => 0,
            ConflictKind::SameClass => 1,
            ConflictKind::CrossReactivity => 2,
        }
    }
}

/// A medication that should not be given because of a recorded allergy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllergyConflict {
    /// The recorded allergy substance, exactly as written on the chart.
    pub allergy: String,
    /// The medication as given.
    pub medication: String,
    pub kind: ConflictKind,
    /// The medication's drug class when the conflict involves one.
    pub drug_class: Option<String>,
    /// One clause, no trailing period, fit to follow "conflicts with the
    /// recorded allergy to X: ".
    pub explanation: String,
}

/// A drug class as listed in `data/drug_classes.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrugClass {
    /// Display name, e.g. "penicillins", "NSAIDs".
    pub name: String,
    /// WHO ATC codes covering the class.
    #[serde(default)]
    pub atc: Vec<String>,
    /// Ways an allergy to the whole class is written ("sulfa", "PCN").
    pub aliases: Vec<String>,
    /// Generic (INN) names of member substances, lowercase.
    pub members: Vec<String>,
    /// Classes with documented cross-reactivity (symmetric in matching).
    #[serde(default)]
    pub cross_reacts_with: Vec<CrossReaction>,
    pub sources: Vec<String>,
}

/// A documented cross-reactivity between two classes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrossReaction {
    /// The other class's `name`.
    pub class: String,
    /// How likely and how serious, in one sentence without a trailing period.
    pub note: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CatalogFile {
    sources: String,
    classes: Vec<DrugClass>,
    #[serde(default)]
    synonyms: Vec<Vec<String>>,
    #[serde(default)]
    products: Vec<Product>,
}

/// A brand name or named combination and the substances it contains.
#[derive(Debug, Deserialize)]
struct Product {
    names: Vec<String>,
    components: Vec<String>,
}

/// What a phrase in a medication or allergy string stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Meaning {
    /// A substance, by canonical name.
    Substance(String),
    /// A drug class, by index, named as a class.
    Class(usize),
}

#[derive(Debug, Default)]
struct Catalog {
    sources: String,
    classes: Vec<DrugClass>,
    /// Token phrase (joined by single spaces) to what it stands for.
    phrases: HashMap<String, Vec<Meaning>>,
    /// The longest phrase, in tokens.
    max_phrase: usize,
    /// Canonical substance name to the classes it belongs to.
    substance_classes: HashMap<String, Vec<usize>>,
    /// Cross-reacting class pairs (either order) and the note.
    cross: Vec<(usize, usize, String)>,
}

#[derive(Debug, thiserror::Error)]
enum CatalogError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("class {0:?} lists unknown cross-reacting class {1:?}")]
    UnknownClass(String, String),
    #[error("empty name in {0}")]
    EmptyName(String),
}

const CATALOG_JSON: &str = include_str!("../data/drug_classes.json");

/// Parsed once; a unit test guarantees the compiled-in file loads, and
/// should it ever not, nothing matches instead of the server panicking.
static CATALOG: LazyLock<Catalog> =
    LazyLock::new(|| build_catalog(CATALOG_JSON).unwrap_or_default());

fn phrase_key(s: &str) -> String {
    tokens(s).join(" ")
}

fn build_catalog(json: &str) -> Result<Catalog, CatalogError> {
    let file: CatalogFile = serde_json::from_str(json)?;
    let mut cat = Catalog {
        sources: file.sources,
        ..Catalog::default()
    };

    // Synonym groups: every spelling maps to the first.
    let mut canonical: HashMap<String, String> = HashMap::new();
    for group in &file.synonyms {
        let Some(first) = group.first() else { continue };
        let preferred = phrase_key(first);
        for name in group {
            let key = nonempty_key(name, "synonyms")?;
            canonical.insert(key.clone(), preferred.clone());
            cat.add_phrase(key, Meaning::Substance(preferred.clone()));
        }
    }
    let canon = |key: String| canonical.get(&key).cloned().unwrap_or(key);

    for (i, class) in file.classes.iter().enumerate() {
        for member in &class.members {
            let key = nonempty_key(member, &class.name)?;
            let substance = canon(key.clone());
            let owners = cat.substance_classes.entry(substance.clone()).or_default();
            if !owners.contains(&i) {
                owners.push(i);
            }
            cat.add_phrase(key, Meaning::Substance(substance));
        }
        for alias in class.aliases.iter().chain(std::iter::once(&class.name)) {
            let key = nonempty_key(alias, &class.name)?;
            cat.add_phrase(key, Meaning::Class(i));
        }
    }
    // Synonyms of members resolve to the member's classes through the
    // canonical name, so nothing more is needed for them here.

    for product in &file.products {
        for name in &product.names {
            let key = nonempty_key(name, "products")?;
            for component in &product.components {
                let component_key = nonempty_key(component, "products")?;
                let substance = canon(component_key.clone());
                // A component is a known substance in its own right
                // ("trimethoprim" on its own matches a Bactrim allergy).
                cat.add_phrase(component_key, Meaning::Substance(substance.clone()));
                cat.add_phrase(key.clone(), Meaning::Substance(substance));
            }
        }
    }

    for (i, class) in file.classes.iter().enumerate() {
        for cr in &class.cross_reacts_with {
            let j = file
                .classes
                .iter()
                .position(|c| c.name == cr.class)
                .ok_or_else(|| CatalogError::UnknownClass(class.name.clone(), cr.class.clone()))?;
            cat.cross.push((i, j, cr.note.clone()));
        }
    }

    cat.classes = file.classes;
    Ok(cat)
}

fn nonempty_key(name: &str, context: &str) -> Result<String, CatalogError> {
    let key = phrase_key(name);
    if key.is_empty() {
        return Err(CatalogError::EmptyName(context.to_string()));
    }
    Ok(key)
}

impl Catalog {
    fn add_phrase(&mut self, key: String, meaning: Meaning) {
        self.max_phrase = self.max_phrase.max(key.split(' ').count());
        let meanings = self.phrases.entry(key).or_default();
        if !meanings.contains(&meaning) {
            meanings.push(meaning);
        }
    }

    /// Find known phrases in `toks`, longest match first, left to right.
    fn scan(&self, toks: &[String]) -> Found {
        let mut found = Found::default();
        let mut i = 0;
        'outer: while i < toks.len() {
            let longest = self.max_phrase.min(toks.len() - i);
            for len in (1..=longest).rev() {
                let key = toks[i..i + len].join(" ");
                if let Some(meanings) = self.phrases.get(&key) {
                    for m in meanings {
                        found.add(self, m);
                    }
                    i += len;
                    continue 'outer;
                }
            }
            i += 1;
        }
        found
    }

    fn cross_note(&self, a: usize, b: usize) -> Option<&str> {
        self.cross
            .iter()
            .find(|(x, y, _)| (*x, *y) == (a, b) || (*x, *y) == (b, a))
            .map(|(_, _, note)| note.as_str())
    }
}

/// The substances and classes a string mentions, in order of appearance.
#[derive(Debug, Default)]
struct Found {
    substances: Vec<String>,
    /// Every class involved: of the substances, or named outright
    /// ("penicillins", "sulfa").
    classes: Vec<usize>,
}

impl Found {
    fn add(&mut self, cat: &Catalog, meaning: &Meaning) {
        match meaning {
            Meaning::Substance(s) => {
                push_unique(&mut self.substances, s.clone());
                for &c in cat.substance_classes.get(s).into_iter().flatten() {
                    push_unique(&mut self.classes, c);
                }
            }
            Meaning::Class(c) => push_unique(&mut self.classes, *c),
        }
    }

    fn is_empty(&self) -> bool {
        self.substances.is_empty() && self.classes.is_empty()
    }

    /// The first substance of the string that belongs to `class`.
    fn substance_in(&self, cat: &Catalog, class: usize) -> Option<&str> {
        self.substances
            .iter()
            .find(|s| {
                cat.substance_classes
                    .get(*s)
                    .is_some_and(|cs| cs.contains(&class))
            })
            .map(String::as_str)
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// Split folded text into word tokens. Letters and digits are separated
/// ("500mg" → "500", "mg") so strengths never glue onto names, and every
/// other character separates, so "amoxicillin/clavulanate",
/// "amoxicillin-clavulanate" and "amoxicillin + clavulanate" all yield the
/// same components.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_is_digit = false;
    for c in fold(s).chars() {
        if c.is_alphanumeric() {
            let is_digit = c.is_numeric();
            if !cur.is_empty() && is_digit != cur_is_digit {
                out.push(std::mem::take(&mut cur));
            }
            cur.push(c);
            cur_is_digit = is_digit;
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Words that say how much, what form, which salt, how often or how it
/// reacted, but not what the substance is. Dropped before comparing
/// substances the catalogue does not know, so "Metformin 500 mg tablet"
/// compares as "metformin".
const NOISE: &[&str] = &[
    // Units and amounts.
    "mg mcg ug g gm gram grams milligram milligrams microgram micrograms kg ml l iu unit \
     units meq mmol percent dose doses puff puffs drop drops x",
    // Dose forms and release.
    "tablet tablets tab tabs capsule capsules cap caps caplet caplets pill pills solution \
     soln suspension susp syrup elixir liquid injection injections inj injectable infusion \
     cream ointment gel lotion spray inhaler inhalation nebuliser nebulizer patch patches \
     suppository suppositories lozenge lozenges powder sachet sachets granules vial vials \
     ampoule ampoules ampule ampules syringe prefilled pen chewable dispersible \
     orodispersible effervescent film coated enteric ec er xr sr xl la cr dr mr ir cd \
     extended delayed modified controlled sustained immediate release retard",
    // Routes.
    "oral po iv im sc sq subcut subcutaneous intravenous intramuscular topical ophthalmic \
     otic eye ear nasal rectal vaginal sublingual buccal transdermal",
    // Salts and hydrates.
    "hydrochloride hcl sodium potassium calcium magnesium sulfate sulphate phosphate acetate \
     citrate maleate tartrate succinate besylate besilate mesylate mesilate fumarate bromide \
     hydrobromide chloride trihydrate monohydrate dihydrate anhydrous disodium hyclate axetil \
     base",
    // Frequency.
    "daily bid tid qid qd od prn q h hr hrs hours hourly once twice nightly weekly every \
     morning evening night at bedtime as needed for per",
    // Chemical suffix words and connectives.
    "acid and with plus in of to the a",
    // Allergy wording and common reactions.
    "allergy allergies allergic intolerance intolerant sensitivity reaction reactions severe \
     mild moderate rash hives urticaria anaphylaxis angioedema swelling itching itch nausea \
     vomiting diarrhea diarrhoea gi upset wheeze wheezing cough headache",
];

pub(crate) fn is_noise(token: &str) -> bool {
    token.chars().all(char::is_numeric)
        || NOISE
            .iter()
            .any(|group| group.split_whitespace().any(|w| w == token))
}

fn core(toks: &[String]) -> Vec<String> {
    toks.iter().filter(|t| !is_noise(t)).cloned().collect()
}

fn contains_run(haystack: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Segments of a recorded allergy that may each name one substance:
/// "Metformin - GI upset", "penicillin, sulfa (hives)", and the components
/// of a combination written "metformin/sitagliptin".
fn allergy_segments(allergy: &str) -> impl Iterator<Item = &str> {
    allergy
        .split(|c: char| {
            matches!(
                c,
                ',' | ';' | ':' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '\n'
            )
        })
        .flat_map(|part| part.split(" - "))
        .flat_map(|part| part.split(['/', '+', '&']))
}

/// Every drug class in the catalogue.
pub fn drug_classes() -> &'static [DrugClass] {
    &CATALOG.classes
}

/// Where the catalogue's classes come from (the file's `sources`).
pub fn drug_class_sources() -> &'static str {
    &CATALOG.sources
}

/// The drug class of a medication string ("Amoxicillin 500 mg capsule" →
/// penicillins), by its first component that has one.
pub fn class_of(medication: &str) -> Option<&'static DrugClass> {
    let cat: &'static Catalog = &CATALOG;
    let found = cat.scan(&tokens(medication));
    found.classes.first().map(|&i| &cat.classes[i])
}

/// The most direct conflict between `medication` and any of `allergies`.
///
/// A same-substance match beats a same-class match, which beats a
/// cross-reactivity; among equals the first allergy listed wins. Blank
/// allergies never match.
pub fn find_conflict<'a>(
    medication: &str,
    allergies: impl IntoIterator<Item = &'a str>,
) -> Option<AllergyConflict> {
    find_conflict_expanded(
        medication,
        medication,
        allergies.into_iter().map(|a| (a, a)),
    )
}

/// [`find_conflict`] over texts expanded with what they stand for (the
/// medication dictionary's generic names of a brand, see
/// [`crate::medication::Resolved::allergy_terms`]): `terms` and each
/// allergy's second member are compared, while the conflict reports
/// `medication` and the allergy as recorded.
pub fn find_conflict_expanded<'a, A: AsRef<str>>(
    medication: &str,
    terms: &str,
    allergies: impl IntoIterator<Item = (&'a str, A)>,
) -> Option<AllergyConflict> {
    let cat: &Catalog = &CATALOG;
    let med_tokens = tokens(terms);
    let med = cat.scan(&med_tokens);
    let med_core = core(&med_tokens);

    let mut best: Option<AllergyConflict> = None;
    for (allergy, allergy_terms) in allergies {
        let Some(conflict) = conflict_with(
            cat,
            medication,
            &med,
            &med_core,
            (allergy, allergy_terms.as_ref()),
        ) else {
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|b| conflict.kind.rank() < b.kind.rank())
        {
            let strongest = conflict.kind == ConflictKind::SameSubstance;
            best = Some(conflict);
            if strongest {
                break;
            }
        }
    }
    best
}

fn conflict_with(
    cat: &Catalog,
    medication: &str,
    med: &Found,
    med_core: &[String],
    (allergy, allergy_terms): (&str, &str),
) -> Option<AllergyConflict> {
    let all = cat.scan(&tokens(allergy_terms));
    let class_name = |i: usize| cat.classes[i].name.clone();
    let conflict = |kind, drug_class, explanation| AllergyConflict {
        allergy: allergy.to_string(),
        medication: medication.trim().to_string(),
        kind,
        drug_class,
        explanation,
    };

    // 1. The same substance, known to the catalogue.
    if let Some(s) = med.substances.iter().find(|s| all.substances.contains(s)) {
        let class = cat
            .substance_classes
            .get(s)
            .and_then(|cs| cs.first())
            .map(|&i| class_name(i));
        return Some(conflict(
            ConflictKind::SameSubstance,
            class,
            format!("the medication contains {s}, the recorded allergen"),
        ));
    }

    // 1b. The same substance, unknown to the catalogue: a segment of the
    // allergy that names nothing known, compared word for word with the
    // medication once strengths, forms and salts are set aside.
    for segment in allergy_segments(allergy_terms) {
        let seg_tokens = tokens(segment);
        if !cat.scan(&seg_tokens).is_empty() {
            continue;
        }
        let seg_core = core(&seg_tokens);
        let meaningful = seg_core
            .iter()
            .any(|t| t.chars().filter(|c| c.is_alphabetic()).count() >= 4);
        if meaningful && contains_run(med_core, &seg_core) {
            return Some(conflict(
                ConflictKind::SameSubstance,
                None,
                format!(
                    "the medication contains {}, the recorded allergen",
                    seg_core.join(" ")
                ),
            ));
        }
    }

    // 2. The same class.
    if let Some(&c) = med.classes.iter().find(|c| all.classes.contains(c)) {
        let med_substance = med.substance_in(cat, c).unwrap_or("the medication");
        let name = &cat.classes[c].name;
        // Different substances here: the same one was caught above.
        let explanation = match all.substance_in(cat, c) {
            Some(a) => format!("{med_substance} and {a} both belong to the {name}"),
            None => format!(
                "{med_substance} belongs to the {name}, the drug class recorded as an allergy"
            ),
        };
        return Some(conflict(
            ConflictKind::SameClass,
            Some(name.clone()),
            explanation,
        ));
    }

    // 3. A cross-reacting class.
    for &mc in &med.classes {
        for &ac in &all.classes {
            if let Some(note) = cat.cross_note(ac, mc) {
                let med_substance = med.substance_in(cat, mc).unwrap_or("the medication");
                let (m_name, a_name) = (&cat.classes[mc].name, &cat.classes[ac].name);
                return Some(conflict(
                    ConflictKind::CrossReactivity,
                    Some(m_name.clone()),
                    format!(
                        "{med_substance} belongs to the {m_name}, which can cross-react with the recorded {a_name} allergy (lower risk than a same-class match): {note}"
                    ),
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(medication: &str, allergies: &[&str]) -> Option<AllergyConflict> {
        find_conflict(medication, allergies.iter().copied())
    }

    fn kind(medication: &str, allergies: &[&str]) -> Option<ConflictKind> {
        check(medication, allergies).map(|c| c.kind)
    }

    #[test]
    fn catalogue_loads_and_is_consistent() {
        let cat = build_catalog(CATALOG_JSON).expect("drug_classes.json loads");
        assert!(
            cat.classes.len() >= 14,
            "only {} classes",
            cat.classes.len()
        );
        assert!(!cat.sources.trim().is_empty());
        assert_eq!(drug_classes().len(), cat.classes.len());
        assert!(!drug_class_sources().is_empty());
        for class in &cat.classes {
            assert!(!class.members.is_empty(), "{}", class.name);
            assert!(!class.sources.is_empty(), "{}", class.name);
            assert!(!class.aliases.is_empty(), "{}", class.name);
            for m in &class.members {
                assert_eq!(
                    m,
                    &m.to_lowercase(),
                    "{}: member {m} must be lowercase",
                    class.name
                );
            }
        }
        let required = [
            "penicillins",
            "cephalosporins",
            "carbapenems",
            "sulfonamide antibiotics",
            "NSAIDs",
            "opioids",
            "statins",
            "ACE inhibitors",
            "angiotensin receptor blockers",
            "macrolides",
            "fluoroquinolones",
            "tetracyclines",
            "aminoglycosides",
            "benzodiazepines",
            "aromatic anticonvulsants",
        ];
        for name in required {
            assert!(cat.classes.iter().any(|c| c.name == name), "{name} missing");
        }
        // Every substance belongs to one class only: an ambiguous member
        // would make "same class" explanations misleading.
        for (s, owners) in &cat.substance_classes {
            assert_eq!(owners.len(), 1, "{s} is in several classes");
        }
    }

    #[test]
    fn catalogue_errors_are_reported() {
        assert!(build_catalog("{").is_err());
        let bad = r#"{"sources":"x","classes":[{"name":"a","aliases":["a"],"members":["m"],"sources":["s"],
            "crossReactsWith":[{"class":"nope","note":"n"}]}]}"#;
        assert!(matches!(
            build_catalog(bad),
            Err(CatalogError::UnknownClass(..))
        ));
        let empty = r#"{"sources":"x","classes":[{"name":"a","aliases":["--"],"members":["m"],"sources":["s"]}]}"#;
        assert!(matches!(
            build_catalog(empty),
            Err(CatalogError::EmptyName(..))
        ));
    }

    #[test]
    fn penicillin_allergy_and_amoxicillin() {
        let c = check("Amoxicillin 500 mg capsule", &["Penicillin"]).unwrap();
        assert_eq!(c.kind, ConflictKind::SameClass);
        assert_eq!(c.drug_class.as_deref(), Some("penicillins"));
        assert_eq!(c.allergy, "Penicillin");
        assert_eq!(c.medication, "Amoxicillin 500 mg capsule");
        assert_eq!(
            c.explanation,
            "amoxicillin and penicillin both belong to the penicillins"
        );
        assert_eq!(kind("amoxicillin", &["PCN"]), Some(ConflictKind::SameClass));
        assert_eq!(
            kind("amoxicillin", &["penicillins"]),
            Some(ConflictKind::SameClass)
        );
        let c = check("flucloxacillin 250mg", &["pcn"]).unwrap();
        assert_eq!(
            c.explanation,
            "flucloxacillin belongs to the penicillins, the drug class recorded as an allergy"
        );
    }

    #[test]
    fn same_substance_ignores_strength_and_form() {
        let c = check("amoxicillin 500mg", &["Amoxicillin"]).unwrap();
        assert_eq!(c.kind, ConflictKind::SameSubstance);
        assert_eq!(c.drug_class.as_deref(), Some("penicillins"));
        assert_eq!(
            c.explanation,
            "the medication contains amoxicillin, the recorded allergen"
        );
        assert_eq!(
            kind("AMOXICILLIN 250 MG/5 ML ORAL SUSPENSION", &["amoxicillin"]),
            Some(ConflictKind::SameSubstance)
        );
        assert_eq!(
            kind("Penicillin 250 mg", &["penicillin"]),
            Some(ConflictKind::SameSubstance)
        );
    }

    #[test]
    fn combination_products_match_by_component() {
        assert_eq!(
            kind("amoxicillin/clavulanate 875/125 mg", &["amoxicillin"]),
            Some(ConflictKind::SameSubstance)
        );
        assert_eq!(
            kind("Amoxicillin-clavulanate", &["penicillin"]),
            Some(ConflictKind::SameClass)
        );
        assert_eq!(
            kind("co-amoxiclav 625 mg", &["amoxicillin"]),
            Some(ConflictKind::SameSubstance)
        );
        assert_eq!(
            kind("Augmentin", &["penicillin"]),
            Some(ConflictKind::SameClass)
        );
        assert_eq!(
            kind("piperacillin + tazobactam 4.5 g IV", &["penicillins"]),
            Some(ConflictKind::SameClass)
        );
        assert_eq!(
            kind("Tylenol #3", &["codeine"]),
            Some(ConflictKind::SameSubstance)
        );
        assert_eq!(
            kind("trimethoprim 200 mg", &["Bactrim"]),
            Some(ConflictKind::SameSubstance)
        );
    }

    #[test]
    fn sulfa_allergy() {
        let c = check("sulfamethoxazole-trimethoprim 800/160 mg", &["Sulfa"]).unwrap();
        assert_eq!(c.kind, ConflictKind::SameClass);
        assert_eq!(c.drug_class.as_deref(), Some("sulfonamide antibiotics"));
        assert_eq!(
            kind("Co-trimoxazole 960 mg", &["sulfa drugs"]),
            Some(ConflictKind::SameClass)
        );
        assert_eq!(
            kind("Bactrim DS", &["sulphonamides"]),
            Some(ConflictKind::SameClass)
        );
        // Trimethoprim alone is not a sulfonamide; nor are the non-antibiotic
        // sulfonamides (see the class's sources).
        assert_eq!(kind("trimethoprim 100 mg", &["sulfa"]), None);
        assert_eq!(kind("furosemide 40 mg", &["sulfa"]), None);
    }

    #[test]
    fn nsaid_allergies() {
        let c = check("Ibuprofen 400 mg tablet", &["NSAIDs"]).unwrap();
        assert_eq!(c.kind, ConflictKind::SameClass);
        assert_eq!(c.drug_class.as_deref(), Some("NSAIDs"));
        assert_eq!(kind("ibuprofen", &["NSAID"]), Some(ConflictKind::SameClass));
        assert_eq!(
            kind("ibuprofen", &["non-steroidal anti-inflammatory drugs"]),
            Some(ConflictKind::SameClass)
        );
        let c = check("naproxen 250 mg", &["aspirin"]).unwrap();
        assert_eq!(c.kind, ConflictKind::SameClass);
        assert_eq!(
            c.explanation,
            "naproxen and aspirin both belong to the NSAIDs"
        );
        assert_eq!(kind("Advil", &["ASA"]), Some(ConflictKind::SameClass));
        assert_eq!(
            kind("acetylsalicylic acid 81 mg", &["Aspirin"]),
            Some(ConflictKind::SameSubstance)
        );
        // Paracetamol is not an NSAID.
        assert_eq!(kind("paracetamol 1 g", &["NSAIDs"]), None);
        assert_eq!(
            kind("acetaminophen 500mg", &["paracetamol"]),
            Some(ConflictKind::SameSubstance)
        );
    }

    #[test]
    fn cox2_inhibitors_cross_react_with_nsaids() {
        let c = check("celecoxib 200 mg", &["ibuprofen"]).unwrap();
        assert_eq!(c.kind, ConflictKind::CrossReactivity);
        assert_eq!(c.drug_class.as_deref(), Some("COX-2 inhibitors"));
    }

    #[test]
    fn opioids() {
        let c = check("Morphine sulfate 10 mg", &["codeine"]).unwrap();
        assert_eq!(c.kind, ConflictKind::SameClass);
        assert_eq!(c.drug_class.as_deref(), Some("opioids"));
        assert_eq!(
            c.explanation,
            "morphine and codeine both belong to the opioids"
        );
        assert_eq!(
            kind("oxycodone 5mg", &["opiates"]),
            Some(ConflictKind::SameClass)
        );
        assert_eq!(
            kind("Percocet 5/325", &["morphine"]),
            Some(ConflictKind::SameClass)
        );
        assert_eq!(
            kind("meperidine 50 mg", &["pethidine"]),
            Some(ConflictKind::SameSubstance)
        );
    }

    #[test]
    fn beta_lactam_cross_reactivity() {
        let c = check("cefalexin 500 mg", &["penicillin"]).unwrap();
        assert_eq!(c.kind, ConflictKind::CrossReactivity);
        assert_eq!(c.drug_class.as_deref(), Some("cephalosporins"));
        assert!(c.explanation.contains("cross-react"), "{}", c.explanation);
        assert!(c
            .explanation
            .starts_with("cefalexin belongs to the cephalosporins"));
        assert!(!c.explanation.ends_with('.'));
        assert_eq!(
            kind("Keflex", &["penicillin"]),
            Some(ConflictKind::CrossReactivity)
        );
        assert_eq!(
            kind("cephalexin", &["amoxicillin"]),
            Some(ConflictKind::CrossReactivity)
        );
        assert_eq!(
            kind("meropenem 1 g IV", &["penicillin"]),
            Some(ConflictKind::CrossReactivity)
        );
        // Symmetric: a cephalosporin allergy and a penicillin.
        assert_eq!(
            kind("amoxicillin", &["ceftriaxone"]),
            Some(ConflictKind::CrossReactivity)
        );
        // "beta-lactam" names all three classes.
        assert_eq!(
            kind("ceftriaxone 1 g", &["beta-lactams"]),
            Some(ConflictKind::SameClass)
        );
        assert_eq!(
            kind("cephalexin", &["cefalexin"]),
            Some(ConflictKind::SameSubstance)
        );
    }

    #[test]
    fn strongest_conflict_wins() {
        let c = check(
            "amoxicillin",
            &["ceftriaxone", "penicillin", "Amoxicillin (hives)"],
        )
        .unwrap();
        assert_eq!(c.kind, ConflictKind::SameSubstance);
        assert_eq!(c.allergy, "Amoxicillin (hives)");
        let c = check("amoxicillin", &["ceftriaxone", "penicillin"]).unwrap();
        assert_eq!(c.kind, ConflictKind::SameClass);
        assert_eq!(c.allergy, "penicillin");
    }

    #[test]
    fn no_conflict() {
        assert_eq!(check("amoxicillin 500 mg", &["latex"]), None);
        assert_eq!(check("amoxicillin 500 mg", &[]), None);
        assert_eq!(check("amoxicillin 500 mg", &["", "   "]), None);
        assert_eq!(check("", &["penicillin"]), None);
        assert_eq!(
            check(
                "metformin 500 mg",
                &["penicillin", "sulfa", "shellfish", "eggs"]
            ),
            None
        );
        assert_eq!(check("azithromycin", &["penicillin"]), None);
        assert_eq!(check("Vitamin D3 1000 IU", &["NKDA"]), None);
    }

    #[test]
    fn no_trivial_substring_matches() {
        assert_eq!(check("pentoxifylline 400 mg", &["pen"]), None);
        assert_eq!(check("amoxicillin", &["pen"]), None);
        assert_eq!(check("penicillamine 250 mg", &["penicillin"]), None);
        assert_eq!(check("insulin glargine pen", &["pen"]), None);
        assert_eq!(check("sodium chloride 0.9%", &["sodium"]), None);
        assert_eq!(check("folic acid 5 mg", &["acid"]), None);
        assert_eq!(check("codeine", &["co"]), None);
        assert_eq!(check("benzoyl peroxide gel", &["benzos"]), None);
        assert_eq!(check("gadobutrol", &["iodinated contrast"]), None);
    }

    #[test]
    fn unknown_substances_match_word_for_word() {
        let c = check("Metformin hydrochloride 500 mg ER tablet", &["metformin"]).unwrap();
        assert_eq!(c.kind, ConflictKind::SameSubstance);
        assert_eq!(c.drug_class, None);
        assert_eq!(
            c.explanation,
            "the medication contains metformin, the recorded allergen"
        );
        assert_eq!(
            kind("metformin 850mg", &["Metformin - GI upset"]),
            Some(ConflictKind::SameSubstance)
        );
        assert_eq!(
            kind("Allopurinol 100 mg", &["allopurinol (rash)"]),
            Some(ConflictKind::SameSubstance)
        );
        assert_eq!(
            kind("Povidone-iodine 10% solution", &["iodine"]),
            Some(ConflictKind::SameSubstance)
        );
        assert_eq!(
            kind("metformin", &["metformin/sitagliptin"]),
            Some(ConflictKind::SameSubstance)
        );
        assert_eq!(
            kind("Glucophage", &["metformin"]),
            None,
            "brands outside the catalogue are unknown"
        );
    }

    #[test]
    fn accents_and_case_are_folded() {
        assert_eq!(
            kind("AMOXICILLINE 1 g", &["amoxicilline"]),
            Some(ConflictKind::SameSubstance)
        );
        assert_eq!(
            kind("Céfalexine", &["céfalexine"]),
            Some(ConflictKind::SameSubstance)
        );
        assert_eq!(
            kind("IBUPROFEN", &["  nsaids  "]),
            Some(ConflictKind::SameClass)
        );
    }

    #[test]
    fn other_classes() {
        let cases = [
            ("simvastatin 20 mg", "atorvastatin", "statins"),
            ("Lipitor 40mg", "statins", "statins"),
            ("ramipril 5 mg", "lisinopril", "ACE inhibitors"),
            ("enalapril", "ACE inhibitors", "ACE inhibitors"),
            (
                "valsartan 80 mg",
                "losartan",
                "angiotensin receptor blockers",
            ),
            ("candesartan", "ARBs", "angiotensin receptor blockers"),
            ("clarithromycin 500mg", "erythromycin", "macrolides"),
            ("Z-Pak", "macrolides", "macrolides"),
            ("levofloxacin 750 mg", "ciprofloxacin", "fluoroquinolones"),
            ("moxifloxacin", "quinolones", "fluoroquinolones"),
            ("doxycycline 100 mg", "tetracycline", "tetracyclines"),
            ("tobramycin", "gentamicin", "aminoglycosides"),
            ("lorazepam 1 mg", "diazepam", "benzodiazepines"),
            ("Xanax", "benzodiazepines", "benzodiazepines"),
            (
                "phenytoin 100 mg",
                "carbamazepine",
                "aromatic anticonvulsants",
            ),
            ("lamotrigine", "Tegretol", "aromatic anticonvulsants"),
            ("iohexol 350", "IV contrast", "iodinated contrast media"),
            ("imipenem-cilastatin", "meropenem", "carbapenems"),
            ("ceftriaxone", "cephalosporins", "cephalosporins"),
            ("celecoxib", "coxibs", "COX-2 inhibitors"),
        ];
        for (med, allergy, class) in cases {
            let c = check(med, &[allergy]).unwrap_or_else(|| panic!("{med} vs {allergy}"));
            assert_eq!(c.kind, ConflictKind::SameClass, "{med} vs {allergy}");
            assert_eq!(c.drug_class.as_deref(), Some(class), "{med} vs {allergy}");
        }
    }

    #[test]
    fn class_of_medications() {
        let name = |m: &str| class_of(m).map(|c| c.name.as_str());
        assert_eq!(name("Amoxicillin 500 mg capsule"), Some("penicillins"));
        assert_eq!(name("co-codamol 30/500"), Some("opioids"));
        assert_eq!(
            name("Sulfamethoxazole/Trimethoprim"),
            Some("sulfonamide antibiotics")
        );
        assert_eq!(name("cephalexin"), Some("cephalosporins"));
        assert_eq!(name("metformin"), None);
        assert_eq!(name(""), None);
    }

    #[test]
    fn tokenizer() {
        assert_eq!(
            tokens("Amoxicillin 500mg/5mL"),
            ["amoxicillin", "500", "mg", "5", "ml"]
        );
        assert_eq!(tokens("co-amoxiclav"), ["co", "amoxiclav"]);
        assert_eq!(tokens("  "), Vec::<String>::new());
        assert_eq!(core(&tokens("Metformin HCl 500 mg ER tab")), ["metformin"]);
    }

    #[test]
    fn conflict_serializes_camel_case() {
        let c = check("cefalexin", &["penicillin"]).unwrap();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["kind"], "cross_reactivity");
        assert_eq!(v["drugClass"], "cephalosporins");
        assert_eq!(v["allergy"], "penicillin");
        assert_eq!(ConflictKind::SameClass.as_str(), "same_class");
        let classes = serde_json::to_value(drug_classes()).unwrap();
        assert!(classes[0]["crossReactsWith"].is_array());
    }
}
