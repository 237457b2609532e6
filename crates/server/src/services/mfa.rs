//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of
//! clock skew either way) with ten single-use recovery codes.
//!
//! * Sign-in with a correct password either opens a session (no second
//!   factor and none required) or answers a *step*: `mfa_required` (enter a
//!   code) or `mfa_enrolment_required` (the `AMAL_MFA` policy demands a
//!   factor this account does not have yet). The step carries a challenge
//!   token: an HS512 JWT of type `mfa` / `mfa_enrol`, 5 minutes, under a key
//!   derived from `JWT_SECRET`; it is never accepted as an access token.
//! * A code is accepted once: the time step of the last accepted code is
//!   stored and a code of that step or an earlier one is refused.
//! * Secrets are stored AES-256-GCM encrypted (ring) under a key derived
//!   from `JWT_REFRESH_SECRET`, which lives outside the database (the
//!   environment or the secrets file); the user id is the associated data,
//!   so a secret copied to another account's row does not open.
//! * Failed codes count against the same per-account failure limit as
//!   failed passwords (`AMAL_RATE_LIMIT_AUTH` per IP applies as well).

use base64::Engine as _;
use chrono::Utc;
use domain::audit::AuditAction;
use domain::roles::Role;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use ring::aead;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::credentials::tokens::{keyed_hash, same_secret};
use crate::error::{AppError, Result};
use crate::services::auth::{open_session, TokenPair};
use crate::services::{own_event, record_durably};
use crate::state::AppState;

/// Seconds a challenge token is valid.
pub const CHALLENGE_TTL_SECS: i64 = 5 * 60;
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;
const STEP_SECS: u64 = 30;
const ISSUER: &str = "Dr Amal";

/// What sign-in answers instead of tokens when a second factor is needed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaStep {
    /// `mfa_required` or `mfa_enrolment_required`.
    pub step: &'static str,
    pub challenge_token: String,
    pub expires_in: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChallengeClaims {
    sub: Uuid,
    typ: String,
    iat: i64,
    exp: i64,
    jti: Uuid,
}

const TYP_VERIFY: &str = "mfa";
const TYP_ENROL: &str = "mfa_enrol";

fn challenge_key(st: &AppState) -> Vec<u8> {
    keyed_hash(
        st.config.jwt_secret.expose_secret().as_bytes(),
        "amal-mfa-challenge-v1",
    )
    .into_bytes()
}

fn issue_challenge(st: &AppState, user: Uuid, typ: &str) -> Result<String> {
    let now = Utc::now().timestamp();
    let claims = ChallengeClaims {
        sub: user,
        typ: typ.into(),
        iat: now,
        exp: now + CHALLENGE_TTL_SECS,
        jti: Uuid::new_v4(),
    };
    encode(
        &Header::new(Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(&challenge_key(st)),
    )
    .map_err(|e| AppError::Internal(e.into()))
}

/// The user a challenge token of type `typ` was issued for.
fn check_challenge(st: &AppState, token: &str, typ: &str) -> Result<Uuid> {
    let mut v = Validation::new(Algorithm::HS512);
    v.algorithms = vec![Algorithm::HS512];
    v.set_required_spec_claims(&["exp", "sub"]);
    v.leeway = 0;
    decode::<ChallengeClaims>(
        token.trim(),
        &DecodingKey::from_secret(&challenge_key(st)),
        &v,
    )
    .ok()
    .map(|d| d.claims)
    .filter(|c| c.typ == typ)
    .map(|c| c.sub)
    .ok_or(AppError::Unauthorized(
        "The sign-in step has expired or is not valid; sign in again.",
    ))
}

// --- Secrets at rest --------------------------------------------------------

fn sealing_key(st: &AppState) -> Result<aead::LessSafeKey> {
    let hex_key = keyed_hash(
        st.config.jwt_refresh_secret.expose_secret().as_bytes(),
        "amal-mfa-secret-v1",
    );
    let bytes = hex::decode(hex_key).map_err(|e| AppError::Internal(e.into()))?;
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &bytes)
        .map_err(|_| AppError::Internal(anyhow::anyhow!("AES key setup failed")))?;
    Ok(aead::LessSafeKey::new(unbound))
}

fn seal(st: &AppState, user: Uuid, secret: &[u8]) -> Result<String> {
    let key = sealing_key(st)?;
    let mut nonce = [0u8; aead::NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut buf = secret.to_vec();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(user.as_bytes()),
        &mut buf,
    )
    .map_err(|_| AppError::Internal(anyhow::anyhow!("sealing the TOTP secret failed")))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

fn open(st: &AppState, user: Uuid, sealed: &str) -> Result<Vec<u8>> {
    let bad = || {
        AppError::Internal(anyhow::anyhow!(
            "the stored TOTP secret cannot be opened (was JWT_REFRESH_SECRET changed?)"
        ))
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .map_err(|_| bad())?;
    if raw.len() <= aead::NONCE_LEN {
        return Err(bad());
    }
    let (nonce, body) = raw.split_at(aead::NONCE_LEN);
    let nonce: [u8; aead::NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
    let mut buf = body.to_vec();
    let plain = sealing_key(st)?
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(user.as_bytes()),
            &mut buf,
        )
        .map_err(|_| bad())?;
    Ok(plain.to_vec())
}

// --- Codes ------------------------------------------------------------------

fn totp(secret: Vec<u8>) -> Result<totp_rs::TOTP> {
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, STEP_SECS, secret)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("TOTP setup failed: {e}")))
}

fn now_secs() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// The time step whose code `code` is (now, one step before or after).
fn matching_step(t: &totp_rs::TOTP, code: &str, now: u64) -> Option<i64> {
    let step = now / STEP_SECS;
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .find(|s| same_secret(t.generate(s * STEP_SECS).as_bytes(), code.as_bytes()))
        .and_then(|s| i64::try_from(s).ok())
}

/// The code an authenticator shows for `secret_base32` at `unix_secs` (for
/// tests and the CLI's self-check; the server never needs it).
pub fn code_at(secret_base32: &str, unix_secs: u64) -> Option<String> {
    let bytes = totp_rs::Secret::Encoded(secret_base32.to_string())
        .to_bytes()
        .ok()?;
    totp(bytes).ok().map(|t| t.generate(unix_secs))
}

fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_lowercase()
}

fn recovery_hash(st: &AppState, user: Uuid, code: &str) -> String {
    keyed_hash(
        st.config.jwt_refresh_secret.expose_secret().as_bytes(),
        &format!("recovery:{user}:{}", normalise(code)),
    )
}

fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 10];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let s: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    // The alphabet is ASCII, so byte 5 is a character boundary.
    let (head, tail) = s.split_at(5);
    format!("{head}-{tail}")
}

// --- Policy -----------------------------------------------------------------

/// Whether `user` has a confirmed second factor.
pub async fn enrolled(st: &AppState, user: Uuid) -> Result<bool> {
    Ok(store::identity::mfa_of(&st.db, user)
        .await?
        .is_some_and(|m| m.confirmed_at.is_some()))
}

/// Whether the policy demands a second factor of `role`.
pub fn required_for(st: &AppState, role: Role) -> bool {
    st.config.mfa.requires(role)
}

/// After a correct password: the second step this account needs, if any.
pub async fn second_step(st: &AppState, user: &store::users::UserRow) -> Result<Option<MfaStep>> {
    let enrolled = enrolled(st, user.id).await?;
    let typ = if enrolled {
        TYP_VERIFY
    } else if required_for(st, user.role) {
        TYP_ENROL
    } else {
        return Ok(None);
    };
    Ok(Some(MfaStep {
        step: if enrolled {
            "mfa_required"
        } else {
            "mfa_enrolment_required"
        },
        challenge_token: issue_challenge(st, user.id, typ)?,
        expires_in: CHALLENGE_TTL_SECS,
    }))
}

// --- Use cases --------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaVerifyRequest {
    pub challenge_token: String,
    /// A 6-digit code from the authenticator, or one recovery code.
    pub code: String,
}

fn fail_key(user: Uuid) -> String {
    format!("mfa-fail:{user}")
}

async fn check_not_locked(st: &AppState, user: Uuid) -> Result<()> {
    let d = st
        .limiter
        .peek(&fail_key(user), st.config.rate_limits.account_failures)
        .await?;
    if d.allowed {
        Ok(())
    } else {
        st.metrics.incr("auth.mfa.locked");
        Err(AppError::RateLimited {
            retry_after: d.reset_secs.max(1),
        })
    }
}

async fn record_failure(st: &AppState, user: &store::users::UserRow, why: &str) -> Result<()> {
    st.limiter
        .hit(&fail_key(user.id), st.config.rate_limits.account_failures)
        .await?;
    st.metrics.incr("auth.mfa.failure");
    let mut ev = own_event(
        AuditAction::AuthMfaVerify,
        "failure",
        user.id,
        user.role.as_str(),
        "user",
        user.id,
    );
    ev.detail = Some(serde_json::json!({ "reason": why }).to_string());
    record_durably(st, ev).await
}

fn wrong_code() -> AppError {
    AppError::Unauthorized("The code is not correct (or was already used).")
}

async fn active_user(st: &AppState, id: Uuid) -> Result<store::users::UserRow> {
    store::users::by_id(&st.db, id)
        .await?
        .filter(|u| u.status.is_active())
        .ok_or(AppError::Unauthorized(
            "The sign-in step has expired or is not valid; sign in again.",
        ))
}

/// Accept `code` (TOTP or recovery) for `user` inside `tx`: Ok(kind) when
/// accepted, Ok(None) when wrong or replayed.
async fn accept_code(
    st: &AppState,
    tx: &mut store::Tx,
    user: Uuid,
    mfa: &store::identity::MfaRow,
    code: &str,
) -> Result<Option<&'static str>> {
    let code = normalise(code);
    if code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()) {
        let t = totp(open(st, user, &mfa.secret_enc)?)?;
        return match matching_step(&t, &code, now_secs()) {
            Some(step) if store::identity::mfa_accept_step(tx, user, step).await? => {
                Ok(Some("totp"))
            }
            _ => Ok(None),
        };
    }
    if mfa.confirmed_at.is_some()
        && store::identity::use_recovery_code(tx, user, &recovery_hash(st, user, &code)).await?
    {
        return Ok(Some("recovery_code"));
    }
    Ok(None)
}

/// The second step of sign-in: a code (or a recovery code) for the
/// challenge; opens the session.
pub async fn verify(st: &AppState, req: MfaVerifyRequest) -> Result<TokenPair> {
    let uid = check_challenge(st, &req.challenge_token, TYP_VERIFY)?;
    let user = active_user(st, uid).await?;
    check_not_locked(st, uid).await?;
    let mut tx = st.db.begin().await?;
    let mfa = store::identity::mfa_for_update(&mut tx, uid)
        .await?
        .filter(|m| m.confirmed_at.is_some())
        .ok_or(AppError::Unauthorized(
            "The sign-in step has expired or is not valid; sign in again.",
        ))?;
    let Some(kind) = accept_code(st, &mut tx, uid, &mfa, &req.code).await? else {
        drop(tx);
        record_failure(st, &user, "wrong_or_replayed").await?;
        return Err(wrong_code());
    };
    let mut ev = own_event(
        AuditAction::AuthMfaVerify,
        "success",
        uid,
        user.role.as_str(),
        "user",
        uid,
    );
    ev.detail = Some(serde_json::json!({ "method": kind }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.metrics.incr("auth.mfa.success");
    open_session(st, user).await
}

/// Step-up for a sensitive act of a signed-in user (break-glass): when the
/// account has a confirmed second factor, `code` must be a current, unused
/// TOTP code or an unused recovery code. The same per-account failure limit
/// and replay rule as the sign-in step apply; a failure is audited as
/// `auth.mfa.verify` failure, a success as success with the `purpose`.
/// Without a confirmed factor there is nothing to check (the sign-in policy,
/// `AMAL_MFA`, decides who must have one).
pub async fn step_up(
    st: &AppState,
    user: &store::users::UserRow,
    code: Option<&str>,
    purpose: &'static str,
) -> Result<()> {
    if !enrolled(st, user.id).await? {
        return Ok(());
    }
    let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
        return Err(AppError::validation(
            "mfaCode",
            "is required: enter the code from your authenticator app (or a recovery code)",
        ));
    };
    check_not_locked(st, user.id).await?;
    let mut tx = st.db.begin().await?;
    let accepted = match store::identity::mfa_for_update(&mut tx, user.id).await? {
        Some(mfa) if mfa.confirmed_at.is_some() => {
            accept_code(st, &mut tx, user.id, &mfa, code).await?
        }
        _ => None,
    };
    let Some(kind) = accepted else {
        drop(tx);
        record_failure(st, user, purpose).await?;
        return Err(AppError::validation(
            "mfaCode",
            "is not correct (or was already used)",
        ));
    };
    let mut ev = own_event(
        AuditAction::AuthMfaVerify,
        "success",
        user.id,
        user.role.as_str(),
        "user",
        user.id,
    );
    ev.detail = Some(serde_json::json!({ "method": kind, "purpose": purpose }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.metrics.incr("auth.mfa.step_up");
    Ok(())
}

/// A new, unconfirmed TOTP secret to add to an authenticator app.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaSetup {
    /// The base32 secret, for typing in by hand.
    pub secret: String,
    /// The `otpauth://totp/...` URI the QR code holds.
    pub otpauth_uri: String,
    /// The QR code as an SVG document, rendered by this server.
    pub qr_svg: String,
}

/// Who an enrolment step is for: a signed-in user, or a sign-in that the
/// policy stopped until a factor is enrolled (its challenge token).
pub enum Enrolling<'a> {
    Signed(&'a AuthUser),
    Challenge(&'a str),
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaSetupRequest {
    /// The `mfa_enrolment_required` challenge token (when not signed in).
    pub challenge_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaConfirmRequest {
    /// The `mfa_enrolment_required` challenge token (when not signed in).
    pub challenge_token: Option<String>,
    pub code: String,
}

/// The enrolment result: the recovery codes (shown once) and, for a
/// sign-in that was waiting on enrolment, the session's tokens.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaEnrolled {
    pub recovery_codes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenPair>,
}

async fn enrolling_user(st: &AppState, who: &Enrolling<'_>) -> Result<store::users::UserRow> {
    match who {
        Enrolling::Signed(u) => store::users::by_id(&st.db, u.id)
            .await?
            .ok_or(AppError::Unauthorized("The account no longer exists.")),
        Enrolling::Challenge(t) => active_user(st, check_challenge(st, t, TYP_ENROL)?).await,
    }
}

fn qr_svg(uri: &str) -> Result<String> {
    let code = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("QR encoding failed: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    // Drop the XML declaration so the document can also be embedded.
    Ok(svg
        .split_once("?>")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(svg))
}

fn otpauth_uri(secret: &str, email: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let label = enc(&format!("{ISSUER}:{email}")).replace('+', "%20");
    let issuer = enc(ISSUER).replace('+', "%20");
    format!(
        "otpauth://totp/{label}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits=6&period={STEP_SECS}"
    )
}

/// Begin enrolment: a fresh secret (replacing an unconfirmed one). A
/// confirmed factor is not replaced here: an administrator resets it.
pub async fn setup(st: &AppState, who: Enrolling<'_>) -> Result<MfaSetup> {
    let user = enrolling_user(st, &who).await?;
    if store::identity::mfa_of(&st.db, user.id)
        .await?
        .is_some_and(|m| m.confirmed_at.is_some())
    {
        return Err(AppError::conflict(
            "A second factor is already set up; an administrator can reset it.",
        ));
    }
    let mut raw = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = match totp_rs::Secret::Raw(raw.to_vec()).to_encoded() {
        totp_rs::Secret::Encoded(s) => s,
        totp_rs::Secret::Raw(_) => return Err(AppError::Internal(anyhow::anyhow!("base32"))),
    };
    let sealed = seal(st, user.id, &raw)?;
    let mut tx = st.db.begin().await?;
    store::identity::mfa_begin(&mut tx, user.id, &sealed).await?;
    let ev = own_event(
        AuditAction::AuthMfaEnrol,
        "started",
        user.id,
        user.role.as_str(),
        "user",
        user.id,
    );
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    let uri = otpauth_uri(&secret, &user.email);
    Ok(MfaSetup {
        qr_svg: qr_svg(&uri)?,
        otpauth_uri: uri,
        secret,
    })
}

/// Confirm enrolment with a first code; issues the recovery codes (and, for
/// a waiting sign-in, opens the session).
pub async fn confirm(st: &AppState, who: Enrolling<'_>, code: &str) -> Result<MfaEnrolled> {
    let user = enrolling_user(st, &who).await?;
    check_not_locked(st, user.id).await?;
    let mut tx = st.db.begin().await?;
    let pending = store::identity::mfa_for_update(&mut tx, user.id)
        .await?
        .ok_or_else(|| AppError::conflict("Start the set-up first (POST /api/auth/mfa/setup)."))?;
    if pending.confirmed_at.is_some() {
        return Err(AppError::conflict("The second factor is already set up."));
    }
    let code = normalise(code);
    let ok = code.len() == 6
        && accept_code(st, &mut tx, user.id, &pending, &code)
            .await?
            .is_some();
    if !ok {
        drop(tx);
        record_failure(st, &user, "enrolment_code").await?;
        return Err(wrong_code());
    }
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| recovery_hash(st, user.id, c))
        .collect();
    store::identity::replace_recovery_codes(&mut tx, user.id, &hashes).await?;
    let ev = own_event(
        AuditAction::AuthMfaEnrol,
        "success",
        user.id,
        user.role.as_str(),
        "user",
        user.id,
    );
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.metrics.incr("auth.mfa.enrolled");
    tracing::info!(userId = %user.id, "second factor enrolled");
    let tokens = match who {
        Enrolling::Signed(_) => None,
        Enrolling::Challenge(_) => Some(open_session(st, user).await?),
    };
    Ok(MfaEnrolled {
        recovery_codes: codes,
        tokens,
    })
}

/// The second-factor state of the signed-in user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaStatus {
    pub enrolled: bool,
    pub required: bool,
    pub recovery_codes_left: i64,
    pub policy: &'static str,
}

pub async fn status(st: &AppState, user: &AuthUser) -> Result<MfaStatus> {
    Ok(MfaStatus {
        enrolled: enrolled(st, user.id).await?,
        required: st.config.mfa.requires(user.role),
        recovery_codes_left: store::identity::unused_recovery_codes(&st.db, user.id).await?,
        policy: st.config.mfa.as_str(),
    })
}
