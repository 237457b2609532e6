//! Credentials: password hashing on its own thread pool, and the access-
//! and refresh-token keys. The application state holds these; the request
//! extractor that uses the state is `crate::auth`.

pub mod password;
pub mod tokens;
