//! First run: on an empty database `serve` prints a one-time setup link
//! (`/setup?code=…`); the page creates the first administrator, and the code
//! dies with that (or with any account appearing some other way, such as
//! `amal user create`).

use std::sync::Mutex;

/// The one-time setup code of this process, while no account exists.
#[derive(Default)]
pub struct FirstRun {
    code: Mutex<Option<String>>,
}

impl FirstRun {
    /// Make a fresh code (the database has no account).
    pub fn arm(&self) -> String {
        let code = crate::credentials::tokens::one_time_code();
        if let Ok(mut g) = self.code.lock() {
            *g = Some(code.clone());
        }
        code
    }

    /// The code, while setup is pending.
    pub fn code(&self) -> Option<String> {
        self.code.lock().ok().and_then(|g| g.clone())
    }

    pub fn pending(&self) -> bool {
        self.code().is_some()
    }

    /// Whether `code` is this process's pending code (constant time).
    pub fn accepts(&self, code: &str) -> bool {
        self.code().is_some_and(|c| {
            crate::credentials::tokens::same_secret(c.as_bytes(), code.trim().as_bytes())
        })
    }

    /// Setup is done (or someone else made an account): the code is dead.
    pub fn disarm(&self) {
        if let Ok(mut g) = self.code.lock() {
            *g = None;
        }
    }
}

/// The address a newcomer opens, for the line `serve` prints.
pub fn setup_url(base: &str, code: &str) -> String {
    format!("{}/setup?code={code}", base.trim_end_matches('/'))
}
