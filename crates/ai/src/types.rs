//! Plain input and output types of the AI crate (the server maps its domain
//! records into these; nothing here depends on the `domain` crate).

use serde::{Deserialize, Serialize};

/// Identifiers of the patient a request is about. Every non-empty field is
/// replaced by a placeholder (`[PATIENT_NAME]`, `[MRN]`, …) before anything
/// leaves the process, and put back in the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientIdentifiers {
    pub given_name: String,
    pub family_name: String,
    pub mrn: String,
    /// Birth date as stored (ISO `YYYY-MM-DD` preferred; other spellings of
    /// the same date in free text are also caught).
    pub birth_date: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
}

/// A recent abnormal lab result from the chart (for the note's Objective).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbnormalLab {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// `low`, `high`, `critical_low`, `critical_high` (as computed by the server).
    pub flag: String,
}

/// What the chart says, added verbatim to the Objective of a drafted note.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartContext {
    /// Recorded allergies, e.g. `"penicillin (rash)"`.
    pub allergies: Vec<String>,
    /// Active medications, e.g. `"metformin 500 mg twice daily"`.
    pub active_medications: Vec<String>,
    pub abnormal_labs: Vec<AbnormalLab>,
    pub identifiers: PatientIdentifiers,
}

/// Request to draft a SOAP note.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateNoteInput {
    /// The clinician's bullet points or dictated text.
    pub input: String,
    /// Optional note type (e.g. `"progress"`, `"follow-up"`); used for the title.
    pub note_type: Option<String>,
    pub chart: ChartContext,
}

/// A SOAP draft. Serialized with camelCase field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SoapNote {
    pub title: String,
    pub subjective: String,
    pub objective: String,
    pub assessment: String,
    pub plan: String,
}

/// Who a lab explanation is written for. Serialized lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    Patient,
    Clinician,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Patient => "patient",
            Audience::Clinician => "clinician",
        }
    }
}

/// An earlier result of the same test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabPoint {
    /// RFC 3339 timestamp.
    pub collected_at: String,
    pub value: f64,
}

/// Request to explain one lab result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainInput {
    pub audience: Audience,
    /// LOINC code, e.g. `"2823-3"`.
    pub code: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// `normal`, `low`, `high`, `critical_low`, `critical_high`, or `None`
    /// when no range is known (then it is computed from the range, if given).
    pub flag: Option<String>,
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
    /// Earlier results, oldest first, excluding this one.
    pub history: Vec<LabPoint>,
    pub identifiers: PatientIdentifiers,
}

/// Trend of a result against earlier results. Serialized camelCase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trend {
    /// `rising`, `falling`, `stable` or `first_result`.
    pub direction: String,
    /// The most recent earlier value.
    pub previous: Option<f64>,
    /// This value minus `previous` (rounded to the precision of the inputs).
    pub change: Option<f64>,
    /// Number of results including this one.
    pub points: usize,
}

/// A lab explanation. Serialized camelCase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub explanation: String,
    pub trend: Trend,
    /// The flag the explanation is based on (the input flag, or the one
    /// computed from the range when the input had none).
    pub flag: Option<String>,
    /// True when the flag is `critical_low` or `critical_high`.
    pub critical: bool,
}

/// An AI answer with the metadata the server reports and audits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer<T> {
    pub value: T,
    /// `builtin` or `openai`.
    pub provider: String,
    pub model: String,
    pub disclaimer: String,
    /// SHA-256 (lower-case hex) of the exact request body sent to the remote
    /// provider, or of the de-identified input for the built-in provider.
    /// Safe to audit: it never contains the text itself.
    pub prompt_sha256: String,
}

/// Configuration of the assistant (see [`AiConfig::from_env`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AiConfig {
    /// `AI_BASE_URL`, including the version path (`http://127.0.0.1:11434/v1`).
    /// `None` or empty → the built-in offline provider.
    pub base_url: Option<String>,
    /// `AI_MODEL`.
    pub model: Option<String>,
    /// `AI_API_KEY`, sent as a Bearer token when set. Never printed
    /// (`Debug` shows only whether it is set) and never serialized.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// `AI_TIMEOUT_SECONDS` (default 30).
    pub timeout_secs: u64,
}

impl std::fmt::Debug for AiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// Default timeout of the remote provider, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

impl Default for AiConfig {
    fn default() -> Self {
        AiConfig {
            base_url: None,
            model: None,
            api_key: None,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
        }
    }
}

impl AiConfig {
    /// Reads `AI_BASE_URL`, `AI_MODEL`, `AI_API_KEY` and `AI_TIMEOUT_SECONDS`.
    /// Empty values count as unset; an unparsable or zero timeout falls back to 30.
    pub fn from_env() -> Self {
        fn var(name: &str) -> Option<String> {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        }
        AiConfig {
            base_url: var("AI_BASE_URL"),
            model: var("AI_MODEL"),
            api_key: var("AI_API_KEY"),
            timeout_secs: var("AI_TIMEOUT_SECONDS")
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0)
                .unwrap_or(DEFAULT_TIMEOUT_SECS),
        }
    }

    /// True when a remote provider is configured.
    pub fn uses_remote(&self) -> bool {
        self.base_url
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty())
    }

    /// Checks the configuration (for `amal config check` / production start-up).
    /// Messages name the setting, never its value.
    pub fn validate(&self) -> Result<(), String> {
        if !self.uses_remote() {
            return Ok(());
        }
        let url = self.base_url.as_deref().unwrap_or_default().trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("AI_BASE_URL must start with http:// or https://".into());
        }
        if reqwest::Url::parse(url).is_err() {
            return Err("AI_BASE_URL is not a valid URL".into());
        }
        if self.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
            return Err("AI_MODEL is required when AI_BASE_URL is set".into());
        }
        if self.timeout_secs == 0 {
            return Err("AI_TIMEOUT_SECONDS must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn the_api_key_is_never_printed_or_serialized() {
        let c = AiConfig {
            api_key: Some("sk-very-secret-key".into()),
            ..AiConfig::default()
        };
        let debug = format!("{c:?}");
        assert!(!debug.contains("sk-very-secret-key"), "{debug}");
        assert!(debug.contains("(set)"), "{debug}");
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("sk-very-secret-key"), "{json}");
    }
}
