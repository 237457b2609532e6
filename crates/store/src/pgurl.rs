//! PostgreSQL connection URLs, read with the `url` crate (one parser for the
//! configuration check, the backup tools and scratch databases): which host
//! libpq will really reach, whether TLS is demanded, and the URL a libpq
//! tool gets with the password moved out of it.

use url::Url;

/// Query parameters sqlx understands and libpq tools refuse.
const SQLX_ONLY: [&str; 1] = ["statement-cache-capacity"];

/// Whether the connection sqlx will really open for `url` stays on this
/// machine (a Unix socket, `localhost`, a loopback address) or demands TLS
/// (`sslmode` require, verify-ca or verify-full). Read from sqlx's own
/// parsed connection options, so every spelling it accepts counts: `host=`
/// and `hostaddr=` parameters, `ssl-mode=`, a repeated parameter (the last
/// one wins), and the `PGHOST`/`PGSSLMODE` environment it falls back to.
pub fn local_or_tls(url: &str) -> bool {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    use std::str::FromStr;
    let Ok(o) = PgConnectOptions::from_str(url.trim()) else {
        return false;
    };
    let host = o.get_host();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let local = o.get_socket().is_some()
        || host.starts_with('/')
        || bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    local
        || matches!(
            o.get_ssl_mode(),
            PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
        )
}

/// A parsed `postgres://` or `postgresql://` URL.
#[derive(Clone)]
pub struct PgUrl(Url);

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgUrl(…)")
    }
}

impl PgUrl {
    pub fn parse(s: &str) -> Option<PgUrl> {
        let u = Url::parse(s.trim()).ok()?;
        matches!(u.scheme(), "postgres" | "postgresql").then_some(PgUrl(u))
    }

    fn param(&self, key: &str) -> Option<String> {
        self.0
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// The host libpq connects to: a `host=` parameter wins over the URL's
    /// host, as in libpq (a path there is a Unix socket directory).
    pub fn effective_host(&self) -> String {
        self.param("host")
            .filter(|h| !h.is_empty())
            .or_else(|| self.0.host_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Whether the connection stays on this machine (where TLS adds
    /// nothing): a Unix socket, `localhost` or a loopback address.
    pub fn is_local(&self) -> bool {
        let host = self.effective_host();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        host.is_empty()
            || host.starts_with('/')
            || bare.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether `sslmode` demands TLS (`require`, `verify-ca`, `verify-full`).
    pub fn requires_tls(&self) -> bool {
        matches!(
            self.param("sslmode").as_deref(),
            Some("require" | "verify-ca" | "verify-full")
        )
    }

    /// The database name (the path without its `/`, percent-decoded).
    pub fn database(&self) -> String {
        let path = self.0.path();
        let name = path.strip_prefix('/').unwrap_or(path);
        percent_encoding::percent_decode_str(name)
            .decode_utf8_lossy()
            .into_owned()
    }

    /// The same server with another database name.
    pub fn with_database(&self, name: &str) -> String {
        let mut u = self.0.clone();
        u.set_path(&format!("/{name}"));
        u.to_string()
    }

    /// The URL for a libpq tool (`pg_dump`, `pg_restore`): the password,
    /// from the user info or a `password=` parameter, moves out (into
    /// `PGPASSWORD`, so it never shows in a process list), and sqlx-only
    /// parameters are dropped.
    pub fn libpq_target(&self) -> LibpqTarget {
        let mut u = self.0.clone();
        let decoded = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let password = u.password().map(decoded).or_else(|| self.param("password"));
        let _ = u.set_password(None);
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != "password" && !SQLX_ONLY.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(kept);
        }
        LibpqTarget {
            url: u.to_string(),
            password,
        }
    }
}

/// A PostgreSQL URL for a libpq tool, and the password to hand it apart.
#[derive(Clone)]
pub struct LibpqTarget {
    pub url: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for LibpqTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LibpqTarget(…)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pg(s: &str) -> PgUrl {
        PgUrl::parse(s).unwrap()
    }

    #[test]
    fn libpq_target_moves_the_password_out() {
        let t = pg("postgres://amal:s%40cret@db.internal:5432/amal?sslmode=require&statement-cache-capacity=10")
            .libpq_target();
        assert_eq!(
            t.url,
            "postgres://amal@db.internal:5432/amal?sslmode=require"
        );
        assert_eq!(t.password.as_deref(), Some("s@cret"));
        let t = pg("postgres://postgres@127.0.0.1:5432/postgres").libpq_target();
        assert_eq!(t.url, "postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(t.password, None);
        assert!(!format!("{t:?}").contains("postgres@"));
        let t = pg("postgres://u@h/db?password=p%C3%A9w&sslmode=disable").libpq_target();
        assert_eq!(t.password.as_deref(), Some("péw"));
        assert_eq!(t.url, "postgres://u@h/db?sslmode=disable");
    }

    #[test]
    fn odd_percent_escapes_never_panic() {
        // A byte-offset decoder once panicked on a multi-byte character
        // right after '%'.
        for s in [
            "postgres://u:%aé@h/db",
            "postgres://u:%@h/db",
            "postgres://u:%zz%é%%@h/db",
        ] {
            if let Some(u) = PgUrl::parse(s) {
                let _ = u.libpq_target();
            }
        }
    }

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            pg("postgres://u@h:5432/amal?sslmode=require").with_database("x"),
            "postgres://u@h:5432/x?sslmode=require"
        );
        assert_eq!(pg("postgres://u@h").with_database("x"), "postgres://u@h/x");
    }

    #[test]
    fn locality_follows_the_host_libpq_uses() {
        assert!(pg("postgres://postgres@127.0.0.1:5432/amal").is_local());
        assert!(pg("postgres://localhost/amal").is_local());
        assert!(pg("postgres://[::1]:5432/amal").is_local());
        assert!(pg("postgres:///amal?host=/var/run/postgresql").is_local());
        assert!(!pg("postgres://db.example.net/amal").is_local());
        // A host= parameter is where libpq really goes: it cannot make a
        // remote server look local, nor the other way round.
        assert!(!pg("postgres://localhost/amal?host=db.example.net").is_local());
        assert!(pg("postgres://db.example.net/amal?host=/tmp").is_local());
        assert!(pg("postgres://h/a?sslmode=verify-full").requires_tls());
        assert!(!pg("postgres://h/a?sslmode=prefer").requires_tls());
        assert!(PgUrl::parse("mysql://h/a").is_none());
    }
}
