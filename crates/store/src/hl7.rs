//! HL7 v2 messages accepted, for idempotency on the sender's control id,
//! and the sender's own view (flag, range) of each result stored.

use uuid::Uuid;

use crate::db::{Db, Result, Tx};
use crate::{on_read, on_tx};

/// A message already accepted from this sender with this control id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub ack_code: String,
    pub ack: String,
    pub result_count: i64,
}

pub async fn find(db: &Db, sender: &str, control_id: &str) -> Result<Option<MessageRow>> {
    let sql = "SELECT id, patient_id, ack_code, ack, result_count FROM hl7_messages WHERE sender = $1 AND control_id = $2";
    Ok(
        on_read!(db, c => sqlx::query_as(sql).bind(sender).bind(control_id).fetch_optional(c).await)?,
    )
}

pub struct NewMessage<'a> {
    pub id: Uuid,
    pub sender: &'a str,
    pub control_id: &'a str,
    pub patient_id: Uuid,
    pub ack_code: &'a str,
    pub ack: &'a str,
    pub result_count: i64,
    pub received_by: Uuid,
}

/// Record an accepted message; false when this sender's control id is
/// already recorded (a repeat, possibly sent concurrently).
pub async fn insert_message(tx: &mut Tx, m: &NewMessage<'_>) -> Result<bool> {
    let sql = "INSERT INTO hl7_messages (id, sender, control_id, patient_id, ack_code, ack, result_count, received_by, received_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (sender, control_id) DO NOTHING";
    let n = on_tx!(tx, c => sqlx::query(sql).bind(m.id).bind(m.sender).bind(m.control_id).bind(m.patient_id)
        .bind(m.ack_code).bind(m.ack).bind(m.result_count).bind(m.received_by).bind(crate::now())
        .execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub struct NewResult<'a> {
    pub lab_id: Uuid,
    pub message_id: Uuid,
    pub obx_position: i64,
    pub sender_flag: Option<&'a str>,
    pub sender_range: Option<&'a str>,
    pub our_flag: Option<&'a str>,
}

pub async fn insert_result(tx: &mut Tx, r: &NewResult<'_>) -> Result<()> {
    let sql = "INSERT INTO hl7_results (lab_id, message_id, obx_position, sender_flag, sender_range, our_flag) VALUES ($1, $2, $3, $4, $5, $6)";
    on_tx!(tx, c => sqlx::query(sql).bind(r.lab_id).bind(r.message_id).bind(r.obx_position).bind(r.sender_flag)
        .bind(r.sender_range).bind(r.our_flag).execute(&mut *c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// The sender's view of one stored result.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ResultRow {
    pub lab_id: Uuid,
    pub message_id: Uuid,
    pub obx_position: i64,
    pub sender_flag: Option<String>,
    pub sender_range: Option<String>,
    pub our_flag: Option<String>,
}

pub async fn results_of(db: &Db, message: Uuid) -> Result<Vec<ResultRow>> {
    let sql = "SELECT lab_id, message_id, obx_position, sender_flag, sender_range, our_flag FROM hl7_results WHERE message_id = $1 ORDER BY obx_position";
    Ok(on_read!(db, c => sqlx::query_as(sql).bind(message).fetch_all(c).await)?)
}

/// How many messages have been accepted (for tests and the import summary).
pub async fn count(db: &Db) -> Result<i64> {
    let n: (i64,) =
        on_read!(db, c => sqlx::query_as("SELECT count(*) FROM hl7_messages").fetch_one(c).await)?;
    Ok(n.0)
}
