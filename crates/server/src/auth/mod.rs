//! Authentication of a request: the bearer token (or the web session's) to
//! a live session and an [`AuthUser`]. The keys and hashing it relies on are
//! in `crate::credentials`.

pub mod extract;

pub use extract::AuthUser;
