//! Key files: the database key, the checkpoint signing key and the backup
//! key are each read from a file the operator names.

use std::path::Path;

/// Read a key file; when `owner_only`, refuse one that others may read.
/// (The database key, the checkpoint signing key and the backup key.)
pub fn read(path: &Path, owner_only: bool) -> Result<String, String> {
    let cause = |e: std::io::Error| format!("cannot be read: {}", crate::db::io_cause(&e));
    #[cfg(not(unix))]
    let _ = owner_only;
    #[cfg(unix)]
    if owner_only {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(cause)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "is readable by others (mode {:o}); make it the owner's only: chmod 600",
                mode & 0o777
            ));
        }
    }
    std::fs::read_to_string(path).map_err(cause)
}
