//! Runs the evaluation set (`data/eval_set.json`) against the built-in
//! provider and a well-behaved stand-in OpenAI-compatible server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic

mod common;

use common::{load_eval, remote, run_eval, server_with, GoodModel};

#[tokio::test]
async fn eval_set_is_large_and_balanced() {
    let set = load_eval();
    assert!(
        set.cases.len() >= 60,
        "eval set has {} cases",
        set.cases.len()
    );
    for reason in ai::RefusalReason::ALL {
        if reason == ai::RefusalReason::UnsafeOutput {
            continue; // exercised by provider post-check tests
        }
        assert!(
            set.cases
                .iter()
                .any(|c| c.reason.as_deref() == Some(reason.as_str())),
            "no eval case refused as {reason}"
        );
    }
    for kind in ["note", "explain"] {
        assert!(set
            .cases
            .iter()
            .any(|c| c.kind == kind && c.expect == "serve"));
    }
    let mut ids: Vec<&str> = set.cases.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "duplicate case ids");
}

#[tokio::test]
async fn eval_set_builtin_provider() {
    let set = load_eval();
    let score = run_eval(&ai::Assistant::builtin(), &set, true).await;
    println!("{}", score.summary("builtin"));
    for (id, why) in &score.wrong {
        println!("  WRONG {id}: {why}");
    }
    assert!(score.wrong.is_empty(), "{}", score.summary("builtin"));
}

#[tokio::test]
async fn eval_set_openai_stand_in() {
    let set = load_eval();
    let server = server_with(GoodModel).await;
    let assistant = remote(&server, 5, Some("test-key"));
    assert_eq!(assistant.provider_name(), "openai");
    let score = run_eval(&assistant, &set, false).await;
    println!("{}", score.summary("openai stand-in"));
    for (id, why) in &score.wrong {
        println!("  WRONG {id}: {why}");
    }
    assert!(
        score.wrong.is_empty(),
        "{}",
        score.summary("openai stand-in")
    );
    // Refused requests never reach the provider.
    let received = server.received_requests().await.unwrap_or_default();
    assert_eq!(
        received.len(),
        score.served_ok,
        "one provider call per served case"
    );
}
