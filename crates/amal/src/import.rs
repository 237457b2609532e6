//! `amal import hl7`: HL7 v2 lab results from files, through the same
//! service as `POST /api/labs/hl7` (patient match, validation, audit,
//! idempotency). Prints one line per message (never its contents) and the
//! import rate.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use domain::hl7::AckCode;

/// The files to read: `path` itself, or the files of the folder in name order.
fn files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read the folder {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("hl7" | "er7" | "txt" | "msg")
                )
            })
            .collect();
        v.sort();
        Ok(v)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

pub async fn hl7(
    cfg: server::Config,
    path: &Path,
    email: &str,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let db = crate::database::connect(&cfg).await?;
    store::migrate::guard_not_newer(&db).await?;
    let actor = server::services::hl7::acting_user(&db, email).await?;
    let started = Instant::now();
    let (mut total, mut stored, mut dups) = (0usize, 0usize, 0usize);
    let mut by_code = [0usize; 3];
    for file in files(path)? {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let text = match std::str::from_utf8(&bytes) {
            Ok(s) => s.to_string(),
            Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
        };
        for (i, msg) in domain::hl7::split_batch(&text).iter().enumerate() {
            total += 1;
            let out = server::services::hl7::import(&db, &actor, msg)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
            let slot = match out.code {
                AckCode::AA => 0,
                AckCode::AE => 1,
                AckCode::AR => 2,
            };
            by_code[slot] += 1;
            stored += out.stored.len();
            dups += usize::from(out.duplicate);
            let why = out
                .issues
                .first()
                .map(|i| format!(": {}", i.message))
                .unwrap_or_default();
            let dup = if out.duplicate {
                " (repeat; nothing stored)"
            } else {
                ""
            };
            println!(
                "{}#{}: {}{dup}, {} result(s) stored{why}",
                file.display(),
                i + 1,
                out.code.as_str(),
                out.stored.len()
            );
            if verbose {
                println!("{}", out.ack.replace('\r', "\n"));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { total as f64 / secs } else { 0.0 };
    println!(
        "{total} message(s): {} AA, {} AE, {} AR ({dups} repeat(s)); {stored} result(s) stored in {secs:.2} s ({rate:.0} messages/s)",
        by_code[0], by_code[1], by_code[2]
    );
    Ok(if by_code[1] + by_code[2] == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
