//! Cross-cutting HTTP behaviour: request ids, client IPs, timeouts, request
//! logs, metrics, security headers, rate limits and audit of refused access.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::class::{classify, Class};
use crate::context::{self, RequestCtx};
use crate::error::AppError;
use crate::state::AppState;
use crate::traffic::{add_headers, charge, Subject};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client-sent request id is reused only when it is short and plain.
fn sane_request_id(h: &HeaderMap) -> Option<String> {
    let v = h.get(&REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    ok.then(|| v.to_string())
}

/// The client's IP: the socket peer, unless the peer is a trusted proxy, in
/// which case the right-most `X-Forwarded-For` entry that is not itself a
/// trusted proxy.
pub fn client_ip(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let trusted = |ip: IpAddr| state.config.trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(peer) {
        return peer;
    }
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    chain
        .into_iter()
        .rev()
        .find(|ip| !trusted(*ip))
        .unwrap_or(peer)
}

fn security_headers(h: &mut HeaderMap, path: &str) {
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-frame-options", "DENY");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    );
    if path.starts_with("/api") || path.starts_with("/fhir") || path == "/metrics" {
        set(h, "cache-control", "no-store");
    }
}

/// The outermost layer: request id, client IP, log span, timeout, metrics,
/// the request log line, security headers, and the audit of refused access.
pub async fn request_layer(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id =
        sane_request_id(req.headers()).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let ip = client_ip(&state, peer.ip(), req.headers());
    let ctx = RequestCtx::new(request_id.clone(), ip);
    if let Some(agent) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        ctx.set_user_agent(agent);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = route_template(&path);
    let class = classify(&method, &path);
    // ERROR level: a span below the configured level is disabled, and its
    // fields (the request id) would then be missing from every line logged
    // inside it, the 5xx lines included, at LOG_LEVEL=warn or error.
    let span = tracing::error_span!(
        "request",
        requestId = %request_id,
        userId = tracing::field::Empty,
        role = tracing::field::Empty,
    );
    let timeout = state.config.request_timeout;
    let inner = async {
        match tokio::time::timeout(timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => AppError::Timeout.into_response(),
        }
    };
    let mut resp = context::CTX
        .scope(ctx.clone(), inner.instrument(span.clone()))
        .await;
    if (resp.status().is_client_error() || resp.status().is_server_error())
        && !is_json(&resp)
        && !is_html(&resp)
    {
        let status = resp.status();
        resp = context::CTX.sync_scope(ctx.clone(), || as_problem(status));
    }
    if path.starts_with("/fhir/") {
        resp = crate::fhir::as_outcome(resp).await;
    }
    if is_json(&resp) {
        resp = escape_json_body(resp).await;
    }
    let status = resp.status();
    // The web router names its pages' class (a chart page is a read).
    let class = ctx.class().unwrap_or(class);

    if status == StatusCode::UNAUTHORIZED && ctx.user().is_none() {
        // Counted per IP; the first of an IP's minute is written now, the
        // rest as one summary when the minute ends (`anon_refusals`).
        let patient = patient_in_path(&path).flatten();
        let ip = ctx.client_ip.to_string();
        let opened = state
            .anon_refusals
            .count(&ip, &route, patient, std::time::Instant::now());
        if let Some(mut ev) = opened {
            ev.request_id = Some(ctx.request_id.clone());
            if let Err(e) = state.audit.record(ev).await {
                state.metrics.incr("audit.write_failure");
                tracing::error!(error = %e, "audit write failed");
            }
        }
    } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        if let Some(patient) = patient_in_path(&path) {
            audit_refusal(&state, &ctx, &route, status, patient).await;
        }
    }
    // A refused (403) or hidden (404) access by a signed-in user to an
    // existing note, lab or prescription is audited with its patient; so is
    // one whose patient came in the body (the service noted it).
    if matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) && ctx.user().is_some() {
        if let Some((kind, id)) = scoped_in_path(&path) {
            if let Ok(Some(patient)) = store::patients::owner_of(&state.db, kind, id).await {
                audit_refusal(&state, &ctx, &route, status, Some(patient)).await;
            }
        } else if patient_in_path(&path).is_none() {
            if let Some(patient) = ctx.refused_patient() {
                audit_refusal(&state, &ctx, &route, status, Some(patient)).await;
            }
        }
    }

    let elapsed = started.elapsed();
    let m = &state.metrics;
    m.incr("http.requests");
    m.observe(
        &class.metric_name(),
        telemetry::num::cap_u64(elapsed.as_micros()),
    );
    // A database fault is counted as one (`db.fault`, `db.fault.<kind>`),
    // not as a server bug in the auth 5xx alert.
    let fault = ctx.db_fault().filter(|_| status.is_server_error());
    if status.is_server_error() {
        m.incr("http.5xx");
    }
    if let Some((kind, audit)) = fault {
        m.incr("db.fault");
        m.incr(&format!("db.fault.{kind}"));
        if audit {
            m.incr("audit.write_failure");
        }
    }
    if let Class::Write(resource) = &class {
        let outcome = if status.is_client_error() || status.is_server_error() {
            "error"
        } else {
            "success"
        };
        m.incr(&format!("write.{resource}.{outcome}"));
    }
    if status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST {
        m.incr("http.validation_error");
    }
    if status.is_client_error() {
        m.incr("http.4xx");
    }
    if let Class::Auth(_) = class {
        m.incr("http.auth.requests");
        if status.is_server_error() && fault.is_none() {
            m.incr("http.auth.5xx");
        }
    }

    let (user, role) = ctx
        .user()
        .map(|(u, r)| (Some(u.to_string()), Some(r.as_str())))
        .unwrap_or((None, None));
    let duration_ms = (elapsed.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    span.in_scope(|| {
        let level_error = status.is_server_error();
        if level_error {
            // The request id is on the line itself too, whatever the span.
            tracing::error!(requestId = %request_id, method = %method, endpoint = %route, status = status.as_u16(), duration = duration_ms, userId = user, role = role, clientIp = %ip, fault = fault.map(|f| f.0.as_str()), "request failed");
        } else {
            tracing::info!(method = %method, endpoint = %route, status = status.as_u16(), duration = duration_ms, userId = user, role = role, "request");
        }
    });

    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert(REQUEST_ID, v);
    }
    security_headers(h, &path);
    resp
}

/// A page (the web UI's own error pages stay pages).
fn is_html(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
}

fn is_json(resp: &Response) -> bool {
    resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/json")
            || v.starts_with(b"application/problem+json")
            || v.starts_with(b"application/fhir+json")
    })
}

/// Escape `<`, `>` and `&` in JSON bodies as `\u003c`, `\u003e`, `\u0026`
/// (valid JSON, same value) so that stored hostile text can never turn into
/// markup even if a client puts a response straight into a page.
async fn escape_json_body(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return AppError::Internal(anyhow::anyhow!("response body unreadable")).into_response();
    };
    if !bytes.iter().any(|b| matches!(b, b'<' | b'>' | b'&')) {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len() + 32);
    for &b in bytes.iter() {
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            _ => out.push(b),
        }
    }
    let mut resp = Response::from_parts(parts, axum::body::Body::from(out));
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    resp
}

/// Framework rejections (a bad path parameter, a wrong method, a malformed
/// query string) arrive as plain text; answer them as problem documents too,
/// with a generic message that does not echo the input.
fn as_problem(status: StatusCode) -> Response {
    let (code, detail) = match status.as_u16() {
        400 => (
            "bad_request",
            "The URL, its query string or the body is not valid.",
        ),
        404 => ("not_found", "No such resource."),
        405 => (
            "method_not_allowed",
            "This method is not allowed on this resource.",
        ),
        413 => (
            "payload_too_large",
            "The request body is larger than 1 MiB.",
        ),
        415 => (
            "unsupported_media_type",
            "Send the body as application/json.",
        ),
        422 => ("validation_failed", "The request is not valid."),
        s if s >= 500 => (
            "internal_error",
            "Something went wrong on our side. The request id identifies it in the server log.",
        ),
        _ => ("error", "The request could not be handled."),
    };
    crate::error::problem(
        status,
        code,
        status.canonical_reason().unwrap_or("Error"),
        detail,
        None,
    )
}

/// The path with ids replaced by `{id}`, so logs and metrics name the route
/// and never carry identifiers or free text from the URL.
pub fn route_template(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if uuid::Uuid::parse_str(seg).is_ok()
                || seg
                    .chars()
                    .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
                || seg.len() > 40
            {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The patient id in `/api/patients/{id}…` (or the web UI's
/// `/patients/{id}…`, or FHIR's `/fhir/R4/Patient/{id}…`), if any.
fn patient_in_path(path: &str) -> Option<Option<uuid::Uuid>> {
    let rest = path
        .strip_prefix("/api/patients")
        .or_else(|| path.strip_prefix("/patients"))
        .or_else(|| path.strip_prefix("/fhir/R4/Patient"))?;
    let id = rest.trim_start_matches('/').split('/').next().unwrap_or("");
    Some(uuid::Uuid::parse_str(id).ok())
}

/// The patient-scoped row a path addresses by its own id, API or web.
fn scoped_in_path(path: &str) -> Option<(store::patients::Scoped, uuid::Uuid)> {
    use store::patients::Scoped;
    let path = path.strip_prefix("/api").unwrap_or(path);
    [
        ("/notes/", Scoped::Note),
        ("/labs/", Scoped::Lab),
        ("/prescriptions/", Scoped::Prescription),
    ]
    .into_iter()
    .find_map(|(prefix, kind)| {
        let id = path.strip_prefix(prefix)?.split('/').next()?;
        uuid::Uuid::parse_str(id).ok().map(|u| (kind, u))
    })
}

async fn audit_refusal(
    state: &AppState,
    ctx: &RequestCtx,
    route: &str,
    status: StatusCode,
    patient: Option<uuid::Uuid>,
) {
    let mut ev = store::audit::AuditEvent::new(
        "access.refused",
        match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::NOT_FOUND => "not_found",
            _ => "forbidden",
        },
    );
    if let Some((u, r)) = ctx.user() {
        ev.actor_id = Some(u);
        ev.actor_role = Some(r.as_str().to_string());
    }
    ev.resource_type = Some("patient".into());
    ev.patient_id = patient;
    ev.request_id = Some(ctx.request_id.clone());
    ev.client_ip = Some(ctx.client_ip.to_string());
    ev.detail = Some(serde_json::json!({ "route": route }).to_string());
    if let Err(e) = state.audit.record(ev).await {
        state.metrics.incr("audit.write_failure");
        tracing::error!(error = %e, "audit write failed");
    }
}

/// Rate limits for the API (SPEC §5): authenticate first (401), then count,
/// then let the handler authorize (403). Adds the `X-RateLimit-*` headers.
pub async fn rate_limit_layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let class = classify(req.method(), req.uri().path());
    let (mut parts, body) = req.into_parts();
    let who = match &class {
        Class::Auth(_) => Subject::Ip,
        Class::Other(_) => return next.run(Request::from_parts(parts, body)).await,
        _ => match crate::auth::extract::authenticate(&state, &parts.headers).await {
            Ok(u) => {
                parts.extensions.insert(u);
                Subject::User(u.id)
            }
            Err(e) => {
                // An IP that keeps failing to authenticate is slowed down.
                let ip = crate::context::current()
                    .map(|c| c.client_ip.to_string())
                    .unwrap_or_default();
                let now = std::time::Instant::now();
                if let Some(retry_after) = state.anon_refusals.retry_after(&ip, now) {
                    state.metrics.incr("rate_limit.hit");
                    state.metrics.incr("rate_limit.hit.unauthenticated");
                    state.alerts.record_rate_limit_hit(&ip);
                    return AppError::RateLimited { retry_after }.into_response();
                }
                return e.into_response();
            }
        },
    };
    let endpoint = route_template(parts.uri.path());
    let decision = match charge(&state, &class, who, &endpoint).await {
        Ok(Some(d)) => d,
        Ok(None) => return next.run(Request::from_parts(parts, body)).await,
        Err(e) => return e.into_response(),
    };
    let mut resp = if decision.allowed {
        next.run(Request::from_parts(parts, body)).await
    } else {
        AppError::RateLimited {
            retry_after: decision.reset_secs.max(1),
        }
        .into_response()
    };
    add_headers(&mut resp, &decision);
    resp
}

/// A panic inside a handler becomes a 500 problem document (no internals).
pub fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

pub fn json_content_type() -> (header::HeaderName, HeaderValue) {
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )
}
