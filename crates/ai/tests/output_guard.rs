//! What a remote model writes is checked against what it was given: a
//! number, medication or diagnosis that is not in the clinician's input, the
//! chart or the lab facts refuses the whole answer as `unsafe_output`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic

mod common;

use ai::{AiError, Audience, ChartContext, ExplainInput, GenerateNoteInput, RefusalReason};
use common::{remote, server_with, FixedContent};
use serde_json::json;

const INPUT: &str = "c/o productive cough x 4 days, no fever. Chest: scattered wheeze. \
Likely acute bronchitis. Fluids, rest, f/u 1 week if not better.";

fn note_input() -> GenerateNoteInput {
    GenerateNoteInput {
        input: INPUT.into(),
        note_type: None,
        chart: ChartContext {
            allergies: vec!["sulfa drugs".into()],
            active_medications: vec!["lisinopril 10 mg daily".into()],
            abnormal_labs: vec![],
            identifiers: Default::default(),
        },
    }
}

fn reply(s: &str, o: &str, a: &str, p: &str) -> String {
    json!({"subjective": s, "objective": o, "assessment": a, "plan": p}).to_string()
}

async fn draft_with(content: String) -> Result<ai::Answer<ai::SoapNote>, AiError> {
    let server = server_with(FixedContent(content)).await;
    remote(&server, 5, None).generate_note(note_input()).await
}

fn refusal(r: &Result<impl std::fmt::Debug, AiError>) -> Option<RefusalReason> {
    r.as_ref().err().and_then(AiError::refusal_reason)
}

const S: &str = "Productive cough for 4 days, no fever.";
const O: &str = "Scattered wheeze on chest examination.";
const A: &str = "Likely acute bronchitis.";
const P: &str = "Fluids and rest; follow-up in 1 week if not better.";

#[tokio::test]
async fn a_faithful_draft_is_served() {
    let r = draft_with(reply(S, O, A, P)).await;
    let note = r.expect("grounded draft is served").value;
    assert!(note.assessment.contains("bronchitis"));
    // Chart medications may be named: they are in the chart.
    let r = draft_with(reply(
        S,
        O,
        A,
        "Continue lisinopril 10 mg daily. Fluids and rest.",
    ))
    .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn an_invented_dose_is_unsafe() {
    let r = draft_with(reply(
        S,
        O,
        A,
        "Start amoxicillin 500 mg twice daily for 5 days.",
    ))
    .await;
    assert_eq!(refusal(&r), Some(RefusalReason::UnsafeOutput), "{r:?}");
    // A number alone, with no dosing words, is caught too.
    let r = draft_with(reply(S, "Temperature 38.9.", A, P)).await;
    assert_eq!(refusal(&r), Some(RefusalReason::UnsafeOutput), "{r:?}");
    // A medication with no number at all.
    let r = draft_with(reply(S, O, A, "Salbutamol inhaler as needed.")).await;
    assert_eq!(refusal(&r), Some(RefusalReason::UnsafeOutput), "{r:?}");
}

#[tokio::test]
async fn an_invented_diagnosis_is_unsafe() {
    let r = draft_with(reply(S, O, "Community-acquired pneumonia.", P)).await;
    assert_eq!(refusal(&r), Some(RefusalReason::UnsafeOutput), "{r:?}");
    let r = draft_with(reply(S, O, "Acute bronchitis; underlying asthma.", P)).await;
    assert_eq!(refusal(&r), Some(RefusalReason::UnsafeOutput), "{r:?}");
}

#[tokio::test]
async fn refusals_never_carry_the_model_text() {
    let r = draft_with(reply(S, O, A, "Start amoxicillin 500 mg twice daily.")).await;
    match r {
        Err(AiError::Refused { message, .. }) => {
            assert!(!message.contains("amoxicillin") && !message.contains("500"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn glucose(value: f64) -> ExplainInput {
    ExplainInput {
        audience: Audience::Patient,
        code: "2345-7".into(),
        name: "Glucose".into(),
        value,
        unit: "mg/dL".into(),
        flag: Some("high".into()),
        reference_low: Some(70.0),
        reference_high: Some(99.0),
        history: vec![],
        identifiers: Default::default(),
    }
}

async fn explain_with(text: &str) -> Result<ai::Answer<ai::Explanation>, AiError> {
    let server = server_with(FixedContent(json!({ "explanation": text }).to_string())).await;
    remote(&server, 5, None).explain(glucose(182.0)).await
}

#[tokio::test]
async fn explanations_invent_no_numbers_medicines_or_diagnoses() {
    let ok = explain_with(
        "Your glucose is 182 mg/dL, above the reference range of 70 to 99 mg/dL. Your clinician will go over it with you.",
    )
    .await;
    assert!(ok.is_ok(), "{ok:?}");
    for invented in [
        "Your glucose is 182 mg/dL; a fasting value above 126 is significant.",
        "Your glucose is 182 mg/dL; metformin is often used for this.",
        "Your glucose is 182 mg/dL, which suggests prediabetes or pancreatitis.",
    ] {
        let r = explain_with(invented).await;
        assert_eq!(refusal(&r), Some(RefusalReason::UnsafeOutput), "{invented}");
    }
}

#[tokio::test]
async fn unknown_range_remote_explanations_say_no_range_is_recorded() {
    let server = server_with(FixedContent(
        json!({"explanation": "Your chromogranin A result is 145 ng/mL."}).to_string(),
    ))
    .await;
    let mut input = glucose(145.0);
    input.code = "88888-1".into();
    input.name = "Chromogranin A".into();
    input.unit = "ng/mL".into();
    input.flag = None;
    input.reference_low = None;
    input.reference_high = None;
    let e = remote(&server, 5, None)
        .explain(input)
        .await
        .expect("explained")
        .value;
    assert_eq!(e.flag, None);
    assert!(e.explanation.contains("145"));
    assert!(e
        .explanation
        .to_lowercase()
        .contains("no reference range is recorded"));
    assert!(e.explanation.contains("clinician"));
}
