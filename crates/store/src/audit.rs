//! The tamper-evident audit trail.
//!
//! Every event stores the hash of its predecessor and its own hash over a
//! canonical encoding, so editing, deleting or inserting a row breaks the
//! chain at that row. The hash is an HMAC-SHA256 under `AUDIT_KEY`, a secret
//! kept outside the database ([`install_keys`]), so someone who can write the
//! database but does not hold the key cannot recompute a rewritten chain.
//! Each event records the id of its key (`key_id`); events written before
//! keyed hashing (release 0.1 schemas, migration 0015) have no key id and
//! carry the plain SHA-256 of the same encoding. Those *legacy* events verify
//! only as a prefix of the chain: a legacy event after a keyed one is a break,
//! so "recompute everything with plain SHA-256" is caught from the first
//! keyed event on, and a chain rewritten as legacy throughout no longer
//! matches the signed checkpoints (`crate::checkpoint`). Appends are serialized (SQLite has one writer; on
//! PostgreSQL a transaction-scoped advisory lock), which keeps the chain a
//! single line even with several `amal` instances.
//!
//! Reads of patient data are audited through [`AuditWriter`], which commits
//! queued events in one transaction (group commit) and answers each caller
//! only once its event is durable. Changes append their events inside the
//! change's own transaction with [`append`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
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
    /// The id of the `AUDIT_KEY` whose HMAC `hash` is; `None` for a legacy
    /// (plain SHA-256) event.
    pub key_id: Option<String>,
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

/// One `AUDIT_KEY`: the HMAC secret and its public id.
pub struct AuditKey {
    id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.id)
    }
}

impl AuditKey {
    /// A key from its secret. Its id is the first 16 hex digits of
    /// SHA-256 over a fixed label and the secret: stable, public, and no
    /// help in guessing the secret.
    pub fn new(secret: &[u8]) -> AuditKey {
        let mut h = Sha256::new();
        h.update(b"amal-audit-key-id\0");
        h.update(secret);
        let id = hex::encode(&h.finalize()[..8]);
        AuditKey {
            id,
            secret: secret.to_vec(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The keys this process hashes with (the current one) and verifies with
/// (every key installed, i.e. the current and previous `AUDIT_KEY`).
#[derive(Default)]
struct KeyRing {
    current: Option<Arc<AuditKey>>,
    known: BTreeMap<String, Arc<AuditKey>>,
}

static KEYS: RwLock<KeyRing> = RwLock::new(KeyRing {
    current: None,
    known: BTreeMap::new(),
});

/// Make `current` the key new events are hashed with; it and `previous`
/// (the key before a rotation) verify events. Keys installed earlier in the
/// same process stay known for verification, so a process that opens more
/// than one database (tests, `amal backup verify`) keeps verifying them.
pub fn install_keys(current: AuditKey, previous: Option<AuditKey>) {
    let mut ring = KEYS.write().unwrap_or_else(|e| e.into_inner());
    let current = Arc::new(current);
    ring.known.insert(current.id.clone(), current.clone());
    if let Some(p) = previous {
        ring.known.insert(p.id.clone(), Arc::new(p));
    }
    ring.current = Some(current);
}

/// The id of the key new events are hashed with, if one is installed.
pub fn current_key_id() -> Option<String> {
    current_key().map(|k| k.id.clone())
}

fn current_key() -> Option<Arc<AuditKey>> {
    KEYS.read()
        .unwrap_or_else(|e| e.into_inner())
        .current
        .clone()
}

fn known_key(id: &str) -> Option<Arc<AuditKey>> {
    KEYS.read()
        .unwrap_or_else(|e| e.into_inner())
        .known
        .get(id)
        .cloned()
}

/// The canonical encoding: a JSON array of every field in a fixed order,
/// timestamps as RFC 3339 with microseconds, the predecessor's hash, and
/// (keyed events only) the key id, so a key id cannot be swapped either.
fn canonical(seq: i64, e: &AuditEvent, prev_hash: &str, key_id: Option<&str>) -> String {
    let uuid = |u: Option<Uuid>| u.map(|u| u.hyphenated().to_string());
    let mut v = serde_json::json!([
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
    if let (Some(id), Some(a)) = (key_id, v.as_array_mut()) {
        a.push(serde_json::Value::String(id.to_string()));
    }
    v.to_string()
}

/// The legacy hash: plain SHA-256 (hex) of the canonical encoding, as
/// written before keyed hashing. Verified only as the chain's prefix.
pub fn legacy_hash(seq: i64, e: &AuditEvent, prev_hash: &str) -> String {
    hex::encode(Sha256::digest(
        canonical(seq, e, prev_hash, None).as_bytes(),
    ))
}

/// The keyed hash: HMAC-SHA256 (hex) under `key` of the canonical encoding.
pub fn keyed_hash(key: &AuditKey, seq: i64, e: &AuditEvent, prev_hash: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&key.secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(canonical(seq, e, prev_hash, Some(&key.id)).as_bytes());
    hex::encode(mac.finalize().into_bytes())
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
    let key = current_key().ok_or_else(|| {
        StoreError::Conflict("no AUDIT_KEY is installed; the audit chain cannot be extended".into())
    })?;
    let (mut seq, mut prev) = head.unwrap_or((0, GENESIS.to_string()));
    // One multi-row INSERT per chunk: a group commit of many reads costs one
    // round trip, not one per event. On SQLite the chunk stays small: binding
    // looks each parameter's name up in a list (`sqlite3_bind_parameter_name`
    // is linear), so a statement's binding cost grows with the square of its
    // parameters; 500 rows (8,000 parameters) took 61 % of the server's CPU
    // under the search benchmark (perf). 32 rows are 512 parameters, and a
    // full chunk's statement is the same text each time, so it stays prepared.
    const COLS: usize = 16;
    let chunk_rows = match tx {
        Tx::Sqlite(_) => 32,
        Tx::Postgres(_) => 500,
    };
    let mut rows: Vec<(i64, &AuditEvent, String, String)> = Vec::with_capacity(events.len());
    for e in events {
        seq += 1;
        let hash = keyed_hash(&key, seq, e, &prev);
        rows.push((seq, e, std::mem::replace(&mut prev, hash.clone()), hash));
    }
    for chunk in rows.chunks(chunk_rows) {
        let values: Vec<String> = (0..chunk.len())
            .map(|r| {
                let ps: Vec<String> = (1..=COLS).map(|c| format!("${}", r * COLS + c)).collect();
                format!("({})", ps.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO audit_events (seq, id, occurred_at, actor_id, actor_role, action, resource_type, resource_id, \
             patient_id, outcome, request_id, client_ip, detail, prev_hash, hash, key_id) VALUES {}",
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
                    .bind(hash)
                    .bind(&key.id);
            }
            q.execute(&mut *c).await.map(|r| r.rows_affected())
        })?;
    }
    APPENDED.fetch_add(
        u64::try_from(events.len()).unwrap_or(u64::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
    APPEND_NOTIFY.notify_one();
    Ok(())
}

/// Events appended by this process (committed or not: a hint for the
/// checkpoint writer, which reads the real head from the database).
static APPENDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static APPEND_NOTIFY: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// How many events this process has appended so far.
pub fn appended_count() -> u64 {
    APPENDED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Wait until this process appends more events.
pub async fn appended() {
    APPEND_NOTIFY.notified().await
}

/// Audit what an operator's command did (a backup, a restore, a
/// migration): one system event in its own transaction.
pub async fn record_operation(
    db: &Db,
    action: domain::audit::AuditAction,
    outcome: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let mut ev = AuditEvent::new(action.as_str(), outcome);
    ev.detail = Some(detail.to_string());
    anyhow::Context::context(
        append_now(db, &[ev]).await,
        "cannot write the audit event of this command",
    )
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
    /// Why the chain does not verify (none when it does).
    pub reason: Option<String>,
    /// Events hashed with plain SHA-256 before keyed hashing (a prefix).
    pub legacy_events: i64,
    /// Signed checkpoints the chain was checked against.
    pub checkpoints_checked: i64,
    /// The newest of them (its sequence number), if any.
    pub latest_checkpoint_seq: Option<i64>,
}

impl VerifyReport {
    /// The report for a database without an audit table.
    pub fn empty() -> VerifyReport {
        VerifyReport {
            valid: true,
            events: 0,
            first_broken_id: None,
            first_broken_seq: None,
            head_hash: GENESIS.to_string(),
            reason: None,
            legacy_events: 0,
            checkpoints_checked: 0,
            latest_checkpoint_seq: None,
        }
    }
}

/// One page of the chain, in order, after the `seq` bound ($1).
pub const CHAIN_PAGE_SQL: &str =
    "SELECT seq, id, occurred_at, actor_id, actor_role, action, resource_type, resource_id, \
     patient_id, outcome, request_id, client_ip, detail, prev_hash, hash, key_id \
     FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT 2000";

/// What the chain must contain, from outside the database: the head hash
/// at each checkpointed sequence number (see `crate::checkpoint`), and
/// problems with the checkpoints themselves (a bad signature).
#[derive(Debug, Clone, Default)]
pub struct Anchors {
    pub heads: BTreeMap<i64, String>,
    pub problems: Vec<String>,
}

/// The chain check itself, fed page by page by whoever reads the rows (a
/// pool, a snapshot transaction, a backup image), so that every verifier —
/// `amal audit verify`, the API and `backup verify` — applies one rule: each
/// event's `seq` follows its predecessor's, it links to the predecessor's
/// hash, its own hash is the keyed hash (or, for the legacy prefix, the
/// plain SHA-256) of its content and that link, and wherever a signed
/// checkpoint names a sequence number the event there has the checkpointed
/// hash — and the chain reaches the newest checkpoint.
#[derive(Debug, Default)]
pub struct ChainCheck {
    last_seq: i64,
    prev: Option<String>,
    count: i64,
    legacy: i64,
    keyed_seen: bool,
    broken: Option<(Option<Uuid>, i64, String)>,
    anchors: Anchors,
}

impl ChainCheck {
    /// A check that also holds the chain to `anchors`.
    pub fn with_anchors(anchors: Anchors) -> ChainCheck {
        ChainCheck {
            anchors,
            ..ChainCheck::default()
        }
    }

    /// The bound for the next [`CHAIN_PAGE_SQL`] query.
    pub fn after(&self) -> i64 {
        self.last_seq
    }

    fn prev(&self) -> &str {
        self.prev.as_deref().unwrap_or(GENESIS)
    }

    /// Why `row` does not follow the events checked so far.
    fn fault(&self, row: &StoredEvent) -> Option<String> {
        if row.seq != self.last_seq + 1 {
            return Some(format!(
                "sequence number {} follows {} (an event was deleted, inserted or renumbered)",
                row.seq, self.last_seq
            ));
        }
        if row.prev_hash != self.prev() {
            return Some("its link to the previous event's hash is wrong".into());
        }
        let expected =
            match row.key_id.as_deref() {
                None if self.keyed_seen => return Some(
                    "an unkeyed (plain SHA-256) event after keyed ones: the chain was recomputed"
                        .into(),
                ),
                None => legacy_hash(row.seq, &row.event(), self.prev()),
                Some(id) => match known_key(id) {
                    Some(k) => keyed_hash(&k, row.seq, &row.event(), self.prev()),
                    None => {
                        return Some(format!(
                    "hashed with an unknown key `{id}` (neither AUDIT_KEY nor AUDIT_KEY_PREVIOUS)"
                ))
                    }
                },
            };
        if expected != row.hash {
            return Some("its hash does not match its content (the event was edited)".into());
        }
        if let Some(h) = self.anchors.heads.get(&row.seq) {
            if *h != row.hash {
                return Some(format!(
                    "its hash differs from the signed checkpoint at sequence {}",
                    row.seq
                ));
            }
        }
        None
    }

    /// Check one page; false once the end or a broken event is reached.
    pub fn feed(&mut self, page: Vec<StoredEvent>) -> bool {
        if page.is_empty() || self.broken.is_some() {
            return false;
        }
        for row in page {
            if let Some(why) = self.fault(&row) {
                self.broken = Some((Some(row.id), row.seq, why));
                return false;
            }
            self.count += 1;
            if row.key_id.is_some() {
                self.keyed_seen = true;
            } else {
                self.legacy += 1;
            }
            self.last_seq = row.seq;
            self.prev = Some(row.hash);
        }
        true
    }

    pub fn report(mut self) -> VerifyReport {
        let latest = self.anchors.heads.keys().next_back().copied();
        if self.broken.is_none() {
            if let Some(p) = self.anchors.problems.first() {
                self.broken = Some((None, self.last_seq + 1, p.clone()));
            } else if let Some(top) = latest.filter(|s| *s > self.last_seq) {
                self.broken = Some((
                    None,
                    self.last_seq + 1,
                    format!(
                        "the chain ends at sequence {} but a signed checkpoint records sequence                          {top}: events were deleted from the end",
                        self.last_seq
                    ),
                ));
            }
        }
        let checked = i64::try_from(self.anchors.heads.len()).unwrap_or(i64::MAX);
        let head_hash = self.prev().to_string();
        let (first_broken_id, first_broken_seq, reason) = match self.broken {
            Some((id, seq, why)) => (id, Some(seq), Some(why)),
            None => (None, None, None),
        };
        VerifyReport {
            valid: reason.is_none(),
            events: self.count,
            first_broken_id,
            first_broken_seq,
            head_hash,
            reason,
            legacy_events: self.legacy,
            checkpoints_checked: checked,
            latest_checkpoint_seq: latest,
        }
    }
}

/// Walk the whole chain in order and report the first event whose stored
/// hash, predecessor link or sequence number is wrong.
pub async fn verify(db: &Db) -> Result<VerifyReport> {
    verify_with(db, Anchors::default()).await
}

/// [`verify`], and hold the chain to the signed checkpoints in `anchors`.
pub async fn verify_with(db: &Db, anchors: Anchors) -> Result<VerifyReport> {
    let mut check = ChainCheck::with_anchors(anchors);
    loop {
        let page: Vec<StoredEvent> = on_read!(db, c => sqlx::query_as(CHAIN_PAGE_SQL)
            .bind(check.after()).fetch_all(c).await)?;
        if !check.feed(page) {
            return Ok(check.report());
        }
    }
}

/// The newest event's sequence number and hash (0 and [`GENESIS`] when the
/// chain is empty).
pub async fn head(db: &Db) -> Result<(i64, String)> {
    let sql = "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1";
    let row: Option<(i64, String)> =
        on_read!(db, c => sqlx::query_as(sql).fetch_optional(c).await)?;
    Ok(row.unwrap_or((0, GENESIS.to_string())))
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
         patient_id, outcome, request_id, client_ip, detail, prev_hash, hash, key_id \
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
