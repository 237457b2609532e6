//! The tamper-evident audit trail.
//!
//! Every event stores the SHA-256 of its predecessor and its own hash over a
//! canonical encoding, so editing, deleting or inserting a row breaks the
//! chain at that row. Appends are serialized (SQLite has one writer; on
//! PostgreSQL a transaction-scoped advisory lock), which keeps the chain a
//! single line even with several `amal` instances.
//!
//! Reads of patient data are audited through [`AuditWriter`], which commits
//! queued events in one transaction (group commit) and answers each caller
//! only once its event is durable. Changes append their events inside the
//! change's own transaction with [`append`].

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::db::{Db, FaultKind, Result, StoreError, Tx};
use crate::{on_read, on_tx};

/// The hash that precedes the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Arbitrary constant naming the advisory lock that serializes appends.
const PG_AUDIT_LOCK: i64 = 0x616d_616c_6175_6474;

/// One audit event. Holds ids and codes only, never names or clinical text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_role: Option<String>,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<Uuid>,
    pub patient_id: Option<Uuid>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    /// Small structured facts (codes, counts, reasons chosen from a list).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// A new event happening now.
    pub fn new(action: &str, outcome: &str) -> AuditEvent {
        AuditEvent {
            id: Uuid::now_v7(),
            occurred_at: crate::now(),
            actor_id: None,
            actor_role: None,
            action: action.to_string(),
            resource_type: None,
            resource_id: None,
            patient_id: None,
            outcome: outcome.to_string(),
            request_id: None,
            client_ip: None,
            detail: None,
        }
    }
}

/// A stored event with its place in the chain.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_role: Option<String>,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<Uuid>,
    pub patient_id: Option<Uuid>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredEvent {
    /// The event as it was hashed.
    pub fn event(&self) -> AuditEvent {
        AuditEvent {
            id: self.id,
            occurred_at: self.occurred_at,
            actor_id: self.actor_id,
            actor_role: self.actor_role.clone(),
            action: self.action.clone(),
            resource_type: self.resource_type.clone(),
            resource_id: self.resource_id,
            patient_id: self.patient_id,
            outcome: self.outcome.clone(),
            request_id: self.request_id.clone(),
            client_ip: self.client_ip.clone(),
            detail: self.detail.clone(),
        }
    }
}

/// SHA-256 (hex) over the canonical encoding: a JSON array of every field in
/// a fixed order, timestamps as RFC 3339 with microseconds, then the
/// predecessor's hash.
pub fn chain_hash(seq: i64, e: &AuditEvent, prev_hash: &str) -> String {
    let uuid = |u: Option<Uuid>| u.map(|u| u.hyphenated().to_string());
    let canonical = serde_json::json!([
        seq,
        e.id.hyphenated().to_string(),
        e.occurred_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        uuid(e.actor_id),
        e.actor_role,
        e.action,
        e.resource_type,
        uuid(e.resource_id),
        uuid(e.patient_id),
        e.outcome,
        e.request_id,
        e.client_ip,
        e.detail,
        prev_hash,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Append `events` to the chain inside `tx`.
pub async fn append(tx: &mut Tx, events: &[AuditEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    if let Tx::Postgres(t) = tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_AUDIT_LOCK)
            .execute(&mut **t)
            .await
            .map(|r| r.rows_affected())?;
    }
    let head_sql = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1";
    let head: Option<(i64, String)> =
        on_tx!(tx, c => sqlx::query_as(head_sql).fetch_optional(&mut *c).await)?;
    let (mut seq, mut prev) = head.unwrap_or((0, GENESIS.to_string()));
    // One multi-row INSERT per chunk: a group commit of many reads costs one
    // round trip, not one per event. 15 parameters a row stays far below
    // both engines' limits at this chunk size.
    const COLS: usize = 15;
    const CHUNK: usize = 500;
    let mut rows: Vec<(i64, &AuditEvent, String, String)> = Vec::with_capacity(events.len());
    for e in events {
        seq += 1;
        let hash = chain_hash(seq, e, &prev);
        rows.push((seq, e, std::mem::replace(&mut prev, hash.clone()), hash));
    }
    for chunk in rows.chunks(CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|r| {
                let ps: Vec<String> = (1..=COLS).map(|c| format!("${}", r * COLS + c)).collect();
                format!("({})", ps.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO audit_events (seq, id, occurred_at, actor_id, actor_role, action, resource_type, resource_id, \
             patient_id, outcome, request_id, client_ip, detail, prev_hash, hash) VALUES {}",
            values.join(", ")
        );
        on_tx!(tx, c => {
            let mut q = sqlx::query(&sql);
            for (seq, e, prev_hash, hash) in chunk {
                q = q
                    .bind(*seq)
                    .bind(e.id)
                    .bind(e.occurred_at)
                    .bind(e.actor_id)
                    .bind(&e.actor_role)
                    .bind(&e.action)
                    .bind(&e.resource_type)
                    .bind(e.resource_id)
                    .bind(e.patient_id)
                    .bind(&e.outcome)
                    .bind(&e.request_id)
                    .bind(&e.client_ip)
                    .bind(&e.detail)
                    .bind(prev_hash)
                    .bind(hash);
            }
            q.execute(&mut *c).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

/// Append events in their own transaction.
pub async fn append_now(db: &Db, events: &[AuditEvent]) -> Result<()> {
    let mut tx = db.begin().await?;
    append(&mut tx, events).await?;
    tx.commit().await
}

/// The outcome of a chain verification.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub valid: bool,
    pub events: i64,
    pub first_broken_id: Option<Uuid>,
    pub first_broken_seq: Option<i64>,
    pub head_hash: String,
}

/// One page of the chain, in order, after the `seq` bound ($1).
pub const CHAIN_PAGE_SQL: &str =
    "SELECT seq, id, occurred_at, actor_id, actor_role, action, resource_type, resource_id, \
     patient_id, outcome, request_id, client_ip, detail, prev_hash, hash \
     FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT 2000";

/// The chain check itself, fed page by page by whoever reads the rows (a
/// pool, a snapshot transaction, a backup image), so that every verifier —
/// `amal audit verify`, the API and `backup verify` — applies one rule: each
/// event's `seq` follows its predecessor's, it links to the predecessor's
/// hash, and its own hash is the hash of its content and that link.
#[derive(Debug)]
pub struct ChainCheck {
    last_seq: i64,
    prev: String,
    count: i64,
    broken: Option<(Uuid, i64)>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck {
            last_seq: 0,
            prev: GENESIS.to_string(),
            count: 0,
            broken: None,
        }
    }
}

impl ChainCheck {
    /// The bound for the next [`CHAIN_PAGE_SQL`] query.
    pub fn after(&self) -> i64 {
        self.last_seq
    }

    /// Check one page; false once the end or a broken event is reached.
    pub fn feed(&mut self, page: Vec<StoredEvent>) -> bool {
        if page.is_empty() || self.broken.is_some() {
            return false;
        }
        for row in page {
            let ok = row.seq == self.last_seq + 1
                && row.prev_hash == self.prev
                && chain_hash(row.seq, &row.event(), &self.prev) == row.hash;
            if !ok {
                self.broken = Some((row.id, row.seq));
                return false;
            }
            self.count += 1;
            self.last_seq = row.seq;
            self.prev = row.hash;
        }
        true
    }

    pub fn report(self) -> VerifyReport {
        VerifyReport {
            valid: self.broken.is_none(),
            events: self.count,
            first_broken_id: self.broken.map(|b| b.0),
            first_broken_seq: self.broken.map(|b| b.1),
            head_hash: self.prev,
        }
    }
}

/// Walk the whole chain in order and report the first event whose stored
/// hash, predecessor link or sequence number is wrong.
pub async fn verify(db: &Db) -> Result<VerifyReport> {
    let mut check = ChainCheck::default();
    loop {
        let page: Vec<StoredEvent> = on_read!(db, c => sqlx::query_as(CHAIN_PAGE_SQL)
            .bind(check.after()).fetch_all(c).await)?;
        if !check.feed(page) {
            return Ok(check.report());
        }
    }
}

/// Filters for listing the audit log; all optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub patient_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only events with `seq` below this (keyset cursor, newest first).
    pub before_seq: Option<i64>,
}

/// Newest-first page of events matching `f`.
pub async fn list(db: &Db, f: &AuditFilter, limit: i64) -> Result<Vec<StoredEvent>> {
    let mut clauses: Vec<String> = Vec::new();
    let mut n = 0;
    let mut next = |col: &str, op: &str| {
        n += 1;
        format!("{col} {op} ${n}")
    };
    if f.patient_id.is_some() {
        clauses.push(next("patient_id", "="));
    }
    if f.user_id.is_some() {
        clauses.push(next("actor_id", "="));
    }
    if f.action.is_some() {
        clauses.push(next("action", "="));
    }
    if f.from.is_some() {
        clauses.push(next("occurred_at", ">="));
    }
    if f.to.is_some() {
        clauses.push(next("occurred_at", "<"));
    }
    if f.before_seq.is_some() {
        clauses.push(next("seq", "<"));
    }
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT seq, id, occurred_at, actor_id, actor_role, action, resource_type, resource_id, \
         patient_id, outcome, request_id, client_ip, detail, prev_hash, hash \
         FROM audit_events {where_sql} ORDER BY seq DESC LIMIT {limit}"
    );
    on_read!(db, c => {
        let mut q = sqlx::query_as::<_, StoredEvent>(&sql);
        if let Some(v) = f.patient_id { q = q.bind(v); }
        if let Some(v) = f.user_id { q = q.bind(v); }
        if let Some(v) = &f.action { q = q.bind(v.clone()); }
        if let Some(v) = f.from { q = q.bind(v); }
        if let Some(v) = f.to { q = q.bind(v); }
        if let Some(v) = f.before_seq { q = q.bind(v); }
        Ok(q.fetch_all(c).await?)
    })
}

/// A batch's outcome: the database fault behind a failure, if it was one.
type Ack = oneshot::Sender<std::result::Result<(), FaultKind>>;

/// Group-committing audit writer: callers queue an event and wait until the
/// batch holding it is committed.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<(AuditEvent, Ack)>,
}

/// The most events committed in one transaction.
const MAX_BATCH: usize = 1024;

impl AuditWriter {
    /// Start the writer task on `db`.
    pub fn start(db: Db) -> AuditWriter {
        let (tx, mut rx) = mpsc::channel::<(AuditEvent, Ack)>(8192);
        tokio::spawn(async move {
            let mut batch: Vec<(AuditEvent, Ack)> = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let events: Vec<AuditEvent> = batch.iter().map(|(e, _)| e.clone()).collect();
                let outcome = append_now(&db, &events).await.map_err(|e| {
                    tracing::error!(error = %e, events = events.len(), "audit batch commit failed");
                    e.fault().unwrap_or(FaultKind::Audit)
                });
                for (_, ack) in batch.drain(..) {
                    let _ = ack.send(outcome);
                }
            }
        });
        AuditWriter { tx }
    }

    /// Queue `event` and wait until it is durable. A failure is
    /// [`StoreError::AuditUnavailable`]: the caller must not answer as if
    /// the access had been recorded.
    pub async fn record(&self, event: AuditEvent) -> Result<()> {
        let stopped = StoreError::AuditUnavailable {
            kind: FaultKind::Audit,
        };
        let (ack, done) = oneshot::channel();
        if self.tx.send((event, ack)).await.is_err() {
            return Err(stopped);
        }
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(kind)) => Err(StoreError::AuditUnavailable { kind }),
            Err(_) => Err(stopped),
        }
    }
}
