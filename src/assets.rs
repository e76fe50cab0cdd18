//! The files of `assets/`, embedded in the binary with the content-hash
//! names `build.rs` gives them. Pages name them with `url`; the
//! `/static/…` handler serves them.

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub fingerprinted: &'static str,
    pub content_type: &'static str,
    pub hash: u64,
    pub bytes: &'static [u8],
    pub gzip: Option<&'static [u8]>,
}

pub const ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The URL pages use for `path` (e.g. `app.css`): its fingerprinted name.
pub fn url(path: &str) -> String {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(asset) => format!("/static/{}", asset.fingerprinted),
        None => format!("/static/{path}"),
    }
}
