//! Health, readiness and metrics.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::roles::Action;
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::error::{AppError, Result};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: &'static str,
    #[schema(value_type = Object)]
    pub checks: serde_json::Value,
    /// Names of the checks that failed (empty when healthy).
    pub failed_checks: Vec<&'static str>,
    pub version: &'static str,
    pub commit: &'static str,
    pub schema_version: Option<i64>,
    pub uptime_seconds: u64,
}

/// The outcome of one database check: `ok`, or the fault kind
/// (`timeout`, `disk_full`, `read_only`, …), `unreachable` when it did not
/// answer within the health timeout, or `error` for anything else.
fn check_outcome(
    r: std::result::Result<store::db::Result<()>, tokio::time::error::Elapsed>,
) -> &'static str {
    match r {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => e.fault().map(|k| k.as_str()).unwrap_or("error"),
        Err(_) => "unreachable",
    }
}

/// `checks.database` is `ok` when the database answers a read and commits
/// a write; otherwise `unreachable` (no read) or `unwritable` (reads only).
/// `checks.databaseRead` and `checks.databaseWrite` say which check failed
/// and why; `failedChecks` lists the failing ones.
#[utoipa::path(get, path = "/api/health", tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = Health, description = "Database unreachable or not accepting writes")))]
pub async fn health(State(st): State<AppState>) -> (StatusCode, Json<Health>) {
    let limit = std::time::Duration::from_secs(3);
    let read = check_outcome(tokio::time::timeout(limit, st.db.ping()).await);
    let write = if read == "ok" {
        check_outcome(tokio::time::timeout(limit, st.db.check_write()).await)
    } else {
        "skipped"
    };
    let db_ok = read == "ok" && write == "ok";
    let schema = if read == "ok" {
        store::migrate::current_version(&st.db).await.ok()
    } else {
        None
    };
    st.metrics
        .set_gauge("database.up", if db_ok { 1.0 } else { 0.0 });
    let database = match (read, write) {
        ("ok", "ok") => "ok",
        ("ok", _) => "unwritable",
        _ => "unreachable",
    };
    let mut failed = Vec::new();
    if read != "ok" {
        failed.push("databaseRead");
    }
    if write != "ok" {
        failed.push("databaseWrite");
    }
    let body = Health {
        status: if db_ok { "ok" } else { "degraded" },
        checks: serde_json::json!({
            "database": database,
            "databaseRead": read,
            "databaseWrite": write,
        }),
        failed_checks: failed,
        version: telemetry::build::release(),
        commit: telemetry::build::git_commit(),
        schema_version: schema,
        uptime_seconds: st.started.elapsed().as_secs(),
    };
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ready {
    pub ready: bool,
    pub database: &'static str,
    pub schema_version: Option<i64>,
    pub expected_schema_version: i64,
}

#[utoipa::path(get, path = "/api/health/ready", tag = "ops",
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
pub async fn ready(State(st): State<AppState>) -> (StatusCode, Json<Ready>) {
    let expected = store::migrate::latest_known(&st.db);
    let version = store::migrate::current_version(&st.db).await.ok();
    let ok = version == Some(expected);
    let body = Ready {
        ready: ok,
        database: if version.is_some() {
            "ok"
        } else {
            "unreachable"
        },
        schema_version: version,
        expected_schema_version: expected,
    };
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}

#[utoipa::path(get, path = "/api/metrics", tag = "ops", security(("bearer" = [])),
    responses((status = 200, description = "Counters and per-route-class durations (SPEC §8)"), (status = 401), (status = 403)))]
pub async fn metrics_json(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<Json<serde_json::Value>> {
    Ok(Json(crate::services::ops::metrics(&st, &user)?))
}

#[utoipa::path(get, path = "/api/metrics/history", tag = "ops", security(("bearer" = [])),
    responses((status = 200, body = Vec<telemetry::alerts::MetricsPoint>, description = "The metrics over time (this instance, a bounded ring; oldest first)"), (status = 401), (status = 403)))]
pub async fn metrics_history(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<telemetry::alerts::MetricsPoint>>> {
    Ok(Json(crate::services::ops::metrics_history(&st, &user)?))
}

#[utoipa::path(get, path = "/metrics", tag = "ops", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 401), (status = 403)))]
pub async fn metrics_prometheus(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let by_token = match (&st.config.metrics_token, token) {
        (Some(expected), Some(given)) => crate::credentials::tokens::same_secret(
            expected.expose_secret().as_bytes(),
            given.as_bytes(),
        ),
        _ => false,
    };
    if !by_token {
        let user = crate::auth::extract::authenticate(&st, &headers).await?;
        user.require(Action::ReadMetrics)?;
    }
    let mut resp = st.metrics.prometheus_text().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

impl From<std::convert::Infallible> for AppError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}
