//! Anonymous 401s: limited per client IP and audited as one event when an
//! IP's minute starts plus one summary when it ends, not one durable row per
//! request (3,000 unauthenticated probes used to write 3,000 rows in 8.6 s).
//!
//! Over the limit (`AMAL_RATE_LIMIT_UNAUTHENTICATED`, default 60 a minute),
//! further requests from that IP that do not authenticate are answered 429
//! before their token is even checked.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use store::audit::AuditEvent;

/// IPs tracked at once; beyond this, refusals are counted under one key.
const MAX_IPS: usize = 100_000;
const OVERFLOW: &str = "(other addresses)";

#[derive(Debug)]
struct Window {
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
    count: u32,
    first_route: String,
}

#[derive(Debug)]
pub struct AnonymousRefusals {
    windows: Mutex<HashMap<String, Window>>,
    /// Refusals an IP may collect in one window before 429s.
    limit: u32,
    /// One IP's counting window (also how often its summary is written).
    window: Duration,
}

impl AnonymousRefusals {
    pub fn new(rate: crate::config::Rate) -> AnonymousRefusals {
        AnonymousRefusals {
            windows: Mutex::default(),
            limit: rate.limit,
            window: rate.period,
        }
    }

    /// Seconds until `ip` may try again, when it is over its limit.
    pub fn retry_after(&self, ip: &str, now: Instant) -> Option<u64> {
        let map = self.windows.lock().ok()?;
        let w = map.get(ip)?;
        let end = w.started + self.window;
        (w.count >= self.limit && now < end).then(|| end.duration_since(now).as_secs().max(1))
    }

    /// Count one anonymous 401 from `ip` on `route`. Returns the audit event
    /// to write now when it opens a window (the first refusal of an IP in a
    /// minute is recorded at once, with its patient, if any).
    pub fn count(
        &self,
        ip: &str,
        route: &str,
        patient: Option<uuid::Uuid>,
        now: Instant,
    ) -> Option<AuditEvent> {
        let mut map = self.windows.lock().ok()?;
        let key = if map.len() >= MAX_IPS && !map.contains_key(ip) {
            OVERFLOW
        } else {
            ip
        };
        let expired = map.get(key).is_some_and(|w| now >= w.started + self.window);
        if expired {
            // A window that ended is summarised by `drain_ended`; a request
            // arriving first starts the next one only after that.
            return None;
        }
        if let Some(w) = map.get_mut(key) {
            w.count += 1;
            return None;
        }
        map.insert(
            key.to_string(),
            Window {
                started: now,
                started_at: store::now(),
                count: 1,
                first_route: route.to_string(),
            },
        );
        let mut ev = refusal(key, route);
        ev.patient_id = patient;
        Some(ev)
    }

    /// Remove the windows that have ended and return the summary event of
    /// each that saw more than its first refusal.
    pub fn drain_ended(&self, now: Instant) -> Vec<AuditEvent> {
        let Ok(mut map) = self.windows.lock() else {
            return Vec::new();
        };
        let ended: Vec<String> = map
            .iter()
            .filter(|(_, w)| now >= w.started + self.window)
            .map(|(k, _)| k.clone())
            .collect();
        ended
            .into_iter()
            .filter_map(|k| {
                let w = map.remove(&k)?;
                (w.count > 1).then(|| {
                    let mut ev = refusal(&k, &w.first_route);
                    ev.detail = Some(
                        serde_json::json!({
                            "route": w.first_route,
                            "aggregated": true,
                            "count": w.count,
                            "since": w.started_at,
                            "limited": w.count > self.limit,
                        })
                        .to_string(),
                    );
                    ev
                })
            })
            .collect()
    }
}

fn refusal(ip: &str, route: &str) -> AuditEvent {
    let mut ev = AuditEvent::new("access.refused", "unauthorized");
    ev.resource_type = Some("patient".into());
    ev.client_ip = Some(ip.to_string());
    ev.detail = Some(serde_json::json!({ "route": route }).to_string());
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u32 = 60;
    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn one_event_opens_a_window_one_summary_closes_it_and_the_limit_holds() {
        let a = AnonymousRefusals::new(crate::config::Rate::per_minute(LIMIT));
        let t0 = Instant::now();
        let p = uuid::Uuid::now_v7();
        let first = a.count("10.0.0.1", "/api/patients/{id}", Some(p), t0);
        assert_eq!(first.unwrap().patient_id, Some(p));
        for _ in 1..LIMIT + 20 {
            assert!(a
                .count("10.0.0.1", "/api/patients/{id}", None, t0)
                .is_none());
        }
        assert!(a.retry_after("10.0.0.1", t0).is_some(), "over the limit");
        assert!(
            a.retry_after("10.0.0.2", t0).is_none(),
            "other IPs unaffected"
        );
        assert!(a.drain_ended(t0).is_empty(), "the window is still open");
        let later = t0 + WINDOW;
        let summary = a.drain_ended(later);
        assert_eq!(summary.len(), 1);
        let d: serde_json::Value =
            serde_json::from_str(summary[0].detail.as_deref().unwrap()).unwrap();
        assert_eq!(d["count"], LIMIT + 20);
        assert_eq!(d["limited"], true);
        assert!(
            a.retry_after("10.0.0.1", later).is_none(),
            "the next minute is free"
        );
        // A single refusal leaves no summary.
        a.count("10.0.0.3", "/x", None, later);
        assert!(a.drain_ended(later + WINDOW).is_empty());
    }
}
