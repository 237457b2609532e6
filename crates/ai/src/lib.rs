//! ai crate
