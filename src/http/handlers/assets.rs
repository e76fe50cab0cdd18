//! `/static/…`: the files of `crate::assets`, embedded in the binary. `build.rs`
//! gives each a content-hash name, which pages use and browsers may cache
//! for a year (`immutable`); the plain name still answers, revalidated
//! hourly. Text files are served gzipped (compressed at build time) to
//! clients that accept it, with `Vary: Accept-Encoding` and an `ETag` per
//! representation (304 on a match).

use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::assets::ASSETS;
use crate::http::body::{self, Body};
use crate::http::error::ApiError;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "public, max-age=3600";

pub fn serve<B>(req: &Request<B>) -> Response<Body> {
    let name = req.uri().path().trim_start_matches("/static/");
    let Some((asset, immutable)) = ASSETS.iter().find_map(|a| {
        (a.fingerprinted == name)
            .then_some((a, true))
            .or((a.path == name).then_some((a, false)))
    }) else {
        return body::error(&ApiError::NotFound);
    };
    let gzip = asset.gzip.filter(|_| accepts_gzip(req));
    let etag = match gzip {
        Some(_) => format!("\"{:016x}-gz\"", asset.hash),
        None => format!("\"{:016x}\"", asset.hash),
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let bytes = gzip.unwrap_or(asset.bytes);
    let mut resp = if fresh {
        body::with_type(StatusCode::NOT_MODIFIED, asset.content_type, "")
    } else {
        body::with_type(StatusCode::OK, asset.content_type, bytes)
    };
    let h = resp.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header value"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable { IMMUTABLE } else { REVALIDATE }),
    );
    if asset.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if gzip.is_some() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*`, without `q=0`).
fn accepts_gzip<B>(req: &Request<B>) -> bool {
    let Some(value) = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    value.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
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
        let css = ASSETS
            .iter()
            .find(|a| a.path == "app.css")
            .expect("app.css");
        let css = std::str::from_utf8(css.bytes).expect("CSS is UTF-8");
        let pages = [
            css.to_owned(),
            views::vote::vote(&views::vote::VotePage {
                page: &page,
                one_per_device: false,
                voted: None,
            })
            .into_string(),
            views::vote::thanks(&page, page.poll.choice("ai").expect("seed key")).into_string(),
        ];
        let mut seen = 0;
        for text in &pages {
            for path in static_paths(text) {
                // Pages and the stylesheet name the long-cached URLs only.
                assert!(
                    ASSETS.iter().any(|a| a.fingerprinted == path),
                    "{path} is not a fingerprinted asset"
                );
                seen += 1;
            }
        }
        assert!(seen >= 6, "found only {seen} references");
    }

    #[test]
    fn gzip_only_when_accepted() {
        let with = |value: &str| {
            let req = Request::builder()
                .header(header::ACCEPT_ENCODING, value)
                .body(())
                .expect("request");
            accepts_gzip(&req)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, gzip;q=0.8"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, identity"));
        assert!(!accepts_gzip(&Request::new(())));
    }

    #[test]
    fn fonts_are_woff2() {
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".woff2")) {
            assert_eq!(&asset.bytes[..4], b"wOF2", "{}", asset.path);
            assert_eq!(asset.content_type, "font/woff2");
        }
    }
}
