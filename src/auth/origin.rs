//! Cross-site request forgery defence for the dashboard's server functions
//! and the session-cookie REST routes (`/api/auth`, `/api/keys`, …).
//!
//! A state-changing call is refused when the browser says it comes from
//! another site: an `Origin` that is not this host, or
//! `Sec-Fetch-Site: cross-site`. The SameSite=Lax cookie is a second line.

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;

/// The path prefix under which server functions are mounted.
pub const SERVER_FN_PREFIX: &str = "/rpc/";

/// Middleware: rejects cross-origin calls to server functions with 403.
pub async fn require_same_origin(request: Request, next: Next) -> Response {
    if request.uri().path().starts_with(SERVER_FN_PREFIX) {
        refuse_cross_origin_writes(request, next).await
    } else {
        next.run(request).await
    }
}

/// Middleware: rejects a cross-origin request that may change state (any
/// method but GET and HEAD) with 403, in OpenAI's error shape.
pub async fn refuse_cross_origin_writes(request: Request, next: Next) -> Response {
    let writes = request.method() != Method::GET && request.method() != Method::HEAD;
    if writes && is_cross_origin(request.headers()) {
        tracing::warn!(path = %request.uri().path(), "cross-origin call refused");
        return AppError::Forbidden("Cross-origin requests are not allowed.".into())
            .into_response();
    }
    next.run(request).await
}

/// Whether the headers show a request from another origin than the `Host`.
pub fn is_cross_origin(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        // Browsers send Origin on every cross-origin POST; a request without
        // one is same-origin or not from a browser (and then has no cookie to abuse).
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match (origin_host, host) {
        (Some(origin_host), Some(host)) => !origin_host.eq_ignore_ascii_case(host),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn same_origin_passes() {
        assert!(!is_cross_origin(&headers(&[
            ("host", "gw.example:3000"),
            ("origin", "http://gw.example:3000")
        ])));
        assert!(!is_cross_origin(&headers(&[("host", "gw.example")])));
        assert!(!is_cross_origin(&headers(&[
            ("host", "gw.example"),
            ("sec-fetch-site", "same-origin")
        ])));
    }

    #[test]
    fn other_origins_are_refused() {
        assert!(is_cross_origin(&headers(&[
            ("host", "gw.example"),
            ("origin", "https://evil.example")
        ])));
        assert!(is_cross_origin(&headers(&[
            ("host", "gw.example"),
            ("origin", "null")
        ])));
        assert!(is_cross_origin(&headers(&[
            ("host", "gw.example:3000"),
            ("origin", "http://gw.example:4000")
        ])));
        assert!(is_cross_origin(&headers(&[
            ("host", "gw.example"),
            ("sec-fetch-site", "cross-site")
        ])));
    }
}
