//! The `AuthUser` extractor: a verified access token whose session is still
//! live, with the user's current role.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use domain::roles::{Action, Role};
use uuid::Uuid;

use crate::error::AppError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: Role,
    pub session: Uuid,
}

impl AuthUser {
    /// 403 unless the permission table lets this user's role do `action`.
    pub fn require(&self, action: Action) -> Result<(), AppError> {
        if self.role.may(action) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "The {} role may not do this.",
                self.role.as_str()
            )))
        }
    }
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Verify the request's bearer token and its session.
pub async fn authenticate(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<AuthUser, AppError> {
    let token = bearer(headers).ok_or(AppError::Unauthorized(
        "Sign in first: no access token was sent.",
    ))?;
    authenticate_token(state, token).await
}

/// Sessions whose last request is at or before this instant have ended
/// (`AMAL_IDLE_TIMEOUT`).
pub fn idle_cutoff(
    state: &AppState,
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    now - chrono::Duration::from_std(state.config.idle_timeout).unwrap_or(chrono::Duration::MAX)
}

/// How stale the recorded last request may get before a request writes it
/// again: a quarter of the limit, at most 30 s, so the limit is kept to
/// within that margin without a write on every request.
fn touch_every(state: &AppState) -> chrono::Duration {
    let quarter = state.config.idle_timeout / 4;
    chrono::Duration::from_std(quarter.min(std::time::Duration::from_secs(30)))
        .unwrap_or(chrono::Duration::zero())
}

/// Verify an access token (a bearer header's, or the web UI's cookie) and
/// its session.
pub async fn authenticate_token(state: &AppState, token: &str) -> Result<AuthUser, AppError> {
    let claims = state
        .keys
        .verify_access(token)
        .ok_or(AppError::Unauthorized(
            "The access token is invalid or expired.",
        ))?;
    let now = store::now();
    let live = store::sessions::live(&state.db, claims.sid, idle_cutoff(state, now))
        .await?
        .filter(|s| {
            s.user_id == claims.sub
                && s.status.is_active()
                && Role::parse(&claims.role) == Some(s.role)
        })
        .ok_or(AppError::Unauthorized(
            "The session has ended; sign in again.",
        ))?;
    let role = live.role;
    if now - live.seen_at >= touch_every(state) {
        store::sessions::touch(&state.db, claims.sid, now).await?;
    }
    if let Some(ctx) = crate::context::current() {
        ctx.set_user(live.user_id, role);
    }
    let span = tracing::Span::current();
    span.record("userId", tracing::field::display(live.user_id));
    span.record("role", role.as_str());
    Ok(AuthUser {
        id: live.user_id,
        role,
        session: claims.sid,
    })
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The rate-limit layer may already have authenticated this request.
        if let Some(u) = parts.extensions.get::<AuthUser>() {
            return Ok(*u);
        }
        let u = authenticate(state, &parts.headers).await?;
        parts.extensions.insert(u);
        Ok(u)
    }
}
