//! Signed checkpoints of the audit chain, kept outside the database.
//!
//! A checkpoint records the chain head (sequence number and hash), when it
//! was taken and the id of the `AUDIT_KEY` in force, signed with Ed25519
//! under a signing key that lives outside the database. `serve` appends one
//! line per checkpoint to `audit-checkpoints.jsonl` in
//! `AMAL_AUDIT_CHECKPOINT_DIR` (append-only, fsynced) and may post it to a
//! webhook. Verification holds the chain to every checkpoint in the file
//! ([`crate::audit::Anchors`]): the event at each checkpointed sequence
//! number must have the checkpointed hash and the chain must reach the
//! newest one, so deleting the tail, emptying the table or rewriting the
//! chain (with any key) is detected even by someone who can write the
//! database, as long as they cannot also forge a signature.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::audit::Anchors;

/// The file inside the checkpoint directory.
pub const FILE_NAME: &str = "audit-checkpoints.jsonl";

/// One signed checkpoint (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Sequence number of the newest event.
    pub seq: i64,
    /// Its hash.
    pub head_hash: String,
    /// When the checkpoint was taken (UTC, microseconds).
    pub at: DateTime<Utc>,
    /// Id of the `AUDIT_KEY` new events were hashed with.
    pub audit_key_id: Option<String>,
    /// Id of the signing key (see [`key_id`]).
    pub signing_key_id: String,
    /// Ed25519 signature (base64) over [`Checkpoint::signed_bytes`].
    pub signature: String,
}

/// The Ed25519 key checkpoints are signed with (never printed).
#[derive(Clone)]
pub struct CheckpointKey(pub std::sync::Arc<SigningKey>);

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointKey({})", key_id(&self.0.verifying_key()))
    }
}

/// The public id of a checkpoint verifying key: 16 hex digits of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// Read an Ed25519 signing key from `text`: 32 bytes as base64 or hex
/// (one line; surrounding white space ignored).
pub fn parse_signing_key(text: &str) -> Option<SigningKey> {
    let t = text.trim();
    let bytes = hex::decode(t)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(t).ok())?;
    let seed: [u8; 32] = bytes.try_into().ok()?;
    Some(SigningKey::from_bytes(&seed))
}

/// A new random signing key, as base64 (for a key file).
pub fn generate_signing_key() -> String {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    base64::engine::general_purpose::STANDARD.encode(key.to_bytes())
}

/// Sign `bytes` with `key`: the Ed25519 signature as base64.
pub fn sign_base64(key: &SigningKey, bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.sign(bytes).to_bytes())
}

/// Whether `signature` (base64) is `key`'s over `bytes`.
pub fn verify_base64(key: &VerifyingKey, bytes: &[u8], signature: &str) -> bool {
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(signature) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(&raw) else {
        return false;
    };
    key.verify(bytes, &sig).is_ok()
}

impl Checkpoint {
    /// The exact bytes signed: a JSON array with a fixed label and every
    /// field but the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        serde_json::json!([
            "amal-audit-checkpoint-v1",
            self.seq,
            self.head_hash,
            self.at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            self.audit_key_id,
            self.signing_key_id,
        ])
        .to_string()
        .into_bytes()
    }

    /// A checkpoint of (`seq`, `head_hash`) now, signed with `key`.
    pub fn sign(seq: i64, head_hash: String, key: &SigningKey) -> Checkpoint {
        let mut c = Checkpoint {
            seq,
            head_hash,
            at: crate::now(),
            audit_key_id: crate::audit::current_key_id(),
            signing_key_id: key_id(&key.verifying_key()),
            signature: String::new(),
        };
        c.signature = sign_base64(key, &c.signed_bytes());
        c
    }

    /// Whether the signature is `key`'s over this checkpoint.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        self.signing_key_id == key_id(key)
            && verify_base64(key, &self.signed_bytes(), &self.signature)
    }
}

/// The checkpoint file in `dir`.
pub fn file_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Append `c` as one line to the checkpoint file in `dir` (created 0600,
/// with its directory 0700, when missing) and fsync it.
pub fn append(dir: &Path, c: &Checkpoint) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(file_in(dir))?;
    let mut line = serde_json::to_vec(c).map_err(std::io::Error::other)?;
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_all()
}

/// Every checkpoint in the file in `dir`, in file order (none when the
/// file does not exist). A line that is not a checkpoint is an error.
pub fn read_all(dir: &Path) -> std::io::Result<Vec<Checkpoint>> {
    let path = file_in(dir);
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let c: Checkpoint = serde_json::from_str(&line).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} line {}: not a checkpoint ({e})", path.display(), n + 1),
            )
        })?;
        out.push(c);
    }
    Ok(out)
}

/// What the chain must match according to `checkpoints`, each checked
/// against `key`: a checkpoint with a bad signature is a problem (and not
/// an anchor), as are two checkpoints naming different hashes for one
/// sequence number.
pub fn anchors(checkpoints: &[Checkpoint], key: &VerifyingKey) -> Anchors {
    let mut a = Anchors::default();
    for (i, c) in checkpoints.iter().enumerate() {
        if !c.verify(key) {
            a.problems.push(format!(
                "checkpoint {} (sequence {}) does not carry a valid signature of the configured \
                 checkpoint key",
                i + 1,
                c.seq
            ));
            continue;
        }
        if let Some(h) = a.heads.get(&c.seq) {
            if *h != c.head_hash {
                a.problems.push(format!(
                    "two signed checkpoints name different hashes for sequence {}",
                    c.seq
                ));
            }
            continue;
        }
        a.heads.insert(c.seq, c.head_hash.clone());
    }
    a
}

/// The checkpoints in `dir` as anchors (see [`anchors`]).
pub fn anchors_in(dir: &Path, key: &VerifyingKey) -> std::io::Result<Anchors> {
    Ok(anchors(&read_all(dir)?, key))
}

/// The newest checkpoint in `dir`, if any.
pub fn latest(dir: &Path) -> std::io::Result<Option<Checkpoint>> {
    Ok(read_all(dir)?.into_iter().max_by_key(|c| c.seq))
}

/// Take a checkpoint of the current head of `db`, sign it with `key` and
/// append it to the file in `dir`.
pub async fn take(db: &crate::Db, key: &SigningKey, dir: &Path) -> anyhow::Result<Checkpoint> {
    let (seq, hash) = crate::audit::head(db).await?;
    let c = Checkpoint::sign(seq, hash, key);
    let (d, line) = (dir.to_path_buf(), c.clone());
    tokio::task::spawn_blocking(move || append(&d, &line))
        .await
        .map_err(|e| anyhow::anyhow!("checkpoint task failed: {e}"))??;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_every_field() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let c = Checkpoint::sign(42, "ab".repeat(32), &key);
        let vk = key.verifying_key();
        assert!(c.verify(&vk));
        let mut d = c.clone();
        d.seq = 43;
        assert!(!d.verify(&vk));
        let mut d = c.clone();
        d.head_hash = "cd".repeat(32);
        assert!(!d.verify(&vk));
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(!c.verify(&other.verifying_key()));
        let a = anchors(&[c.clone(), d], &vk);
        assert_eq!(a.heads.get(&42), Some(&c.head_hash));
        assert_eq!(a.problems.len(), 1);
    }

    #[test]
    fn keys_parse_from_base64_and_hex() {
        let k = generate_signing_key();
        let a = parse_signing_key(&k).map(|k| k.to_bytes());
        assert!(a.is_some());
        let hexed = hex::encode(a.unwrap_or_default());
        assert_eq!(parse_signing_key(&hexed).map(|k| k.to_bytes()), a);
        assert!(parse_signing_key("short").is_none());
    }
}
