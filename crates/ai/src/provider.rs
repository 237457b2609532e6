//! The provider trait: one interface, two implementations
//! ([`crate::builtin::BuiltinProvider`] and [`crate::openai::OpenAiProvider`]).
//!
//! Providers only ever see de-identified text; the [`crate::Assistant`]
//! runs the guardrails before and after them.

use crate::error::AiError;
use crate::labs::LabFacts;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// A boxed, `Send` future (providers are used from multi-threaded servers).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// De-identified request to sort clinician input into SOAP sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteRequest {
    /// The clinician's input with identifiers replaced by placeholders.
    pub input: String,
    pub note_type: Option<String>,
}

/// The four SOAP sections as a provider wrote them (before chart context
/// is added to Objective).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SoapSections {
    pub subjective: String,
    pub objective: String,
    pub assessment: String,
    pub plan: String,
}

impl SoapSections {
    pub fn fields(&self) -> [&str; 4] {
        [
            &self.subjective,
            &self.objective,
            &self.assessment,
            &self.plan,
        ]
    }
}

/// A provider's answer plus the hash of what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReply<T> {
    pub value: T,
    /// SHA-256 hex of the exact prompt sent (remote) or of the de-identified
    /// input (built-in).
    pub prompt_sha256: String,
}

/// An AI provider.
pub trait Provider: Send + Sync {
    /// `builtin`, `openai`, …
    fn name(&self) -> &str;
    fn model(&self) -> &str;
    /// True when the provider only rearranges its input, so that every word
    /// and number of its output must be found in the input, the chart or
    /// the fixed vocabulary (checked after the call).
    fn grounded(&self) -> bool {
        false
    }
    fn draft_note<'a>(
        &'a self,
        req: &'a NoteRequest,
    ) -> BoxFuture<'a, Result<ProviderReply<SoapSections>, AiError>>;
    fn explain<'a>(
        &'a self,
        facts: &'a LabFacts,
    ) -> BoxFuture<'a, Result<ProviderReply<String>, AiError>>;
}
