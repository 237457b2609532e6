//! The JSON API's handlers (and the FHIR API's, [`fhir`]): extract → call the
//! service → JSON (and ETag).
//! The rules live in [`crate::services`]; the `utoipa` annotations here are
//! the OpenAPI document.

pub mod access;
pub mod account;
pub mod ai;
pub mod audit;
pub mod auth;
pub mod fhir;
pub mod labs;
pub mod notes;
pub mod ops;
pub mod overview;
pub mod patients;
pub mod prescriptions;
pub mod users;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// `body` with an `ETag` of the resource's version (for `If-Match`).
pub fn with_etag(version: i64, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}
