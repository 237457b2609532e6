//! # `ai` — AI assistance for Dr Amal Clinical OS
//!
//! Drafts SOAP notes from a clinician's input and explains lab results, behind
//! guardrails. The crate has no knowledge of the database or HTTP: the server
//! maps its records into the plain input types here and maps [`AiError`] to
//! problem documents.
//!
//! ## Providers
//!
//! One trait, [`Provider`], two implementations:
//!
//! * [`builtin`] (default, offline, deterministic). *Generate note* sorts the
//!   input into Subjective / Objective / Assessment / Plan sentence by sentence,
//!   expands abbreviations from `data/abbreviations.json`, and writes nothing
//!   that the input or the chart does not say. *Explain* uses the plain-language
//!   table `data/labs.json` plus the range, flag and trend computed here.
//! * [`openai`]: any OpenAI-compatible `{base_url}/chat/completions` server
//!   (`AI_BASE_URL` includes the version path). Only de-identified text is sent;
//!   the reply must be a JSON object of the expected shape, otherwise the
//!   provider counts as unavailable.
//!
//! ## Pipeline (both providers)
//!
//! 1. Input guardrails ([`RefusalReason`]): `prompt_injection` anywhere,
//!    then `insufficient_data`, then every sentence or bullet addressed to
//!    the assistant (a question, an imperative to it, a directive to "the
//!    AI") is a request and refuses the input with the reason its topic
//!    gives (`prompt_injection`, `out_of_scope`, `dosing_or_prescribing`,
//!    `definitive_diagnosis`, in that order), then text with no clinical
//!    content is `out_of_scope`. See `request.rs` and `docs/AI.md`.
//! 2. De-identification: the [`PatientIdentifiers`] (names, MRN, birth date,
//!    phone, e-mail, address) and any e-mail, phone number or date found in the
//!    free text are replaced by placeholders such as `[PATIENT_NAME]`, `[MRN]`,
//!    `[DATE_1]`.
//! 3. The provider call. Deterministic facts (lab flag, range, trend; the chart
//!    context of a note) are computed by this crate, never by the model.
//! 4. Placeholders are restored, then output guardrails: leaked placeholders,
//!    dosing instructions not in the input, definitive diagnosis claims, and
//!    any number, medication or condition name not found in the input, the
//!    chart, the abbreviation expansions or the lab facts → `unsafe_output`
//!    (the whole answer is refused); for the built-in provider every word
//!    must also be grounded in those or in [`builtin::TEMPLATE_VOCABULARY`].
//! 5. The note's Objective gets the chart context (allergies, active
//!    medications, recent abnormal labs); a critical lab explanation always
//!    carries the critical wording ([`labs::critical_statement`]).
//!
//! ## API
//!
//! ```no_run
//! # async fn demo() -> Result<(), ai::AiError> {
//! use ai::{AiConfig, Assistant, ChartContext, GenerateNoteInput};
//! let assistant = Assistant::from_config(&AiConfig::from_env()); // builtin unless AI_BASE_URL is set
//! let answer = assistant
//!     .generate_note(GenerateNoteInput {
//!         input: "c/o SOB x 3 days. BP 150/90. Likely viral URI. f/u 1 week PRN.".into(),
//!         note_type: None,
//!         chart: ChartContext::default(),
//!     })
//!     .await?;
//! println!("{} {} {}", answer.provider, answer.model, answer.value.subjective);
//! # Ok(()) }
//! ```
//!
//! * `Assistant::generate_note(GenerateNoteInput) -> Result<Answer<SoapNote>, AiError>`
//! * `Assistant::explain(ExplainInput) -> Result<Answer<Explanation>, AiError>`
//! * [`Answer`] carries `provider`, `model`, `disclaimer` ([`DISCLAIMER`]) and
//!   `prompt_sha256` (hex SHA-256 of the exact request body sent to the remote
//!   provider, or of the de-identified input for the built-in one — audit it,
//!   it contains no text).
//!
//! ## Errors (for the server)
//!
//! * [`AiError::Refused`] `{reason, message}` → **422** `ai_refused`, top-level
//!   `reason` = `reason.as_str()`, `detail` = `message` (a sentence telling the
//!   clinician what to do instead). Count and audit it.
//! * [`AiError::Unavailable`] `{retry_after_secs, detail}` → **503**
//!   `ai_unavailable` with `Retry-After: retry_after_secs`. `detail` is for
//!   logs only (it never contains patient data or the provider's body).
//!
//! [`AiError::code`] and [`AiError::http_status`] give these directly.
//! [`Assistant`] is `Send + Sync`; keep one in an `Arc`.
//!
//! ## Decisions
//!
//! * Guardrails target *requests*, not documentation: "Started metformin
//!   500 mg BID", "Prescription sent to pharmacy", "pt asked whether the lump
//!   could be cancer" are served; "how much metformin should I give?",
//!   "confirm she has lupus", "give me a prednisone taper" are refused. A
//!   reported question keeps its `?` in the draft.
//! * The chart context is appended to Objective by this crate for both
//!   providers (labelled `Allergies (chart):`, `Active medications (chart):`,
//!   `Recent abnormal labs (chart):`, "none recorded" when empty); the chart
//!   is never sent to the remote provider.
//! * Name matching is case-insensitive (privacy first): a given name that is
//!   also an English word ("Will", "May") is masked wherever it appears and
//!   restored exactly as written.
//! * Remote output: numbers, medication names and condition names must be
//!   found in the input or chart (notes) or the lab facts (explanations),
//!   dosing advice and definitive-diagnosis phrases must be quoted from the
//!   input, placeholders must all be restorable — otherwise `unsafe_output`.
//!   Requests carry `max_tokens` ([`openai::DEFAULT_MAX_TOKENS`]); a reply
//!   cut off there (`finish_reason: "length"`) is `Unavailable`. A reply that is not the expected JSON shape (or an HTTP
//!   error, timeout, refused connection) is `Unavailable`, with the provider's
//!   `Retry-After` when it sent one (1–300 s) and 30 s otherwise.
//! * Lab trend: compared with the most recent earlier result; `stable` when
//!   the change is within 5 % of it ([`labs::STABLE_FRACTION`]). When the
//!   input has no flag, it is computed from the range with inclusive limits.
//!   [`Explanation`] also returns the `flag` used and a `critical` boolean.
//! * A lab result with no known range is explained (`flag: None`): the value,
//!   that no range is recorded ([`labs::no_range_statement`]), and that the
//!   clinician interprets it.
//! * The evaluation set has a development split `data/eval_set.json` and a
//!   held-out test split `data/eval_test.json` (run by `tests/eval.rs`;
//!   scores in `docs/AI.md`).

pub mod abbrev;
pub mod builtin;
pub mod deid;
mod dictation;
mod error;
mod guard;
pub mod labs;
pub mod openai;
mod provider;
mod request;
pub mod text;
mod types;

pub use error::{AiError, RefusalReason, DEFAULT_RETRY_AFTER_SECS};
pub use provider::{BoxFuture, NoteRequest, Provider, ProviderReply, SoapSections};
pub use types::{
    AbnormalLab, AiConfig, Answer, Audience, ChartContext, ExplainInput, Explanation,
    GenerateNoteInput, LabPoint, PatientIdentifiers, SoapNote, Trend, DEFAULT_TIMEOUT_SECS,
};

use guard::{Grounding, Task};
use labs::LabFacts;
use std::collections::BTreeSet;

/// Disclaimer carried by every answer.
pub const DISCLAIMER: &str =
    "AI-generated draft for clinician review; not a diagnosis or a prescription.";

/// The assistant: one provider plus the guardrails around it.
pub struct Assistant {
    provider: Box<dyn Provider>,
}

impl std::fmt::Debug for Assistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assistant")
            .field("provider", &self.provider.name())
            .field("model", &self.provider.model())
            .finish()
    }
}

impl Default for Assistant {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Assistant {
    /// The remote provider when `cfg.base_url` is set, otherwise the built-in one.
    /// A bad remote configuration does not fail here: calls answer
    /// `Unavailable` (use [`AiConfig::validate`] at start-up to refuse it).
    pub fn from_config(cfg: &AiConfig) -> Self {
        if cfg.uses_remote() {
            Self::with_provider(openai::OpenAiProvider::new(cfg))
        } else {
            Self::builtin()
        }
    }

    /// The built-in offline provider.
    pub fn builtin() -> Self {
        Self::with_provider(builtin::BuiltinProvider)
    }

    /// Any provider (tests, future providers); the guardrails still apply.
    pub fn with_provider(provider: impl Provider + 'static) -> Self {
        Assistant {
            provider: Box::new(provider),
        }
    }

    /// `builtin` or `openai`.
    pub fn provider_name(&self) -> &str {
        self.provider.name()
    }

    pub fn model(&self) -> &str {
        self.provider.model()
    }

    fn answer<T>(&self, value: T, prompt_sha256: String) -> Answer<T> {
        Answer {
            value,
            provider: self.provider.name().to_string(),
            model: self.provider.model().to_string(),
            disclaimer: DISCLAIMER.to_string(),
            prompt_sha256,
        }
    }

    /// Drafts a SOAP note from the clinician's input and the chart.
    pub async fn generate_note(
        &self,
        input: GenerateNoteInput,
    ) -> Result<Answer<SoapNote>, AiError> {
        let note_type = input
            .note_type
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        guard::check_note_input(&input.input, note_type)?;

        let mut vault = deid::Vault::new(&input.chart.identifiers);
        let request = NoteRequest {
            input: vault.redact(&input.input),
            note_type: note_type.map(|t| vault.redact(t)),
        };
        let reply = self.provider.draft_note(&request).await?;
        let sections = SoapSections {
            subjective: vault.restore(&reply.value.subjective),
            objective: vault.restore(&reply.value.objective),
            assessment: vault.restore(&reply.value.assessment),
            plan: vault.restore(&reply.value.plan),
        };

        let chart_block = chart_block(&input.chart);
        let grounding = Grounding::new(&[
            &input.input,
            &abbrev::expand(&input.input),
            &chart_block,
            note_type.unwrap_or_default(),
        ]);
        for field in sections.fields() {
            guard::check_output_safety(field, &grounding)
                .and_then(|()| guard::check_claims_grounded(field, &grounding))
                .map_err(|_| guard::refuse(RefusalReason::UnsafeOutput, Task::Note))?;
        }

        let or_empty = |s: &str| {
            if s.trim().is_empty() {
                builtin::EMPTY_SECTION.to_string()
            } else {
                s.trim().to_string()
            }
        };
        let objective = if sections.objective.trim().is_empty() {
            chart_block.clone()
        } else {
            format!("{}\n{}", sections.objective.trim(), chart_block)
        };
        let note = SoapNote {
            title: note_title(note_type),
            subjective: or_empty(&sections.subjective),
            objective,
            assessment: or_empty(&sections.assessment),
            plan: or_empty(&sections.plan),
        };

        if self.provider.grounded() {
            let vocab = note_vocabulary(note_type);
            for field in [
                &note.title,
                &note.subjective,
                &note.objective,
                &note.assessment,
                &note.plan,
            ] {
                guard::check_grounded_words(field, &grounding, &vocab)
                    .map_err(|_| guard::refuse(RefusalReason::UnsafeOutput, Task::Note))?;
            }
        }
        Ok(self.answer(note, reply.prompt_sha256))
    }

    /// Explains one lab result for a patient or a clinician.
    pub async fn explain(&self, input: ExplainInput) -> Result<Answer<Explanation>, AiError> {
        let facts = LabFacts::from_input(&input);
        guard::check_explain_input(&input.name, &input.code, &input.unit, input.value)?;
        let Some(mut facts) = facts else {
            return Err(guard::refuse(
                RefusalReason::InsufficientData,
                Task::Explain,
            ));
        };

        let mut vault = deid::Vault::new(&input.identifiers);
        let clear_name = facts.test_name.clone();
        let clear_unit = facts.unit.clone();
        facts.test_name = vault.redact(&facts.test_name);
        facts.unit = vault.redact(&facts.unit);
        let reply = self.provider.explain(&facts).await?;
        facts.test_name = clear_name;
        facts.unit = clear_unit;
        let mut text = vault.restore(&reply.value);

        let facts_json = serde_json::to_string(&facts).unwrap_or_default();
        let grounding = Grounding::new(&[&facts_json, &input.name, &input.code]);
        guard::check_output_safety(&text, &grounding)
            .and_then(|()| guard::check_claims_grounded(&text, &grounding))
            .map_err(|_| guard::refuse(RefusalReason::UnsafeOutput, Task::Explain))?;
        // A critical value is never explained away.
        if facts.critical && !labs::has_critical_wording(&text, input.audience) {
            text = format!("{} {}", labs::critical_statement(input.audience), text);
        }
        // With no range there is no flag: say so, whatever the provider wrote.
        if facts.position.is_none() && !labs::has_no_range_wording(&text) {
            text = format!("{text} {}", labs::no_range_statement(input.audience));
        }
        let explanation = Explanation {
            explanation: text,
            trend: facts.trend.clone(),
            flag: facts.flag.clone(),
            critical: facts.critical,
        };
        Ok(self.answer(explanation, reply.prompt_sha256))
    }
}

/// Title of a draft: `"<Type> note (AI draft)"`, or `"SOAP note (AI draft)"`.
fn note_title(note_type: Option<&str>) -> String {
    let t = note_type.map(text::squash).unwrap_or_default();
    let t: String = t
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '/'))
        .take(60)
        .collect();
    let t = t.trim();
    // " note" is ASCII, so its byte length is its length in any case.
    let cut = t.len().saturating_sub(" note".len());
    let t = match (t.get(..cut), t.get(cut..)) {
        (Some(head), Some(tail)) if tail.eq_ignore_ascii_case(" note") => head,
        _ if t.eq_ignore_ascii_case("note") => "",
        _ => t,
    };
    if t.trim().is_empty() {
        "SOAP note (AI draft)".to_string()
    } else {
        format!("{} note (AI draft)", text::capitalize_first(t.trim()))
    }
}

fn one_line(s: &str) -> String {
    text::squash(s).trim_end_matches(['.', ';']).to_string()
}

/// The chart context appended to Objective (verbatim from the chart).
fn chart_block(chart: &ChartContext) -> String {
    let list = |items: Vec<String>| {
        let items: Vec<String> = items.into_iter().filter(|s| !s.is_empty()).collect();
        if items.is_empty() {
            "none recorded".to_string()
        } else {
            items.join("; ")
        }
    };
    let allergies = list(chart.allergies.iter().map(|a| one_line(a)).collect());
    let meds = list(
        chart
            .active_medications
            .iter()
            .map(|m| one_line(m))
            .collect(),
    );
    let labs = list(
        chart
            .abnormal_labs
            .iter()
            .filter(|l| l.value.is_finite())
            .map(|l| {
                let unit = one_line(&l.unit);
                let value = if unit.is_empty() {
                    text::fmt_num(l.value)
                } else {
                    format!("{} {}", text::fmt_num(l.value), unit)
                };
                let flag = one_line(&l.flag).replace('_', " ");
                if flag.is_empty() {
                    format!("{} {}", one_line(&l.name), value)
                } else {
                    format!("{} {} ({})", one_line(&l.name), value, flag)
                }
            })
            .collect(),
    );
    format!(
        "Allergies (chart): {allergies}.\nActive medications (chart): {meds}.\nRecent abnormal labs (chart): {labs}."
    )
}

fn note_vocabulary(note_type: Option<&str>) -> BTreeSet<String> {
    let mut v: BTreeSet<String> = builtin::TEMPLATE_VOCABULARY
        .iter()
        .map(|w| w.to_string())
        .collect();
    for e in abbrev::expansions() {
        v.extend(text::words(&e));
    }
    if let Some(t) = note_type {
        v.extend(text::words(t));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn assistant_is_send_sync_and_futures_are_send() {
        assert_send_sync::<Assistant>();
        let a = Assistant::builtin();
        let f = a.generate_note(GenerateNoteInput::default());
        assert_send(&f);
        drop(f);
    }

    #[test]
    fn titles() {
        assert_eq!(note_title(None), "SOAP note (AI draft)");
        assert_eq!(note_title(Some("progress")), "Progress note (AI draft)");
        assert_eq!(
            note_title(Some("Follow-up note")),
            "Follow-up note (AI draft)"
        );
    }
}
