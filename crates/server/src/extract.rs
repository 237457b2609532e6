//! Request extractors shared by the handlers: JSON bodies whose rejections
//! are problem documents, pagination, and optimistic-concurrency versions.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::AppError;

/// `Json<T>` whose failures are RFC 9457 problems: malformed JSON or invalid
/// UTF-8 → 400, well-formed JSON of the wrong shape → 422, too large → 413,
/// not JSON → 415.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(data_error(&e.body_text())),
            Err(JsonRejection::JsonSyntaxError(_)) => Err(AppError::BadRequest(
                "The body is not valid JSON (or not valid UTF-8).".into(),
            )),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(AppError::UnsupportedMediaType),
            Err(JsonRejection::BytesRejection(e)) => {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Err(AppError::PayloadTooLarge)
                } else {
                    Err(AppError::BadRequest("The body could not be read.".into()))
                }
            }
            Err(_) => Err(AppError::BadRequest("The body could not be read.".into())),
        }
    }
}

/// Turn serde's message into a field error without echoing input values.
fn data_error(text: &str) -> AppError {
    // serde_path_to_error style: "Failed to deserialize the JSON body into the target type: field: message at line.."
    let msg = text
        .split_once("target type: ")
        .map(|x| x.1)
        .unwrap_or(text);
    let (field, detail) = match msg.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path.to_string(), rest.to_string()),
        _ => ("body".to_string(), msg.to_string()),
    };
    let field = if let Some(rest) = detail.strip_prefix("missing field `") {
        rest.split('`').next().unwrap_or("body").to_string()
    } else {
        field
    };
    let kind = if detail.contains("missing field") {
        "is required".to_string()
    } else if detail.contains("invalid type") {
        let expected = detail.split("expected ").nth(1).unwrap_or("another type");
        let expected = expected.split(" at line").next().unwrap_or(expected);
        format!("has the wrong type; expected {expected}")
    } else if detail.contains("unknown variant") {
        let expected = detail.split("expected ").nth(1).unwrap_or("a listed value");
        let expected = expected.split(" at line").next().unwrap_or(expected);
        format!("is not allowed; expected {expected}")
    } else {
        "is invalid".to_string()
    };
    AppError::validation(field, kind)
}

/// `?limit=&cursor=` (limit defaults to 50, clamped to 1..=200).
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(50).clamp(1, 200)
    }

    /// The decoded cursor text, or a 422 when it was tampered with.
    pub fn cursor_text(&self) -> Result<Option<String>, AppError> {
        match &self.cursor {
            None => Ok(None),
            Some(c) if c.is_empty() => Ok(None),
            Some(c) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .map(Some)
                .ok_or_else(|| {
                    AppError::validation("cursor", "is not a cursor this server issued")
                }),
        }
    }
}

pub fn encode_cursor(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text.as_bytes())
}

/// The version named by an `If-Match` header, if one was sent; a 422 when
/// it is not a version number.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, AppError> {
    let Some(v) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse()
        .map(Some)
        .map_err(|_| AppError::validation("If-Match", "must be the resource's version number"))
}

/// The version an update expects: `If-Match` header, else `version` in the
/// body; neither → 428.
pub fn expected_version(if_match: Option<i64>, body_version: Option<i64>) -> Result<i64, AppError> {
    if_match
        .or(body_version)
        .ok_or(AppError::PreconditionRequired)
}

/// Like [`ApiJson`], but an empty body means `T::default()` (for actions
/// such as "issue" whose body is optional).
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::PayloadTooLarge
                } else {
                    AppError::BadRequest("The body could not be read.".into())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        match serde_json::from_slice::<T>(&bytes) {
            Ok(v) => Ok(OptionalJson(v)),
            Err(e) if e.is_data() => Err(data_error(&format!("target type: {e}"))),
            Err(_) => Err(AppError::BadRequest(
                "The body is not valid JSON (or not valid UTF-8).".into(),
            )),
        }
    }
}

/// Defers another extractor's rejection to the handler, so that a handler
/// can authorize (403) before it reports a malformed body (400/422): the
/// order SPEC §5 asks for is authenticate, count, authorize, validate.
pub struct Later<T>(Result<T, AppError>);

impl<T> Later<T> {
    pub fn get(self) -> Result<T, AppError> {
        self.0
    }
}

impl<S, T> FromRequest<S> for Later<T>
where
    T: FromRequest<S, Rejection = AppError>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Later(T::from_request(req, state).await))
    }
}

impl<T> Later<ApiJson<T>> {
    /// The body for a service call, still unopened (see `services::Body`).
    pub fn json(self) -> Result<T, AppError> {
        self.0.map(|ApiJson(v)| v)
    }
}

impl<T> Later<OptionalJson<T>> {
    /// The body for a service call, still unopened (see `services::Body`).
    pub fn json(self) -> Result<T, AppError> {
        self.0.map(|OptionalJson(v)| v)
    }
}
