//! What each subcommand does.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context};
use domain::account::{Email, Password, PersonName};
use domain::roles::Role;

use crate::cli::{
    AuditAction, BackupAction, Cli, Command, ConfigAction, DbAction, ImportAction, MigrateAction,
    SecretsAction, UserAction,
};

/// Validate the configuration or explain every problem.
/// The configuration, with its SQLCipher key (if any) installed for every
/// SQLite file this command opens.
fn resolve(raw: server::RawConfig) -> anyhow::Result<server::Config> {
    let cfg = server::Config::resolve(raw).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
        anyhow::anyhow!("the configuration is not valid:\n{}", list.join("\n"))
    })?;
    cfg.install_db_key();
    Ok(cfg)
}

/// `amal audit verify|checkpoint|keygen`.
async fn audit(cfg: server::Config, action: AuditAction) -> anyhow::Result<ExitCode> {
    match action {
        AuditAction::Verify => {
            let db = crate::database::connect(&cfg).await?;
            let report = server::services::audit::verify_chain(&db, &cfg.audit).await;
            db.close().await;
            let report = report?;
            if report.valid {
                println!(
                    "audit chain intact: {} events ({} legacy), head {}; checked against {} signed \
                     checkpoint(s){}",
                    report.events,
                    report.legacy_events,
                    report.head_hash,
                    report.checkpoints_checked,
                    report
                        .latest_checkpoint_seq
                        .map(|s| format!(", the newest at sequence {s}"))
                        .unwrap_or_default()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "audit chain BROKEN at sequence {}{}: {}; {} events before it verify",
                    report.first_broken_seq.unwrap_or_default(),
                    report
                        .first_broken_id
                        .map(|i| format!(" (event {i})"))
                        .unwrap_or_default(),
                    report.reason.as_deref().unwrap_or("unknown"),
                    report.events
                );
                Ok(ExitCode::FAILURE)
            }
        }
        AuditAction::Checkpoint => {
            let db = crate::database::connect(&cfg).await?;
            let c = server::audit_checkpoint::take(&db, &cfg.audit).await;
            db.close().await;
            let c = c?;
            println!(
                "checkpoint written to {}: sequence {}, head {}",
                store::checkpoint::file_in(&cfg.audit.checkpoint_dir).display(),
                c.seq,
                c.head_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditAction::Keygen { .. } => unreachable!("handled without a configuration"),
    }
}

/// Create `file` (it must not exist) readable by its owner only, holding `text`.
fn write_new_private(file: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    use std::io::Write;
    writeln!(f, "{text}")?;
    f.sync_all()?;
    Ok(())
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let raw = cli.settings.raw();
    match cli.command {
        // Key generation needs no configuration (it comes before one is valid).
        Command::Audit {
            action: AuditAction::Keygen { file },
        } => {
            write_new_private(&file, &store::checkpoint::generate_signing_key())?;
            println!(
                "checkpoint signing key written to {} (mode 0600)",
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup {
            action: Some(BackupAction::Keygen { file }),
            ..
        } => {
            use secrecy::ExposeSecret;
            let (identity, public) = backup::keys::generate();
            let text = format!(
                "# amal backup key; public key (recipient): {public}\n{}",
                identity.expose_secret()
            );
            write_new_private(&file, &text)?;
            println!("backup key written to {} (mode 0600)", file.display());
            println!("public key: {public}");
            println!(
                "set AMAL_BACKUP_KEY_FILE={} and keep a copy of the file offline: without it \
                 no backup can be opened",
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { no_migrate } => serve(raw, no_migrate).await,
        Command::Migrate { action } => migrate(resolve(raw)?, action).await,
        Command::User { action } => user(resolve(raw)?, action).await,
        Command::Secrets {
            action: SecretsAction::Generate,
        } => {
            println!("JWT_SECRET={}", server::config::generate_secret());
            println!("JWT_REFRESH_SECRET={}", server::config::generate_secret());
            println!("AUDIT_KEY={}", server::config::generate_secret());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            action: ConfigAction::Check,
        } => match server::Config::resolve(raw) {
            Ok(cfg) => {
                println!(
                    "configuration is valid ({} mode, {} database {}, listening on {})",
                    if cfg.env == server::config::Environment::Production {
                        "production"
                    } else {
                        "development"
                    },
                    match store::db::engine_of(&cfg.database_url) {
                        Ok(store::Engine::Postgres) => "PostgreSQL",
                        _ => "SQLite",
                    },
                    cfg.at_rest(),
                    cfg.bind
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => {
                eprintln!("the configuration is not valid:");
                for p in problems {
                    eprintln!("  - {p}");
                }
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Audit { action } => audit(resolve(raw)?, action).await,
        Command::Demo {
            patients,
            keep,
            password,
        } => demo(raw, patients, keep, password).await,
        Command::Backup { action, to } => {
            crate::backup_commands::backup_command(resolve(raw)?, action, to).await
        }
        Command::Db {
            action: DbAction::Encrypt,
        } => crate::db_encrypt::run(resolve(raw)?).await,
        Command::Restore { file, force } => {
            crate::backup_commands::restore_command(resolve(raw)?, &file, force).await
        }
        Command::Smoke {
            url,
            admin_email,
            admin_password,
            totp_secret,
            metrics_token,
            ca_cert,
            timeout,
        } => {
            crate::smoke::run(crate::smoke::Options {
                url,
                admin_email,
                admin_password,
                totp_secret,
                metrics_token,
                ca_cert,
                timeout_secs: timeout,
            })
            .await
        }
        Command::Import {
            action:
                ImportAction::Hl7 {
                    path,
                    user,
                    verbose,
                },
        } => crate::import::hl7(resolve(raw)?, &path, &user, verbose).await,
        Command::Version => {
            println!("amal {}", telemetry::build::release());
            println!("commit {}", telemetry::build::git_commit());
            let known = store::migrate::latest_known_static();
            println!("schema version (this release) {known}");
            if let Ok(cfg) = resolve(raw) {
                if let Ok(db) = store::Db::connect(&cfg.database_url).await {
                    if let Ok(v) = store::migrate::current_version(&db).await {
                        println!("schema version (database) {v}");
                    }
                    if let store::Db::Sqlite(s) = &db {
                        if let Some(v) = store::cipher::cipher_version(&s.read).await {
                            println!("sqlite library SQLCipher {v}");
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(raw: server::RawConfig, no_migrate: bool) -> anyhow::Result<ExitCode> {
    let level = raw.log_level.clone().unwrap_or_else(|| "info".into());
    telemetry::logging::init(&level);
    let cfg = match server::Config::resolve(raw) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                tracing::error!(setting = p.setting, problem = %p.message, "invalid configuration");
            }
            bail!(
                "refusing to start: {}",
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
    };
    if cfg.env == server::config::Environment::Production
        && !cfg.binds_loopback()
        && cfg.tls.is_none()
    {
        tracing::warn!(bind = %cfg.bind, "serving plain HTTP on a non-loopback address; put a TLS-terminating reverse proxy in front");
    }
    let listener = tokio::net::TcpListener::bind(&cfg.bind)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.bind))?;
    let addr = listener.local_addr()?;
    let certs = match &cfg.tls {
        Some(files) => Some(server::tls::CertStore::open(files)?),
        None => None,
    };
    let state = server::prepare(cfg, !no_migrate).await?;
    // The HL7 MLLP listener (off unless AMAL_HL7_MLLP_ADDR is set); it stops
    // with the process: a message cut off mid-import is rolled back and,
    // without its ACK, sent again by the lab (imports are idempotent).
    server::mllp::start(&state).await?;
    if let Some(schedule) = state.backup_schedule() {
        backup::schedule::spawn(schedule);
    }
    let schema = store::migrate::current_version(&state.db)
        .await
        .unwrap_or(0);
    server::tls::reload_on_sighup(certs.clone())?;
    let scheme = if certs.is_some() { "https" } else { "http" };
    tracing::info!(address = %addr, scheme, release = telemetry::build::release(), schemaVersion = schema, "listening");
    if let Some(code) = state.first_run.code() {
        // An unspecified bind address (0.0.0.0) is reached as localhost here.
        let host = if addr.ip().is_unspecified() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        let url = server::first_run::setup_url(&format!("{scheme}://{host}"), &code);
        // On stderr: stdout carries the JSON log lines, one object each.
        eprintln!(
            "\nFirst run: no account exists yet. Open this link in a browser to create the administrator\n(it works once; restarting prints a new one):\n\n    {url}\n"
        );
        tracing::warn!(setupUrl = %url, "first run: open the setup link to create the administrator");
    }
    match certs {
        Some(certs) => {
            server::tls::serve_tls(state, listener, certs, server::shutdown_signal()).await?
        }
        None => server::serve(state, listener, server::shutdown_signal()).await?,
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn migrate(cfg: server::Config, action: MigrateAction) -> anyhow::Result<ExitCode> {
    use domain::audit::AuditAction::SchemaMigrate;
    let db = crate::database::connect(&cfg).await?;
    match action {
        MigrateAction::Status => {
            let current = store::migrate::current_version(&db).await?;
            println!(
                "database schema version: {current} (this release knows up to {})",
                store::migrate::latest_known(&db)
            );
            for m in store::migrate::status(&db).await? {
                println!(
                    "  {:>4}  {:<9} {}",
                    m.version,
                    if m.applied { "applied" } else { "pending" },
                    m.description
                );
            }
            if current > store::migrate::latest_known(&db) {
                println!("the database is NEWER than this release; roll back with the newer binary: amal migrate down --to {}", store::migrate::latest_known(&db));
            }
        }
        MigrateAction::Up => {
            let from = store::migrate::current_version(&db).await?;
            store::migrate::up(&db).await?;
            let to = store::migrate::current_version(&db).await?;
            // A new database's first schema is not an event (as in `serve`).
            if from > 0 && to != from {
                let detail =
                    serde_json::json!({ "via": "cli", "direction": "up", "from": from, "to": to });
                store::audit::record_operation(&db, SchemaMigrate, "success", detail).await?;
            }
            println!("schema is at version {to}");
        }
        MigrateAction::Down { to } => {
            let current = store::migrate::current_version(&db).await?;
            let target = match to {
                Some(t) if t < 0 => bail!("--to must be 0 or a migration version"),
                Some(t) => t,
                None => {
                    let applied = store::migrate::applied_versions(&db).await?;
                    applied.iter().rev().nth(1).copied().unwrap_or(0)
                }
            };
            // Recorded before: the rollback may remove what records it.
            if target < current {
                let detail = serde_json::json!({ "via": "cli", "direction": "down", "from": current, "to": target });
                store::audit::record_operation(&db, SchemaMigrate, "started", detail).await?;
            }
            store::migrate::down(&db, target).await?;
            println!(
                "schema rolled back from version {current} to {}",
                store::migrate::current_version(&db).await?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn user(cfg: server::Config, action: UserAction) -> anyhow::Result<ExitCode> {
    let (email, role, name, password_stdin) = match action {
        UserAction::Create {
            email,
            role,
            name,
            password_stdin,
        } => (email, role, name, password_stdin),
        UserAction::ResetMfa { email } => return user_recovery(cfg, &email, false).await,
        UserAction::ResetPassword { email } => return user_recovery(cfg, &email, true).await,
    };
    let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("{e}"))?;
    let role = Role::parse(&role)
        .ok_or_else(|| anyhow::anyhow!("--role must be admin, provider, nurse or staff"))?;
    let name = name.unwrap_or_else(|| {
        email
            .as_str()
            .split('@')
            .next()
            .unwrap_or("user")
            .to_string()
    });
    let name = PersonName::parse("name", &name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let password = if password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let a = rpassword::prompt_password("Password (at least 12 characters): ")?;
        let b = rpassword::prompt_password("Repeat the password: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        a
    };
    let password = Password::parse(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
    let db = crate::database::connect(&cfg).await?;
    store::migrate::up(&db).await?;
    let hash = server::credentials::password::hash_blocking(password.expose())?;
    let mut tx = db.begin().await?;
    let created = store::users::insert(
        &mut tx,
        &store::users::NewUser {
            email: email.as_str(),
            name: name.as_str(),
            role,
            status: domain::account::UserStatus::Active,
            password_hash: &hash,
        },
    )
    .await
    .map_err(|e| match e {
        store::StoreError::Conflict(_) => {
            anyhow::anyhow!("an account with this e-mail already exists")
        }
        other => other.into(),
    })?;
    let mut ev = store::audit::AuditEvent::new("user.create", "success");
    ev.resource_type = Some("user".into());
    ev.resource_id = Some(created.id);
    ev.detail = Some(serde_json::json!({ "role": role.as_str(), "via": "cli" }).to_string());
    store::audit::append(&mut tx, &[ev]).await?;
    // A provider or nurse made by the operator is flagged like one an admin
    // made through the API (review queue; two-person rule). The alert
    // counter lives in the server process, so none fires from here.
    server::services::access::flag_account(
        &mut tx,
        &telemetry::metrics::Metrics::new(),
        cfg.two_person_rule,
        None,
        &created,
        "cli",
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    tx.commit().await?;
    println!(
        "created {} {} ({})",
        role.as_str(),
        created.email,
        created.id
    );
    Ok(ExitCode::SUCCESS)
}

/// `amal user reset-mfa` / `reset-password`: the administrator's recovery
/// tools of the web UI and API (the same service functions, audited with
/// `via: cli`).
async fn user_recovery(
    cfg: server::Config,
    email: &str,
    password: bool,
) -> anyhow::Result<ExitCode> {
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("{e}"))?;
    let db = crate::database::connect(&cfg).await?;
    store::migrate::up(&db).await?;
    let user = store::users::by_email(&db, email.as_str())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no account has this e-mail"))?;
    let state = server::AppState::new(db, cfg)?;
    let outcome = if password {
        server::services::account::admin_reset_password(&state, None, user.id)
            .await
            .map(|link| {
                println!(
                    "password of {} reset; its sessions have ended. Set-password link (once, until {}):\n{}",
                    user.email,
                    link.expires_at.to_rfc3339(),
                    link.path
                );
            })
    } else {
        server::services::account::admin_reset_mfa(&state, None, user.id)
            .await
            .map(|n| {
                println!(
                    "second factor of {} removed; {} sessions ended",
                    user.email, n.ended
                );
            })
    };
    state.db.close().await;
    outcome.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}

async fn demo(
    mut raw: server::RawConfig,
    patients: usize,
    keep: bool,
    password: Option<String>,
) -> anyhow::Result<ExitCode> {
    let dir = crate::demo::scratch_dir()?;
    raw.data_dir = Some(dir.clone());
    // A PostgreSQL URL is honoured (for benchmarks on PostgreSQL), but only
    // for an empty database: the demo never writes into a real clinic.
    let given_pg = raw
        .database_url
        .clone()
        .filter(|u| store::db::engine_of(u).ok() == Some(store::Engine::Postgres));
    raw.database_url = Some(
        given_pg
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("amal.db").display())),
    );
    raw.env = Some("development".into());
    raw.signup = raw.signup.or(Some("invite".into()));
    let password = password.unwrap_or_else(|| {
        use rand::Rng;
        let words = [
            "amber", "birch", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
            "juniper",
        ];
        let mut rng = rand::thread_rng();
        format!(
            "demo-{}-{}-{}",
            words[rng.gen_range(0..10)],
            words[rng.gen_range(0..10)],
            rng.gen_range(1000..9999)
        )
    });
    Password::parse(&password).map_err(|e| anyhow::anyhow!("demo password: {e}"))?;
    let cfg = resolve(raw)?;
    let db = crate::database::connect(&cfg).await?;
    if given_pg.is_some() && store::migrate::current_version(&db).await? > 0 {
        bail!("amal demo only fills an EMPTY PostgreSQL database; this one already has a schema");
    }
    store::migrate::up(&db).await?;
    let users = crate::demo::create_users(&db, &password).await?;
    let id_of = |role: &str| {
        users
            .iter()
            .find(|u| u.0 == role)
            .map(|u| u.1)
            .unwrap_or_default()
    };
    let started = std::time::Instant::now();
    crate::demo::seed(&db, patients, id_of("provider"), id_of("nurse")).await?;
    eprintln!(
        "generated {patients} patients in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    db.close().await;

    telemetry::logging::init(&cfg.log_level);
    let listener = tokio::net::TcpListener::bind(&cfg.bind)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.bind))?;
    let addr = listener.local_addr()?;
    let state = server::prepare(cfg, true).await?;
    println!();
    println!("Dr Amal demo clinic is running at http://{addr}/");
    println!("Every demo user signs in with the password: {password}");
    for role in crate::demo::DEMO_ROLES {
        println!("  {:<9} {}", role, crate::demo::demo_email(role));
    }
    println!(
        "Data (synthetic, deleted on exit{}): {}",
        if keep { " unless --keep" } else { "" },
        dir.display()
    );
    println!("Press Ctrl-C to stop.");
    println!();
    tracing::info!(address = %addr, "listening");
    server::serve(state, listener, server::shutdown_signal()).await?;
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(ExitCode::SUCCESS)
}
