//! The HTTP server of Dr Amal Clinical OS: JSON API, auth, rate limits,
//! logs, metrics and health. Routes and the OpenAPI document come from one
//! source (`utoipa-axum`), so the published spec cannot drift from the router.

pub mod alert_task;
pub mod anon_refusals;
pub mod audit_checkpoint;
pub mod auth;
pub mod class;
pub mod config;
pub mod config_audit;
pub mod conn;
pub mod context;
pub mod credentials;
pub mod error;
pub mod extract;
pub mod fhir;
pub mod first_run;
pub mod http;
pub mod mllp;
pub mod pem;
pub mod ratelimit;
pub mod routes;
pub mod services;
pub mod settings;
pub mod state;
pub mod text_patterns;
pub mod tls;
pub mod traffic;
pub mod web;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::{Config, RawConfig};
pub use state::AppState;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Dr Amal Clinical OS API", description = "Clinical records for clinics. Errors are RFC 9457 problem documents."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The API routes and their OpenAPI description, from one definition.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::auth::signup))
        .routes(routes!(routes::auth::signin))
        .routes(routes!(routes::auth::refresh))
        .routes(routes!(routes::auth::logout))
        .routes(routes!(routes::auth::me))
        .routes(routes!(routes::account::mfa_status))
        .routes(routes!(routes::account::mfa_setup))
        .routes(routes!(routes::account::mfa_confirm))
        .routes(routes!(routes::account::mfa_verify))
        .routes(routes!(
            routes::account::list_sessions,
            routes::account::revoke_all_sessions
        ))
        .routes(routes!(routes::account::revoke_session))
        .routes(routes!(routes::account::change_password))
        .routes(routes!(routes::account::set_password))
        .routes(routes!(routes::account::admin_revoke_sessions))
        .routes(routes!(routes::account::admin_reset_mfa))
        .routes(routes!(routes::account::admin_reset_password))
        .routes(routes!(
            routes::users::list_users,
            routes::users::create_user
        ))
        .routes(routes!(routes::users::update_user))
        .routes(routes!(
            routes::users::create_invite,
            routes::users::list_invites
        ))
        .routes(routes!(routes::users::revoke_invite))
        .routes(routes!(routes::ops::health))
        .routes(routes!(routes::ops::ready))
        .routes(routes!(routes::ops::metrics_json))
        .routes(routes!(routes::ops::metrics_history))
        .routes(routes!(routes::ops::metrics_prometheus))
        .routes(routes!(alert_task::list_alerts))
        .routes(routes!(routes::patients::search, routes::patients::create))
        .routes(routes!(routes::patients::get, routes::patients::update))
        .routes(routes!(routes::patients::add_allergy))
        .routes(routes!(routes::patients::update_allergy))
        .routes(routes!(routes::patients::state_no_known_allergies))
        .routes(routes!(routes::patients::add_problem))
        .routes(routes!(routes::patients::update_problem))
        .routes(routes!(routes::patients::banner))
        .routes(routes!(
            routes::patients::list_vitals,
            routes::patients::create_vitals
        ))
        .routes(routes!(routes::overview::chart))
        .routes(routes!(routes::overview::day))
        .routes(routes!(routes::notes::list, routes::notes::create))
        .routes(routes!(
            routes::notes::get,
            routes::notes::update,
            routes::notes::discard
        ))
        .routes(routes!(routes::notes::finalize))
        .routes(routes!(routes::notes::add_addendum))
        .routes(routes!(
            routes::prescriptions::list,
            routes::prescriptions::create
        ))
        .routes(routes!(routes::prescriptions::get))
        .routes(routes!(routes::prescriptions::issue))
        .routes(routes!(routes::prescriptions::cancel))
        .routes(routes!(routes::labs::list, routes::labs::create))
        .routes(routes!(routes::labs::trend))
        .routes(routes!(routes::labs::import_hl7))
        .routes(routes!(routes::labs::get))
        .routes(routes!(routes::labs::review))
        .routes(routes!(routes::ai::generate_note))
        .routes(routes!(routes::ai::explain))
        .routes(routes!(routes::audit::list))
        .routes(routes!(routes::audit::verify))
        .routes(routes!(routes::access::explain))
        .routes(routes!(routes::access::break_glass))
        .routes(routes!(routes::access::review_queue))
        .routes(routes!(routes::access::review_break_glass))
        .routes(routes!(routes::access::review_account))
        .routes(routes!(
            routes::access::list_teams,
            routes::access::create_team
        ))
        .routes(routes!(
            routes::access::get_team,
            routes::access::update_team,
            routes::access::delete_team
        ))
        .routes(routes!(routes::access::set_membership))
}

/// The OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    with_common_responses(api().split_for_parts().1)
}

/// Answers every operation can give, added to each operation that does not
/// list them itself (the contract fuzzing found them undocumented): 400 for
/// a malformed path, query or body, 503 with `Retry-After` for a database
/// fault; and for an operation with a request body 415 (not JSON) and 422
/// (well-formed JSON of the wrong shape), 413 (too large).
fn with_common_responses(mut spec: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::ResponseBuilder;
    if let Some(c) = spec.components.as_mut() {
        c.schemas.values_mut().for_each(|s| {
            if let utoipa::openapi::RefOr::T(s) = s {
                text_patterns::apply(s);
            }
        });
    }
    let problem = |d: &str| ResponseBuilder::new().description(d).build();
    for item in spec.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let mut common = vec![
                (
                    "400",
                    "`bad_request`: a malformed path, query string or body",
                ),
                (
                    "503",
                    "`service_unavailable`: the database is unavailable, with Retry-After",
                ),
            ];
            let has_query = op
                .parameters
                .iter()
                .flatten()
                .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query));
            if has_query && op.request_body.is_none() {
                common.push((
                    "422",
                    "`validation_failed`: a query parameter the server refuses (e.g. a cursor it did not issue)",
                ));
            }
            if op.request_body.is_some() {
                common.extend([
                    ("413", "`payload_too_large`: the body is above 1 MiB"),
                    (
                        "415",
                        "`unsupported_media_type`: the body is not application/json",
                    ),
                    (
                        "422",
                        "`validation_failed`: well-formed JSON with bad fields",
                    ),
                ]);
            }
            // A query or header parameter is text or absent, never JSON
            // `null`: `Option<T>` documents it as optional, not nullable.
            for param in op.parameters.iter_mut().flatten() {
                if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(o))) =
                    param.schema.as_mut()
                {
                    if let utoipa::openapi::schema::SchemaType::Array(types) = &o.schema_type {
                        let kept: Vec<_> = types
                            .iter()
                            .filter(|t| **t != utoipa::openapi::schema::Type::Null)
                            .cloned()
                            .collect();
                        if let [only] = kept.as_slice() {
                            o.schema_type = utoipa::openapi::schema::SchemaType::Type(only.clone());
                        }
                    }
                }
            }
            for (status, description) in common {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| problem(description).into());
            }
        }
    }
    spec
}

/// The complete application router.
pub fn router(state: AppState) -> Router {
    let (api_router, spec) = api().split_for_parts();
    let spec = with_common_responses(spec);
    let spec_json = spec.to_pretty_json().unwrap_or_default();
    api_router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let body = spec_json.clone();
                async move { ([http::json_content_type()], body) }
            }),
        )
        .merge(routes::fhir::router())
        .merge(web::router(state.clone()))
        .fallback(web::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::rate_limit_layer,
        ))
        .layer(CatchPanicLayer::custom(http::panic_response))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::request_layer,
        ))
        .with_state(state)
}

/// Refuse to start on storage that cannot be written: the data folder (for
/// SQLite, or whenever it exists: secrets, backups) and, on SQLite, the
/// database folder and files. Each message names the path and the cause.
pub fn check_storage(config: &Config) -> anyhow::Result<()> {
    let sqlite = store::db::engine_of(&config.database_url).ok() == Some(store::Engine::Sqlite);
    let dir = &config.data_dir;
    if sqlite && !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data folder {}: {}",
                dir.display(),
                store::db::io_cause(&e)
            )
        })?;
    }
    if dir.is_dir() {
        store::db::check_dir_writable(dir).map_err(|cause| {
            anyhow::anyhow!("the data folder {} is not writable: {cause}", dir.display())
        })?;
    }
    if sqlite {
        store::db::preflight_sqlite(&config.database_url).map_err(|m| anyhow::anyhow!(m))?;
        if let Some(file) = store::db::sqlite_file(&config.database_url) {
            store::db::private_sqlite_files(&file).map_err(|e| {
                anyhow::anyhow!(
                    "cannot make {} private (mode 0600): {}",
                    file.display(),
                    store::db::io_cause(&e)
                )
            })?;
        }
    }
    Ok(())
}

/// A start-up database error in words: the SQLite file (or "PostgreSQL")
/// and, for a fault, what kind it is, not only the driver's code.
fn open_error(config: &Config, e: store::StoreError) -> anyhow::Error {
    let what = match store::db::sqlite_file(&config.database_url) {
        Some(f) => format!("the SQLite database {}", f.display()),
        None => "the PostgreSQL database named by DATABASE_URL".to_string(),
    };
    if let store::StoreError::Unreadable(why) = &e {
        return anyhow::anyhow!("cannot open {what}: {why}");
    }
    let cause = match e.fault() {
        Some(store::FaultKind::DiskFull) => "the disk is full".to_string(),
        Some(store::FaultKind::ReadOnly) => "it is read-only".to_string(),
        Some(store::FaultKind::CantOpen) => {
            "the file or its folder cannot be opened (permissions?)".to_string()
        }
        Some(store::FaultKind::Io) => {
            "the storage failed a read or write (a full disk or failing device?)".to_string()
        }
        Some(store::FaultKind::Timeout | store::FaultKind::Connection) => {
            "the server cannot be reached".to_string()
        }
        Some(k) => k.as_str().replace('_', " "),
        None => "it cannot be opened".to_string(),
    };
    anyhow::anyhow!("cannot open {what}: {cause} ({e})")
}

/// Connect, migrate (unless told not to) and build the state.
pub async fn prepare(config: Config, migrate: bool) -> anyhow::Result<AppState> {
    check_storage(&config)?;
    config.install_db_key();
    let options = store::DbOptions {
        acquire_timeout: config.db_acquire_timeout,
    };
    let db = store::Db::connect_with(&config.database_url, options)
        .await
        .map_err(|e| open_error(&config, e))?;
    store::migrate::guard_not_newer(&db).await?;
    if migrate {
        let from = store::migrate::current_version(&db).await.unwrap_or(0);
        if let Err(e) = store::migrate::up(&db).await {
            db.close().await;
            return Err(match e.fault() {
                Some(_) => open_error(&config, e),
                None => e.into(),
            });
        }
        let to = store::migrate::current_version(&db).await?;
        // An upgrade is recorded; a new database's first schema is not
        // (there was nothing to change).
        if from > 0 && to != from {
            let mut ev = store::audit::AuditEvent::new(
                domain::audit::AuditAction::SchemaMigrate.as_str(),
                "success",
            );
            ev.detail = Some(
                serde_json::json!({ "via": "serve", "direction": "up", "from": from, "to": to })
                    .to_string(),
            );
            store::audit::append_now(&db, &[ev]).await?;
        }
    } else {
        let (current, known) = (
            store::migrate::current_version(&db).await?,
            store::migrate::latest_known(&db),
        );
        if current < known {
            tracing::warn!(
                schemaVersion = current,
                expected = known,
                "schema is behind this release; run `amal migrate up`"
            );
        }
    }
    // Refuse a database that opens but cannot be written (read-only file
    // or file system, wedged lock): it would fail every write after start.
    // A non-fault error here (no heartbeat table) means an unmigrated schema,
    // which the schema warning above already covers.
    if let Err(e) = db.check_write().await {
        if e.fault().is_some() {
            db.close().await;
            return Err(open_error(&config, e).context("the database does not accept writes"));
        }
    }
    // Configuration changes are audited: one event per start. Under
    // `--no-migrate` a schema behind this release may not take the event;
    // that start is then warned about, not refused (as the schema itself).
    if let Err(e) = config_audit::record_loaded(&db, &config).await {
        if migrate {
            db.close().await;
            return Err(anyhow::Error::from(e).context("cannot audit the configuration"));
        }
        tracing::warn!(error = %e, "the configuration could not be audited");
    }
    let state = AppState::new(db, config)?;
    if store::users::count_all(&state.db).await? == 0 {
        state.first_run.arm();
    }
    spawn_housekeeping(state.clone());
    alert_task::spawn(state.clone());
    audit_checkpoint::spawn(state.clone());
    spawn_refusal_flush(state.clone());
    Ok(state)
}

/// Write the summaries of ended anonymous-refusal windows every few seconds.
fn spawn_refusal_flush(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            for ev in state.anon_refusals.drain_ended(std::time::Instant::now()) {
                if let Err(e) = state.audit.record(ev).await {
                    state.metrics.incr("audit.write_failure");
                    tracing::error!(error = %e, "audit write failed");
                }
            }
        }
    });
}

fn spawn_housekeeping(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(e) = state.limiter.prune().await {
                tracing::warn!(error = %e, "rate-limit pruning failed");
            }
            if let Err(e) = services::export::sweep(&state, store::now()).await {
                tracing::warn!(error = %e, "removing expired FHIR exports failed");
            }
        }
    });
}

/// Serve on `listener` until `shutdown` resolves, then drain in-flight requests.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(state.clone());
    conn::serve_connections(listener, app, state.config.header_read_timeout, shutdown).await;
    state.db.close().await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}
