//! Encryption at rest of the SQLite database (SQLCipher; runbook
//! docs/ops/ENCRYPTION_AT_REST.md): a keyed database is unreadable to the
//! plain `sqlite3` CLI and to `amal` without its key or with a wrong one
//! (with a message that says so); `amal db encrypt` turns a plaintext
//! database into an encrypted one and keeps the original aside; a backup of
//! an encrypted database is encrypted and restores; production refuses
//! SQLite without a key unless an encrypted disk is stated. Every command
//! runs as a child `amal` process, whose key is its own (the key is one per
//! process). SQLite only: PostgreSQL encrypts in its own storage.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::helpers::temp_dir;

const KEY: &str = "correct horse battery staple 42";
const SQLITE3: &str = "/usr/bin/sqlite3";

fn db_of(dir: &Path) -> PathBuf {
    dir.join("amal.db")
}

/// `amal` on the SQLite database in `dir`, with `key` (if any) as AMAL_DB_KEY.
fn amal(dir: &Path, key: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AMAL_DATA_DIR", dir)
        .env("DATABASE_URL", format!("sqlite://{}", db_of(dir).display()))
        .args(args);
    if let Some(k) = key {
        c.env("AMAL_DB_KEY", k);
    }
    c
}

fn run(mut c: Command) -> (bool, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ok(dir: &Path, key: Option<&str>, args: &[&str]) -> String {
    let (good, text) = run(amal(dir, key, args));
    assert!(good, "amal {args:?} failed:\n{text}");
    text
}

fn fails(dir: &Path, key: Option<&str>, args: &[&str]) -> String {
    let (good, text) = run(amal(dir, key, args));
    assert!(!good, "amal {args:?} should have failed:\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

/// A migrated database in `dir` with one admin account, `email`.
fn with_admin(dir: &Path, key: Option<&str>, email: &str) {
    ok(dir, key, &["migrate", "up"]);
    let mut c = amal(
        dir,
        key,
        &[
            "user",
            "create",
            "--email",
            email,
            "--role",
            "admin",
            "--password-stdin",
        ],
    );
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long admin passphrase\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sqlite3 FILE SQL` with the plain SQLite CLI: (succeeded, output).
fn sqlite3(file: &Path, sql: &str) -> (bool, String) {
    assert!(
        Path::new(SQLITE3).exists(),
        "{SQLITE3} is missing (Debian package sqlite3; scripts/test.sh installs it)"
    );
    run({
        let mut c = Command::new(SQLITE3);
        c.arg(file).arg(sql);
        c
    })
}

fn is_plain_sqlite(file: &Path) -> bool {
    std::fs::read(file)
        .unwrap()
        .starts_with(b"SQLite format 3\0")
}

#[test]
fn an_encrypted_database_cannot_be_read_without_its_key() {
    let dir = temp_dir();
    with_admin(&dir, Some(KEY), "keeper@clinic.test");
    let db = db_of(&dir);
    assert!(!is_plain_sqlite(&db), "the file has no SQLite header");
    let raw = std::fs::read(&db).unwrap();
    assert!(
        !raw.windows(b"keeper@clinic.test".len())
            .any(|w| w == b"keeper@clinic.test"),
        "no plaintext in the file"
    );
    // The plain sqlite3 CLI cannot read it.
    let (read, text) = sqlite3(&db, "SELECT email FROM users;");
    assert!(!read, "{text}");
    assert!(text.contains("file is not a database"), "{text}");
    // amal without the key, and with a wrong one: refused, saying why.
    let text = fails(&dir, None, &["audit", "verify"]);
    assert!(text.contains("it is encrypted (set AMAL_DB_KEY"), "{text}");
    let text = fails(&dir, Some("not the right key at all"), &["audit", "verify"]);
    assert!(
        text.contains("cannot be decrypted with the key given"),
        "{text}"
    );
    assert!(
        !text.contains("not the right key"),
        "the key is never printed: {text}"
    );
    let text = fails(&dir, Some("not the right key at all"), &["serve"]);
    assert!(
        text.contains("cannot be decrypted with the key given"),
        "{text}"
    );
    // With the key (also as a raw 64-hex-digit key file for a new database).
    let text = ok(&dir, Some(KEY), &["audit", "verify"]);
    assert!(text.contains("audit chain intact"), "{text}");
    let text = ok(&dir, Some(KEY), &["config", "check"]);
    assert!(text.contains("encrypted at rest with SQLCipher"), "{text}");

    let dir2 = temp_dir();
    let key_file = dir2.join("db.key");
    std::fs::write(&key_file, format!("{}\n", "5a".repeat(32))).unwrap();
    let with_file = |args: &[&str], mode: u32| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let mut c = amal(&dir2, None, args);
        c.env("AMAL_DB_KEY_FILE", &key_file);
        run(c)
    };
    let (good, text) = with_file(&["migrate", "up"], 0o644);
    assert!(!good && text.contains("AMAL_DB_KEY_FILE"), "{text}");
    let (good, text) = with_file(&["migrate", "up"], 0o600);
    assert!(good, "{text}");
    assert!(!is_plain_sqlite(&db_of(&dir2)));
    let (good, text) = with_file(&["audit", "verify"], 0o600);
    assert!(good, "{text}");
    assert!(fails(&dir2, Some(KEY), &["audit", "verify"]).contains("cannot be decrypted"));
}

#[test]
fn amal_db_encrypt_turns_a_plaintext_database_into_an_encrypted_one() {
    let dir = temp_dir();
    with_admin(&dir, None, "keeper@clinic.test");
    let db = db_of(&dir);
    assert!(is_plain_sqlite(&db));
    let (read, before) = sqlite3(&db, "SELECT count(*) FROM users;");
    assert!(read && before.trim() == "1", "{before}");
    // Without a key to encrypt with: refused, nothing changes.
    let text = fails(&dir, None, &["db", "encrypt"]);
    assert!(
        text.contains("set AMAL_DB_KEY or AMAL_DB_KEY_FILE"),
        "{text}"
    );
    assert!(is_plain_sqlite(&db));
    // A server started with the key on the plaintext file says what to do.
    let text = fails(&dir, Some(KEY), &["audit", "verify"]);
    assert!(text.contains("amal db encrypt"), "{text}");

    let done = ok(&dir, Some(KEY), &["db", "encrypt"]);
    assert!(done.contains("with SQLCipher"), "{done}");
    assert!(!is_plain_sqlite(&db));
    let (read, text) = sqlite3(&db, "SELECT count(*) FROM users;");
    assert!(!read && text.contains("file is not a database"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the encrypted file is private");
    }
    // The original is kept aside, still plaintext, named in the output.
    let aside: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("amal.db.plaintext-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(done.contains(&aside[0].display().to_string()), "{done}");
    let (read, kept) = sqlite3(&aside[0], "SELECT count(*) FROM users;");
    assert!(read && kept.trim() == "1", "{kept}");
    assert!(!dir.join("amal.db.encrypting").exists());
    // Everything is there under the key: the account and the audit chain.
    let text = ok(&dir, Some(KEY), &["audit", "verify"]);
    assert!(text.contains("audit chain intact"), "{text}");
    let text = ok(&dir, Some(KEY), &["migrate", "status"]);
    assert!(!text.contains("pending"), "{text}");
    // Twice: refused, the encrypted file untouched.
    let text = fails(&dir, Some(KEY), &["db", "encrypt"]);
    assert!(text.contains("already encrypted"), "{text}");
    ok(&dir, Some(KEY), &["audit", "verify"]);
}

#[test]
fn a_backup_of_an_encrypted_database_is_encrypted_and_restores() {
    let dir = temp_dir();
    with_admin(&dir, Some(KEY), "keeper@clinic.test");
    let archive = dir.join("b.amalbak");
    ok(
        &dir,
        Some(KEY),
        &["backup", "--to", archive.to_str().unwrap()],
    );
    let (_, name, image) = crate::backup::unpack(&archive);
    assert!(
        !image.starts_with(b"SQLite format 3\0"),
        "{name} is encrypted"
    );
    assert!(!image
        .windows(b"keeper@clinic.test".len())
        .any(|w| w == b"keeper@clinic.test"));
    // The image needs the key too.
    let img = dir.join("image.db");
    std::fs::write(&img, &image).unwrap();
    let (read, text) = sqlite3(&img, "SELECT count(*) FROM users;");
    assert!(!read && text.contains("file is not a database"), "{text}");
    ok(
        &dir,
        Some(KEY),
        &["backup", "verify", archive.to_str().unwrap()],
    );
    let text = fails(&dir, None, &["backup", "verify", archive.to_str().unwrap()]);
    assert!(text.contains("AMAL_DB_KEY"), "{text}");

    // Restore into an empty deployment with the same key: round trip.
    let target = temp_dir();
    let text = fails(&target, None, &["restore", archive.to_str().unwrap()]);
    assert!(text.contains("AMAL_DB_KEY"), "{text}");
    ok(&target, Some(KEY), &["restore", archive.to_str().unwrap()]);
    assert!(!is_plain_sqlite(&db_of(&target)), "restored encrypted");
    let text = ok(&target, Some(KEY), &["audit", "verify"]);
    assert!(text.contains("audit chain intact"), "{text}");
    // The restored account is there: its e-mail is taken.
    let mut c = amal(
        &target,
        Some(KEY),
        &[
            "user",
            "create",
            "--email",
            "keeper@clinic.test",
            "--role",
            "admin",
            "--password-stdin",
        ],
    );
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long admin passphrase\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the restored account exists");

    // A backup of a plaintext database, by contrast, holds the plaintext:
    // the checks above can fail.
    let plain = temp_dir();
    with_admin(&plain, None, "keeper@clinic.test");
    let archive = plain.join("p.amalbak");
    ok(&plain, None, &["backup", "--to", archive.to_str().unwrap()]);
    let (_, _, image) = crate::backup::unpack(&archive);
    assert!(image.starts_with(b"SQLite format 3\0"));
}

#[test]
fn production_with_sqlite_needs_a_key_or_a_stated_encrypted_disk() {
    let dir = temp_dir();
    let (good, secrets) = run({
        let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
        c.args(["secrets", "generate"]);
        c
    });
    assert!(good);
    let prod = |args: &[&str], extra: &[(&str, &str)]| {
        let mut c = amal(&dir, None, args);
        // The other keys production requires (the signing key is seeded
        // in the test folder).
        c.env("AMAL_ENV", "production")
            .env("AMAL_BIND", "127.0.0.1:0")
            .env("AMAL_AUDIT_SIGNING_KEY_FILE", dir.join("audit-signing.key"))
            .env("AMAL_BACKUP_PASSPHRASE", "a long clinic backup passphrase");
        for line in secrets.lines() {
            let (k, v) = line.split_once('=').unwrap();
            c.env(k, v);
        }
        for (k, v) in extra {
            c.env(k, v);
        }
        run(c)
    };
    for args in [&["serve"][..], &["config", "check"][..]] {
        let (good, text) = prod(args, &[]);
        assert!(!good, "{args:?}: {text}");
        assert!(text.contains("AMAL_DB_KEY"), "{args:?}: {text}");
        assert!(
            text.contains("AMAL_DISK_ENCRYPTED=true"),
            "{args:?}: {text}"
        );
    }
    assert!(!db_of(&dir).exists(), "nothing was created");
    let (good, text) = prod(&["config", "check"], &[("AMAL_DISK_ENCRYPTED", "true")]);
    assert!(good, "{text}");
    assert!(text.contains("disk encryption stated"), "{text}");
    let (good, text) = prod(&["config", "check"], &[("AMAL_DB_KEY", KEY)]);
    assert!(good, "{text}");
    assert!(text.contains("encrypted at rest with SQLCipher"), "{text}");
    // Development on SQLite without a key is allowed, and says so.
    let text = ok(&dir, None, &["config", "check"]);
    assert!(text.contains("NOT encrypted at rest"), "{text}");
}
