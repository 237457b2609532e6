//! Authentication: password hashing, tokens, and the request extractor.

pub mod extract;
pub mod password;
pub mod tokens;

pub use extract::AuthUser;
