//! argon2id password hashing on a small pool of its own threads (half the
//! CPUs, at least one), so a sign-in storm can neither take every core from
//! the reads beside it nor grow memory: each argon2id run holds 19 MiB, and
//! spread over the runtime's many blocking threads the allocator kept those
//! buffers in one arena per thread (a 4-client sign-in storm took the
//! server from 99 to 426 MiB). A fixed set of threads keeps a fixed set.

use std::sync::{mpsc, Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct Hasher {
    /// Jobs for the hashing threads; they queue when every thread is busy.
    jobs: mpsc::Sender<Job>,
    /// A real hash of a random password, verified against when the e-mail is
    /// unknown so both failures take about the same time.
    dummy: Arc<String>,
}

/// Hashing threads for `cpus` CPUs: half of them, at least one.
pub fn pool_size(cpus: usize) -> usize {
    (cpus / 2).max(1)
}

impl Hasher {
    pub fn new() -> anyhow::Result<Hasher> {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..pool_size(cpus) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name("amal-argon2".into())
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let next = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    match next {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })?;
        }
        let dummy = hash_blocking(&uuid::Uuid::new_v4().to_string())?;
        Ok(Hasher {
            jobs,
            dummy: Arc::new(dummy),
        })
    }

    /// Run `f` on a hashing thread and wait for its result.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(f());
            }))
            .map_err(|_| anyhow::anyhow!("the password hashing threads have stopped"))?;
        result
            .await
            .map_err(|_| anyhow::anyhow!("a password hashing thread stopped mid-job"))
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let pw = password.to_string();
        self.run(move || hash_blocking(&pw)).await?
    }

    /// Verify `password` against `hash`, or against the dummy hash when
    /// there is no account (always false then).
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        let pw = password.to_string();
        let known = hash.is_some();
        let h = hash
            .map(str::to_string)
            .unwrap_or_else(|| (*self.dummy).clone());
        let ok = self
            .run(move || {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_cpus_hash_and_never_none() {
        assert_eq!(pool_size(1), 1);
        assert_eq!(pool_size(2), 1);
        assert_eq!(pool_size(3), 1);
        assert_eq!(pool_size(8), 4);
    }

    #[tokio::test]
    async fn many_sign_ins_at_once_all_verify_on_the_small_pool() {
        let h = Hasher::new().unwrap();
        let hash = h.hash("correct horse battery").await.unwrap();
        let checks = (0..6).map(|i| {
            let (h, hash) = (h.clone(), hash.clone());
            async move {
                let pw = if i % 2 == 0 {
                    "correct horse battery"
                } else {
                    "wrong"
                };
                (i, h.verify(pw, Some(&hash)).await.unwrap())
            }
        });
        for (i, ok) in futures::future::join_all(checks).await {
            assert_eq!(ok, i % 2 == 0, "attempt {i}");
        }
        assert!(!h.verify("correct horse battery", None).await.unwrap());
    }
}
