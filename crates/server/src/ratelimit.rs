//! Rate limiting (SPEC §5) with a sliding-window estimate: the count of the
//! current fixed window plus the previous window's count weighted by how
//! much of it still overlaps the last `period`. This never lets a burst
//! straddling a window boundary through (5 at 0:59 and 1 at 1:00 is still
//! 6 in a minute), and needs only two counters per key.
//!
//! Counters live in memory on SQLite (one server) and in the database on
//! PostgreSQL, so every instance behind a load balancer sees the same counts.

use std::collections::HashMap;
use std::sync::Mutex;

use store::Db;

use crate::config::Rate;

/// The answer for one request.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window frees a request.
    pub reset_secs: u64,
}

pub enum Limiter {
    Memory(Mutex<MemoryCounters>),
    Shared(Db),
}

#[derive(Default)]
pub struct MemoryCounters {
    /// key → (window start, count in that window, count in the window before)
    map: HashMap<String, (i64, i64, i64)>,
    hits: u64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Limiter {
    /// In memory on SQLite (one server); in the database on PostgreSQL, where
    /// several instances must share the counts.
    pub fn for_db(db: &Db, url: &str) -> Limiter {
        match db.engine() {
            store::Engine::Sqlite => Limiter::Memory(Mutex::new(MemoryCounters::default())),
            store::Engine::Postgres => Limiter::Shared(store::ratelimit::counters_db(db, url)),
        }
    }

    /// Count a request against `key` and decide.
    pub async fn hit(&self, key: &str, rate: Rate) -> anyhow::Result<Decision> {
        self.count(key, rate, true).await
    }

    /// Decide without counting (used to check the per-account failure limit
    /// before spending a password hash).
    pub async fn peek(&self, key: &str, rate: Rate) -> anyhow::Result<Decision> {
        self.count(key, rate, false).await
    }

    async fn count(&self, key: &str, rate: Rate, add: bool) -> anyhow::Result<Decision> {
        let len_ms = crate::num::cap_i64(rate.period.as_millis());
        let now = now_ms();
        let start = now - now.rem_euclid(len_ms);
        let (cur, prev) = match self {
            Limiter::Memory(m) => {
                let mut m = m
                    .lock()
                    .map_err(|_| anyhow::anyhow!("rate limiter poisoned"))?;
                m.hits += 1;
                if m.hits % 4096 == 0 {
                    m.map.retain(|_, v| v.0 >= start - len_ms);
                }
                let e = m.map.entry(key.to_string()).or_insert((start, 0, 0));
                if e.0 != start {
                    let prev = if e.0 == start - len_ms { e.1 } else { 0 };
                    *e = (start, 0, prev);
                }
                if add {
                    e.1 += 1;
                }
                (e.1, e.2)
            }
            Limiter::Shared(db) => {
                if add {
                    store::ratelimit::hit(db, key, start, len_ms).await?
                } else {
                    store::ratelimit::peek(db, key, start, len_ms).await?
                }
            }
        };
        Ok(decide(rate, now, start, cur, prev, add))
    }

    /// Remove stale shared counters (run periodically).
    pub async fn prune(&self) -> anyhow::Result<()> {
        if let Limiter::Shared(db) = self {
            let cutoff = now_ms() - 2 * 86_400_000;
            store::ratelimit::prune(db, cutoff).await?;
        }
        Ok(())
    }
}

/// The sliding estimate at `now` given the two window counts.
fn estimate(len_ms: i64, offset_ms: i64, cur: i64, prev: i64) -> f64 {
    let overlap = 1.0 - (offset_ms as f64 / len_ms as f64);
    prev as f64 * overlap.clamp(0.0, 1.0) + cur as f64
}

fn decide(rate: Rate, now: i64, start: i64, cur: i64, prev: i64, counted: bool) -> Decision {
    let len = crate::num::cap_i64(rate.period.as_millis());
    let limit = rate.limit as f64;
    let est = estimate(len, now - start, cur, prev);
    // When peeking, ask whether one more request would still fit.
    let allowed = if counted {
        est <= limit + 1e-9
    } else {
        est + 1.0 <= limit + 1e-9
    };
    let remaining = crate::num::floor_u32(limit - est);
    // Seconds until the estimate (with one more request) fits again; step
    // forward a second at a time over at most two windows.
    let mut wait_ms = 0i64;
    let fits = |t: i64| {
        let at = now + t;
        let s = at - at.rem_euclid(len);
        let (c, p) = if s == start {
            (cur, prev)
        } else if s == start + len {
            (0, cur)
        } else {
            (0, 0)
        };
        estimate(len, at - s, c, p) + 1.0 <= limit + 1e-9
    };
    while !fits(wait_ms) && wait_ms <= 2 * len {
        wait_ms += 1000;
    }
    Decision {
        allowed,
        limit: rate.limit,
        remaining,
        reset_secs: ((wait_ms + 999) / 1000).max(if remaining == 0 { 1 } else { 0 }) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fifth_passes_sixth_refused() {
        let l = Limiter::Memory(Mutex::new(MemoryCounters::default()));
        let r = Rate {
            limit: 5,
            period: Duration::from_secs(60),
        };
        for i in 1..=5 {
            let d = l.hit("k", r).await.unwrap();
            assert!(d.allowed, "hit {i}");
            assert_eq!(d.remaining, 5 - i);
        }
        let d = l.hit("k", r).await.unwrap();
        assert!(!d.allowed);
        assert!(d.reset_secs >= 1);
        assert!(l.hit("other", r).await.unwrap().allowed);
    }

    #[test]
    fn boundary_burst_is_still_counted() {
        let r = Rate {
            limit: 5,
            period: Duration::from_secs(60),
        };
        // 5 hits at the very end of the previous window, 1 at the start of this one.
        let d = decide(r, 60_001, 60_000, 1, 5, true);
        assert!(!d.allowed);
        // Late in the window the old hits have mostly slid out.
        let d = decide(r, 119_000, 60_000, 1, 5, true);
        assert!(d.allowed);
    }
}
