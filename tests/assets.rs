//! Static assets (docs/contract.md, connection budgets): pages name fingerprinted, long-cached URLs;
//! text assets come gzipped when the client accepts it and decode to the
//! very bytes served uncompressed.

mod common;

use std::io::Read;

use common::*;
use hyper::{Method, StatusCode};

/// Every `/static/…` URL in `text`.
fn static_urls(text: &str) -> Vec<String> {
    text.match_indices("/static/")
        .map(|(at, _)| {
            let rest = &text[at..];
            let end = rest.find(['"', '\'', ')', ' ']).unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .collect()
}

#[tokio::test]
async fn compressed_assets_decode_to_the_same_bytes_and_cache_for_a_year() {
    let app = TestApp::start().await;
    let mut urls = static_urls(&app.get("/").await.text());
    urls.extend(static_urls(&app.get("/results").await.text()));
    let css = urls
        .iter()
        .find(|u| u.ends_with(".css"))
        .expect("a stylesheet")
        .clone();
    urls.extend(static_urls(&app.get(&css).await.text()));
    urls.sort();
    urls.dedup();
    assert!(urls.len() >= 7, "{urls:?}");

    let mut gzipped = 0;
    for url in &urls {
        let plain = app.get(url).await;
        assert_eq!(plain.status, StatusCode::OK, "{url}");
        assert_eq!(
            plain.header("cache-control"),
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert!(plain.headers.get("content-encoding").is_none(), "{url}");

        let packed = app
            .send_with(Method::GET, url, ("accept-encoding", "gzip, deflate, br"))
            .await;
        assert_eq!(packed.status, StatusCode::OK, "{url}");
        if packed.headers.get("content-encoding").is_none() {
            // Fonts are compressed already: the same bytes either way.
            assert_eq!(packed.body, plain.body, "{url}");
            continue;
        }
        gzipped += 1;
        assert_eq!(packed.header("content-encoding"), "gzip");
        assert_eq!(packed.header("vary"), "accept-encoding");
        assert_eq!(plain.header("vary"), "accept-encoding");
        assert_ne!(packed.header("etag"), plain.header("etag"));
        assert!(packed.body.len() < plain.body.len(), "{url}");
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&packed.body[..])
            .read_to_end(&mut decoded)
            .expect("valid gzip");
        assert_eq!(
            decoded,
            plain.body.to_vec(),
            "{url} decodes to the same bytes"
        );

        let again = app
            .request(Method::GET, url)
            .header("accept-encoding", "gzip")
            .header("if-none-match", packed.header("etag"))
            .body(http_body_util::Full::default())
            .expect("request");
        let again = send(again).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{url}");
    }
    assert!(gzipped >= 4, "CSS, both scripts and the SVGs are gzipped");

    // The plain names still answer (old pages, bookmarks), revalidated hourly.
    let old = app.get("/static/app.css").await;
    assert_eq!(old.status, StatusCode::OK);
    assert_eq!(old.header("cache-control"), "public, max-age=3600");
    app.stop().await;
}
