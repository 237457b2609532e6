//! Sign-up, sign-in, refresh, logout and `me` (SPEC §3, §6).

use domain::account::{SignupPolicy, UserStatus};
use domain::audit::AuditAction;
use domain::roles::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::credentials::tokens::{refresh_expiry, ACCESS_TTL_SECS};
use crate::error::{AppError, Result};
use crate::services::{audit_event, own_event, parse_account, record_durably};
use crate::state::AppState;

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    #[schema(value_type = String)]
    pub role: Role,
    #[schema(value_type = String)]
    pub status: UserStatus,
    pub version: i64,
    /// When the account last signed in (the user list only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sign_in_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<store::users::UserRow> for UserView {
    fn from(u: store::users::UserRow) -> Self {
        UserView {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            status: u.status,
            version: u.version,
            last_sign_in_at: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserEnvelope {
    pub user: UserView,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignupRequest {
    #[schema(
        max_length = 254,
        pattern = r"^[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
    )]
    pub email: String,
    #[schema(min_length = 12)]
    pub password: String,
    #[schema(min_length = 1, max_length = 100, pattern = "amal:required-line")]
    pub name: String,
    pub invite_code: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SigninRequest {
    #[schema(
        max_length = 254,
        pattern = r"^[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
    )]
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub user: UserView,
}

/// Hash of an invitation code as stored (the code itself is never kept).
pub fn invite_hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.trim().as_bytes()))
}

/// Self-service sign-up, as the clinic's sign-up policy allows.
pub async fn signup(st: &AppState, req: SignupRequest) -> Result<UserView> {
    let (email, password, name) = parse_account(&req.email, &req.password, &req.name)?;
    if st.config.signup == SignupPolicy::Closed {
        return Err(AppError::Forbidden(
            "Sign-up is closed; ask an administrator for an account.".into(),
        ));
    }
    let invite_needed = st.config.signup == SignupPolicy::Invite;
    let code = req
        .invite_code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if invite_needed && code.is_none() {
        return Err(AppError::Forbidden(
            "An invitation code is required to sign up.".into(),
        ));
    }
    let hash = st.hasher.hash(password.expose()).await?;
    let mut tx = st.db.begin().await?;
    let (role, status, invite) = if invite_needed {
        let bad = || {
            AppError::Forbidden(
                "The invitation code is not valid (unknown, used, expired or for another e-mail)."
                    .into(),
            )
        };
        let inv =
            store::users::invite_by_code_hash(&mut tx, &invite_hash(code.unwrap_or_default()))
                .await?
                .ok_or_else(bad)?;
        let for_other = inv.email.as_deref().is_some_and(|e| e != email.as_str());
        if inv.used_at.is_some() || inv.expires_at <= store::now() || for_other {
            return Err(bad());
        }
        (inv.role, UserStatus::Active, Some((inv.id, inv.created_by)))
    } else {
        (Role::Staff, UserStatus::Pending, None)
    };
    let user = store::users::insert(
        &mut tx,
        &store::users::NewUser {
            email: email.as_str(),
            name: name.as_str(),
            role,
            status,
            password_hash: &hash,
        },
    )
    .await?;
    if let Some((id, created_by)) = invite {
        if !store::users::consume_invite(&mut tx, id, user.id).await? {
            return Err(AppError::Forbidden(
                "The invitation code was just used.".into(),
            ));
        }
        crate::services::access::flag_new_account(&mut tx, st, Some(created_by), &user, "invite")
            .await?;
    }
    let ev = own_event(
        AuditAction::AuthSignup,
        "success",
        user.id,
        user.role.as_str(),
        "user",
        user.id,
    );
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    st.metrics.incr("auth.signup.success");
    tracing::info!(userId = %user.id, role = %user.role, status = %user.status, "auth signup");
    Ok(user.into())
}

async fn record_signin(st: &AppState, user: Option<(Uuid, &str)>, outcome: &str) -> Result<()> {
    let mut ev = audit_event(None, AuditAction::AuthSignin, outcome);
    if let Some((id, role)) = user {
        ev.actor_id = Some(id);
        ev.actor_role = Some(role.to_string());
        ev.resource_type = Some("user".into());
        ev.resource_id = Some(id);
    }
    record_durably(st, ev).await
}

/// What sign-in answers: tokens, or the second step it still needs
/// ([`crate::services::mfa`]).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SigninResult {
    Tokens(TokenPair),
    SecondFactor(crate::services::mfa::MfaStep),
}

/// Open a session and issue its first token pair.
pub(crate) async fn open_session(st: &AppState, user: store::users::UserRow) -> Result<TokenPair> {
    let (refresh, refresh_hash) = st.keys.new_refresh();
    let expires = refresh_expiry();
    let mut tx = st.db.begin().await?;
    let session = store::sessions::create(&mut tx, user.id, expires).await?;
    let (agent, ip) = crate::context::current()
        .map(|c| (c.user_agent(), Some(c.client_ip.to_string())))
        .unwrap_or((None, None));
    store::identity::set_session_client(&mut tx, session, agent.as_deref(), ip.as_deref()).await?;
    store::sessions::add_refresh_token(&mut tx, session, &refresh_hash, expires).await?;
    let ev = own_event(
        AuditAction::AuthSignin,
        "success",
        user.id,
        user.role.as_str(),
        "user",
        user.id,
    );
    store::audit::append(&mut tx, &[ev]).await?;
    tx.commit().await?;
    let access = st.keys.issue_access(user.id, user.role.as_str(), session)?;
    Ok(TokenPair {
        access_token: access,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
        refresh_token: refresh,
        user: user.into(),
    })
}

/// Check an e-mail and password and open a session (or ask for the second
/// factor).
pub async fn signin(st: &AppState, req: SigninRequest) -> Result<SigninResult> {
    let wrong = || AppError::Unauthorized("Incorrect e-mail or password.");
    let email = req.email.trim().to_lowercase();
    if email.is_empty() || req.password.is_empty() {
        return Err(AppError::Validation(
            [
                ("email", email.is_empty()),
                ("password", req.password.is_empty()),
            ]
            .into_iter()
            .filter(|x| x.1)
            .map(|(f, _)| domain::account::FieldError::new(f, "is required"))
            .collect(),
        ));
    }
    let guard = crate::traffic::SigninGuard::new(&email);
    guard.check(st).await?;
    let user = if email.len() <= 254 {
        store::users::by_email(&st.db, &email).await?
    } else {
        None
    };
    let password = if req.password.chars().count() <= domain::account::Password::MAX_CHARS {
        req.password.as_str()
    } else {
        ""
    };
    let ok = st
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?
        && !password.is_empty();
    let user = match user {
        Some(u) if ok => u,
        known => {
            guard.failed(st).await?;
            st.metrics.incr("auth.signin.failure");
            record_signin(
                st,
                known.as_ref().map(|u| (u.id, u.role.as_str())),
                "failure",
            )
            .await?;
            tracing::info!("auth signin failure");
            return Err(wrong());
        }
    };
    guard.succeeded(st).await?;
    if !user.status.is_active() {
        st.metrics.incr("auth.signin.failure");
        record_signin(
            st,
            Some((user.id, user.role.as_str())),
            user.status.as_str(),
        )
        .await?;
        return Err(AppError::Forbidden(if user.status == UserStatus::Pending {
            "This account is waiting for an administrator to activate it.".into()
        } else {
            "This account is disabled.".into()
        }));
    }
    if let Err(e) = crate::services::access::require_approved(st, user.id).await {
        st.metrics.incr("auth.signin.failure");
        record_signin(st, Some((user.id, user.role.as_str())), "awaiting_approval").await?;
        return Err(e);
    }
    if let Some(step) = crate::services::mfa::second_step(st, &user).await? {
        record_signin(st, Some((user.id, user.role.as_str())), step.step).await?;
        st.metrics.incr("auth.signin.mfa_step");
        return Ok(SigninResult::SecondFactor(step));
    }
    let pair = open_session(st, user).await?;
    st.metrics.incr("auth.signin.success");
    tracing::info!(userId = %pair.user.id, role = %pair.user.role, "auth signin success");
    Ok(SigninResult::Tokens(pair))
}

/// Rotate a refresh token; a reused one ends its whole session.
pub async fn refresh(st: &AppState, req: RefreshRequest) -> Result<TokenPair> {
    let refused = || AppError::Unauthorized("The refresh token is not valid; sign in again.");
    let hash = st.keys.refresh_hash(req.refresh_token.trim());
    let mut tx = st.db.begin().await?;
    let found = store::sessions::find_refresh(&mut tx, &hash)
        .await?
        .ok_or_else(refused)?;
    let now = store::now();
    if found.used_at.is_none()
        && found.session_revoked_at.is_none()
        && found.session_seen_at <= crate::auth::extract::idle_cutoff(st, now)
    {
        // Idle past AMAL_IDLE_TIMEOUT: the session ends here for good (the
        // token is not consumed; the revoked session refuses it from now on).
        store::sessions::revoke(&mut tx, found.session_id, "idle").await?;
        let ev = own_event(
            AuditAction::AuthRefresh,
            "idle_timeout",
            found.user_id,
            found.role.as_str(),
            "session",
            found.session_id,
        );
        store::audit::append(&mut tx, &[ev]).await?;
        tx.commit().await?;
        st.metrics.incr("auth.refresh.idle");
        tracing::info!(userId = %found.user_id, "refresh refused: session idle past the limit");
        return Err(refused());
    }
    if found.used_at.is_some() || !store::sessions::mark_used(&mut tx, found.token_id).await? {
        // A rotated token came back: someone holds a copy. End the family.
        store::sessions::revoke(&mut tx, found.session_id, "refresh_reuse").await?;
        let ev = own_event(
            AuditAction::AuthRefresh,
            "reuse_detected",
            found.user_id,
            found.role.as_str(),
            "session",
            found.session_id,
        );
        store::audit::append(&mut tx, &[ev]).await?;
        tx.commit().await?;
        st.metrics.incr("auth.refresh.reuse_detected");
        tracing::warn!(userId = %found.user_id, "refresh token reuse detected; session revoked");
        return Err(refused());
    }
    if found.session_revoked_at.is_some()
        || found.session_expires_at <= now
        || found.expires_at <= now
        || !found.status.is_active()
    {
        return Err(refused());
    }
    store::sessions::touch_tx(&mut tx, found.session_id, now).await?;
    let (token, token_hash) = st.keys.new_refresh();
    store::sessions::add_refresh_token(
        &mut tx,
        found.session_id,
        &token_hash,
        found.session_expires_at,
    )
    .await?;
    tx.commit().await?;
    let user = store::users::by_id(&st.db, found.user_id)
        .await?
        .ok_or_else(refused)?;
    let access = st
        .keys
        .issue_access(user.id, user.role.as_str(), found.session_id)?;
    st.metrics.incr("auth.refresh.success");
    Ok(TokenPair {
        access_token: access,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
        refresh_token: token,
        user: user.into(),
    })
}

/// End the session a refresh token belongs to (quietly, if it is unknown).
pub async fn logout(st: &AppState, req: RefreshRequest) -> Result<()> {
    let hash = st.keys.refresh_hash(req.refresh_token.trim());
    let mut tx = st.db.begin().await?;
    if let Some(found) = store::sessions::find_refresh(&mut tx, &hash).await? {
        store::sessions::revoke(&mut tx, found.session_id, "logout").await?;
        let ev = own_event(
            AuditAction::AuthLogout,
            "success",
            found.user_id,
            found.role.as_str(),
            "session",
            found.session_id,
        );
        store::audit::append(&mut tx, &[ev]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The signed-in user's account.
pub async fn me(st: &AppState, user: &AuthUser) -> Result<UserView> {
    let u = store::users::by_id(&st.db, user.id)
        .await?
        .ok_or(AppError::Unauthorized("The account no longer exists."))?;
    Ok(u.into())
}
