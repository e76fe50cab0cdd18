//! `/static/…`: files from `assets/`, embedded in the binary, with
//! `Cache-Control` and a content-hash `ETag` (304 on a match).

use std::sync::LazyLock;

use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::http::body::{self, Body};
use crate::http::error::ApiError;

struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!("../../../assets/", $path)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("vote.js", "text/javascript; charset=utf-8"),
    asset!("results.js", "text/javascript; charset=utf-8"),
    asset!("timeline.js", "text/javascript; charset=utf-8"),
    asset!("fonts/bungee.woff2", "font/woff2"),
    asset!("fonts/sedgwick-ave-display.woff2", "font/woff2"),
    // The OFL asks that the licence travel with the fonts.
    asset!("fonts/bungee-OFL.txt", "text/plain; charset=utf-8"),
    asset!(
        "fonts/sedgwick-ave-display-OFL.txt",
        "text/plain; charset=utf-8"
    ),
    asset!("img/favicon.svg", "image/svg+xml"),
    asset!("img/skyline.svg", "image/svg+xml"),
    asset!("img/taxi.svg", "image/svg+xml"),
];

/// ETags computed once, in `ASSETS` order.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(a.bytes)))
                .expect("hex is a valid header value")
        })
        .collect()
});

pub fn serve<B>(req: &Request<B>) -> Response<Body> {
    let name = req.uri().path().trim_start_matches("/static/");
    let Some(index) = ASSETS.iter().position(|a| a.path == name) else {
        return body::error(&ApiError::NotFound);
    };
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut resp = if fresh {
        body::with_type(StatusCode::NOT_MODIFIED, asset.content_type, "")
    } else {
        body::with_type(StatusCode::OK, asset.content_type, asset.bytes)
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag.clone());
    // Names are not content-hashed, so revalidate after an hour.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}

/// FNV-1a: tiny, stable across builds, good enough to tell versions apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::{self, Page};

    /// Every `/static/…` path in `text`.
    fn static_paths(text: &str) -> Vec<&str> {
        text.match_indices("/static/")
            .map(|(at, _)| {
                let rest = &text[at + "/static/".len()..];
                let end = rest.find(['"', '\'', ')', ' ']).unwrap_or(rest.len());
                &rest[..end]
            })
            .collect()
    }

    #[test]
    fn every_referenced_asset_is_in_the_table() {
        let page = Page::default();
        let css = std::str::from_utf8(ASSETS[0].bytes).expect("CSS is UTF-8");
        let pages = [
            css.to_owned(),
            views::vote::vote(&page).into_string(),
            views::vote::thanks(&page, crate::poll::Choice::Ai).into_string(),
        ];
        let mut seen = 0;
        for text in &pages {
            for path in static_paths(text) {
                assert!(
                    ASSETS.iter().any(|a| a.path == path),
                    "{path} is not served"
                );
                seen += 1;
            }
        }
        assert!(seen >= 6, "found only {seen} references");
    }

    #[test]
    fn fonts_are_woff2() {
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".woff2")) {
            assert_eq!(&asset.bytes[..4], b"wOF2", "{}", asset.path);
            assert_eq!(asset.content_type, "font/woff2");
        }
    }
}
