//! Backups of a Dr Amal database: the archive format ([`archive`]), its keys
//! ([`keys`]), restoring one in place of the live database ([`restore`]) and
//! the scheduler inside `amal serve` ([`schedule`]). One crate, so the
//! scheduler calls the format directly instead of through a trait object
//! handed in by the binary.
//!
//! # Archive format (`.amalbak`, format version 1)
//!
//! A gzip-compressed POSIX tar file (`tar -tzf FILE` lists it) with exactly
//! two entries, in this order:
//!
//! 1. `manifest.json` — what the backup holds, see [`archive::Manifest`];
//! 2. the database image named by `manifest.database.file`:
//!    `database.sqlite` (a `VACUUM INTO` copy of a SQLite database) or
//!    `database.pgdump` (a `pg_dump --format=custom --compress=0` dump).
//!
//! The manifest carries the SHA-256 and size of the image; gzip adds a CRC
//! over the whole stream. Restore and verify check both before they use the
//! image. The archive is written as `FILE.partial`, fsynced and renamed, so
//! a file with the final name is always complete.
//!
//! Format version 2 adds authentication and encryption: the manifest is
//! signed (Ed25519, the audit checkpoint key; `signature`), so neither the
//! image nor the audit head it records can change unseen, and with a backup
//! key the whole gzip stream is wrapped in an age file (X25519 recipients or
//! a passphrase), detected by its `age-encryption.org/v1` header. Verify and
//! restore check the signature before they extract anything.

pub mod archive;
pub mod keys;
pub mod progress;
pub mod restore;
pub mod schedule;
