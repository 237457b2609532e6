//! Records the git commit the binary is built from, so `amal version` and
//! `/api/health` report "last known good" as a fact.
use std::process::Command;

fn main() {
    let commit = std::env::var("AMAL_GIT_COMMIT").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    });
    if let Some(c) = commit.filter(|c| !c.is_empty()) {
        println!("cargo:rustc-env=AMAL_GIT_COMMIT={c}");
    }
    println!("cargo:rerun-if-env-changed=AMAL_GIT_COMMIT");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
}
