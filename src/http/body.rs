//! Request bodies (size-limited, time-limited, JSON or form) and response
//! builders: every response is built here except `/stream`'s, which sse.rs streams.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Why a streamed body stopped short. hyper then aborts the connection
/// instead of ending the body, so the client sees an incomplete transfer
/// rather than a clean end (a short CSV taken for the whole).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of every route.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// Largest accepted request body (docs/contract.md#every-answer).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// How long a client may take to send its body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The two accepted body encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Form,
}

/// Which encoding the request declares; anything else is 415.
pub fn encoding<B>(req: &Request<B>) -> Result<Encoding, ApiError> {
    let value = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = value.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(Encoding::Json)
    } else if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(Encoding::Form)
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Reads the whole body, refusing more than `MAX_BODY_BYTES`.
pub async fn read(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let limited = Limited::new(req.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES)),
        Ok(Err(_)) => Err(ApiError::Malformed("Request body could not be read")),
    }
}

/// Decodes `bytes` as `encoding`. Rejects invalid UTF-8 in either form.
pub fn decode<T: DeserializeOwned + Strings>(
    encoding: Encoding,
    bytes: &[u8],
) -> Result<T, ApiError> {
    let value: T = match encoding {
        Encoding::Json => {
            // serde reads a struct from an array too (`["ai"]`): only an object is a body.
            if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                return Err(ApiError::Malformed("JSON body must be an object"));
            }
            serde_json::from_slice(bytes).map_err(|_| ApiError::Malformed("Malformed JSON body"))?
        }
        Encoding::Form => {
            std::str::from_utf8(bytes)
                .map_err(|_| ApiError::Malformed("Body is not valid UTF-8"))?;
            serde_urlencoded::from_bytes(bytes)
                .map_err(|_| ApiError::Malformed("Malformed form body"))?
        }
    };
    // Form decoding replaces bad percent-escapes with U+FFFD instead of failing.
    if value.strings().any(|s| s.contains('\u{FFFD}')) {
        return Err(ApiError::Malformed("Body is not valid UTF-8"));
    }
    Ok(value)
}

/// Lets `decode` inspect every string field of a body.
pub trait Strings {
    fn strings(&self) -> impl Iterator<Item = &str>;
}

/// Parses a query string; unknown keys are ignored, bad encodings give defaults.
pub fn query<T: Default + for<'de> Deserialize<'de>>(req_query: Option<&str>) -> T {
    req_query
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

/// Wraps bytes into the common body type.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A JSON response.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(value).expect("response bodies always serialise");
    with_type(status, "application/json", bytes)
}

/// An HTML page with the security headers every page carries.
pub fn html(status: StatusCode, markup: maud::Markup) -> Response<Body> {
    let mut resp = with_type(status, "text/html; charset=utf-8", markup.into_string());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// Only our own origin; no inline script or style.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
    script-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A response with a body and its content type (plus `nosniff`).
pub fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `303 See Other` to `location` (already URL-safe).
pub fn see_other(location: &str) -> Response<Body> {
    let mut resp = with_type(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        "See Other",
    );
    if let Ok(value) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, value);
    }
    resp
}

/// The detail of an error response, kept for the router (the projector's
/// degraded sign shows it) whatever the body format.
#[derive(Debug, Clone)]
pub struct ErrorDetail(pub String);

/// The `{"detail": ...}` answer for an error.
pub fn error(e: &ApiError) -> Response<Body> {
    let resp = json(e.status(), &serde_json::json!({ "detail": e.to_string() }));
    mark_error(resp, e)
}

/// Adds what every answer to `e` carries, whatever its body format: the
/// detail for the router (the projector's degraded sign shows it) and the
/// headers the status calls for.
pub fn mark_error(mut resp: Response<Body>, e: &ApiError) -> Response<Body> {
    resp.extensions_mut().insert(ErrorDetail(e.to_string()));
    let h = resp.headers_mut();
    match e {
        ApiError::MethodNotAllowed(allow) => {
            h.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        ApiError::Unauthorized | ApiError::AdminTokenUnset => {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        ApiError::CacheExhausted(_) | ApiError::DbUnavailable | ApiError::Overloaded => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    resp
}

/// A CSV download.
pub fn attachment(body: Body, filename: &'static str) -> Response<Body> {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        a: String,
    }

    impl Strings for Probe {
        fn strings(&self) -> impl Iterator<Item = &str> {
            std::iter::once(self.a.as_str())
        }
    }

    #[test]
    fn rejects_invalid_utf8_in_both_encodings() {
        assert!(decode::<Probe>(Encoding::Form, b"a=%FF").is_err());
        assert!(decode::<Probe>(Encoding::Form, b"a=\xff").is_err());
        assert!(decode::<Probe>(Encoding::Json, b"{\"a\":\"\xff\"}").is_err());
        let ok: Probe = decode(Encoding::Json, b" \n{\"a\":\"x\"}").expect("object");
        assert_eq!(ok.a, "x");
        let ok: Probe = decode(Encoding::Form, b"a=caf%C3%A9").expect("valid");
        assert_eq!(ok.a, "café");
    }

    #[test]
    fn json_bodies_must_be_objects() {
        for body in [
            &b"[\"x\"]"[..],
            b"\"x\"",
            b"42",
            b"null",
            b"",
            b" [{\"a\":\"x\"}]",
        ] {
            let e = decode::<Probe>(Encoding::Json, body).expect_err("not an object");
            assert_eq!(e.to_string(), "JSON body must be an object");
        }
    }

    #[test]
    fn content_types_are_matched_loosely() {
        let req = |ct: &str| {
            Request::builder()
                .header("content-type", ct)
                .body(())
                .expect("valid")
        };
        assert_eq!(
            encoding(&req("application/json; charset=utf-8")).ok(),
            Some(Encoding::Json)
        );
        assert_eq!(
            encoding(&req("Application/X-WWW-Form-Urlencoded")).ok(),
            Some(Encoding::Form)
        );
        assert!(encoding(&req("text/plain")).is_err());
        assert!(encoding(&Request::new(())).is_err());
    }
}
