//! Shows what the built-in assistant does with one input: the refusal
//! reason, or the SOAP draft (chart left empty).
//!
//! `echo "can I double his metoprolol?" | cargo run -q -p ai --example draft`

use std::io::Read;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let result = ai::Assistant::builtin()
        .generate_note(ai::GenerateNoteInput {
            input,
            ..Default::default()
        })
        .await;
    match result {
        Ok(answer) => {
            let n = answer.value;
            println!(
                "S: {}\nO: {}\nA: {}\nP: {}",
                n.subjective, n.objective, n.assessment, n.plan
            );
        }
        Err(e) => println!(
            "{}: {e}",
            e.refusal_reason().map_or("unavailable", |r| r.as_str())
        ),
    }
    Ok(())
}
