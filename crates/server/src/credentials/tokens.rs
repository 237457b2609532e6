//! Access tokens (HS512 JWTs, 15 minutes) and opaque refresh tokens (stored
//! only as an HMAC keyed by `JWT_REFRESH_SECRET`, rotated on every use).

use base64::Engine as _;
use chrono::{Duration, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::config::Config;

pub const ACCESS_TTL_SECS: i64 = 15 * 60;
/// A session (refresh family) ends 7 days after sign-in, however often it is
/// refreshed: the absolute expiry.
pub const REFRESH_TTL_DAYS: i64 = 7;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    /// Always "access": a token of another kind is never accepted here.
    pub typ: String,
    /// The session (refresh family) this token belongs to.
    pub sid: Uuid,
}

#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
    refresh_key: Vec<u8>,
}

impl Keys {
    pub fn new(cfg: &Config) -> Keys {
        let current = cfg.jwt_secret.expose_secret().as_bytes();
        let mut decoding = vec![DecodingKey::from_secret(current)];
        if let Some(prev) = &cfg.jwt_secret_previous {
            decoding.push(DecodingKey::from_secret(prev.expose_secret().as_bytes()));
        }
        Keys {
            encoding: EncodingKey::from_secret(current),
            decoding,
            refresh_key: cfg.jwt_refresh_secret.expose_secret().as_bytes().to_vec(),
        }
    }

    pub fn issue_access(&self, user: Uuid, role: &str, session: Uuid) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            role: role.to_string(),
            iat: now,
            exp: now + ACCESS_TTL_SECS,
            jti: Uuid::new_v4(),
            typ: "access".into(),
            sid: session,
        };
        Ok(encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verify signature (current, then previous secret), algorithm (HS512
    /// only: `none` and algorithm confusion are refused), expiry and type.
    pub fn verify_access(&self, token: &str) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::HS512);
        v.algorithms = vec![Algorithm::HS512];
        v.set_required_spec_claims(&["exp", "iat", "sub"]);
        v.leeway = 5;
        for key in &self.decoding {
            if let Ok(data) = decode::<Claims>(token, key, &v) {
                let c = data.claims;
                let now = Utc::now().timestamp();
                if c.typ == "access" && c.iat <= now + 5 && c.exp - c.iat <= ACCESS_TTL_SECS {
                    return Some(c);
                }
                return None;
            }
        }
        None
    }

    /// A fresh opaque refresh token and the hash to store.
    pub fn new_refresh(&self) -> (String, String) {
        let token = random_url_safe::<32>();
        let hash = self.refresh_hash(&token);
        (token, hash)
    }

    pub fn refresh_hash(&self, token: &str) -> String {
        keyed_hash(&self.refresh_key, token)
    }
}

/// `N` bytes from the operating system's generator, URL-safe base64.
fn random_url_safe<const N: usize>() -> String {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A fresh one-time code (144 random bits, URL-safe): invitations and the
/// first run's setup link.
pub fn one_time_code() -> String {
    random_url_safe::<18>()
}

/// A fresh 256-bit nonce (43 URL-safe characters): the web UI's pre-session
/// cookie, and unusable placeholder secrets.
pub fn new_nonce() -> String {
    random_url_safe::<32>()
}

/// Constant-time equality of two secrets (`subtle`), so a token cannot be
/// guessed byte by byte from response times.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// HMAC-SHA256 hex of `value` under `key`.
pub fn keyed_hash(key: &[u8], value: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| {
        // HMAC accepts keys of any length; this branch cannot run.
        <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).unwrap_or_else(|_| unreachable!())
    });
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn refresh_expiry() -> chrono::DateTime<Utc> {
    store::now() + Duration::days(REFRESH_TTL_DAYS)
}
