//! The one rate-limit path (SPEC §5) for the API and the web UI: count a
//! request of a class against its key, and on refusal count it, log it and
//! feed the per-IP abuse alert. Each router answers a refusal its own way
//! (a problem document, a page).

use crate::class::Class;
use crate::config::Rate;
use crate::error::AppError;
use crate::ratelimit::Decision;
use crate::state::AppState;

/// Who a request is counted against.
pub enum Subject {
    /// Sign-in, sign-up and refresh are counted per client IP.
    Ip,
    /// Everything else per signed-in user.
    User(uuid::Uuid),
}

/// The key and rate of `class` for `who`, or `None` for uncounted classes.
fn bucket(st: &AppState, class: &Class, who: &Subject, ip: &str) -> Option<(String, Rate)> {
    let limits = st.config.rate_limits;
    let name = class.limit_name()?;
    let rate = match class {
        Class::Auth(_) => limits.auth,
        Class::Write(_) => limits.write,
        Class::Read(_) => limits.read,
        Class::Ai(_) => limits.ai,
        Class::Other(_) => return None,
    };
    let key = match (class, who) {
        (Class::Auth(a), _) => format!("auth:{a}:{ip}"),
        (_, Subject::User(id)) => format!("{name}:{id}"),
        (_, Subject::Ip) => format!("{name}:ip:{ip}"),
    };
    Some((key, rate))
}

/// Count one request; `Ok(None)` when its class is not limited.
pub async fn charge(
    st: &AppState,
    class: &Class,
    who: Subject,
    endpoint: &str,
) -> Result<Option<Decision>, AppError> {
    let ip = crate::context::current()
        .map(|c| c.client_ip.to_string())
        .unwrap_or_default();
    let Some((key, rate)) = bucket(st, class, &who, &ip) else {
        return Ok(None);
    };
    // A counter store that is down is a database fault (503), not a bug.
    let decision = st.limiter.hit(&key, rate).await.map_err(AppError::from)?;
    if !decision.allowed {
        let name = class.limit_name().unwrap_or("other");
        st.metrics.incr("rate_limit.hit");
        st.metrics.incr(&format!("rate_limit.hit.{name}"));
        st.alerts.record_rate_limit_hit(&ip);
        tracing::warn!(endpoint = %endpoint, clientIp = %ip, class = name, "rate limit exceeded");
    }
    Ok(Some(decision))
}

/// The `X-RateLimit-*` headers of a counted request.
pub fn add_headers(resp: &mut axum::response::Response, d: &Decision) {
    use axum::http::HeaderValue;
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(d.reset_secs));
}

/// Failed sign-in limits (SPEC §5): per (account, IP) and per IP a plain
/// limit; per account (all IPs) a growing delay after the free failures
/// instead of a lockout, which an IP the account signed in from before
/// ("known", see [`crate::ratelimit::KNOWN_IP`]) skips — so failures from
/// other IPs never stop the owner signing in from their usual place.
pub struct SigninGuard {
    account: String,
    last: String,
    pair: String,
    ip: String,
    known: String,
}

impl SigninGuard {
    /// The counters of a sign-in to `email` from the request's client IP
    /// (the e-mail only as a hash).
    pub fn new(email: &str) -> SigninGuard {
        use sha2::{Digest, Sha256};
        let h = hex::encode(Sha256::digest(email.as_bytes()));
        let ip = crate::context::current()
            .map(|c| c.client_ip.to_string())
            .unwrap_or_default();
        SigninGuard {
            account: format!("signin-fail:{h}"),
            last: format!("signin-last:{h}"),
            pair: format!("signin-fail:{h}:{ip}"),
            ip: format!("signin-fail-ip:{ip}"),
            known: format!("{}{h}:{ip}", store::ratelimit::LONG_LIVED),
        }
    }

    /// Before the password is checked: 429 with `Retry-After` when this IP
    /// has failed too often (for the account or overall), or the account
    /// is slowed down and this IP is not known to it.
    pub async fn check(&self, st: &AppState) -> Result<(), AppError> {
        let limits = st.config.rate_limits;
        let l = &st.limiter;
        let refuse = |secs: u64| {
            st.metrics.incr("auth.signin.locked");
            Err(AppError::RateLimited {
                retry_after: secs.max(1),
            })
        };
        for (key, rate) in [
            (&self.pair, limits.account_ip_failures),
            (&self.ip, limits.ip_failures),
        ] {
            let d = l.peek(key, rate).await?;
            if !d.allowed {
                return refuse(d.reset_secs);
            }
        }
        let fails = l.peek(&self.account, limits.account_failures).await?;
        let delay = domain::account::signin_delay_secs(
            fails.used,
            limits.account_failures.limit,
            domain::account::SIGNIN_DELAY_CAP_SECS,
        );
        if delay == 0 {
            return Ok(());
        }
        let Some(last) = l.stamped(&self.last, limits.account_failures).await? else {
            return Ok(());
        };
        let delay_ms = telemetry::num::cap_i64(u128::from(delay) * 1000);
        let wait_ms = last.saturating_add(delay_ms) - chrono::Utc::now().timestamp_millis();
        if wait_ms <= 0 || self.known_ip(st).await? {
            return Ok(());
        }
        refuse(u64::try_from((wait_ms + 999) / 1000).unwrap_or(1))
    }

    async fn known_ip(&self, st: &AppState) -> Result<bool, AppError> {
        // Any success in this window or the previous one makes it known.
        let d = st
            .limiter
            .peek(&self.known, crate::ratelimit::KNOWN_IP)
            .await?;
        Ok(d.remaining < d.limit)
    }

    /// A wrong password (or unknown account): count it everywhere.
    pub async fn failed(&self, st: &AppState) -> Result<(), AppError> {
        let limits = st.config.rate_limits;
        let l = &st.limiter;
        l.hit(&self.pair, limits.account_ip_failures).await?;
        l.hit(&self.ip, limits.ip_failures).await?;
        l.hit(&self.account, limits.account_failures).await?;
        l.stamp(&self.last, limits.account_failures).await?;
        Ok(())
    }

    /// The right password: this IP is now known to the account.
    pub async fn succeeded(&self, st: &AppState) -> Result<(), AppError> {
        st.limiter
            .hit(&self.known, crate::ratelimit::KNOWN_IP)
            .await?;
        Ok(())
    }
}
