//! argon2id password hashing, off the async runtime and behind a semaphore
//! the size of the CPU count, so a sign-in storm cannot stall reads.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against when the e-mail is
    /// unknown so both failures take about the same time.
    dummy: Arc<String>,
}

impl Hasher {
    pub fn new() -> anyhow::Result<Hasher> {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let dummy = hash_blocking(&uuid::Uuid::new_v4().to_string())?;
        Ok(Hasher {
            permits: Arc::new(Semaphore::new(cpus)),
            dummy: Arc::new(dummy),
        })
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let pw = password.to_string();
        tokio::task::spawn_blocking(move || hash_blocking(&pw)).await?
    }

    /// Verify `password` against `hash`, or against the dummy hash when
    /// there is no account (always false then).
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let pw = password.to_string();
        let known = hash.is_some();
        let h = hash
            .map(str::to_string)
            .unwrap_or_else(|| (*self.dummy).clone());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&h)
                .map(|parsed| argon2().verify_password(pw.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await?;
        Ok(ok && known)
    }
}

pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
}
