//! The `openai` provider against a real llama.cpp server (SmolLM2-135M,
//! started by `scripts/ai-model.sh`, URL in `AMAL_TEST_LLM_URL`).
//!
//! These tests check the wire format and the failure handling, never the
//! clinical quality of the answers (the model is tiny): whatever it writes
//! must come back as a grounded answer, an `unsafe_output` refusal or
//! `Unavailable` — never a panic, a leaked identifier or an invented fact.
//!
//! Without `AMAL_TEST_LLM_URL` the real-model tests are skipped, unless
//! `AMAL_REQUIRE_LLM=1`, in which case they fail. The 503-while-loading test
//! uses a local stand-in (llama.cpp answers 503 only before its HTTP
//! listener is up under xllamacpp, which the tests cannot provoke reliably).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic

mod common;

use ai::openai::OpenAiProvider;
use ai::{
    AiConfig, AiError, Assistant, Audience, ChartContext, ExplainInput, GenerateNoteInput,
    PatientIdentifiers, RefusalReason,
};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One real-model test at a time: the server has one slot and one thread,
/// and the latency printed should be that of one call, not of a queue.
/// (A runner with one process per test, such as nextest, queues them at
/// the server instead: the timeouts below leave room for that.)
static REAL_MODEL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Blocks until the server has finished whatever it was doing (an
/// abandoned request keeps its only slot busy).
async fn wait_until_idle(url: &str) {
    let _ = reqwest::Client::new()
        .post(format!("{url}/chat/completions"))
        .timeout(Duration::from_secs(120))
        .json(&json!({"max_tokens": 1, "messages": [{"role": "user", "content": "ok"}]}))
        .send()
        .await;
}

/// The real model's base URL, or `None` (skip) when it is not configured.
fn llm_url() -> Option<String> {
    let url = std::env::var("AMAL_TEST_LLM_URL")
        .ok()
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty());
    if url.is_none() {
        assert!(
            std::env::var("AMAL_REQUIRE_LLM").as_deref() != Ok("1"),
            "AMAL_REQUIRE_LLM=1 but AMAL_TEST_LLM_URL is not set: run scripts/ai-model.sh start"
        );
        eprintln!("skipped: AMAL_TEST_LLM_URL not set (scripts/ai-model.sh start)");
    }
    url
}

fn config(base_url: &str, timeout_secs: u64) -> AiConfig {
    AiConfig {
        base_url: Some(base_url.to_string()),
        model: Some("smollm2-135m-instruct".into()),
        api_key: None,
        timeout_secs,
    }
}

fn assistant(base_url: &str, timeout_secs: u64, max_tokens: u32) -> Assistant {
    Assistant::with_provider(
        OpenAiProvider::new(&config(base_url, timeout_secs)).with_max_tokens(max_tokens),
    )
}

fn ids() -> PatientIdentifiers {
    PatientIdentifiers {
        given_name: "Zelda".into(),
        family_name: "Quixote".into(),
        mrn: "MRN-884211".into(),
        birth_date: Some("1961-07-04".into()),
        phone: Some("+1 (555) 013-2477".into()),
        email: Some("zelda.q@example.org".into()),
        address: None,
    }
}

const NOTE: &str = "Zelda Quixote (MRN-884211) c/o cough x 3 days, no fever. \
Lungs clear. Likely viral URI. Fluids, rest, f/u 1 week PRN. Call 555-013-2477.";

fn note_input() -> GenerateNoteInput {
    GenerateNoteInput {
        input: NOTE.into(),
        note_type: Some("progress".into()),
        chart: ChartContext {
            allergies: vec!["penicillin (rash)".into()],
            active_medications: vec![],
            abnormal_labs: vec![],
            identifiers: ids(),
        },
    }
}

/// What a real model may legitimately produce: an answer, a refusal of
/// its output as unsafe, or "unavailable" (unparsable, cut off, slow).
fn acceptable<T: std::fmt::Debug>(r: &Result<T, AiError>) -> bool {
    match r {
        Ok(_) | Err(AiError::Unavailable { .. }) => true,
        Err(AiError::Refused { reason, .. }) => *reason == RefusalReason::UnsafeOutput,
    }
}

// ------------------------------------------------------------ recording proxy

/// A loopback HTTP/1.1 proxy in front of the real server that records every
/// request body, so a test can prove what left the process.
async fn recording_proxy(upstream: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let client = client.clone();
            let upstream = upstream.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let Some((path, body)) = read_request(&mut sock).await else {
                    return;
                };
                record
                    .lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&body).into_owned());
                let target = format!("{upstream}{}", path.trim_start_matches("/v1"));
                let (status, bytes) = match client
                    .post(target)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => (r.status().as_u16(), r.bytes().await.unwrap_or_default()),
                    Err(_) => (502, Default::default()),
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    bytes.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&bytes).await;
            });
        }
    });
    (format!("http://{addr}/v1"), seen)
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let path = head.split_whitespace().nth(1)?.to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((path, buf[header_end..].to_vec()))
}

// ------------------------------------------------------------ tests

#[tokio::test]
async fn real_server_speaks_the_wire_format_we_parse() {
    let Some(url) = llm_url() else { return };
    let _one_at_a_time = REAL_MODEL.lock().await;
    let body = json!({
        "model": "smollm2-135m-instruct",
        "temperature": 0,
        "max_tokens": 8,
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": "Reply with a JSON object."},
            {"role": "user", "content": "Say ok."},
        ],
    });
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{url}/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("real server reachable");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.expect("JSON body");
    let choice = &v["choices"][0];
    assert!(choice["message"]["content"].is_string(), "{v}");
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(
        matches!(choice["finish_reason"].as_str(), Some("stop" | "length")),
        "{v}"
    );
    assert!(v["usage"]["completion_tokens"]
        .as_u64()
        .is_some_and(|n| n <= 8));
    eprintln!("wire-format call: {} ms", started.elapsed().as_millis());
}

#[tokio::test]
async fn a_reply_cut_off_at_max_tokens_is_unavailable() {
    let Some(url) = llm_url() else { return };
    let _one_at_a_time = REAL_MODEL.lock().await;
    let r = assistant(&url, 300, 4).generate_note(note_input()).await;
    match r {
        Err(AiError::Unavailable {
            retry_after_secs,
            detail,
        }) => {
            assert!(retry_after_secs > 0);
            assert!(detail.contains("finish_reason: length"), "{detail}");
            assert!(!detail.contains("Zelda") && !detail.contains("cough"));
        }
        other => panic!("expected Unavailable for a truncated reply, got {other:?}"),
    }
}

#[tokio::test]
async fn a_slow_model_times_out() {
    let Some(url) = llm_url() else { return };
    let _one_at_a_time = REAL_MODEL.lock().await;
    // One CPU thread needs several seconds for the note prompt and a long
    // reply: 1 s is too short. (With only 64 tokens allowed, a quiet machine
    // finished the reply inside 1 s and the test saw a cut-off instead.)
    let started = Instant::now();
    let r = assistant(&url, 1, 2048).generate_note(note_input()).await;
    match r {
        Err(AiError::Unavailable { detail, .. }) => {
            assert!(detail.contains("timed out"), "{detail}")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_until_idle(&url).await;
}

#[tokio::test]
async fn identifiers_never_reach_the_model_and_answers_are_handled() {
    let Some(url) = llm_url() else { return };
    let _one_at_a_time = REAL_MODEL.lock().await;
    let (proxy, seen) = recording_proxy(url).await;
    let a = assistant(&proxy, 300, 256);
    let started = Instant::now();
    let r = a.generate_note(note_input()).await;
    let note_ms = started.elapsed().as_millis();
    assert!(acceptable(&r), "{r:?}");
    if let Ok(answer) = &r {
        let n = &answer.value;
        for field in [&n.subjective, &n.objective, &n.assessment, &n.plan] {
            assert!(!field.contains("[PATIENT_NAME") && !field.contains("[MRN"));
        }
        assert!(n.objective.contains("Allergies (chart): penicillin (rash)"));
        assert_eq!(answer.provider, "openai");
    }

    let started = Instant::now();
    let e = a
        .explain(ExplainInput {
            audience: Audience::Patient,
            code: "2823-3".into(),
            name: "Potassium".into(),
            value: 6.8,
            unit: "mmol/L".into(),
            flag: Some("critical_high".into()),
            reference_low: Some(3.5),
            reference_high: Some(5.1),
            history: vec![],
            identifiers: ids(),
        })
        .await;
    let explain_ms = started.elapsed().as_millis();
    assert!(acceptable(&e), "{e:?}");
    if let Ok(answer) = &e {
        let text = answer.value.explanation.to_lowercase();
        assert!(text.contains("contact your clinician"), "{text}");
        assert!(answer.value.critical);
    }

    let bodies = seen.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 2, "one request per call");
    for body in &bodies {
        let lower = body.to_lowercase();
        for canary in ["zelda", "quixote", "884211", "013-2477", "example.org"] {
            assert!(!lower.contains(canary), "{canary} was sent to the model");
        }
    }
    assert!(bodies[0].contains("[PATIENT_NAME]") && bodies[0].contains("[MRN]"));
    eprintln!(
        "real-model latency: note {note_ms} ms ({}), explain {explain_ms} ms ({})",
        outcome(&r),
        outcome(&e)
    );
}

/// How a call ended (`detail` never holds patient data or the model's text).
fn outcome<T>(r: &Result<T, AiError>) -> String {
    match r {
        Ok(_) => "served".into(),
        Err(AiError::Refused { reason, .. }) => format!("refused as {reason}"),
        Err(AiError::Unavailable { detail, .. }) => format!("unavailable: {detail}"),
    }
}

#[tokio::test]
async fn loading_server_503_is_unavailable_with_retry_after() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    // llama.cpp's answer while it is still loading the model.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({
            "error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}
        })))
        .mount(&server)
        .await;
    let a = assistant(&format!("{}/v1", server.uri()), 5, 64);
    match a.generate_note(note_input()).await {
        Err(AiError::Unavailable {
            retry_after_secs,
            detail,
        }) => {
            assert_eq!(retry_after_secs, ai::DEFAULT_RETRY_AFTER_SECS);
            assert!(detail.contains("503"), "{detail}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn stand_in_length_and_max_tokens_on_the_wire() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let mut truncated = common::chat_completion("{\"subjective\": \"Cough for 3");
    truncated["choices"][0]["finish_reason"] = json!("length");
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(truncated))
        .mount(&server)
        .await;
    let a = assistant(&format!("{}/v1", server.uri()), 5, 32);
    let r = a.generate_note(note_input()).await;
    assert!(
        matches!(&r, Err(AiError::Unavailable { detail, .. }) if detail.contains("length")),
        "{r:?}"
    );
    let sent = server.received_requests().await.expect("recorded");
    let body: Value = serde_json::from_slice(&sent[0].body).expect("json");
    assert_eq!(body["max_tokens"], 32);
}
