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
