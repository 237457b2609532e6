//! `TestApp`: the real router on a random port over a fresh database —
//! SQLite by default, PostgreSQL when `AMAL_TEST_DATABASE_URL` is set (each
//! test gets its own database on that server).

use std::net::SocketAddr;
use std::path::PathBuf;

use reqwest::{Method, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use server::{AppState, RawConfig};
use uuid::Uuid;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub raw: RawConfig,
}

pub fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("amal-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    seed_clinic_keys(&d);
    d
}

/// The audit keys of "the clinic" under test: one pair per test process,
/// so every data folder a test makes (a source and a restore target, a
/// second instance) holds the same keys, as every machine of one clinic
/// would. A test that needs other keys overwrites the files.
pub fn clinic_keys() -> &'static (String, String) {
    static KEYS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        (
            server::config::generate_secret(),
            store::checkpoint::generate_signing_key(),
        )
    })
}

/// Write the clinic's development audit keys into `dir` (0600), where
/// `amal` looks for them when `AUDIT_KEY` and the signing key file are not set.
pub fn seed_clinic_keys(dir: &std::path::Path) {
    let (key, signing) = clinic_keys();
    for (name, v) in [("audit.key", key), ("audit-signing.key", signing)] {
        let f = dir.join(name);
        std::fs::write(&f, format!("{v}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// Production mode with the clinic's audit keys given explicitly, as
/// production requires.
pub fn production(r: &mut RawConfig) {
    r.env = Some("production".into());
    r.audit_key = Some(SecretString::from(clinic_keys().0.clone()));
    r.audit_signing_key_file = r.data_dir.as_ref().map(|d| d.join("audit-signing.key"));
    r.backup_key_file = r.data_dir.as_ref().map(|d| backup_key_file(d));
}

/// A new age backup key file (0600) in `dir`.
pub fn backup_key_file(dir: &std::path::Path) -> PathBuf {
    use secrecy::ExposeSecret;
    let f = dir.join(format!("backup-{}.key", Uuid::new_v4().simple()));
    std::fs::write(&f, backup::keys::generate().0.expose_secret()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    f
}

/// A fresh, empty database URL for the engine under test.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    let pg = is_postgres();
    match std::env::var("AMAL_TEST_DATABASE_URL") {
        Ok(admin_url) if pg => {
            use sqlx::Connection;
            let name = format!("amal_t_{}", Uuid::new_v4().simple());
            let mut c = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await
                .unwrap();
            let base = admin_url
                .rsplit_once('/')
                .map(|x| x.0)
                .unwrap_or(&admin_url)
                .to_string();
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}", dir.join("amal.db").display()),
    }
}

pub fn is_postgres() -> bool {
    let pg = std::env::var("AMAL_TEST_DATABASE_URL")
        .map(|v| !v.is_empty())
        .unwrap_or(false);
    // The PostgreSQL pass of scripts/test.sh sets this: a run that silently
    // fell back to SQLite would skip every PostgreSQL-only test.
    assert!(
        pg || std::env::var("AMAL_REQUIRE_POSTGRES").as_deref() != Ok("1"),
        "AMAL_REQUIRE_POSTGRES=1 but AMAL_TEST_DATABASE_URL is not set"
    );
    pg
}

/// For a test that only means something on PostgreSQL: true to run it;
/// on SQLite it says why it is skipped (and `AMAL_REQUIRE_POSTGRES=1`
/// turns the skip into a failure, see [`is_postgres`]).
pub fn postgres_only(why: &str) -> bool {
    let pg = is_postgres();
    if !pg {
        eprintln!("skipped on SQLite: {why}");
    }
    pg
}

/// Settings every test app starts from: generous limits (tests of limits set
/// their own), fresh secrets, invite sign-up.
pub fn base_raw(dir: &std::path::Path, database_url: &str) -> RawConfig {
    RawConfig {
        database_url: Some(database_url.to_string()),
        data_dir: Some(dir.to_path_buf()),
        bind: Some("127.0.0.1:0".into()),
        jwt_secret: Some(SecretString::from(server::config::generate_secret())),
        jwt_refresh_secret: Some(SecretString::from(server::config::generate_secret())),
        rate_limit_auth: Some("10000/60s".into()),
        rate_limit_write: Some("10000/60s".into()),
        rate_limit_read: Some("10000/60s".into()),
        rate_limit_ai: Some("10000/60s".into()),
        // Tests that run in production mode (cookies, headers) use a
        // plaintext scratch database; the refusal of production SQLite
        // without encryption at rest is tested on its own (encryption.rs).
        disk_encrypted: Some("true".into()),
        ..Default::default()
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut RawConfig)) -> TestApp {
        let dir = temp_dir();
        let url = fresh_database_url(&dir).await;
        let mut raw = base_raw(&dir, &url);
        tweak(&mut raw);
        Self::spawn_raw(raw).await
    }

    /// Start another instance with exactly these settings (same database
    /// when the URL is the same).
    pub async fn spawn_raw(raw: RawConfig) -> TestApp {
        let cfg = server::Config::resolve(raw.clone()).expect("valid test config");
        let state = server::prepare(cfg.clone(), true)
            .await
            .expect("server prepares");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let st = state.clone();
        tokio::spawn(async move {
            let _ = server::serve(st, listener, std::future::pending()).await;
        });
        TestApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder().build().unwrap(),
            state,
            raw,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut rb = self.client.request(method, self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::POST, path, token, Some(body)).await
    }

    /// Create an active account directly in the store.
    pub async fn create_user(&self, role: &str) -> TestUser {
        let email = format!("{role}-{}@clinic.test", Uuid::new_v4().simple());
        let password = format!("pw-{}-long-enough", Uuid::new_v4().simple());
        let hash = server::credentials::password::hash_blocking(&password).unwrap();
        let mut tx = self.state.db.begin().await.unwrap();
        let u = store::users::insert(
            &mut tx,
            &store::users::NewUser {
                email: &email,
                name: "Test User",
                role: domain::roles::Role::parse(role).expect("a role"),
                status: domain::account::UserStatus::Active,
                password_hash: &hash,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        TestUser {
            id: u.id,
            email,
            password,
            role: role.to_string(),
        }
    }

    /// Create an account and sign it in.
    pub async fn signed_in(&self, role: &str) -> Session {
        let user = self.create_user(role).await;
        self.sign_in(&user).await
    }

    pub async fn sign_in(&self, user: &TestUser) -> Session {
        let r = self
            .post(
                "/api/auth/signin",
                None,
                json!({"email": user.email, "password": user.password}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "sign-in of {}", user.role);
        let v: Value = r.json().await.unwrap();
        Session {
            access: v["accessToken"].as_str().unwrap().to_string(),
            refresh: v["refreshToken"].as_str().unwrap().to_string(),
            user_id: user.id,
        }
    }
}

pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    pub role: String,
}

pub struct Session {
    pub access: String,
    pub refresh: String,
    pub user_id: Uuid,
}

/// Assert `r` is a problem document with `status` and `code`; return it.
pub async fn assert_problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(ct, "application/problem+json", "content type");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], code, "code in {v}");
    assert_eq!(v["status"], status);
    for k in ["type", "title", "detail", "requestId"] {
        assert!(v.get(k).is_some(), "{k} missing in {v}");
    }
    v
}

pub async fn audit_events(app: &TestApp) -> Vec<store::audit::StoredEvent> {
    store::audit::list(&app.state.db, &Default::default(), 10_000)
        .await
        .unwrap()
}

impl TestApp {
    pub async fn patch(
        &self,
        path: &str,
        token: &str,
        version: Option<i64>,
        body: Value,
    ) -> Response {
        let mut rb = self
            .client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(&body);
        if let Some(v) = version {
            rb = rb.header("If-Match", format!("\"{v}\""));
        }
        rb.send().await.expect("request sent")
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// Create a patient through the API; returns its JSON.
    pub async fn create_patient(&self, token: &str, given: &str, family: &str) -> Value {
        let r = self.post("/api/patients", Some(token), json!({"givenName": given, "familyName": family, "birthDate": "1980-04-12", "sex": "female", "confirmDuplicate": true})).await;
        // confirmDuplicate: tests that are not about duplicate registration
        // reuse names on purpose.
        assert_eq!(r.status(), StatusCode::CREATED, "create patient");
        r.json().await.unwrap()
    }

    pub async fn json_ok(&self, r: Response, expected: u16) -> Value {
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, expected, "body: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }
}

pub fn sid(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

/// Who may do what, written out from SPEC §2 (and §6 for addenda) — not read
/// from the permission table under test, so a wrong entry there fails the
/// role-matrix tests.
pub mod spec_roles {
    pub const ADMIN: &[&str] = &["admin"];
    pub const DESK_AND_CLINICIANS: &[&str] = &["provider", "nurse", "staff"];
    pub const CLINICIANS: &[&str] = &["provider", "nurse"];
    pub const PROVIDERS: &[&str] = &["provider"];
}

/// `amal audit verify` against the app's database and data folder: whether
/// it succeeded, and what it printed.
pub fn cli_verify(app: &TestApp) -> (bool, String) {
    cli_verify_with(app, &[])
}

/// `amal audit verify` with extra settings (e.g. rotated keys).
pub fn cli_verify_with(app: &TestApp, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_amal"));
    cmd.env_clear()
        .env("DATABASE_URL", app.raw.database_url.as_ref().unwrap())
        .env("AMAL_DATA_DIR", app.raw.data_dir.as_ref().unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(["audit", "verify"]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Run `c` (an `amal` command with its settings) as `user create --email
/// EMAIL --role ROLE --password-stdin`, writing `password` to its stdin.
pub fn cli_user_create(
    mut c: std::process::Command,
    email: &str,
    role: &str,
    password: &str,
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    c.args([
        "user",
        "create",
        "--email",
        email,
        "--role",
        role,
        "--password-stdin",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
