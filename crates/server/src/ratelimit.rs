//! Rate limiting (SPEC §5) with a sliding-window estimate: the count of the
//! current fixed window plus the previous window's count weighted by how
//! much of it still overlaps the last `period`. This never lets a burst
//! straddling a window boundary through (5 at 0:59 and 1 at 1:00 is still
//! 6 in a minute), and needs only two counters per key.
//!
//! Counters live in memory on SQLite (one server) and in the database on
//! PostgreSQL, so every instance behind a load balancer sees the same counts.
//! In memory each key expires on its own, two of its periods after it was
//! last counted (a `moka` cache with a per-entry expiry): no sweep ever
//! clears other keys, so unrelated traffic cannot lift a limit.

use std::time::{Duration, Instant};

use store::Db;

use crate::config::Rate;

/// How long an IP stays "known" for an account after a successful sign-in
/// from it (see `services::auth`): counted in 30-day windows, so 30 to 60
/// days. Its keys start with [`store::ratelimit::LONG_LIVED`].
pub const KNOWN_IP: Rate = Rate {
    limit: u32::MAX,
    period: Duration::from_secs(30 * 86_400),
};

/// The answer for one request.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window frees a request.
    pub reset_secs: u64,
    /// The sliding estimate of requests in the last period (this one included
    /// when counted), rounded down.
    pub used: u32,
}

pub enum Limiter {
    Memory(MemoryCounters),
    Shared(Db),
}

/// One key's counters: the window start, the count in that window, the
/// count in the window before, and how long the key lives unused.
#[derive(Clone, Copy)]
struct Slot {
    start: i64,
    cur: i64,
    prev: i64,
    ttl: Duration,
}

/// Each key lives `ttl` after it was last written (two periods of its rate:
/// older counts can no longer matter).
struct PerKey;

impl moka::Expiry<String, Slot> for PerKey {
    fn expire_after_create(&self, _: &String, v: &Slot, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        v: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The most keys kept in memory; past it the cache's admission policy
/// (TinyLFU) keeps the frequently hit keys, so a flood of one-off keys does
/// not push out the limit of a key under attack.
const MEMORY_KEYS: u64 = 1_000_000;

pub struct MemoryCounters(moka::sync::Cache<String, Slot>);

impl Default for MemoryCounters {
    fn default() -> Self {
        MemoryCounters(
            moka::sync::Cache::builder()
                .max_capacity(MEMORY_KEYS)
                .expire_after(PerKey)
                .build(),
        )
    }
}

impl MemoryCounters {
    /// Roll `key` to the window starting at `start` and add `add`; returns
    /// (this window's count, the previous window's).
    fn count(&self, key: &str, start: i64, len_ms: i64, add: i64) -> (i64, i64) {
        let ttl = Duration::from_millis(u64::try_from(2 * len_ms).unwrap_or(u64::MAX));
        let fresh = Slot {
            start,
            cur: 0,
            prev: 0,
            ttl,
        };
        let e = self
            .0
            .entry(key.to_string())
            .and_upsert_with(|old| {
                let mut v = old.map_or(fresh, |e| e.into_value());
                if v.start != start {
                    let prev = if v.start == start - len_ms { v.cur } else { 0 };
                    v = Slot { prev, ..fresh };
                }
                v.cur += add;
                v.ttl = ttl;
                v
            })
            .into_value();
        (e.cur, e.prev)
    }

    /// Set `key`'s value in the window starting at `start` (a time stamp).
    fn set(&self, key: &str, start: i64, len_ms: i64, value: i64) {
        let ttl = Duration::from_millis(u64::try_from(2 * len_ms).unwrap_or(u64::MAX));
        self.0.insert(
            key.to_string(),
            Slot {
                start,
                cur: value,
                prev: 0,
                ttl,
            },
        );
    }

    /// `key`'s value in the window starting at `start` or the one before.
    fn get(&self, key: &str, start: i64, len_ms: i64) -> (i64, i64) {
        match self.0.get(key) {
            Some(v) if v.start == start => (v.cur, v.prev),
            Some(v) if v.start == start - len_ms => (0, v.cur),
            _ => (0, 0),
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Limiter {
    /// In memory on SQLite (one server); in the database on PostgreSQL, where
    /// several instances must share the counts.
    pub fn for_db(db: &Db, url: &str) -> Limiter {
        match db.engine() {
            store::Engine::Sqlite => Limiter::Memory(MemoryCounters::default()),
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
        let len_ms = telemetry::num::cap_i64(rate.period.as_millis());
        let now = now_ms();
        let start = now - now.rem_euclid(len_ms);
        let (cur, prev) = match self {
            Limiter::Memory(m) => m.count(key, start, len_ms, i64::from(add)),
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

    /// Remember "now" under `key` for about two periods of `rate` (the time
    /// of an account's last failed sign-in, say).
    pub async fn stamp(&self, key: &str, rate: Rate) -> anyhow::Result<()> {
        let len_ms = telemetry::num::cap_i64(rate.period.as_millis());
        let now = now_ms();
        let start = now - now.rem_euclid(len_ms);
        match self {
            Limiter::Memory(m) => m.set(key, start, len_ms, now),
            Limiter::Shared(db) => store::ratelimit::set(db, key, start, now).await?,
        }
        Ok(())
    }

    /// The latest [`Limiter::stamp`] of `key` still remembered, in Unix ms.
    pub async fn stamped(&self, key: &str, rate: Rate) -> anyhow::Result<Option<i64>> {
        let len_ms = telemetry::num::cap_i64(rate.period.as_millis());
        let now = now_ms();
        let start = now - now.rem_euclid(len_ms);
        let (cur, prev) = match self {
            Limiter::Memory(m) => m.get(key, start, len_ms),
            Limiter::Shared(db) => store::ratelimit::peek(db, key, start, len_ms).await?,
        };
        Ok(Some(cur.max(prev)).filter(|t| *t > 0))
    }

    /// Remove stale shared counters (run periodically).
    pub async fn prune(&self) -> anyhow::Result<()> {
        if let Limiter::Shared(db) = self {
            let now = now_ms();
            let cutoff = now - 2 * 86_400_000;
            let long = now - 2 * telemetry::num::cap_i64(KNOWN_IP.period.as_millis());
            store::ratelimit::prune(db, cutoff, long).await?;
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
    let len = telemetry::num::cap_i64(rate.period.as_millis());
    let limit = rate.limit as f64;
    let est = estimate(len, now - start, cur, prev);
    // When peeking, ask whether one more request would still fit.
    let allowed = if counted {
        est <= limit + 1e-9
    } else {
        est + 1.0 <= limit + 1e-9
    };
    let remaining = telemetry::num::floor_u32(limit - est);
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
        used: telemetry::num::floor_u32(est),
        reset_secs: ((wait_ms + 999) / 1000).max(if remaining == 0 { 1 } else { 0 }) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fifth_passes_sixth_refused() {
        let l = Limiter::Memory(MemoryCounters::default());
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

    /// The old limiter cleared every key on each 4,096th call; now each
    /// key expires on its own, so other traffic never lifts a limit.
    #[tokio::test]
    async fn a_limit_survives_ten_thousand_unrelated_keys() {
        let l = Limiter::Memory(MemoryCounters::default());
        let r = Rate {
            limit: 3,
            period: Duration::from_secs(3600),
        };
        for _ in 0..3 {
            assert!(l.hit("victim", r).await.unwrap().allowed);
        }
        for i in 0..10_000 {
            l.hit(&format!("noise-{i}"), r).await.unwrap();
        }
        let d = l.hit("victim", r).await.unwrap();
        assert!(!d.allowed, "the limit still holds after unrelated traffic");
        assert!(d.used >= 3);
    }

    #[tokio::test]
    async fn a_stamp_is_remembered_per_key() {
        let l = Limiter::Memory(MemoryCounters::default());
        let r = Rate::per_minute(1);
        assert_eq!(l.stamped("k", r).await.unwrap(), None);
        l.stamp("k", r).await.unwrap();
        assert!(l.stamped("k", r).await.unwrap().is_some());
        assert_eq!(l.stamped("other", r).await.unwrap(), None);
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
