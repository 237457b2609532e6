//! Guardrails: input checks before the provider, output checks after it.

use crate::deid::placeholder_like;
use crate::error::{AiError, RefusalReason};
use crate::request;
use crate::text::{compile_all, numbers, squash, words};
use regex::Regex;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// What the assistant is being asked to do (refusal wording depends on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    Note,
    Explain,
}

pub(crate) fn message(reason: RefusalReason, task: Task) -> &'static str {
    match (reason, task) {
        (RefusalReason::DosingOrPrescribing, _) => {
            "Dosing and prescribing decisions need a prescriber and the formulary: check the product information or local formulary, and write any prescription yourself in the Prescriptions section. The assistant only drafts documentation."
        }
        (RefusalReason::DefinitiveDiagnosis, _) => {
            "The assistant cannot make or confirm a diagnosis. Record your own assessment in the note; the assistant can organise the findings you have documented into a SOAP draft."
        }
        (RefusalReason::OutOfScope, _) => {
            "That is outside what the assistant does: it drafts clinical notes from your findings and explains lab results. Enter clinical findings, or write this note by hand."
        }
        (RefusalReason::PromptInjection, _) => {
            "The input looks like an attempt to change the assistant's instructions, so it was not processed. Enter only the clinical content you want drafted, or write this note by hand."
        }
        (RefusalReason::InsufficientData, Task::Note) => {
            "There is not enough here to draft a note. Add your findings (history, examination, assessment, plan) as bullet points or dictated text, or write this note by hand."
        }
        (RefusalReason::InsufficientData, Task::Explain) => {
            "This lab result has no usable value or reference information to explain. Check the recorded result, its unit and its reference range, and review it directly."
        }
        (RefusalReason::UnsafeOutput, Task::Note) => {
            "The draft failed the safety check (it contained content that was not in your input or the chart, or dosing or diagnostic statements), so it was withheld. Write this note by hand, or try again with plainer input."
        }
        (RefusalReason::UnsafeOutput, Task::Explain) => {
            "The explanation failed the safety check, so it was withheld. Review the result directly against its reference range and earlier results."
        }
    }
}

pub(crate) fn refuse(reason: RefusalReason, task: Task) -> AiError {
    AiError::refused(reason, message(reason, task))
}

// ---------------------------------------------------------------- patterns

const INJECTION: &[&str] = &[
    r"\b(ignore|disregard|forget|override|bypass|skip)\b[^.\n]{0,40}\b(previous|prior|above|earlier|preceding|all|any|your|the|these|those|system|safety|original)\b[^.\n]{0,30}\b(instructions?|prompts?|rules?|guidelines?|directions?|guardrails?|constraints?|polic(y|ies)|messages?|context)\b",
    r"\b(disregard|ignore|forget) (everything|all of (that|the above)|the above|what (you were|i) (told|said))\b",
    r"\bsystem (prompt|message|instructions?)\b",
    r"\b(reveal|show|print|repeat|output|leak|tell me) (me )?(your|the) (hidden |initial |original |secret )?(prompt|instructions|rules|system)\b",
    r"\byou are (now|no longer|free|unrestricted|in developer mode|dan)\b",
    r"\bfrom now on,? (you|act|respond|answer|behave|pretend)\b",
    r"\b(pretend|imagine) (that )?(you are|you're|to be) (a|an|my|the|not)\b",
    r"\b(please |now |you will |you must |you should |you can )act as\b",
    r"\bact as if you\b",
    r"\brole-?\s?play\b",
    r"\b(jailbreak|jail-break|dan mode|developer mode|god mode|do anything now)\b",
    r"\bnew (instructions|rules|persona)\b",
    r"\b(without|no) (any )?(restrictions|filters|guardrails|safety (rules|checks|filters))\b",
    r"(<\|?/?(system|im_start|im_end|assistant)\|?>|\[/?inst\]|###\s*(system|instruction))",
];

const OUT_OF_SCOPE: &[&str] = &[
    r"\b(tell|write|give|make up|know)\b[^.\n]{0,20}\b(jokes?|poems?|poetry|limericks?|haikus?|songs?|lyrics|stories|story|raps?|riddles?|sonnets?)\b",
    r"\b(jokes?|poems?|limericks?|haikus?|sonnets?|riddles?)\b",
    r"\b(what('s| is| will be) the weather|weather (forecast|today|tomorrow|like|in)|forecast for|rain tomorrow|temperature outside)\b",
    r"\b(recipe|recipes|cook(ing)? (dinner|lunch))\b",
    r"\b(stock (price|market)|bitcoin|crypto(currency)?|lottery|betting odds)\b",
    r"\b(who won|final score|world cup|super bowl|premier league)\b",
    r"\b(movie|netflix|tv show|celebrity|horoscope)\b",
    r"\b(write|debug|fix|refactor|generate)\b[^.\n]{0,30}\b(code|python|javascript|typescript|sql|regex|html|css|c\+\+|java|bash script|shell script|computer program)\b",
    r"\b(python|javascript|typescript|html|css|php|kotlin|golang) (code|script|function|program)\b",
    r"\bcode (in|for) (python|javascript|rust|java|c\+\+|sql)\b",
    r"\b(capital of|who won|who is the (president|prime minister|king|queen)|translate (this|to|into))\b",
    r"\b(essay|homework|cover letter|love letter|tweet|marketing email|business plan)\b",
    r"\b(what is your name|who (made|created|are) you|are you (human|sentient|conscious|chatgpt))\b",
];

/// Words that make text look like clinical documentation.
const CLINICAL_HINTS: &[&str] = &[
    r"\b(feel\w*|complain(?:s|ing|ed)?|better|worse|improv\w*|tolerat\w*|doing well|patient|pt|pts|y/?o|year[- ]old|male|female|man|woman|boy|girl|infant|child|history|hx|complains?|c/o|reports?|denies|presents?|symptoms?|sx|exam|examination|vitals?|assessment|impression|diagnosis|dx|follow[- ]?up|f/u|refer(ral)?|prescri\w+|medications?|meds?|allerg\w*|labs?|results?|smear|cervix|sutures?|dressing|bloods?|vaccin\w*|immunis\w*|immuniz\w*|injection|referr\w*|lives (?:alone|with)|mobile|mobility|walking (?:aid|stick|frame)|zimmer|carers?|care package|adls?|independent(?:ly)?|smok\w*|alcohol|drinks|units/week|diet|exercise|weight bear\w*|continen\w*|memory|cognition|falls?|mobilis\w*|mobiliz\w*|frame|bowels?|eating|drinking|dos(?:e|es|ed|ing|age)|pharmac\w+|\w+olog(?:y|ist|ists)|physio\w*|discharg\w+|admi(?:t|ts|tted|ssion)|capacity|consent\w*|chaperone|safeguarding|antenatal|postnatal|gestation|pregnan\w*|contracepti\w*|gp|consultant|registrar|outpatient|inpatient|ward|d/w|gcs|pearl|alert|oriented|focal|deficit|neuro\w*|stable|unchanged|unwell|settled|vomit\w*|dnacpr|dnar|dnr|resus\w*|ceiling of care|end of life|palliat\w*|\d+\s?h)\b",
    r"\b(pain|ache|cough|fever|chills|nausea|vomiting|diarrh\w+|constipation|headache|dizz\w+|fatigue|tired|dyspnea|breath|palpitations|throat|nose|congestion|rash|itch\w*|insomnia|weakness|numb\w*|tingling|bleeding|dysuria|urin\w+|malaise|appetite|weight|sweats|anxi\w+|depress\w+|mood|sleep|injury|fall|wound|swelling|swollen|lump|bruis\w+|sprain|fracture|burn|bite|sting)\b",
    r"\b(bp|hr|rr|spo2|o2|sats?|temp|temperature|pulse|blood pressure|heart rate|bmi|lungs?|heart|abdomen|abd|chest|skin|ears?|eyes?|tender\w*|edema|murmur|crackles|wheez\w*|clear|soft|nad|ctab|rrr|afebrile|febrile)\b",
    r"\b(htn|dm2?|t2dm|copd|chf|cad|ckd|gerd|uti|uri|afib|asthma|diabetes|hypertension|pneumonia|infection|viral|bacterial|migraine|sinusitis|pharyngitis|otitis|cellulitis|gastroenteritis|anemia|thyroid|cholesterol|glucose|a1c|hba1c|creatinine|potassium|sodium|inr|troponin|ecg|ekg|cxr|x-ray|ultrasound|ct|mri)\b",
    r"\b(mg|mcg|ml|units?|tablets?|daily|bid|tid|qid|prn|po|iv|im|dose|medication|antibiotics?|inhaler|insulin|metformin|lisinopril|amlodipine|atorvastatin|ibuprofen|paracetamol|acetaminophen|amoxicillin|prednisone|salbutamol|albuterol)\b",
    r"\b\d+\s?(mg|mcg|ml|kg|lbs?|cm|%|mmhg|bpm|days?|weeks?|months?|years?|hours?|hrs?|wks?)\b",
];

struct Patterns {
    injection: Vec<Regex>,
    out_of_scope: Vec<Regex>,
    clinical: Vec<Regex>,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let ci = |list: &[&str]| -> Vec<Regex> {
            let with_flag: Vec<String> = list.iter().map(|p| format!("(?i){p}")).collect();
            compile_all(&with_flag.iter().map(String::as_str).collect::<Vec<_>>())
        };
        Patterns {
            injection: ci(INJECTION),
            out_of_scope: ci(OUT_OF_SCOPE),
            clinical: ci(CLINICAL_HINTS),
        }
    })
}

fn any(res: &[Regex], text: &str) -> bool {
    res.iter().any(|r| r.is_match(text))
}

/// Input words (letters or digits).
fn word_count(text: &str) -> usize {
    text.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count()
}

pub(crate) fn is_injection(text: &str) -> bool {
    any(&patterns().injection, &squash(text))
}

/// Classifies the clinician's free-text input for a note draft.
///
/// Order: injection anywhere (even in reported speech), too little input,
/// then any sentence or bullet addressed to the assistant (refused with the
/// reason its topic gives, see [`crate::request`]), then text with no
/// clinical content at all.
pub(crate) fn check_note_input(input: &str, note_type: Option<&str>) -> Result<(), AiError> {
    let text = squash(input);
    let nt = squash(note_type.unwrap_or(""));
    let p = patterns();
    let refuse_note = |r| Err(refuse(r, Task::Note));
    if any(&p.injection, &text) || any(&p.injection, &nt) || request::addressed_to_model(&nt) {
        return refuse_note(RefusalReason::PromptInjection);
    }
    if word_count(&text) < 2 {
        return refuse_note(RefusalReason::InsufficientData);
    }
    if let Some(reason) = request::find_request(input, &clinical_content) {
        return refuse_note(reason);
    }
    if any(&p.out_of_scope, &nt) || !clinical_content(&text) {
        return refuse_note(RefusalReason::OutOfScope);
    }
    Ok(())
}

/// True when the text says something clinical (a symptom, finding,
/// measurement, condition, medication or clinical action).
pub(crate) fn clinical_content(text: &str) -> bool {
    any(&patterns().clinical, text)
        || request::mentions_medication(&text.to_lowercase())
        || crate::abbrev::expand(text) != text
        || crate::builtin::clinical_cue_score(text) >= 2
}

/// Checks an explain request (the only free text is the lab's name and unit).
pub(crate) fn check_explain_input(
    name: &str,
    code: &str,
    unit: &str,
    value: f64,
) -> Result<(), AiError> {
    let joined = format!("{name} {code} {unit}");
    if is_injection(&joined) || request::addressed_to_model(&joined) {
        return Err(refuse(RefusalReason::PromptInjection, Task::Explain));
    }
    if !value.is_finite() || (name.trim().is_empty() && code.trim().is_empty()) {
        return Err(refuse(RefusalReason::InsufficientData, Task::Explain));
    }
    if name.len() > 200 || code.len() > 40 || unit.len() > 40 {
        return Err(refuse(RefusalReason::InsufficientData, Task::Explain));
    }
    Ok(())
}

// ---------------------------------------------------------------- output checks

const DOSE_QUANTITY: &str = r"(?i)\b(\d+(?:\.\d+)?)\s*(?:-\s*\d+(?:\.\d+)?\s*)?(mg|mcg|µg|micrograms?|milligrams?|g|grams?|units?|iu|ml|mls|millilit(?:er|re)s?|tablets?|tabs?|capsules?|caps|puffs?|drops?|sprays?|mg/kg|mcg/kg|units/kg)\b";

const DOSING_ADVICE: &[&str] = &[
    r"\b(you|she|he|they|the patient) should (take|be given|receive|start|increase|double)\b",
    r"\b(recommended|usual|suggested|appropriate|starting|maximum|max) (daily )?(dose|dosage)\b",
    r"\b(give|take|administer|prescribe|start)\b[^.\n]{0,30}\b\d+(\.\d+)?\s*(mg|mcg|g|units?|ml|tablets?|puffs?)\b",
    r"\b(increase|decrease|reduce|raise|lower|titrate|double) (the |her |his |their )?(dose|dosage)\b",
    r"\bdose (should|can|could|would) be\b",
];

const DIAGNOSIS_CLAIMS: &[&str] = &[
    r"\b(definitive|confirmed|final|certain) diagnosis\b",
    r"\bdiagnosis (is|was) (confirmed|certain|definitely)\b",
    r"\b(this |which |it )?(confirms|proves|establishes) (the |a )?(diagnosis|that (she|he|they|you) (has|have))\b",
    r"\b(she|he|they|you|the patient|patient) (definitely|certainly|clearly|undoubtedly) (has|have|is suffering from)\b",
    r"\b(this|it) (is|means) (definitely|certainly|clearly)\b",
    r"\b(this|the result|your result|it) (means|shows|proves) (that )?you have\b",
    r"\byou (definitely |certainly )?have (cancer|diabetes|leukemia|lymphoma|kidney (disease|failure)|liver (disease|failure)|heart (disease|failure|attack)|an? (infection|tumou?r|disease|disorder))\b",
];

struct OutPatterns {
    dose_qty: Vec<Regex>,
    advice: Vec<Regex>,
    claims: Vec<Regex>,
}

fn out_patterns() -> &'static OutPatterns {
    static P: OnceLock<OutPatterns> = OnceLock::new();
    P.get_or_init(|| {
        let ci = |list: &[&str]| -> Vec<Regex> {
            let with_flag: Vec<String> = list.iter().map(|p| format!("(?i){p}")).collect();
            compile_all(&with_flag.iter().map(String::as_str).collect::<Vec<_>>())
        };
        OutPatterns {
            dose_qty: compile_all(&[DOSE_QUANTITY]),
            advice: ci(DOSING_ADVICE),
            claims: ci(DIAGNOSIS_CLAIMS),
        }
    })
}

/// The reference a provider's output is judged against.
pub(crate) struct Grounding {
    /// Lower-cased, whitespace-squashed source text (input, chart, facts).
    pub source: String,
    pub numbers: BTreeSet<String>,
}

impl Grounding {
    pub fn new(parts: &[&str]) -> Self {
        let joined = parts.join("\n");
        Grounding {
            source: squash(&joined).to_lowercase(),
            numbers: numbers(&joined),
        }
    }

    fn grounded_phrase(&self, phrase: &str) -> bool {
        self.source.contains(&squash(phrase).to_lowercase())
    }
}

/// Post-checks that apply to every provider: no leaked placeholders, no
/// dosing instructions or dose quantities that the source does not contain,
/// no definitive-diagnosis claims that the source does not contain.
pub(crate) fn check_output_safety(output: &str, grounding: &Grounding) -> Result<(), &'static str> {
    if placeholder_like(output)
        .iter()
        .any(|p| !grounding.grounded_phrase(p))
    {
        return Err("leaked placeholder");
    }
    let p = out_patterns();
    for re in &p.dose_qty {
        for c in re.captures_iter(output) {
            let n = c.get(1).map_or("", |m| m.as_str());
            if !grounding
                .numbers
                .contains(&crate::text::canonical_number(n))
            {
                return Err("dose quantity not in the input");
            }
        }
    }
    for re in &p.advice {
        for m in re.find_iter(output) {
            if !grounding.grounded_phrase(m.as_str()) {
                return Err("dosing instruction not in the input");
            }
        }
    }
    for re in &p.claims {
        for m in re.find_iter(output) {
            if !grounding.grounded_phrase(m.as_str()) {
                return Err("definitive diagnosis claim");
            }
        }
    }
    Ok(())
}

/// Every number, medication and condition a provider writes must appear in
/// the source (input, chart, abbreviation expansions, or the lab facts).
/// One ungrounded claim refuses the whole answer (`unsafe_output`): a draft
/// with a sentence silently removed could still mislead, and a refusal is
/// counted and audited where a removal would not be.
pub(crate) fn check_claims_grounded(
    output: &str,
    grounding: &Grounding,
) -> Result<(), &'static str> {
    if check_grounded_numbers(output, grounding).is_err() {
        return Err("number not in the input");
    }
    let lower = squash(output).to_lowercase();
    if request::medication_terms(&lower)
        .iter()
        .any(|m| !grounding.grounded_phrase(m))
    {
        return Err("medication not in the input");
    }
    if condition_terms(&lower)
        .iter()
        .any(|c| !grounding.grounded_phrase(c))
    {
        return Err("condition not in the input");
    }
    Ok(())
}

fn condition_terms(lower: &str) -> Vec<String> {
    static CELL: OnceLock<Option<Regex>> = OnceLock::new();
    crate::text::lazy_regex(&CELL, crate::builtin::CONDITION_TERMS).map_or_else(Vec::new, |r| {
        r.find_iter(lower).map(|m| m.as_str().to_string()).collect()
    })
}

/// Strict grounding for the built-in provider: every word and number of the
/// output is in the source or in the allowed vocabulary.
pub(crate) fn check_grounded_words(
    output: &str,
    grounding: &Grounding,
    vocabulary: &BTreeSet<String>,
) -> Result<(), String> {
    let source_words = words(&grounding.source);
    for w in words(output) {
        if !source_words.contains(&w) && !vocabulary.contains(&w) {
            return Err(format!("ungrounded word ({} letters)", w.chars().count()));
        }
    }
    check_grounded_numbers(output, grounding)
}

pub(crate) fn check_grounded_numbers(output: &str, grounding: &Grounding) -> Result<(), String> {
    for n in numbers(output) {
        if !grounding.numbers.contains(&n) {
            return Err("ungrounded number".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_patterns_compile() {
        let p = patterns();
        assert_eq!(p.injection.len(), INJECTION.len());
        assert_eq!(p.out_of_scope.len(), OUT_OF_SCOPE.len());
        assert_eq!(p.clinical.len(), CLINICAL_HINTS.len());
        let o = out_patterns();
        assert_eq!(o.dose_qty.len(), 1);
        assert_eq!(o.advice.len(), DOSING_ADVICE.len());
        assert_eq!(o.claims.len(), DIAGNOSIS_CLAIMS.len());
    }

    fn reason(input: &str) -> Option<&'static str> {
        check_note_input(input, None)
            .err()
            .and_then(|e| e.refusal_reason())
            .map(RefusalReason::as_str)
    }

    #[test]
    fn documentation_of_doses_is_not_a_dosing_question() {
        assert_eq!(reason("Started metformin 500 mg BID, f/u 3 months"), None);
        assert_eq!(
            reason("How much metformin should I give her?"),
            Some("dosing_or_prescribing")
        );
    }

    #[test]
    fn claims_must_be_grounded() {
        let g = Grounding::new(&["cough x 3 days, hypertension, on amlodipine 5 mg"]);
        assert!(
            check_claims_grounded("Cough for 3 days; hypertension; amlodipine 5 mg.", &g).is_ok()
        );
        assert!(check_claims_grounded("Amlodipine 10 mg.", &g).is_err());
        assert!(check_claims_grounded("Start amoxicillin.", &g).is_err());
        assert!(check_claims_grounded("Likely pneumonia.", &g).is_err());
        assert!(!condition_terms("community pneumonia").is_empty());
    }

    #[test]
    fn output_checks() {
        let g = Grounding::new(&["start metformin 500 mg bid"]);
        assert!(check_output_safety("Start metformin 500 mg twice daily.", &g).is_ok());
        assert!(check_output_safety("Start metformin 1000 mg twice daily.", &g).is_err());
        assert!(check_output_safety("The patient should take ibuprofen.", &g).is_err());
        assert!(check_output_safety("This confirms the diagnosis.", &g).is_err());
        assert!(check_output_safety("Seen by [PATIENT_NAME].", &g).is_err());
    }
}
