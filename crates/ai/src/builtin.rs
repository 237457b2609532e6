//! The built-in, offline, deterministic provider.
//!
//! *Draft note* splits the clinician's input into sentences and clauses,
//! expands abbreviations and sorts each piece into Subjective, Objective,
//! Assessment or Plan by what it says (explicit labels such as `Plan:` win).
//! It never adds a word of its own beyond the fixed vocabulary in
//! [`TEMPLATE_VOCABULARY`].
//!
//! *Explain* composes sentences from [`LabFacts`] computed by our own code.

use crate::abbrev;
use crate::error::AiError;
use crate::labs::{critical_statement, no_range_statement, LabFacts};
use crate::provider::{BoxFuture, NoteRequest, Provider, ProviderReply, SoapSections};
use crate::text::{capitalize_first, end_sentence, lazy_regex, sentences, sha256_hex, squash};
use crate::types::Audience;
use regex::Regex;
use std::sync::OnceLock;

/// Provider name.
pub const NAME: &str = "builtin";
/// Model name reported in answers.
pub const MODEL: &str = "amal-builtin-rules-1";

/// Words the assistant itself may write in a note draft (section fillers,
/// chart labels, title). Everything else must come from the input, the chart
/// or the abbreviation table.
pub const TEMPLATE_VOCABULARY: &[&str] = &[
    "not",
    "documented",
    "allergies",
    "active",
    "medications",
    "recent",
    "abnormal",
    "labs",
    "chart",
    "none",
    "recorded",
    "soap",
    "note",
    "ai",
    "draft",
    "low",
    "high",
    "critical",
    "normal",
];

/// Text used for a section with nothing in it.
pub const EMPTY_SECTION: &str = "Not documented.";

/// SOAP section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    Subjective,
    Objective,
    Assessment,
    Plan,
}

impl Section {
    fn idx(self) -> usize {
        match self {
            Section::Subjective => 0,
            Section::Objective => 1,
            Section::Assessment => 2,
            Section::Plan => 3,
        }
    }
    const BY_IDX: [Section; 4] = [
        Section::Subjective,
        Section::Objective,
        Section::Assessment,
        Section::Plan,
    ];
}

// ------------------------------------------------------------------ cues

/// (pattern, weight) per section, matched on the lower-cased, expanded clause.
const S_CUES: &[(&str, u32)] = &[
    (
        r"^(follow-up|follow up) (for|of|visit)\b|\b(here (today )?for|seen (today )?for|presents for|comes in for|came in for|in clinic (today )?for|returns for|visit for|reason for visit)\b",
        10,
    ),
    (
        r"\b(complains? of|complaining of|reports?|reported|reporting|states?|stated|describes?|described|endorses?|endorsed|denies|denied|deny|presents? with|presenting with|presented with|per (the )?patient|patient says|history of present illness|chief complaint|review of systems|says)\b",
        3,
    ),
    (
        r"\b(history of|past medical history|past surgical history|family history|social history|history|since (yesterday|last|this|\d|the)|began|onset|for (the )?(past|last) \S+( \S+)?|for \d+ (days?|weeks?|months?|years?|hours?)|x ?\d+ ?(days?|weeks?|months?|years?|d|wks?|hours?)\b|(\d+|one|two|three|four|five|several|a few|few|a couple of) (days?|weeks?|months?|years?|hours?) ago|year-old|feels?|feeling|felt|noticed|worse (with|at|when|after|in|on)|better (with|at|when|after|on)|relieved by|aggravated by|radiat(es|ing) to|takes|taking|took|tried|smokes?|smoker|drinks|alcohol|lives with|works as|no known (drug )?allergies|allergic to|allergy to|started (\d|yesterday|last|this|a |two|three|few|several|after|when)|tolerating|known|using|uses|waking|wakes|wants to|would like|no complaints|mom reports|mother reports|tried|ambulating|diagnosed|was told|in (19|20)\d\d|since (19|20)\d\d)\b",
        2,
    ),
    (
        r"\b(pain|aches?|aching|cough|coughing|fevers?|chills|nausea|vomiting|diarrh?oea|diarrhea|constipation|headaches?|dizzy|dizziness|lightheaded(ness)?|fatigue|tired(ness)?|shortness of breath|dyspnea|palpitations|sore throat|runny nose|congestion|sneezing|itch(y|ing)?|insomnia|weakness|numbness|tingling|bleeding|dysuria|urinary frequency|urgency|malaise|appetite|weight (loss|gain)|night sweats|sweats|anxious|low mood|stress|cramps?|cramping|discomfort|syncope|fainting|blurred vision|heartburn|thirst|polyuria|polydipsia|sleep|sputum|wheezy|chest tightness|dyspnea on exertion|orthopnea)\b",
        1,
    ),
];

const O_CUES: &[(&str, u32)] = &[
    (
        r"\b(blood pressure|heart rate|respiratory rate|temperature|oxygen saturations?|pulse|weight|height|body mass index|temp|t|bp|hr|rr|spo2)\b\s*(of|is|was|:|=)?\s*\d",
        3,
    ),
    (r"\b(?:[7-9]\d|1\d\d|2[0-4]\d)/(?:[3-9]\d|1[0-3]\d)\b", 3),
    (
        r"\d+(?:\.\d+)?\s*(?:°\s*[cf]?|degrees|mm ?hg|bpm|breaths|kg|lbs?|cm)\b",
        3,
    ),
    (r"\d+\s*%\s*(on|oxygen|room)", 3),
    (
        r"\b(on exam(ination)?|examination|physical exam|exam|on palpation|palpation|auscultation|inspection|vital signs|vitals)\b",
        3,
    ),
    (
        r"\b(glucose|hemoglobin a1c|hba1c|a1c|sodium|potassium|creatinine|egfr|wbc|white (blood )?cell count|hemoglobin|hgb|platelets|troponin|inr|tsh|cholesterol|ldl|hdl|lactate|crp|c-reactive protein|ferritin|bun|alt|ast|bilirubin|albumin)\b[^,;]{0,12}?\d",
        3,
    ),
    (
        r"\b(electrocardiogram|chest x-ray|x-ray|ultrasound|urinalysis|ct|mri|echocardiogram|echo|labs?|culture|rapid strep|strep test|covid test|pcr|swab|dipstick|pregnancy test|imaging)\b.{0,25}\b(shows?|showed|revealed?|demonstrat\w*|normal|unremarkable|negative|positive|notable|significant)\b",
        3,
    ),
    (
        r"\b(lungs?|heart sounds|abdomen|chest wall|pupils|oropharynx|pharynx|tympanic membranes?|extremities|skin|neuro(logical)?|cranial nerves|gait|reflexes|lymph nodes?|lymphadenopathy|tonsils?|no acute distress|alert and oriented|clear to auscultation|regular rate and rhythm|murmurs?|rubs?|gallops?|crackles|rales|rhonchi|wheez(es|ing)|tender(ness)?|nontender|non-tender|soft|distended|edema|oedema|erythema(tous)?|swollen|afebrile|febrile|diaphoretic|pallor|pale|jaundiced?|bowel sounds|capillary refill|range of motion|full strength|supple|injected|exudates?|well-appearing|ill-appearing|in no distress|mucous membranes|sclera|head, eyes, ears, nose and throat|pupils equal|extraocular movements intact|bulging)\b",
        2,
    ),
    (
        r"\b(score|phq-9|gad-7|peak flow|audit-c|mmse|moca|pain scale)\b[^,;]{0,12}?\d",
        3,
    ),
    (
        r"\b(dressing|incision|wound (is|appears|bed)|clean,? dry|intact|approximated|neurovascularly)\b",
        2,
    ),
    (
        r"\b(noted|observed|measured|appears|appearing|visible|palpable)\b",
        1,
    ),
];

/// Names of conditions (also used to check that a remote model's output
/// names no diagnosis the input does not).
pub(crate) const CONDITION_TERMS: &str = r"\b(hypertension|diabetes( mellitus)?|pneumonia|bronchitis|asthma|chronic obstructive pulmonary disease|heart failure|urinary tract infection|upper respiratory tract infection|cellulitis|gastroenteritis|migraine|sinusitis|pharyngitis|tonsillitis|otitis( media| externa)?|conjunctivitis|depression|major depressive disorder|anxiety disorder|generalized anxiety disorder|hyperlipidemia|dyslipidemia|atrial fibrillation|kidney disease|acute kidney injury|anemia|anaemia|hypothyroidism|hyperthyroidism|gout|osteoarthritis|gastroesophageal reflux disease|influenza|covid(-19)?|viral (illness|infection|syndrome)|infection|fracture|sprain|dermatitis|eczema|psoriasis|obesity|hypokalemia|hyperkalemia|hyponatremia|dehydration|angina|acute coronary syndrome|deep vein thrombosis|pulmonary embolism|stroke|transient ischemic attack|sepsis|coronary artery disease|sleep apnea|benign prostatic hyperplasia|low back pain|musculoskeletal|costochondritis|cystitis|pyelonephritis|appendicitis|cholecystitis|pancreatitis|diverticulitis|allergic rhinitis|rhinitis|tension-type|tension headache|vertigo|plantar fasciitis|tendinitis|tendonitis|bursitis|laceration|contusion|abrasion|tobacco use disorder|nicotine dependence|hypertensive (urgency|emergency))\b";

const A_CUES: &[(&str, u32)] = &[
    (
        r"^(aom|uti|urti|lrti|cap|copd|chf|dvt|ckd|oa|gerd|gord|ibs|tia|af|t2dm|dm2|pmr|lbp|bph|om|oe)\b",
        1,
    ),
    (
        r"\b(likely|most likely|probable|probably|possible|possibly|consistent with|suggestive of|suspect(ed)?|suspicious for|concerning for|concern for|in keeping with|compatible with|presumed|presumptive|differential( diagnosis)?|rule out|impression|working diagnosis|assessment|diagnosis|differential diagnosis)\b",
        3,
    ),
    (
        r"\b(well[- ]controlled|poorly controlled|uncontrolled|not controlled|at goal|not at goal|above goal|exacerbation|flare|resolving|resolved|improving|worsening|secondary to|etiology|not improving)\b",
        2,
    ),
    (CONDITION_TERMS, 1),
    (r"\b(mechanical|viral|strain)\b", 1),
];

const P_CUES: &[(&str, u32)] = &[
    (
        r"^(next|review|come back|goals?|target|aim|daily weights)\b|\b(i am|i'm|we are|we're|will be) (increasing|starting|stopping|reducing|decreasing|switching|changing|adding|referring|ordering|prescribing|booking|arranging|continuing)\b",
        5,
    ),
    (
        r"\b(review|check|wound check|recheck|appointment|visit|dressing change|see|seen again)\b.{0,15}\b\d+\s*(d|days?|wks?|weeks?|w|months?|mo|mths?|h|hrs?|hours?|/52|/12|/7)\b|\breview (in|on|at|if|with|after|next|tomorrow|today|monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|wed|thu|fri)\b",
        3,
    ),
    (
        r"^(plan|will|start|begin|initiate|continue|cont|resume|stop|hold|discontinue|increase|decrease|reduce|titrate|switch|change|add|order|obtain|check|recheck|repeat|refer|schedule|return|follow-up|follow up|advise|advised|counsel|counseled|counselled|educate|educated|discussed|encourage|encouraged|recommend|recommended|prescribe|prescribed|give|administer|monitor|arrange|book|consult|send|sent|admit|discharge|call|keep|avoid|apply|use|rest|hydrate|push fluids|supportive care|return to clinic|referral|ordered|referred|provided|reassess|trial|to (start|continue|return|follow|call|see|repeat)|plan to|patient to|as needed|closed|repaired|sutured|dressed|irrigated|cleaned|splinted|performed|injected|oral rehydration|rehydration|no changes)\b",
        5,
    ),
    (
        r"\b(follow-up|follow up|referral|refer(red)? to|return (to clinic|if|precautions)|return precautions|will (start|continue|order|obtain|check|refer|schedule|call|follow|repeat|increase|decrease|stop|monitor|consider|arrange|see|reassess|recheck|send|add|switch|titrate|hold|discuss|need)|plan(ned)? (to|for)|to be (ordered|scheduled|drawn|repeated|arranged)|ordered|scheduled|advised|counsel(l)?ed|educated|in \d+ (days?|weeks?|months?)|next (visit|appointment)|if (worse|worsening|symptoms (worsen|persist|do not improve)|no improvement)|prescription)\b",
        3,
    ),
    (
        r"\b(diary|action plan|precautions|instructions given|discussed|gargles?|salt water)\b",
        2,
    ),
    (
        r"^(honey|fluids|rest|ice|heat|elevation|warm compresses|saline|lozenges|humidifier|otc|over-the-counter|analgesia|analgesics|nsaids|acetaminophen|paracetamol|ibuprofen|antibiotics|steroids?|physiotherapy|physical therapy|compression|crutches|splint|sling)\b",
        3,
    ),
    (
        r"\b(as needed|start(ed)? on|continue|fluids|rest|hydration|rehydration|lifestyle|diet|exercise|smoking cessation|vaccine|vaccination|flu shot|education|counseling|monitor(ing)?)\b",
        1,
    ),
    (
        r"\b\d+(\.\d+)?\s*(mg|mcg|g|units?|ml|puffs?|tablets?)\b.{0,25}\b(daily|twice daily|three times daily|four times daily|once daily|at bedtime|every \d+ hours|as needed|weekly|every morning)\b",
        1,
    ),
];

struct Cues {
    by_section: [Vec<(Regex, u32)>; 4],
}

fn cues() -> &'static Cues {
    static C: OnceLock<Cues> = OnceLock::new();
    C.get_or_init(|| {
        let build = |list: &[(&str, u32)]| -> Vec<(Regex, u32)> {
            list.iter()
                .filter_map(|(p, w)| Regex::new(&format!("(?i){p}")).ok().map(|r| (r, *w)))
                .collect()
        };
        Cues {
            by_section: [build(S_CUES), build(O_CUES), build(A_CUES), build(P_CUES)],
        }
    })
}

fn score(clause: &str) -> [u32; 4] {
    let lower = clause.to_lowercase();
    let mut s = [0u32; 4];
    for (i, list) in cues().by_section.iter().enumerate() {
        for (re, w) in list {
            if re.is_match(&lower) {
                s[i] += w;
            }
        }
    }
    if repeat_measurement(&lower) {
        s[Section::Objective.idx()] += 6;
    }
    if medication_action(&lower) {
        s[Section::Plan.idx()] += 5;
    }
    s
}

static REPEAT_RE: OnceLock<Option<Regex>> = OnceLock::new();

/// "Repeat 152/94", "recheck K+ 4.8 (was 5.9)": a measurement taken again,
/// not an order to repeat it ("repeat HbA1c in 3 months").
fn repeat_measurement(lower: &str) -> bool {
    let Some(re) = lazy_regex(
        &REPEAT_RE,
        r"^(?:repeat|repeated|recheck|rechecked|rpt|initial|second|third|follow-up|post-treatment)\s+(?:([a-z][a-z0-9+&/]*)\s+){0,2}(?:of\s+|was\s+|is\s+|=\s*|:\s*)?(\d+(?:\.\d+)?(?:/\d+)?)\s*(\S*)",
    ) else {
        return false;
    };
    let Some(c) = re.captures(lower) else {
        return false;
    };
    let word = c.get(1).map_or("", |m| m.as_str());
    let unit = c.get(3).map_or("", |m| m.as_str());
    let time_unit = matches!(
        unit.trim_end_matches([',', '.', ';']),
        "d" | "day"
            | "days"
            | "wk"
            | "wks"
            | "week"
            | "weeks"
            | "w"
            | "month"
            | "months"
            | "mo"
            | "mths"
            | "h"
            | "hr"
            | "hrs"
            | "hour"
            | "hours"
            | "/52"
            | "/12"
            | "/7"
            | "y"
            | "yr"
            | "years"
    );
    !time_unit && !matches!(word, "in" | "at" | "after" | "every" | "for" | "within")
}

static MED_ACTION_RE: OnceLock<Option<Regex>> = OnceLock::new();

/// "Started sertraline 50 mg od today", "Amoxicillin 5 days": a medication
/// decision (Plan), unlike "started after a fall" (onset, Subjective).
fn medication_action(lower: &str) -> bool {
    let Some(re) = lazy_regex(
        &MED_ACTION_RE,
        r"^(?:(?:started|commenced|restarted|increased|decreased|reduced|stopped|switched|changed|doubled|halved|prescribed|issued|gave|given|administered|continue|continued|cont)\s+(?:on\s+|to\s+|the\s+|her\s+|his\s+)?)?(\S+)",
    ) else {
        return false;
    };
    let Some(c) = re.captures(lower) else {
        return false;
    };
    let verb = c.get(0).map_or("", |m| m.as_str()) != c.get(1).map_or("", |m| m.as_str());
    let word = c.get(1).map_or("", |m| m.as_str());
    crate::request::mentions_medication(word) || (verb && crate::request::dose_quantity(lower))
}

/// How clinical a text sounds: the Subjective, Objective and Assessment
/// cue weights it matches (Plan cues such as "will" or "call" are too
/// generic to count).
pub(crate) fn clinical_cue_score(text: &str) -> u32 {
    let s = score(&abbrev::expand(text));
    s[0] + s[1] + s[2]
}

/// Best section and its score; ties go Plan > Assessment > Subjective > Objective.
fn best(s: [u32; 4]) -> (Section, u32) {
    let order = [
        Section::Plan,
        Section::Assessment,
        Section::Subjective,
        Section::Objective,
    ];
    let mut best = (Section::Subjective, 0);
    for sec in order {
        if s[sec.idx()] > best.1 {
            best = (sec, s[sec.idx()]);
        }
    }
    best
}

// ------------------------------------------------------------------ splitting

const LABELS: &str = r"(?i)\b(assessment\s*(?:and|&|/)\s*plan|impression\s*(?:and|&|/)\s*plan|a\s*/\s*p|a&p|subjective|objective|assessment|impression|plan|hpi|history of present illness|chief complaint|cc|ros|review of systems|pmh|past medical history|medications|meds|allergies|social history|family history|physical exam(?:ination)?|examination|exam|pe|vitals|vital signs|labs|results|investigations|diagnosis|diagnoses|dx|ddx|recommendations|disposition|goals?|on exam(?:ination)?|o/e|s|o|a|p)\s*:\s*";

/// (forced section, default section) for a label.
fn label_section(label: &str) -> (Option<Section>, Option<Section>) {
    let l = squash(&label.to_lowercase().replace(' ', ""));
    let l = l.trim_end_matches(':').trim();
    if l.contains("plan") && (l.starts_with("assessment") || l.starts_with("impression"))
        || matches!(l, "a/p" | "a&p")
    {
        return (None, Some(Section::Assessment));
    }
    let sec = match l {
        "objective"
        | "o"
        | "exam"
        | "examination"
        | "physicalexam"
        | "physicalexamination"
        | "pe"
        | "vitals"
        | "vitalsigns"
        | "labs"
        | "results"
        | "investigations"
        | "onexam"
        | "onexamination"
        | "o/e" => Section::Objective,
        "assessment" | "a" | "impression" | "diagnosis" | "diagnoses" | "dx" | "ddx" => {
            Section::Assessment
        }
        "plan" | "p" | "recommendations" | "disposition" | "goal" | "goals" => Section::Plan,
        _ => Section::Subjective,
    };
    (Some(sec), None)
}

#[derive(Debug)]
struct Segment {
    forced: Option<Section>,
    default: Option<Section>,
    /// True when `forced` applies to every sentence (lines under a header
    /// such as a line reading only `Plan:`); otherwise only to the first.
    whole: bool,
    text: String,
}

static LABEL_RE: OnceLock<Option<Regex>> = OnceLock::new();
static BULLET_RE: OnceLock<Option<Regex>> = OnceLock::new();

fn strip_bullet(line: &str) -> &str {
    match lazy_regex(&BULLET_RE, r"^\s*(?:[-*•·–—>]+|\d{1,2}[.)]|[a-z][.)])\s+") {
        Some(re) => re
            .find(line)
            .map_or(line, |m| line.get(m.end()..).unwrap_or_default()),
        None => line,
    }
}

/// Splits the input into labelled segments (explicit `Plan:` etc. labels).
///
/// A label with text after it forces the section of the sentence it
/// introduces (later sentences are sorted, defaulting to it); a label alone on
/// its line forces every following line until the next label or a blank line.
fn segments(input: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut header: (Option<Section>, Option<Section>) = (None, None);
    let Some(label_re) = lazy_regex(&LABEL_RE, LABELS) else {
        return vec![Segment {
            forced: None,
            default: None,
            whole: false,
            text: input.to_string(),
        }];
    };
    for raw_line in input.lines() {
        let line = strip_bullet(raw_line).trim();
        if line.is_empty() {
            header = (None, None);
            continue;
        }
        let mut current = header;
        let mut whole = header != (None, None);
        let mut last = 0;
        for m in label_re.find_iter(line) {
            let before = line.get(..m.start()).unwrap_or_default().trim_end();
            let label = m.as_str().trim();
            let single_letter = label.trim_end_matches(':').trim().chars().count() <= 1;
            let at_boundary = before.is_empty() || before.ends_with(['.', ';', '!', '?']);
            // Inline word labels ("… crackles Plan: diuresis") are accepted;
            // single letters only at the start of a line or sentence.
            if !(at_boundary || (!single_letter && m.start() > 0)) {
                continue;
            }
            let pending = line.get(last..m.start()).unwrap_or_default().trim();
            if !pending.is_empty() {
                out.push(Segment {
                    forced: current.0,
                    default: current.1,
                    whole,
                    text: pending.to_string(),
                });
            }
            current = label_section(label);
            whole = false;
            last = m.end();
        }
        let rest = line.get(last..).unwrap_or_default().trim();
        if rest.is_empty() {
            if last > 0 {
                header = current; // a header line: "Plan:"
            }
        } else {
            out.push(Segment {
                forced: current.0,
                default: current.1,
                whole,
                text: rest.to_string(),
            });
        }
    }
    out
}

static ENUM_RE: OnceLock<Option<Regex>> = OnceLock::new();

/// Removes list numbering ("1. ", "2) ") at the start or after a sentence end.
fn strip_enumeration(text: &str) -> String {
    match lazy_regex(&ENUM_RE, r"(^|[.;:]\s+)\d{1,2}[.)]\s+") {
        Some(re) => re.replace_all(text, "$1").into_owned(),
        None => text.to_string(),
    }
}

static MIDSPLIT_RE: OnceLock<Option<Regex>> = OnceLock::new();

/// (separator before, clause) pieces of one sentence.
fn clauses(sentence: &str) -> Vec<(String, String)> {
    let mut pieces: Vec<(String, String)> = Vec::new();
    let mut parts: Vec<(String, &str)> = Vec::new();
    for (i, comma_part) in sentence.split(", ").enumerate() {
        for (j, dash_part) in comma_part.split(" - ").enumerate() {
            let sep = match (i, j) {
                (0, 0) => "",
                (_, 0) => ", ",
                _ => " - ",
            };
            parts.push((sep.to_string(), dash_part));
        }
    }
    for (sep, part) in parts {
        // Dictation without commas: "lungs with crackles likely heart failure".
        let Some(mid) = lazy_regex(
            &MIDSPLIT_RE,
            r"(?i)\s(most likely|likely|probabl[ey]|consistent with|suggestive of|concerning for|plan (?:is )?to|will)\b",
        ) else {
            pieces.push((sep, part.to_string()));
            continue;
        };
        let mut last = 0;
        let mut first_sep = sep;
        for m in mid.find_iter(part) {
            let before = part.get(last..m.start()).unwrap_or_default().trim();
            let prev_word = before.rsplit(' ').next().unwrap_or("").to_lowercase();
            if before.split_whitespace().count() < 2
                || matches!(
                    prev_word.as_str(),
                    "is" | "are"
                        | "was"
                        | "were"
                        | "be"
                        | "seems"
                        | "appears"
                        | "most"
                        | "less"
                        | "more"
                        | "not"
                        | "very"
                        | "also"
                        | "and"
                        | "or"
                        | "she"
                        | "he"
                        | "they"
                        | "patient"
                        | "pt"
                        | "we"
                        | "i"
                        | "who"
                        | "that"
                        | "which"
                        | "findings"
                        | "picture"
                        | "presentation"
                        | "symptoms"
                        | "overall"
                        | "this"
                )
            {
                continue;
            }
            pieces.push((std::mem::take(&mut first_sep), before.to_string()));
            first_sep = " ".to_string();
            last = m.start() + 1;
        }
        pieces.push((
            first_sep,
            part.get(last..).unwrap_or_default().trim().to_string(),
        ));
    }
    pieces.retain(|(_, c)| !c.trim().is_empty());
    pieces
}

/// Sorts clinician input (already de-identified) into SOAP sections.
/// Deterministic; adds no words except abbreviation expansions.
pub fn draft_soap_sections(input: &str) -> SoapSections {
    let mut buckets: [Vec<String>; 4] = Default::default();
    let mut prev_sentence_section = Section::Subjective;
    for seg in segments(&crate::dictation::punctuate(input)) {
        if let Some(f) = seg.forced.or(seg.default) {
            prev_sentence_section = f;
        }
        for (n, sentence) in sentences(&strip_enumeration(&seg.text))
            .into_iter()
            .enumerate()
        {
            let forced = seg.forced.filter(|_| n == 0 || seg.whole);
            let mut current: Option<Section> = None;
            let mut pieces: Vec<(Section, String)> = Vec::new();
            for (sep, clause) in clauses(&sentence) {
                let expanded = abbrev::expand(&clause);
                let sec = if let Some(f) = forced {
                    f
                } else {
                    let (b, sc) = best(score(&expanded));
                    match current {
                        None if sc >= 1 => b,
                        None => seg.default.unwrap_or(prev_sentence_section),
                        Some(cur) if sc >= 2 && b != cur => b,
                        Some(cur) => cur,
                    }
                };
                match pieces.last_mut() {
                    Some((last_sec, text)) if *last_sec == sec => {
                        text.push_str(&sep);
                        text.push_str(&expanded);
                    }
                    _ => pieces.push((sec, expanded)),
                }
                current = Some(sec);
            }
            if let Some(s) = current {
                prev_sentence_section = s;
            }
            for (sec, text) in pieces {
                let t = squash(&text);
                let t = t.trim_matches(|c: char| c == ',' || c.is_whitespace());
                if !t.is_empty() {
                    buckets[sec.idx()].push(end_sentence(&capitalize_first(t)));
                }
            }
        }
    }
    let join = |i: usize| buckets[i].join("\n");
    SoapSections {
        subjective: join(Section::Subjective.idx()),
        objective: join(Section::Objective.idx()),
        assessment: join(Section::Assessment.idx()),
        plan: join(Section::Plan.idx()),
    }
}

/// Classifies one clause (for diagnostics and tests).
pub fn classify(clause: &str) -> Section {
    let (b, sc) = best(score(&abbrev::expand(clause)));
    if sc == 0 {
        Section::BY_IDX[0]
    } else {
        b
    }
}

// ------------------------------------------------------------------ explain

fn range_text(f: &LabFacts) -> Option<String> {
    let unit = if f.unit.is_empty() {
        String::new()
    } else {
        format!(" {}", f.unit)
    };
    match (&f.reference_low, &f.reference_high) {
        (Some(l), Some(h)) => Some(format!("{l} to {h}{unit}")),
        (Some(l), None) => Some(format!("{l}{unit} or more")),
        (None, Some(h)) => Some(format!("up to {h}{unit}")),
        (None, None) => None,
    }
}

fn with_unit(v: &str, unit: &str) -> String {
    if unit.is_empty() {
        v.to_string()
    } else {
        format!("{v} {unit}")
    }
}

fn signed(v: f64) -> String {
    let s = crate::text::fmt_num(v.abs());
    if v >= 0.0 {
        format!("+{s}")
    } else {
        format!("-{s}")
    }
}

/// Deterministic explanation of a lab result.
pub fn compose_explanation(f: &LabFacts) -> String {
    let mut out: Vec<String> = Vec::new();
    let name = if f.test_name.is_empty() {
        "This test".to_string()
    } else {
        f.test_name.clone()
    };
    let value = with_unit(&f.value, &f.unit);
    let flag_words = f.flag.as_deref().map(|x| x.replace('_', " "));
    match f.audience {
        Audience::Patient => {
            if f.critical {
                out.push(critical_statement(Audience::Patient).to_string());
            }
            match &f.measures {
                Some(m) if f.test_name.is_empty() => out.push(format!("This test measures {m}.")),
                Some(m) => out.push(format!("The {name} test measures {m}.")),
                None => out.push(format!(
                    "{name}: a plain-language description of this test is not available."
                )),
            }
            out.push(format!("Your result is {value}."));
            if let Some(r) = range_text(f) {
                out.push(format!("The reference range is {r}."));
            }
            match (f.position.as_deref(), f.critical) {
                (Some("within"), _) => out.push("Your result is within the reference range.".into()),
                (Some("above"), true) => out.push("Your result is far above the reference range and is flagged as a critical value.".into()),
                (Some("below"), true) => out.push("Your result is far below the reference range and is flagged as a critical value.".into()),
                (Some("above"), false) => out.push("Your result is above the reference range.".into()),
                (Some("below"), false) => out.push("Your result is below the reference range.".into()),
                _ => out.push(no_range_statement(Audience::Patient).into()),
            }
            out.push(patient_trend(f));
            if !f.critical {
                if matches!(f.position.as_deref(), Some("within") | None) {
                    out.push(
                        "Your clinician will go over it with you along with your other results."
                            .into(),
                    );
                } else {
                    out.push("A result outside the range does not by itself mean something is wrong; your clinician will go over it with you along with your other results.".into());
                }
            }
        }
        Audience::Clinician => {
            if f.critical {
                out.push(critical_statement(Audience::Clinician).to_string());
            }
            let code = if f.loinc_code.is_empty() {
                String::new()
            } else {
                format!(" (LOINC {})", f.loinc_code)
            };
            match &f.measures {
                Some(m) => out.push(format!("{name}{code}: {m}.")),
                None => out.push(format!("{name}{code}: not in the built-in test table.")),
            }
            let mut line = format!("Result {value}");
            if let Some(r) = range_text(f) {
                line.push_str(&format!("; reference range {r}"));
            } else {
                line.push_str("; no reference range recorded");
            }
            if let Some(fw) = &flag_words {
                line.push_str(&format!("; flag: {fw}"));
            }
            out.push(format!("{line}."));
            match f.position.as_deref() {
                Some(p) => {
                    let pos = match p {
                        "within" => "Within the reference range.",
                        "above" => "Above the reference range.",
                        _ => "Below the reference range.",
                    };
                    out.push(pos.to_string());
                }
                None => out.push(no_range_statement(Audience::Clinician).into()),
            }
            out.push(clinician_trend(f));
        }
    }
    out.join(" ")
}

fn patient_trend(f: &LabFacts) -> String {
    let t = &f.trend;
    let prev = t
        .previous
        .map(|p| with_unit(&crate::text::fmt_num(p), &f.unit))
        .unwrap_or_default();
    let change = t
        .change
        .map(|c| with_unit(&crate::text::fmt_num(c.abs()), &f.unit))
        .unwrap_or_default();
    let mut s = match t.direction.as_str() {
        "rising" => {
            format!("It has gone up since your previous result of {prev} (up by {change}).")
        }
        "falling" => {
            format!("It has gone down since your previous result of {prev} (down by {change}).")
        }
        "stable" => format!("It is about the same as your previous result of {prev}."),
        _ => "This is the first recorded result for this test.".to_string(),
    };
    if t.points >= 3 {
        s.push_str(&format!(
            " There are {} results on record for this test.",
            t.points
        ));
    }
    s
}

fn clinician_trend(f: &LabFacts) -> String {
    let t = &f.trend;
    match (t.previous, t.change) {
        (Some(p), Some(c)) => {
            let mut s = format!(
                "Trend: {} (previous {}, change {}; {} results).",
                t.direction,
                with_unit(&crate::text::fmt_num(p), &f.unit),
                signed(c),
                t.points
            );
            if f.earlier_values.len() >= 2 {
                s.push_str(&format!(
                    " Earlier values, oldest first: {}.",
                    f.earlier_values.join(", ")
                ));
            }
            s
        }
        _ => "Trend: first result on record.".to_string(),
    }
}

// ------------------------------------------------------------------ provider

/// The built-in provider.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuiltinProvider;

impl Provider for BuiltinProvider {
    fn name(&self) -> &str {
        NAME
    }
    fn model(&self) -> &str {
        MODEL
    }
    fn grounded(&self) -> bool {
        true
    }
    fn draft_note<'a>(
        &'a self,
        req: &'a NoteRequest,
    ) -> BoxFuture<'a, Result<ProviderReply<SoapSections>, AiError>> {
        Box::pin(async move {
            Ok(ProviderReply {
                value: draft_soap_sections(&req.input),
                prompt_sha256: sha256_hex(req.input.as_bytes()),
            })
        })
    }
    fn explain<'a>(
        &'a self,
        facts: &'a LabFacts,
    ) -> BoxFuture<'a, Result<ProviderReply<String>, AiError>> {
        Box::pin(async move {
            let canonical = serde_json::to_vec(facts).unwrap_or_default();
            Ok(ProviderReply {
                value: compose_explanation(facts),
                prompt_sha256: sha256_hex(&canonical),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cues_compile() {
        let c = cues();
        assert_eq!(c.by_section[0].len(), S_CUES.len());
        assert_eq!(c.by_section[1].len(), O_CUES.len());
        assert_eq!(c.by_section[2].len(), A_CUES.len());
        assert_eq!(c.by_section[3].len(), P_CUES.len());
        assert!(lazy_regex(&LABEL_RE, LABELS).is_some());
        assert!(!segments("S: x").is_empty());
        assert!(!clauses("a likely b").is_empty());
        assert!(!sentences("a. b").is_empty());
        assert!(!strip_bullet("- x").is_empty());
    }

    #[test]
    fn classifies_clauses() {
        assert_eq!(classify("c/o SOB x 3 days"), Section::Subjective);
        assert_eq!(classify("BP 150/90"), Section::Objective);
        assert_eq!(
            classify("lungs with crackles bilaterally"),
            Section::Objective
        );
        assert_eq!(classify("likely CHF exacerbation"), Section::Assessment);
        assert_eq!(classify("f/u 1 week"), Section::Plan);
        assert_eq!(classify("Start furosemide 40 mg daily"), Section::Plan);
        assert_eq!(
            classify("Start antibiotics for likely pneumonia"),
            Section::Plan
        );
        assert_eq!(classify("denies chest pain"), Section::Subjective);
    }

    #[test]
    fn sorts_dictation() {
        let s = draft_soap_sections(
            "54 y/o M w/ hx HTN, DM2 c/o SOB x 3 days. BP 150/90, HR 98, lungs with crackles bilaterally likely CHF exacerbation. Plan: start furosemide, f/u 1 week.",
        );
        assert!(s.subjective.contains("shortness of breath"), "{s:?}");
        assert!(s.objective.contains("Blood pressure 150/90"), "{s:?}");
        assert!(
            s.objective.contains("lungs with crackles bilaterally"),
            "{s:?}"
        );
        assert!(
            s.assessment
                .contains("Likely congestive heart failure exacerbation"),
            "{s:?}"
        );
        assert!(s.plan.contains("Start furosemide"), "{s:?}");
        assert!(s.plan.contains("follow-up 1 week"), "{s:?}");
    }
}
