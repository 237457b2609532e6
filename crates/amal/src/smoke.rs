//! `amal smoke --url URL`: the launch smoke suite (the seed's 20 checks and
//! a few more) against any running deployment, over HTTP(S) only.
//!
//! It signs in as the admin named by `SMOKE_ADMIN_EMAIL` and
//! `SMOKE_ADMIN_PASSWORD` (and, for an admin with a second factor, a code
//! computed from `SMOKE_TOTP_SECRET`; see [`second_factor`]), creates what it needs (a provider through an
//! invitation and sign-up, a staff account, one patient `Smoke-Test <run
//! id>` and a few draft notes), checks auth, reads, writes, refusals, rate
//! limits, injection and XSS handling, health, metrics, alerts and the audit
//! trail, then discards its drafts and disables the accounts it created.
//! Every request carries `X-Request-Id: smoke-<run id>-<n>`, so its log lines
//! and audit events are easy to find.
//!
//! Sign-ins share one per-IP bucket (5 a minute by default), so the suite
//! signs in three times (admin, provider, staff), reuses those tokens, and
//! runs the sign-in rate-limit check last of all sign-in traffic. A write
//! limit above 40 a minute is reported, not exhausted. See
//! docs/ops/SMOKE_TESTS.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

mod second_factor;
use second_factor::Account;

/// What the command line gives.
pub struct Options {
    pub url: String,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    /// The admin's base32 TOTP secret, when the account has a second factor.
    pub totp_secret: Option<String>,
    pub metrics_token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub timeout_secs: u64,
}

/// Write limits up to this are exhausted to see the 429; above it the check
/// reports the limit instead of sending that many writes to a live clinic.
const MAX_EXHAUSTED_WRITE_LIMIT: u64 = 40;
/// Likewise for the per-IP sign-in limit.
const MAX_EXHAUSTED_AUTH_LIMIT: u64 = 20;

/// `Ok(None)`: passed; `Ok(Some(note))`: passed, with something to say;
/// `Err(reason)`: failed.
type Outcome = Result<Option<String>, String>;

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    json: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }

    /// `401 unauthorized` or `500 <first bytes of the body>`.
    fn brief(&self) -> String {
        if !self.code().is_empty() {
            format!("{} {}", self.status, self.code())
        } else {
            let t: String = self.text.chars().take(80).collect();
            format!("{} {}", self.status, t.trim())
        }
    }

    fn is_problem(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("application/problem+json"))
    }

    fn expect(&self, what: &str, status: u16) -> Result<(), String> {
        if self.status == status {
            Ok(())
        } else {
            Err(format!("{what}: expected {status}, got {}", self.brief()))
        }
    }
}

/// One role-matrix cell: method, path, body, role, its session, expected status.
type MatrixCell<'a> = (
    Method,
    String,
    Option<Value>,
    &'static str,
    &'a Session,
    u16,
);

#[derive(Clone)]
struct Session {
    access: String,
    refresh: String,
}

struct Created {
    id: String,
    version: i64,
    label: &'static str,
}

struct Smoke {
    base: String,
    client: reqwest::Client,
    run_id: String,
    seq: AtomicU32,
    opts: Options,
    domain: String,
    admin: Option<Session>,
    provider: Option<Session>,
    provider_id: Option<String>,
    provider_login: Option<(String, String)>,
    staff: Option<Session>,
    users: Vec<Created>,
    patient: Option<String>,
    notes: Vec<String>,
    write_limit: Option<u64>,
    /// Clinical writes sent with the provider's token (one rate-limit bucket).
    writes: u64,
    signins: u32,
    results: Vec<(&'static str, bool)>,
}

fn need<'a>(s: &'a Option<Session>, who: &str) -> Result<&'a Session, String> {
    s.as_ref()
        .ok_or_else(|| format!("skipped: no {who} session (an earlier check failed)"))
}

/// Percent-encode a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn random_password() -> String {
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    let s: String = (0..24)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    format!("smoke-{s}")
}

macro_rules! check {
    ($s:ident, $name:expr, $call:expr) => {{
        let started = Instant::now();
        let outcome: Outcome = $call.await;
        $s.report($name, started.elapsed(), outcome);
    }};
}

pub async fn run(opts: Options) -> anyhow::Result<ExitCode> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(opts.timeout_secs.max(1)))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("amal-smoke/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &opts.ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("--ca-cert {} is not a PEM certificate", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder.build()?;
    let run_id = format!(
        "{}-{:06x}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        rand::thread_rng().gen_range(0..0x100_0000u32)
    );
    let base = opts.url.trim_end_matches('/').to_string();
    let domain = opts
        .admin_email
        .as_deref()
        .and_then(|e| e.rsplit_once('@'))
        .map(|x| x.1.to_lowercase())
        .filter(|d| d.contains('.'))
        .unwrap_or_else(|| "smoke.invalid".into());
    println!("amal smoke: {base} (run id {run_id})");
    let mut s = Smoke {
        base,
        client,
        run_id,
        seq: AtomicU32::new(0),
        opts,
        domain,
        admin: None,
        provider: None,
        provider_id: None,
        provider_login: None,
        staff: None,
        users: Vec::new(),
        patient: None,
        notes: Vec::new(),
        write_limit: None,
        writes: 0,
        signins: 0,
        results: Vec::new(),
    };
    s.run_all().await;

    let failed: Vec<&str> = s.results.iter().filter(|r| !r.1).map(|r| r.0).collect();
    let total = s.results.len();
    if failed.is_empty() {
        println!(
            "Summary: all {total} checks passed against {} (run id {})",
            s.base, s.run_id
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "Summary: {} of {total} checks FAILED against {} (run id {}): {}",
            failed.len(),
            s.base,
            s.run_id,
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

impl Smoke {
    async fn run_all(&mut self) {
        check!(self, "health", self.health());
        check!(self, "auth.signin", self.admin_signin());
        check!(self, "auth.signup", self.signup());
        check!(self, "auth.signin_new_user", self.provider_signin());
        check!(self, "users.create_staff", self.create_staff());
        check!(self, "unauthorized.no_token", self.no_token());
        check!(self, "writes.create_patient", self.create_patient());
        check!(self, "reads.patients_list", self.patients_list());
        check!(self, "reads.patient", self.read_patient());
        check!(self, "reads.overview", self.overview());
        check!(self, "writes.create_note", self.create_note());
        check!(self, "unauthorized.staff_chart", self.staff_chart());
        check!(
            self,
            "unauthorized.admin_patient_data",
            self.admin_patient_data()
        );
        check!(self, "roles.matrix", self.role_matrix());
        check!(self, "security.sql_injection_search", self.sqli_search());
        check!(self, "security.sql_injection_note", self.sqli_note());
        check!(self, "security.xss", self.xss());
        check!(self, "ai.refusal", self.ai_refusal());
        check!(self, "metrics.json", self.metrics_json());
        check!(self, "metrics.prometheus", self.metrics_prometheus());
        check!(self, "ops.alerts", self.alerts());
        check!(self, "audit.presence", self.audit_presence());
        check!(self, "audit.verify", self.audit_verify());
        check!(self, "auth.refresh_reuse", self.refresh_reuse());
        check!(self, "cleanup.drafts", self.discard_drafts());
        check!(self, "writes.rate_limit", self.write_rate_limit());
        check!(self, "auth.rate_limit", self.auth_rate_limit());
        check!(self, "cleanup.users", self.disable_users());
    }

    fn report(&mut self, name: &'static str, took: Duration, outcome: Outcome) {
        let passed = outcome.is_ok();
        match outcome {
            Ok(None) => println!("PASS {name} ({} ms)", took.as_millis()),
            Ok(Some(note)) => println!("PASS {name} ({} ms) — {note}", took.as_millis()),
            Err(reason) => println!("FAIL {name}: {reason}"),
        }
        self.results.push((name, passed));
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Resp, String> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut rb = self
            .client
            .request(method.clone(), format!("{}{}", self.base, path))
            .header("x-request-id", format!("smoke-{}-{n}", self.run_id));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.map_err(|e| {
            format!(
                "{method} {} failed: {}",
                path.split('?').next().unwrap_or(path),
                describe(&e)
            )
        })?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r
            .text()
            .await
            .map_err(|e| format!("{method} {path}: body unreadable: {e}"))?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            headers,
            text,
            json,
        })
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<Resp, String> {
        self.call(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Result<Resp, String> {
        self.call(Method::POST, path, token, Some(body)).await
    }

    async fn sign_in(&mut self, email: &str, password: &str) -> Result<Resp, String> {
        self.signins += 1;
        self.post(
            "/api/auth/signin",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    fn session_of(r: &Resp) -> Result<Session, String> {
        let access = r.json["accessToken"].as_str().unwrap_or("");
        let refresh = r.json["refreshToken"].as_str().unwrap_or("");
        if access.is_empty() || refresh.is_empty() || r.json["tokenType"] != "Bearer" {
            return Err(
                "sign-in answered 200 without accessToken, refreshToken and tokenType Bearer"
                    .into(),
            );
        }
        Ok(Session {
            access: access.into(),
            refresh: refresh.into(),
        })
    }

    fn patient_id(&self) -> Result<String, String> {
        self.patient
            .clone()
            .ok_or_else(|| "skipped: no smoke patient (writes.create_patient failed)".into())
    }

    // --- the checks -----------------------------------------------------

    async fn health(&mut self) -> Outcome {
        let r = self.get("/api/health", None).await?;
        if r.status != 200 || r.json["status"] != "ok" {
            return Err(format!(
                "GET /api/health answered {} (status {}, database {})",
                r.status, r.json["status"], r.json["checks"]["database"]
            ));
        }
        Ok(Some(format!(
            "version {}, schema {}",
            r.json["version"].as_str().unwrap_or("?"),
            r.json["schemaVersion"]
        )))
    }

    async fn admin_signin(&mut self) -> Outcome {
        let (Some(email), Some(password)) = (
            self.opts.admin_email.clone(),
            self.opts.admin_password.clone(),
        ) else {
            return Err(
                "no admin credentials: set SMOKE_ADMIN_EMAIL and SMOKE_ADMIN_PASSWORD".into(),
            );
        };
        let r = self.sign_in(&email, &password).await?;
        match r.status {
            200 => {}
            401 => return Err("the admin credentials were refused (401)".into()),
            429 => {
                return Err("sign-in is rate limited from this address (429); wait a minute".into())
            }
            _ => return Err(format!("admin sign-in: {}", r.brief())),
        }
        let secret = self.opts.totp_secret.as_deref();
        let r = self
            .second_step(r, "the admin", Account::Operator(secret))
            .await?;
        let session = Self::session_of(&r)?;
        if r.json["user"]["role"] != "admin" {
            return Err(format!(
                "signed in, but the account's role is {}, not admin",
                r.json["user"]["role"]
            ));
        }
        self.admin = Some(session);
        Ok(None)
    }

    async fn signup(&mut self) -> Outcome {
        let admin = need(&self.admin, "admin")?.clone();
        let email = format!("smoke-{}-provider@{}", self.run_id, self.domain);
        let password = random_password();
        let r = self
            .post(
                "/api/invites",
                Some(&admin.access),
                json!({"role": "provider", "email": email}),
            )
            .await?;
        r.expect("POST /api/invites", 201)?;
        let code = r.json["code"].as_str().unwrap_or("").to_string();
        if code.is_empty() {
            return Err("the invitation has no code".into());
        }
        let r = self
            .post(
                "/api/auth/signup",
                None,
                json!({"email": email, "password": password, "name": format!("Smoke-Test Provider {}", self.run_id), "inviteCode": code}),
            )
            .await?;
        let mut note = None;
        let user = match r.status {
            201 => r.json["user"].clone(),
            403 if r.json["detail"].as_str().unwrap_or("").contains("closed") => {
                note = Some("sign-up is closed here (AMAL_SIGNUP=closed) and was refused as configured; the provider was created by the admin".to_string());
                let r = self
                    .post(
                        "/api/users",
                        Some(&admin.access),
                        json!({"email": email, "name": format!("Smoke-Test Provider {}", self.run_id), "role": "provider", "password": password}),
                    )
                    .await?;
                r.expect("POST /api/users", 201)?;
                r.json["user"].clone()
            }
            _ => return Err(format!("sign-up with the invitation: {}", r.brief())),
        };
        let id = user["id"].as_str().unwrap_or("").to_string();
        let mut version = user["version"].as_i64().unwrap_or(1);
        if user["status"] == "pending" {
            // AMAL_SIGNUP=open: the account waits for an administrator.
            let r = self
                .call(
                    Method::PATCH,
                    &format!("/api/users/{id}"),
                    Some(&admin.access),
                    Some(json!({"status": "active", "role": "provider", "version": version})),
                )
                .await?;
            r.expect("activating the pending account", 200)?;
            version = r.json["user"]["version"].as_i64().unwrap_or(version + 1);
            note = Some(
                "sign-up is open here: the account was pending until the admin activated it".into(),
            );
        } else if user["status"] != "active" || user["role"] != "provider" {
            return Err(format!(
                "the invited account is {} {}, not an active provider",
                user["status"], user["role"]
            ));
        }
        self.users.push(Created {
            id: id.clone(),
            version,
            label: "provider",
        });
        self.provider_id = Some(id);
        self.provider_login = Some((email, password));
        Ok(note)
    }

    async fn provider_signin(&mut self) -> Outcome {
        let Some((email, password)) = self.provider_login.clone() else {
            return Err("skipped: no provider account (auth.signup failed)".into());
        };
        let r = self.sign_in(&email, &password).await?;
        r.expect("provider sign-in", 200)?;
        let r = self.second_step(r, "the provider", Account::Own).await?;
        let session = Self::session_of(&r)?;
        if r.json["user"]["role"] != "provider" {
            return Err(format!("role is {}, not provider", r.json["user"]["role"]));
        }
        let me = self.get("/api/auth/me", Some(&session.access)).await?;
        me.expect("GET /api/auth/me", 200)?;
        self.provider = Some(session);
        Ok(None)
    }

    async fn create_staff(&mut self) -> Outcome {
        let admin = need(&self.admin, "admin")?.clone();
        let email = format!("smoke-{}-staff@{}", self.run_id, self.domain);
        let password = random_password();
        let r = self
            .post(
                "/api/users",
                Some(&admin.access),
                json!({"email": email, "name": format!("Smoke-Test Staff {}", self.run_id), "role": "staff", "password": password}),
            )
            .await?;
        r.expect("POST /api/users", 201)?;
        self.users.push(Created {
            id: r.json["user"]["id"].as_str().unwrap_or("").to_string(),
            version: r.json["user"]["version"].as_i64().unwrap_or(1),
            label: "staff",
        });
        let r = self.sign_in(&email, &password).await?;
        r.expect("staff sign-in", 200)?;
        let r = self
            .second_step(r, "the staff account", Account::Own)
            .await?;
        self.staff = Some(Self::session_of(&r)?);
        Ok(None)
    }

    async fn no_token(&mut self) -> Outcome {
        for path in [
            "/api/patients",
            "/api/auth/me",
            "/api/users",
            "/api/overview",
        ] {
            let r = self.get(path, None).await?;
            r.expect(&format!("GET {path} without a token"), 401)?;
            if !r.is_problem() || r.code() != "unauthorized" {
                return Err(format!(
                    "GET {path} without a token: 401 is not an `unauthorized` problem document"
                ));
            }
        }
        Ok(None)
    }

    async fn create_patient(&mut self) -> Outcome {
        let p = need(&self.provider, "provider")?.clone();
        self.writes += 1;
        let r = self
            .post(
                "/api/patients",
                Some(&p.access),
                json!({"givenName": "Smoke-Test", "familyName": self.run_id, "birthDate": "1970-01-01", "sex": "unknown"}),
            )
            .await?;
        r.expect("POST /api/patients", 201)?;
        let id = r.json["id"].as_str().unwrap_or("").to_string();
        if id.is_empty() || r.json["mrn"].as_str().unwrap_or("").is_empty() {
            return Err("the created patient has no id or mrn".into());
        }
        self.write_limit = r.header("x-ratelimit-limit").and_then(|v| v.parse().ok());
        if self.write_limit.is_none() {
            return Err("the write answered without X-RateLimit-Limit".into());
        }
        self.patient = Some(id);
        Ok(None)
    }

    async fn patients_list(&mut self) -> Outcome {
        let p = need(&self.provider, "provider")?.clone();
        let id = self.patient_id()?;
        let r = self
            .get(
                &format!("/api/patients?q={}&limit=200", enc(&self.run_id)),
                Some(&p.access),
            )
            .await?;
        r.expect("GET /api/patients?q=", 200)?;
        let found = r.json["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["id"] == id.as_str()));
        if !found {
            return Err("the smoke patient is not found by name".into());
        }
        if r.header("x-ratelimit-remaining").is_none() {
            return Err("reads answer without X-RateLimit-Remaining".into());
        }
        Ok(None)
    }

    async fn read_patient(&mut self) -> Outcome {
        let p = need(&self.provider, "provider")?.clone();
        let id = self.patient_id()?;
        let r = self
            .get(&format!("/api/patients/{id}"), Some(&p.access))
            .await?;
        r.expect("GET /api/patients/{id}", 200)?;
        if r.json["id"] != id.as_str() || r.json["givenName"] != "Smoke-Test" {
            return Err("the patient read back differs from the one created".into());
        }
        Ok(None)
    }

    async fn overview(&mut self) -> Outcome {
        let p = need(&self.provider, "provider")?.clone();
        let id = self.patient_id()?;
        let r = self
            .get(&format!("/api/patients/{id}/overview"), Some(&p.access))
            .await?;
        r.expect("GET /api/patients/{id}/overview", 200)?;
        for k in [
            "patient",
            "allergies",
            "activeProblems",
            "activePrescriptions",
            "recentLabs",
            "recentNotes",
        ] {
            if r.json.get(k).is_none() {
                return Err(format!("the chart overview has no `{k}`"));
            }
        }
        let r = self.get("/api/overview", Some(&p.access)).await?;
        r.expect("GET /api/overview", 200)?;
        Ok(None)
    }

    async fn new_note(&mut self, body: Value) -> Result<Resp, String> {
        let p = need(&self.provider, "provider")?.clone();
        let id = self.patient_id()?;
        self.writes += 1;
        let r = self
            .post(&format!("/api/patients/{id}/notes"), Some(&p.access), body)
            .await?;
        if r.status == 201 {
            if let Some(n) = r.json["id"].as_str() {
                self.notes.push(n.to_string());
            }
        }
        Ok(r)
    }

    async fn create_note(&mut self) -> Outcome {
        let text = format!("Smoke test {}: no clinical content.", self.run_id);
        let r = self
            .new_note(json!({"title": "Smoke-Test note", "subjective": text, "objective": "n/a", "assessment": "n/a", "plan": "n/a"}))
            .await?;
        r.expect("POST /api/patients/{id}/notes", 201)?;
        if r.json["status"] != "draft" {
            return Err(format!("a new note is {}, not a draft", r.json["status"]));
        }
        let p = need(&self.provider, "provider")?.clone();
        let nid = r.json["id"].as_str().unwrap_or("");
        let r = self
            .get(&format!("/api/notes/{nid}"), Some(&p.access))
            .await?;
        r.expect("GET /api/notes/{id}", 200)?;
        if r.json["subjective"] != text.as_str() {
            return Err("the note read back differs from the one written".into());
        }
        Ok(None)
    }

    async fn staff_chart(&mut self) -> Outcome {
        let s = need(&self.staff, "staff")?.clone();
        let id = self.patient_id()?;
        for path in [
            format!("/api/patients/{id}/overview"),
            format!("/api/patients/{id}/notes"),
        ] {
            let r = self.get(&path, Some(&s.access)).await?;
            r.expect(&format!("staff GET {}", path.replace(&id, "{id}")), 403)?;
        }
        // Demographics stay open to the front desk.
        let r = self
            .get(&format!("/api/patients/{id}"), Some(&s.access))
            .await?;
        r.expect("staff GET /api/patients/{id}", 200)?;
        Ok(None)
    }

    async fn admin_patient_data(&mut self) -> Outcome {
        let a = need(&self.admin, "admin")?.clone();
        let id = self.patient_id()?;
        for path in [
            "/api/patients?q=smoke".to_string(),
            format!("/api/patients/{id}"),
            format!("/api/patients/{id}/overview"),
            "/api/overview".to_string(),
        ] {
            let r = self.get(&path, Some(&a.access)).await?;
            r.expect(&format!("admin GET {}", path.replace(&id, "{id}")), 403)?;
        }
        Ok(None)
    }

    async fn role_matrix(&mut self) -> Outcome {
        let (a, p, s) = (
            need(&self.admin, "admin")?.clone(),
            need(&self.provider, "provider")?.clone(),
            need(&self.staff, "staff")?.clone(),
        );
        let id = self.patient_id()?;
        let q = format!("/api/patients?q={}", enc(&self.run_id));
        let notes = format!("/api/patients/{id}/notes");
        let rows: Vec<MatrixCell> = vec![
            (Method::GET, "/api/users".into(), None, "admin", &a, 200),
            (Method::GET, "/api/users".into(), None, "provider", &p, 403),
            (Method::GET, "/api/users".into(), None, "staff", &s, 403),
            (
                Method::GET,
                "/api/metrics".into(),
                None,
                "provider",
                &p,
                403,
            ),
            (Method::GET, "/api/metrics".into(), None, "staff", &s, 403),
            (Method::GET, "/api/audit".into(), None, "provider", &p, 403),
            (Method::GET, "/api/alerts".into(), None, "staff", &s, 403),
            (
                Method::POST,
                "/api/invites".into(),
                Some(json!({"role": "staff"})),
                "provider",
                &p,
                403,
            ),
            (
                Method::POST,
                "/api/invites".into(),
                Some(json!({"role": "staff"})),
                "staff",
                &s,
                403,
            ),
            (Method::GET, q.clone(), None, "staff", &s, 200),
            (Method::GET, q, None, "provider", &p, 200),
            (Method::GET, notes.clone(), None, "provider", &p, 200),
            (Method::GET, notes.clone(), None, "staff", &s, 403),
            (Method::GET, notes, None, "admin", &a, 403),
        ];
        let mut wrong = Vec::new();
        for (m, path, body, role, session, expected) in &rows {
            let r = self
                .call(m.clone(), path, Some(&session.access), body.clone())
                .await?;
            if r.status != *expected {
                wrong.push(format!(
                    "{role} {m} {} → {} (expected {expected})",
                    path.replace(&id, "{id}").split('?').next().unwrap_or(""),
                    r.status
                ));
            }
        }
        if wrong.is_empty() {
            Ok(Some(format!("{} cells", rows.len())))
        } else {
            Err(wrong.join("; "))
        }
    }

    async fn sqli_search(&mut self) -> Outcome {
        let p = need(&self.provider, "provider")?.clone();
        let id = self.patient_id()?;
        let payloads = [
            "' OR '1'='1",
            "'; DROP TABLE patients; --",
            "%' UNION SELECT id, email, password_hash FROM users --",
            "\\' OR 1=1 --",
            "1) OR (1=1",
        ];
        for payload in payloads {
            let r = self
                .get(
                    &format!("/api/patients?q={}", enc(payload)),
                    Some(&p.access),
                )
                .await?;
            if r.status >= 500 {
                return Err(format!("search for {payload:?} answered {}", r.brief()));
            }
            if r.status == 200 {
                let leaked = r.json["items"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|i| i["id"] == id.as_str()));
                if leaked {
                    return Err(format!(
                        "search for {payload:?} matched the smoke patient: the input reached SQL"
                    ));
                }
            }
        }
        let r = self
            .get(&format!("/api/patients/{id}"), Some(&p.access))
            .await?;
        r.expect("the patient after the injection attempts", 200)?;
        Ok(None)
    }

    async fn sqli_note(&mut self) -> Outcome {
        let title = "Smoke-Test '); DROP TABLE notes; --";
        let subjective = "' OR '1'='1' -- ; UPDATE users SET role='admin'";
        let r = self
            .new_note(json!({"title": title, "subjective": subjective, "objective": "1; SELECT 1", "assessment": "n/a", "plan": "n/a"}))
            .await?;
        match r.status {
            201 => {}
            s if (400..500).contains(&s) => {
                return Ok(Some(format!("refused as invalid ({})", r.brief())))
            }
            _ => return Err(format!("the note with SQL in it answered {}", r.brief())),
        }
        let p = need(&self.provider, "provider")?.clone();
        let nid = r.json["id"].as_str().unwrap_or("");
        let r = self
            .get(&format!("/api/notes/{nid}"), Some(&p.access))
            .await?;
        r.expect("GET /api/notes/{id}", 200)?;
        if r.json["title"] != title || r.json["subjective"] != subjective {
            return Err("the note was not stored verbatim".into());
        }
        Ok(Some("stored verbatim".into()))
    }

    async fn xss(&mut self) -> Outcome {
        let script = format!("<script>alert('smoke-{}')</script>", self.run_id);
        let img = "<img src=x onerror=alert(1)>";
        let r = self
            .new_note(json!({"title": format!("Smoke-Test {img}"), "subjective": script, "objective": "n/a", "assessment": "n/a", "plan": "n/a"}))
            .await?;
        match r.status {
            201 => {}
            s if (400..500).contains(&s) => {
                return Ok(Some(format!("refused as invalid ({})", r.brief())))
            }
            _ => return Err(format!("the note with markup answered {}", r.brief())),
        }
        let p = need(&self.provider, "provider")?.clone();
        let nid = r.json["id"].as_str().unwrap_or("");
        let r = self
            .get(&format!("/api/notes/{nid}"), Some(&p.access))
            .await?;
        r.expect("GET /api/notes/{id}", 200)?;
        if r.text.contains("<script") || r.text.contains("<img") {
            return Err("the response carries raw markup (<script> not escaped)".into());
        }
        if !r.text.contains("\\u003cscript") {
            return Err("the response does not escape < as \\u003c".into());
        }
        if r.json["subjective"] != script.as_str() {
            return Err("the text read back differs from the text stored".into());
        }
        if !r
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
            || r.header("x-content-type-options") != Some("nosniff")
        {
            return Err("JSON is served without application/json and nosniff".into());
        }
        Ok(Some("stored verbatim, returned JSON-escaped".into()))
    }

    async fn ai_refusal(&mut self) -> Outcome {
        let p = need(&self.provider, "provider")?.clone();
        let id = self.patient_id()?;
        let r = self
            .post(
                "/api/ai/generate-note",
                Some(&p.access),
                json!({"patientId": id, "input": "What dose of amoxicillin in mg should I prescribe for this patient, and how often?"}),
            )
            .await?;
        match r.status {
            422 if r.code() == "ai_refused" && r.is_problem() => {
                let reason = r.json["reason"].as_str().unwrap_or("");
                if reason.is_empty() {
                    Err("the ai_refused problem has no `reason`".into())
                } else {
                    Ok(Some(format!("dosing question refused: {reason}")))
                }
            }
            404 => Err(
                "POST /api/ai/generate-note answered 404: this deployment has no AI endpoints"
                    .into(),
            ),
            503 => Err(format!(
                "the AI answered {} (ai_unavailable) instead of refusing a dosing question",
                r.status
            )),
            s if s < 300 => Err("a dosing question was answered instead of refused".into()),
            _ => Err(format!("expected 422 ai_refused, got {}", r.brief())),
        }
    }

    async fn metrics_json(&mut self) -> Outcome {
        let a = need(&self.admin, "admin")?.clone();
        let r = self.get("/api/metrics", Some(&a.access)).await?;
        r.expect("GET /api/metrics", 200)?;
        let c = &r.json["metrics"]["counters"];
        // A sign-in completed with a second factor counts as auth.mfa.success.
        let signins = ["auth.signin.success", "auth.mfa.success"]
            .iter()
            .map(|k| c[*k].as_u64().unwrap_or(0))
            .sum::<u64>();
        if !c["http.requests"].is_u64() || signins < 1 {
            return Err("the counters lack http.requests or a counted sign-in".into());
        }
        if !r.json["metrics"]["durations"].is_object() {
            return Err("no durations in the metrics".into());
        }
        Ok(None)
    }

    async fn metrics_prometheus(&mut self) -> Outcome {
        let r = self.get("/metrics", None).await?;
        if r.status != 401 && r.status != 403 {
            return Err(format!(
                "/metrics answered {} without credentials",
                r.status
            ));
        }
        let (token, by) = match &self.opts.metrics_token {
            Some(t) => (t.clone(), "METRICS_TOKEN"),
            None => (
                need(&self.admin, "admin")?.access.clone(),
                "the admin token",
            ),
        };
        let r = self.get("/metrics", Some(&token)).await?;
        if r.status == 401 || r.status == 403 {
            return Err(format!(
                "/metrics refused {by} ({}): the token does not match the deployment's METRICS_TOKEN",
                r.status
            ));
        }
        r.expect("GET /metrics", 200)?;
        if !r.text.contains("# TYPE") || !r.text.contains("http_requests_total") {
            return Err("/metrics is not Prometheus text with http_requests_total".into());
        }
        Ok(Some(format!("read with {by}")))
    }

    async fn alerts(&mut self) -> Outcome {
        let a = need(&self.admin, "admin")?.clone();
        let r = self.get("/api/alerts", Some(&a.access)).await?;
        r.expect("GET /api/alerts", 200)?;
        let Some(list) = r.json["alerts"].as_array().filter(|l| !l.is_empty()) else {
            return Err("GET /api/alerts lists no alerts".into());
        };
        let firing: Vec<&str> = list
            .iter()
            .filter(|x| x["state"] == "firing")
            .filter_map(|x| x["name"].as_str())
            .collect();
        Ok(Some(if firing.is_empty() {
            format!("{} alerts, none firing", list.len())
        } else {
            format!("{} alerts; FIRING: {}", list.len(), firing.join(", "))
        }))
    }

    async fn audit_presence(&mut self) -> Outcome {
        let a = need(&self.admin, "admin")?.clone();
        let id = self.patient_id()?;
        let provider = self.provider_id.clone().unwrap_or_default();
        let r = self
            .get(
                &format!("/api/audit?patientId={id}&limit=200"),
                Some(&a.access),
            )
            .await?;
        r.expect("GET /api/audit?patientId=", 200)?;
        let items = r.json["items"].as_array().cloned().unwrap_or_default();
        let has = |action: &str, actor: Option<&str>| {
            items
                .iter()
                .any(|e| e["action"] == action && actor.is_none_or(|x| e["actorId"] == x))
        };
        let mut missing = Vec::new();
        for (action, actor) in [
            ("patient.create", Some(provider.as_str())),
            ("patient.read", Some(provider.as_str())),
            ("patient.overview", Some(provider.as_str())),
            ("access.refused", None),
        ] {
            if !has(action, actor) {
                missing.push(action);
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "no audit event for: {} ({} events for the patient)",
                missing.join(", "),
                items.len()
            ));
        }
        let tagged = items
            .iter()
            .filter(|e| {
                e["requestId"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&format!("smoke-{}", self.run_id)))
            })
            .count();
        Ok(Some(format!(
            "{} events, {tagged} with the smoke request ids",
            items.len()
        )))
    }

    async fn audit_verify(&mut self) -> Outcome {
        let a = need(&self.admin, "admin")?.clone();
        let r = self.get("/api/audit/verify", Some(&a.access)).await?;
        r.expect("GET /api/audit/verify", 200)?;
        if r.json["valid"] != true {
            return Err(format!(
                "the audit chain is BROKEN at event {}",
                r.json["firstBrokenId"]
            ));
        }
        Ok(Some(format!("chain intact, {} events", r.json["events"])))
    }

    async fn refresh_reuse(&mut self) -> Outcome {
        let s = need(&self.staff, "staff")?.clone();
        let r = self
            .post(
                "/api/auth/refresh",
                None,
                json!({"refreshToken": s.refresh}),
            )
            .await?;
        r.expect("first refresh", 200)?;
        let next = Self::session_of(&r)?;
        let r = self
            .post(
                "/api/auth/refresh",
                None,
                json!({"refreshToken": s.refresh}),
            )
            .await?;
        r.expect("reusing the rotated refresh token", 401)?;
        let r = self
            .post(
                "/api/auth/refresh",
                None,
                json!({"refreshToken": next.refresh}),
            )
            .await?;
        r.expect("the newer refresh token after reuse (family revoked)", 401)?;
        let r = self.get("/api/auth/me", Some(&next.access)).await?;
        r.expect("the newer access token after reuse (session revoked)", 401)?;
        self.staff = None;
        Ok(Some("reuse revoked the whole session family".into()))
    }

    async fn discard_drafts(&mut self) -> Outcome {
        let p = need(&self.provider, "provider")?.clone();
        let mut kept = Vec::new();
        for id in std::mem::take(&mut self.notes) {
            self.writes += 1;
            let r = self
                .call(
                    Method::DELETE,
                    &format!("/api/notes/{id}"),
                    Some(&p.access),
                    None,
                )
                .await?;
            if !(200..300).contains(&r.status) {
                kept.push(format!("{id}: {}", r.brief()));
            }
        }
        if kept.is_empty() {
            Ok(None)
        } else {
            Err(format!("drafts not discarded: {}", kept.join("; ")))
        }
    }

    async fn write_rate_limit(&mut self) -> Outcome {
        let p = need(&self.provider, "provider")?.clone();
        let Some(limit) = self.write_limit else {
            return Err(
                "skipped: the write limit is unknown (writes.create_patient failed)".into(),
            );
        };
        if limit > MAX_EXHAUSTED_WRITE_LIMIT {
            return Ok(Some(format!(
                "limit {limit} too high to exhaust safely (only limits ≤ {MAX_EXHAUSTED_WRITE_LIMIT}/window are exhausted)"
            )));
        }
        // Deleting notes that do not exist: every one counts, none changes data.
        let before = self.writes;
        for n in 1..=limit + 2 {
            self.writes += 1;
            let fake = uuid::Uuid::new_v4();
            let r = self
                .call(
                    Method::DELETE,
                    &format!("/api/notes/{fake}"),
                    Some(&p.access),
                    None,
                )
                .await?;
            match r.status {
                429 => {
                    if r.code() != "rate_limited" || r.header("retry-after").is_none() {
                        return Err("the 429 lacks code rate_limited or Retry-After".into());
                    }
                    if r.header("x-ratelimit-remaining") != Some("0") {
                        return Err("the 429 does not say X-RateLimit-Remaining: 0".into());
                    }
                    return Ok(Some(format!(
                        "429 on write {} in the window (limit {limit}; {before} by this suite before the burst; Retry-After {}s)",
                        before + n,
                        r.header("retry-after").unwrap_or("?")
                    )));
                }
                404 => {}
                _ => return Err(format!("write {n} answered {}", r.brief())),
            }
        }
        Err(format!("no 429 after {} writes (limit {limit})", limit + 2))
    }

    async fn auth_rate_limit(&mut self) -> Outcome {
        let email = format!("smoke-{}-ratelimit@{}", self.run_id, self.domain);
        let before = self.signins;
        let mut limit = None;
        let mut n = 0u64;
        loop {
            n += 1;
            let r = self.sign_in(&email, "not-the-password-smoke").await?;
            if limit.is_none() {
                let l: u64 = r
                    .header("x-ratelimit-limit")
                    .and_then(|v| v.parse().ok())
                    .ok_or("sign-in answered without X-RateLimit-Limit")?;
                if l > MAX_EXHAUSTED_AUTH_LIMIT {
                    return Ok(Some(format!("limit {l} too high to exhaust safely")));
                }
                limit = Some(l);
            }
            let l = limit.unwrap_or(0);
            match r.status {
                401 if n <= l + 1 => continue,
                429 => {
                    if r.code() != "rate_limited" || r.header("retry-after").is_none() {
                        return Err("the 429 lacks code rate_limited or Retry-After".into());
                    }
                    return Ok(Some(format!(
                        "429 on sign-in {} in the window (limit {l}; {before} by this suite before)",
                        u64::from(before) + n
                    )));
                }
                401 => return Err(format!("no 429 after {n} failed sign-ins (limit {l})")),
                _ => return Err(format!("sign-in {n} answered {}", r.brief())),
            }
        }
    }

    async fn disable_users(&mut self) -> Outcome {
        let a = need(&self.admin, "admin")?.clone();
        let mut failed = Vec::new();
        for u in &self.users {
            let r = self
                .call(
                    Method::PATCH,
                    &format!("/api/users/{}", u.id),
                    Some(&a.access),
                    Some(json!({"status": "disabled", "version": u.version})),
                )
                .await?;
            if r.status != 200 || r.json["user"]["status"] != "disabled" {
                failed.push(format!("{} {}: {}", u.label, u.id, r.brief()));
            }
        }
        let _ = self
            .post(
                "/api/auth/logout",
                Some(&a.access),
                json!({"refreshToken": a.refresh}),
            )
            .await;
        if failed.is_empty() {
            Ok(Some(format!(
                "{} smoke accounts disabled; patient Smoke-Test {} kept (patients are never deleted)",
                self.users.len(),
                self.run_id
            )))
        } else {
            Err(format!("still active: {}", failed.join("; ")))
        }
    }
}

/// A transport error without the URL noise, with its cause.
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request error".to_string()
    };
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(&format!(": {cause}"));
        src = cause.source();
    }
    s
}
