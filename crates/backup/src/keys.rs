//! The keys of backup archives: what encrypts them (age, to an X25519
//! recipient or under a passphrase) and what opens them again. Archive
//! *authentication* is the manifest's Ed25519 signature under the audit
//! checkpoint key (see [`crate::archive`]); encryption gives
//! confidentiality, and with a passphrase also proves the writer knew it.
//!
//! Settings: `AMAL_BACKUP_KEY_FILE` (an age identity, `AGE-SECRET-KEY-1…`,
//! made by `amal backup keygen FILE`), optionally `AMAL_BACKUP_RECIPIENTS`
//! (more public keys, `age1…`, e.g. a key kept offline, that can also open
//! every archive), or `AMAL_BACKUP_PASSPHRASE`. Required in production.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

/// How new archives are sealed.
#[derive(Clone)]
pub enum Seal {
    /// Encrypted to these X25519 recipients (the key file's own first).
    Recipients(Vec<age::x25519::Recipient>),
    /// Encrypted under a passphrase (scrypt).
    Passphrase(SecretString),
}

/// The validated backup key settings.
#[derive(Clone, Default)]
pub struct BackupKeys {
    /// `None`: archives are written unencrypted (development only).
    pub seal: Option<Seal>,
    /// The key file's identity, for opening archives sealed to it.
    identity: Option<age::x25519::Identity>,
    /// The passphrase, for opening passphrase archives.
    passphrase: Option<SecretString>,
    /// Where the identity came from (for messages).
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for BackupKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupKeys({})", self.mode())
    }
}

impl PartialEq for BackupKeys {
    /// Settings compare by what they name, never by secret material.
    fn eq(&self, other: &Self) -> bool {
        self.key_file == other.key_file && self.mode() == other.mode()
    }
}

impl Eq for BackupKeys {}

/// The first bytes of every age file.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";

impl BackupKeys {
    /// Validate the raw settings, reporting each problem by setting name.
    pub fn resolve(
        key_file: Option<&Path>,
        recipients: Option<&str>,
        passphrase: Option<&SecretString>,
        production: bool,
        problem: &mut impl FnMut(&'static str, String),
    ) -> BackupKeys {
        let passphrase = passphrase.filter(|p| !p.expose_secret().is_empty());
        let key_file = key_file.filter(|f| !f.as_os_str().is_empty());
        let extra: Vec<&str> = recipients
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .collect();
        let mut keys = BackupKeys::default();
        match (key_file, passphrase) {
            (Some(_), Some(_)) => problem(
                "AMAL_BACKUP_PASSPHRASE",
                "set either AMAL_BACKUP_KEY_FILE or AMAL_BACKUP_PASSPHRASE, not both".into(),
            ),
            (Some(f), None) => match read_identity(f, production) {
                Ok(id) => {
                    let mut to = vec![id.to_public()];
                    for r in &extra {
                        match age::x25519::Recipient::from_str(r) {
                            Ok(r) => to.push(r),
                            Err(_) => problem(
                                "AMAL_BACKUP_RECIPIENTS",
                                "must be a comma-separated list of age public keys (`age1…`)"
                                    .into(),
                            ),
                        }
                    }
                    keys.seal = Some(Seal::Recipients(to));
                    keys.identity = Some(id);
                    keys.key_file = Some(f.to_path_buf());
                }
                Err(m) => problem("AMAL_BACKUP_KEY_FILE", m),
            },
            (None, Some(p)) => {
                if p.expose_secret().chars().count() < 12 {
                    problem(
                        "AMAL_BACKUP_PASSPHRASE",
                        "must be at least 12 characters (a key file is stronger)".into(),
                    );
                }
                if !extra.is_empty() {
                    problem(
                        "AMAL_BACKUP_RECIPIENTS",
                        "works with AMAL_BACKUP_KEY_FILE only (a passphrase archive has no \
                         other recipients)"
                            .into(),
                    );
                }
                keys.seal = Some(Seal::Passphrase(p.clone()));
                keys.passphrase = Some(p.clone());
            }
            (None, None) => {
                if production {
                    problem(
                        "AMAL_BACKUP_KEY_FILE",
                        "is required in production (backups hold every chart): create one with \
                         `amal backup keygen FILE`, or set AMAL_BACKUP_PASSPHRASE"
                            .into(),
                    );
                }
                if !extra.is_empty() {
                    problem(
                        "AMAL_BACKUP_RECIPIENTS",
                        "works with AMAL_BACKUP_KEY_FILE only".into(),
                    );
                }
            }
        }
        keys
    }

    /// `unencrypted`, `x25519` or `passphrase`.
    pub fn mode(&self) -> &'static str {
        match &self.seal {
            None => "unencrypted",
            Some(Seal::Recipients(_)) => "x25519",
            Some(Seal::Passphrase(_)) => "passphrase",
        }
    }

    /// Wrap `out` so that what is written to it is sealed; `finish` the
    /// result to write the final authenticated chunk.
    pub fn seal_writer<W: std::io::Write>(&self, out: W) -> std::io::Result<SealedWriter<W>> {
        let encryptor = match &self.seal {
            None => return Ok(SealedWriter::Plain(out)),
            Some(Seal::Recipients(to)) => {
                age::Encryptor::with_recipients(to.iter().map(|r| r as &dyn age::Recipient))
                    .map_err(std::io::Error::other)?
            }
            Some(Seal::Passphrase(p)) => age::Encryptor::with_user_passphrase(p.clone()),
        };
        Ok(SealedWriter::Age(
            encryptor.wrap_output(out).map_err(std::io::Error::other)?,
        ))
    }

    /// Open a sealed (age) stream whose header has been checked to start
    /// with [`AGE_MAGIC`]. The reader fails on any chunk that does not
    /// authenticate, including a truncated end.
    pub fn open_reader<R: std::io::BufRead + Send + 'static>(
        &self,
        input: R,
    ) -> Result<Box<dyn std::io::Read + Send>, String> {
        let d = age::Decryptor::new_buffered(input)
            .map_err(|e| format!("the archive's encryption header is damaged ({e})"))?;
        if d.is_scrypt() {
            let Some(p) = &self.passphrase else {
                return Err("the archive is encrypted with a passphrase; set \
                            AMAL_BACKUP_PASSPHRASE to open it"
                    .into());
            };
            let id = age::scrypt::Identity::new(p.clone());
            return d
                .decrypt(std::iter::once(&id as &dyn age::Identity))
                .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>)
                .map_err(|_| "the passphrase does not open this archive (wrong key)".into());
        }
        let Some(id) = &self.identity else {
            return Err(
                "the archive is encrypted to a key; set AMAL_BACKUP_KEY_FILE to \
                        the key file it was made with"
                    .into(),
            );
        };
        d.decrypt(std::iter::once(id as &dyn age::Identity))
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>)
            .map_err(|_| {
                "the configured AMAL_BACKUP_KEY_FILE does not open this archive (wrong key)".into()
            })
    }
}

/// A writer that seals what passes through it, or passes it on as is.
pub enum SealedWriter<W: std::io::Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: std::io::Write> SealedWriter<W> {
    /// Write the last chunk (age) and return the inner writer.
    pub fn finish(self) -> std::io::Result<W> {
        match self {
            SealedWriter::Plain(w) => Ok(w),
            SealedWriter::Age(s) => s.finish(),
        }
    }
}

impl<W: std::io::Write> std::io::Write for SealedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            SealedWriter::Plain(w) => w.write(buf),
            SealedWriter::Age(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            SealedWriter::Plain(w) => w.flush(),
            SealedWriter::Age(s) => s.flush(),
        }
    }
}

/// A new identity as the text of a key file, and its public key.
pub fn generate() -> (SecretString, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    (id.to_string(), public)
}

/// Read an identity file: one `AGE-SECRET-KEY-1…` line (comment lines
/// starting with `#` allowed); in production readable by its owner only.
fn read_identity(path: &Path, strict: bool) -> Result<age::x25519::Identity, String> {
    let text = store::key_file::read(path, strict)?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| age::x25519::Identity::from_str(l).ok())
        .ok_or_else(|| {
            "does not hold an age identity (`AGE-SECRET-KEY-1…`, from `amal backup keygen`)".into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn key_file() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("amal-bk-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("backup.key");
        std::fs::write(&f, format!("{}\n", generate().0.expose_secret())).unwrap();
        f
    }

    fn keys(f: &Path) -> BackupKeys {
        let mut problems = Vec::new();
        let k = BackupKeys::resolve(Some(f), None, None, false, &mut |s, m| {
            problems.push((s, m))
        });
        assert!(problems.is_empty(), "{problems:?}");
        k
    }

    fn seal(k: &BackupKeys, data: &[u8]) -> Vec<u8> {
        let mut w = k.seal_writer(Vec::new()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn open(k: &BackupKeys, sealed: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut r = k.open_reader(std::io::Cursor::new(sealed))?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn a_sealed_stream_opens_with_its_key_only_and_detects_truncation() {
        let k = keys(&key_file());
        let data = vec![7u8; 200_000];
        let sealed = seal(&k, &data);
        assert!(sealed.starts_with(AGE_MAGIC));
        assert_eq!(open(&k, sealed.clone()).unwrap(), data);
        let other = keys(&key_file());
        assert!(open(&other, sealed.clone())
            .unwrap_err()
            .contains("wrong key"));
        let cut = sealed[..sealed.len() - 100].to_vec();
        assert!(open(&k, cut).is_err(), "a truncated archive must not open");
        let mut flipped = sealed;
        let n = flipped.len() / 2;
        flipped[n] ^= 1;
        assert!(open(&k, flipped).is_err(), "a flipped byte must not open");
    }

    #[test]
    fn production_requires_a_key_and_refuses_both_kinds_at_once() {
        let mut seen = Vec::new();
        BackupKeys::resolve(None, None, None, true, &mut |s, _| seen.push(s));
        assert_eq!(seen, ["AMAL_BACKUP_KEY_FILE"]);
        let mut seen = Vec::new();
        let p = SecretString::from("correct horse battery staple".to_string());
        BackupKeys::resolve(Some(&key_file()), None, Some(&p), false, &mut |s, _| {
            seen.push(s)
        });
        assert_eq!(seen, ["AMAL_BACKUP_PASSPHRASE"]);
        let mut seen = Vec::new();
        BackupKeys::resolve(
            Some(&key_file()),
            Some("age1nope"),
            None,
            false,
            &mut |s, _| seen.push(s),
        );
        assert_eq!(seen, ["AMAL_BACKUP_RECIPIENTS"]);
    }
}
