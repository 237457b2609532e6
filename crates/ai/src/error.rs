//! Refusals and failures.

use serde::{Deserialize, Serialize};

/// Why the assistant refused. Serialized (and [`RefusalReason::as_str`]) snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// Dose questions and prescribing requests.
    DosingOrPrescribing,
    /// Requests to make or confirm a diagnosis.
    DefinitiveDiagnosis,
    /// Anything off clinical documentation (jokes, poems, weather, code, …).
    OutOfScope,
    /// Attempts to change the assistant's instructions.
    PromptInjection,
    /// Empty or one-word input; a lab result with no usable value.
    InsufficientData,
    /// The provider's output failed the post-check.
    UnsafeOutput,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 6] = [
        RefusalReason::DosingOrPrescribing,
        RefusalReason::DefinitiveDiagnosis,
        RefusalReason::OutOfScope,
        RefusalReason::PromptInjection,
        RefusalReason::InsufficientData,
        RefusalReason::UnsafeOutput,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::DosingOrPrescribing => "dosing_or_prescribing",
            RefusalReason::DefinitiveDiagnosis => "definitive_diagnosis",
            RefusalReason::OutOfScope => "out_of_scope",
            RefusalReason::PromptInjection => "prompt_injection",
            RefusalReason::InsufficientData => "insufficient_data",
            RefusalReason::UnsafeOutput => "unsafe_output",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default `Retry-After` (seconds) when the remote provider is unavailable.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 30;

/// Why an AI request was not answered.
///
/// Map `Refused` to **422** `ai_refused` (top-level `reason` = `reason.as_str()`,
/// `detail` = `message`), and `Unavailable` to **503** `ai_unavailable` with a
/// `Retry-After: retry_after_secs` header. Neither carries patient data, so
/// both may be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiError {
    #[error("AI request refused ({reason}): {message}")]
    Refused {
        reason: RefusalReason,
        /// A sentence for the clinician saying what to do instead.
        message: String,
    },
    #[error("AI provider unavailable: {detail}")]
    Unavailable {
        retry_after_secs: u64,
        /// Technical detail for logs (no patient data, no provider body).
        detail: String,
    },
}

impl AiError {
    /// Problem-document code: `ai_refused` or `ai_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            AiError::Refused { .. } => "ai_refused",
            AiError::Unavailable { .. } => "ai_unavailable",
        }
    }

    /// HTTP status for the problem document: 422 or 503.
    pub fn http_status(&self) -> u16 {
        match self {
            AiError::Refused { .. } => 422,
            AiError::Unavailable { .. } => 503,
        }
    }

    /// The refusal reason, if this is a refusal.
    pub fn refusal_reason(&self) -> Option<RefusalReason> {
        match self {
            AiError::Refused { reason, .. } => Some(*reason),
            AiError::Unavailable { .. } => None,
        }
    }

    pub(crate) fn refused(reason: RefusalReason, message: impl Into<String>) -> Self {
        AiError::Refused {
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn unavailable(detail: impl Into<String>) -> Self {
        AiError::Unavailable {
            retry_after_secs: DEFAULT_RETRY_AFTER_SECS,
            detail: detail.into(),
        }
    }
}
