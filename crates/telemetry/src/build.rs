//! Which build this is, as `amal version`, `/api/health`, the log's
//! `listening` line and every backup manifest report it.

/// The release (the workspace version).
pub fn release() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The git commit the binary was built from (`build.rs`), or `unknown`.
pub fn git_commit() -> &'static str {
    option_env!("AMAL_GIT_COMMIT").unwrap_or("unknown")
}
