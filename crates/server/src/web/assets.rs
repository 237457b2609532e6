//! Static assets compiled into the binary, served under content-hashed
//! names (`/static/app.3f2a9c1b04d7.css`): a deploy that changes a file
//! changes its address, so the address can be cached for a year and no
//! browser keeps a stale stylesheet. The plain names (`/static/app.css`)
//! still answer, with a short cache, for anything that linked them.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::web::view;

const APP_CSS: &str = include_str!("../../static/app.css");
const APP_JS: &str = include_str!("../../static/app.js");
const FAVICON: &str = include_str!("../../static/favicon.svg");

struct Asset {
    /// The hashed address, as pages link it.
    url: String,
    plain: &'static str,
    content_type: &'static str,
    body: &'static str,
}

fn asset(stem: &str, ext: &str, content_type: &'static str, body: &'static str) -> Asset {
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    Asset {
        url: format!(
            "/static/{stem}.{}.{ext}",
            digest.get(..12).unwrap_or(&digest)
        ),
        plain: if ext == "css" {
            "/static/app.css"
        } else {
            "/static/app.js"
        },
        content_type,
        body,
    }
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        asset("app", "css", "text/css; charset=utf-8", APP_CSS),
        asset("app", "js", "text/javascript; charset=utf-8", APP_JS),
    ]
});

/// The stylesheet's hashed address.
pub fn css_url() -> &'static str {
    &ASSETS[0].url
}

/// The script's hashed address.
pub fn js_url() -> &'static str {
    &ASSETS[1].url
}

fn send(content_type: &'static str, body: &'static str, cache: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// `GET /static/{file}`: a hashed name for a year (immutable), a plain name
/// for an hour; anything else is the 404 page.
pub async fn file(Path(file): Path<String>) -> Response {
    let path = format!("/static/{file}");
    for a in ASSETS.iter() {
        if path == a.url {
            return send(
                a.content_type,
                a.body,
                "public, max-age=31536000, immutable",
            );
        }
        if path == a.plain {
            return send(a.content_type, a.body, "public, max-age=300");
        }
    }
    view::error_page(None, &AppError::NotFound)
}

/// `GET /favicon.svg` (and `/favicon.ico`, which browsers ask for unbidden).
pub async fn favicon() -> Response {
    send("image/svg+xml", FAVICON, "public, max-age=86400")
}
