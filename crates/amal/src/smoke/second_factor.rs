//! The second sign-in step in the smoke suite. A server may answer a
//! correct password with `mfa_required` (the account has a TOTP factor) or
//! `mfa_enrolment_required` (`AMAL_MFA` demands one it lacks):
//!
//! * the admin's code is computed from `--totp-secret` / `SMOKE_TOTP_SECRET`
//!   (the base32 secret its authenticator holds); without it the check fails
//!   saying so. The suite never enrols the admin: that is the operator's act.
//! * accounts the suite created itself (provider, staff) are enrolled on the
//!   spot (set-up, then a code from the new secret) and disabled at the end
//!   like everything else it creates.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{Resp, Smoke};

/// Who is signing in, for the second step.
pub(super) enum Account<'a> {
    /// The operator's admin: a code from this secret, if one was given.
    Operator(Option<&'a str>),
    /// An account this run created: enrolled if the policy demands it.
    Own,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The code for `secret` at now + `steps` × 30 s (the server accepts one
/// step of skew either way).
fn code(secret: &str, steps: u64) -> Result<String, String> {
    server::services::mfa::code_at(secret.trim(), unix_now() + steps * 30).ok_or_else(|| {
        "the TOTP secret is not valid base32 (SMOKE_TOTP_SECRET / --totp-secret)".to_string()
    })
}

impl Smoke {
    /// `r` is a 200 answer to a sign-in; when it is a second step, complete
    /// it and answer the token pair instead (the body `session_of` reads).
    pub(super) async fn second_step(
        &self,
        r: Resp,
        who: &str,
        account: Account<'_>,
    ) -> Result<Resp, String> {
        let step = r.json["step"].as_str().unwrap_or("").to_string();
        let challenge = r.json["challengeToken"].clone();
        match (step.as_str(), account) {
            ("", _) => Ok(r),
            ("mfa_required", Account::Operator(Some(secret))) => {
                let mut last = None;
                // The current step's code, then the next one: a run less than
                // 30 s after another used the current code already (replay).
                for steps in [0, 1] {
                    let v = self
                        .post(
                            "/api/auth/mfa/verify",
                            None,
                            json!({"challengeToken": challenge, "code": code(secret, steps)?}),
                        )
                        .await?;
                    if v.status == 200 {
                        return Ok(v);
                    }
                    if v.status != 401 {
                        return Err(format!("{who} second factor: {}", v.brief()));
                    }
                    last = Some(v);
                }
                Err(format!(
                    "{who}'s second factor was refused ({}): is SMOKE_TOTP_SECRET the secret of this account, and the clock right?",
                    last.map(|v| v.brief()).unwrap_or_default()
                ))
            }
            ("mfa_required", Account::Operator(None)) => Err(format!(
                "{who} has a second factor: set SMOKE_TOTP_SECRET (or --totp-secret) to its base32 TOTP secret so the suite can compute the code"
            )),
            ("mfa_enrolment_required", Account::Operator(_)) => Err(format!(
                "{who} must enrol a second factor before it can sign in (AMAL_MFA policy): enrol it in the web UI (Account), then give its secret as SMOKE_TOTP_SECRET"
            )),
            ("mfa_enrolment_required", Account::Own) => self.enrol(who, challenge).await,
            (other, _) => Err(format!("{who} sign-in answered an unknown step {other:?}")),
        }
    }

    /// Enrol a factor for an account of this run; the token pair.
    async fn enrol(&self, who: &str, challenge: serde_json::Value) -> Result<Resp, String> {
        let s = self
            .post(
                "/api/auth/mfa/setup",
                None,
                json!({"challengeToken": challenge}),
            )
            .await?;
        s.expect(&format!("{who} MFA set-up"), 200)?;
        let secret = s.json["secret"].as_str().unwrap_or("").to_string();
        let mut c = self
            .post(
                "/api/auth/mfa/confirm",
                None,
                json!({"challengeToken": challenge, "code": code(&secret, 0)?}),
            )
            .await?;
        c.expect(&format!("{who} MFA confirmation"), 200)?;
        c.json = c.json["tokens"].take();
        Ok(c)
    }
}
