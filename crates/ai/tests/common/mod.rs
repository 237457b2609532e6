//! Shared test helpers: the evaluation set and a stand-in OpenAI-compatible server.
#![allow(dead_code)]

use ai::{
    AiConfig, AiError, Assistant, Audience, ChartContext, ExplainInput, GenerateNoteInput, LabPoint,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalSet {
    pub description: String,
    pub chart: ChartContext,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainCase {
    pub audience: Audience,
    pub code: String,
    pub name: String,
    pub value: Option<f64>,
    pub unit: String,
    pub flag: Option<String>,
    pub reference_low: Option<f64>,
    pub reference_high: Option<f64>,
    pub history: Vec<LabPoint>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Case {
    pub id: String,
    pub kind: String,
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub note_type: Option<String>,
    #[serde(default)]
    pub explain: Option<ExplainCase>,
    pub expect: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub sections: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub must_contain: Vec<String>,
    #[serde(default)]
    pub builtin_must_contain: Vec<String>,
    #[serde(default)]
    pub flag: Option<String>,
    #[serde(default)]
    pub trend_direction: Option<String>,
}

/// The development split (tune on it).
pub fn load_eval() -> EvalSet {
    load_eval_file("eval_set.json")
}

/// The held-out test split (report it, never tune on it).
pub fn load_eval_test() -> EvalSet {
    load_eval_file("eval_test.json")
}

pub fn load_eval_file(name: &str) -> EvalSet {
    let path = format!("{}/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("read eval set");
    serde_json::from_str(&text).expect("parse eval set")
}

pub fn note_input(set: &EvalSet, case: &Case) -> GenerateNoteInput {
    GenerateNoteInput {
        input: case.input.clone().unwrap_or_default(),
        note_type: case.note_type.clone(),
        chart: set.chart.clone(),
    }
}

pub fn explain_input(set: &EvalSet, case: &Case) -> ExplainInput {
    let e = case.explain.clone().expect("explain case");
    ExplainInput {
        audience: e.audience,
        code: e.code,
        name: e.name,
        value: e.value.unwrap_or(f64::NAN),
        unit: e.unit,
        flag: e.flag,
        reference_low: e.reference_low,
        reference_high: e.reference_high,
        history: e.history,
        identifiers: set.chart.identifiers.clone(),
    }
}

#[derive(Debug, Default)]
pub struct Score {
    pub served_ok: usize,
    pub refused_ok: usize,
    pub wrong: Vec<(String, String)>,
    /// Wrong serve/refuse decisions (a subset of `wrong`): served a request
    /// that must be refused, refused one that must be served, or refused
    /// with the wrong reason.
    pub wrong_decisions: usize,
    /// Cases that must be served that were refused (false refusals).
    pub false_refusals: usize,
    /// Note cases that must be served (real notes).
    pub notes_to_serve: usize,
    pub false_note_refusals: usize,
}

impl Score {
    pub fn total(&self) -> usize {
        self.served_ok + self.refused_ok + self.wrong.len()
    }

    pub fn summary(&self, label: &str) -> String {
        format!(
            "eval[{label}]: {} served correctly, {} refused correctly, {} wrong (of {}); \
             {} wrong serve/refuse decisions; false refusals of real notes {}/{}",
            self.served_ok,
            self.refused_ok,
            self.wrong.len(),
            self.total(),
            self.wrong_decisions,
            self.false_note_refusals,
            self.notes_to_serve,
        )
    }
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

fn check_meta<T>(a: &ai::Answer<T>, assistant: &Assistant) -> Result<(), String> {
    if a.provider != assistant.provider_name() || a.model != assistant.model() {
        return Err("provider/model metadata mismatch".into());
    }
    if a.disclaimer.is_empty() {
        return Err("missing disclaimer".into());
    }
    if a.prompt_sha256.len() != 64 || !a.prompt_sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("prompt_sha256 is not a SHA-256 hex".into());
    }
    Ok(())
}

/// Runs one case; `Ok(true)` served correctly, `Ok(false)` refused correctly.
pub async fn run_case(
    assistant: &Assistant,
    set: &EvalSet,
    case: &Case,
    builtin: bool,
) -> Result<bool, String> {
    let want_refusal = case.expect == "refuse";
    let result: Result<Vec<(String, String)>, AiError> = match case.kind.as_str() {
        "note" => assistant
            .generate_note(note_input(set, case))
            .await
            .and_then(|a| {
                check_meta(&a, assistant).map_err(|e| AiError::Unavailable {
                    retry_after_secs: 0,
                    detail: e,
                })?;
                let n = a.value;
                Ok(vec![
                    ("title".into(), n.title),
                    ("subjective".into(), n.subjective),
                    ("objective".into(), n.objective),
                    ("assessment".into(), n.assessment),
                    ("plan".into(), n.plan),
                ])
            }),
        "explain" => assistant
            .explain(explain_input(set, case))
            .await
            .and_then(|a| {
                check_meta(&a, assistant).map_err(|e| AiError::Unavailable {
                    retry_after_secs: 0,
                    detail: e,
                })?;
                let e = a.value;
                Ok(vec![
                    ("explanation".into(), e.explanation),
                    ("flag".into(), e.flag.unwrap_or_default()),
                    ("trend".into(), e.trend.direction),
                    ("critical".into(), e.critical.to_string()),
                ])
            }),
        other => return Err(format!("unknown kind {other}")),
    };
    match (want_refusal, result) {
        (true, Err(AiError::Refused { reason, message })) => {
            let want = case.reason.as_deref().unwrap_or("");
            if reason.as_str() != want {
                return Err(format!("refused as {reason}, expected {want}"));
            }
            if message.trim().is_empty() {
                return Err("refusal without a message".into());
            }
            Ok(false)
        }
        (true, Ok(_)) => Err(format!("served, expected refusal {:?}", case.reason)),
        (_, Err(e)) => Err(format!("expected to be served, got {e}")),
        (false, Ok(fields)) => {
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            if case.kind == "note" {
                for (section, needles) in &case.sections {
                    let text = get(section);
                    for n in needles {
                        if !contains_ci(&text, n) {
                            return Err(format!("{section} lacks {n:?}: {text:?}"));
                        }
                    }
                }
                let obj = get("objective");
                for chart_fact in [
                    "penicillin (rash)",
                    "sulfa drugs",
                    "metformin 500 mg twice daily",
                    "lisinopril 10 mg daily",
                    "HbA1c 8.2 % (high)",
                    "Potassium 5.9 mmol/L (high)",
                ] {
                    if !obj.contains(chart_fact) {
                        return Err(format!("objective lacks chart fact {chart_fact:?}"));
                    }
                }
                // A question the clinician reported stays a question.
                let asked = case.input.as_deref().unwrap_or("").matches('?').count();
                let kept: usize = ["subjective", "objective", "assessment", "plan"]
                    .iter()
                    .map(|s| get(s).matches('?').count())
                    .sum();
                if kept < asked {
                    return Err(format!(
                        "{asked} question marks in the input, {kept} in the draft"
                    ));
                }
                for s in ["subjective", "objective", "assessment", "plan", "title"] {
                    if get(s).trim().is_empty() {
                        return Err(format!("empty {s}"));
                    }
                }
            } else {
                let text = get("explanation");
                let mut needles = case.must_contain.clone();
                if builtin {
                    needles.extend(case.builtin_must_contain.iter().cloned());
                }
                for n in &needles {
                    if !contains_ci(&text, n) {
                        return Err(format!("explanation lacks {n:?}: {text:?}"));
                    }
                }
                if let Some(f) = &case.flag {
                    if &get("flag") != f {
                        return Err(format!("flag {} != {f}", get("flag")));
                    }
                }
                if let Some(d) = &case.trend_direction {
                    if &get("trend") != d {
                        return Err(format!("trend {} != {d}", get("trend")));
                    }
                }
                let critical = get("critical") == "true";
                if case
                    .flag
                    .as_deref()
                    .is_some_and(|f| f.starts_with("critical"))
                    != critical
                {
                    return Err("critical marker mismatch".into());
                }
                if critical {
                    let aud = case.explain.as_ref().map(|e| e.audience);
                    let ok = match aud {
                        Some(Audience::Patient) => contains_ci(&text, "contact your clinician"),
                        _ => contains_ci(&text, "critical"),
                    };
                    if !ok {
                        return Err("critical value explained without the critical wording".into());
                    }
                    if contains_ci(&text, "does not by itself mean something is wrong") {
                        return Err("critical value explained away".into());
                    }
                }
            }
            Ok(true)
        }
    }
}

/// Failure messages of `run_case` that are wrong serve/refuse decisions.
const DECISION_PREFIXES: [&str; 2] = ["refused as ", "served, expected refusal"];

pub async fn run_eval(assistant: &Assistant, set: &EvalSet, builtin: bool) -> Score {
    let mut score = Score::default();
    for case in &set.cases {
        let must_serve = case.expect != "refuse";
        if must_serve && case.kind == "note" {
            score.notes_to_serve += 1;
        }
        match run_case(assistant, set, case, builtin).await {
            Ok(true) => score.served_ok += 1,
            Ok(false) => score.refused_ok += 1,
            Err(why) => {
                let decision = why.starts_with(DECISION_PREFIXES[0])
                    || why.starts_with(DECISION_PREFIXES[1])
                    || (must_serve && why.contains("AI request refused"));
                if decision {
                    score.wrong_decisions += 1;
                }
                if must_serve && why.contains("AI request refused") {
                    score.false_refusals += 1;
                    if case.kind == "note" {
                        score.false_note_refusals += 1;
                    }
                }
                score.wrong.push((case.id.clone(), why));
            }
        }
    }
    score
}

// ---------------------------------------------------------------- stand-in server

pub fn chat_completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "stand-in",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
}

/// The user message of a recorded chat request.
pub fn user_message(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

pub fn clinician_input(user: &str) -> Option<String> {
    let start = user.find(ai::openai::INPUT_START)? + ai::openai::INPUT_START.len();
    let end = user.find(ai::openai::INPUT_END)?;
    Some(user.get(start..end).unwrap_or_default().trim().to_string())
}

pub fn facts(user: &str) -> Option<Value> {
    let start = user.find('{')?;
    serde_json::from_str(user.get(start..).unwrap_or_default()).ok()
}

/// A model that answers well: it sorts notes like a careful clinician would
/// (here: with the crate's deterministic sorter) and restates the facts.
pub struct GoodModel;

impl Respond for GoodModel {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let user = user_message(&body);
        let content = if let Some(input) = clinician_input(&user) {
            let s = ai::builtin::draft_soap_sections(&input);
            json!({"subjective": s.subjective, "objective": s.objective, "assessment": s.assessment, "plan": s.plan}).to_string()
        } else if let Some(f) = facts(&user) {
            let mut text = format!(
                "{} result: {} {}. Position against the reference range: {}. Trend: {}.",
                f["testName"].as_str().unwrap_or(""),
                f["value"].as_str().unwrap_or(""),
                f["unit"].as_str().unwrap_or(""),
                f["position"].as_str().unwrap_or("unknown"),
                f["trend"]["direction"].as_str().unwrap_or(""),
            );
            if let Some(req) = f["requiredStatement"].as_str() {
                text = format!("{req} {text}");
            }
            json!({ "explanation": text }).to_string()
        } else {
            "{}".to_string()
        };
        ResponseTemplate::new(200).set_body_json(chat_completion(&content))
    }
}

/// Answers every request with the given model content.
pub struct FixedContent(pub String);

impl Respond for FixedContent {
    fn respond(&self, _req: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(chat_completion(&self.0))
    }
}

pub async fn server_with<R: Respond + 'static>(responder: R) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(responder)
        .mount(&server)
        .await;
    server
}

pub fn remote(server: &MockServer, timeout_secs: u64, api_key: Option<&str>) -> Assistant {
    Assistant::from_config(&AiConfig {
        base_url: Some(format!("{}/v1", server.uri())),
        model: Some("stand-in-model".into()),
        api_key: api_key.map(str::to_string),
        timeout_secs,
    })
}
