//! Request extractors shared by the handlers: JSON bodies whose rejections
//! are problem documents, pagination, and optimistic-concurrency versions.

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
        if !is_json(req.headers()) {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// `application/json`, or any `application/…+json`.
fn is_json(h: &HeaderMap) -> bool {
    h.get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == "application"
                && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"))
        })
}

async fn body_bytes<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<axum::body::Bytes, AppError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::BadRequest("The body could not be read.".into())
            }
        })
}

/// Deserialize with the failing field's path (`serde_path_to_error`):
/// malformed JSON is a 400, JSON of the wrong shape a 422 naming the field,
/// and no input value is ever echoed.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let not_json =
        || AppError::BadRequest("The body is not valid JSON (or not valid UTF-8).".into());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => v,
        Err(e) if e.inner().is_data() => {
            return Err(data_error(&e.path().to_string(), &e.inner().to_string()))
        }
        // serde_json reports some shape errors as syntax errors (an enum
        // given `{}`): well-formed JSON is a 422 naming the field all the same.
        Err(e) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => {
            return Err(data_error(&e.path().to_string(), &e.inner().to_string()))
        }
        Err(_) => return Err(not_json()),
    };
    // Trailing bytes after the value are malformed JSON too.
    de.end().map_err(|_| not_json())?;
    Ok(v)
}

/// A field error from serde's message about `path`, without input values:
/// serde names missing fields and expected types, never the value given.
fn data_error(path: &str, msg: &str) -> AppError {
    let detail = msg.split(" at line ").next().unwrap_or(msg);
    let field = match detail.strip_prefix("missing field `") {
        Some(rest) => {
            let name = rest.split('`').next().unwrap_or("body");
            match path {
                "." | "" => name.to_string(),
                p => format!("{p}.{name}"),
            }
        }
        None if path == "." || path.is_empty() => "body".to_string(),
        None => path.to_string(),
    };
    let expected = |d: &str| {
        d.split("expected ")
            .nth(1)
            .unwrap_or("another value")
            .to_string()
    };
    let kind = if detail.starts_with("missing field") {
        "is required".to_string()
    } else if detail.starts_with("invalid type") {
        format!("has the wrong type; expected {}", expected(detail))
    } else if detail.starts_with("unknown variant") {
        format!("is not allowed; expected {}", expected(detail))
    } else {
        "is invalid".to_string()
    };
    AppError::validation(field, kind)
}

/// `?limit=&cursor=` (limit defaults to 50, clamped to 1..=200).
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Rows per page (default 50); values below 1 are treated as 1 and
    /// values above 200 as 200
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
        let bytes = body_bytes(req, state).await?;
        // No body, or JSON `null` (what the document's optional body
        // allows), is the default.
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Defers another extractor's rejection to the handler, so that a handler
/// can authorize (403) before it reports a malformed body (400/422): the
/// order SPEC §5 asks for is authenticate, count, authorize, validate.
pub struct Later<T>(Result<T, AppError>);

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

/// An integer field that also takes an integral JSON number written with a
/// fraction (`2.0`): JSON Schema's `integer` includes it, serde's `i64` does
/// not. A real fraction (`2.5`) or a value outside `i64` is still refused.
pub fn json_integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        #[allow(clippy::cast_possible_truncation)]
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(serde::de::Error::custom("expected i64")),
    }
}
