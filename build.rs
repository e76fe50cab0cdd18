//! Prepares `assets/` for serving, once, at build time: every file gets a
//! content-hash name (`app.<hash>.css`) so that pages can cache it forever,
//! the stylesheet's `/static/…` references are rewritten to those names, and
//! text files are gzipped at the best level. Writes the files and the table
//! `src/http/handlers/assets.rs` includes into `OUT_DIR`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::{env, fs};

use flate2::Compression;
use flate2::write::GzEncoder;

/// Every served file and its content type. The stylesheet comes last: it
/// names the others by their fingerprinted URLs.
const ASSETS: &[(&str, &str)] = &[
    ("vote.js", "text/javascript; charset=utf-8"),
    ("results.js", "text/javascript; charset=utf-8"),
    ("timeline.js", "text/javascript; charset=utf-8"),
    ("fonts/bungee.woff2", "font/woff2"),
    ("fonts/sedgwick-ave-display.woff2", "font/woff2"),
    // The OFL asks that the licence travel with the fonts.
    ("fonts/bungee-OFL.txt", "text/plain; charset=utf-8"),
    (
        "fonts/sedgwick-ave-display-OFL.txt",
        "text/plain; charset=utf-8",
    ),
    ("img/favicon.svg", "image/svg+xml"),
    ("img/skyline.svg", "image/svg+xml"),
    ("img/taxi.svg", "image/svg+xml"),
    ("app.css", "text/css; charset=utf-8"),
];

fn main() {
    let out = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let out = Path::new(&out);
    fs::create_dir_all(out.join("assets/fonts")).expect("create OUT_DIR/assets");
    fs::create_dir_all(out.join("assets/img")).expect("create OUT_DIR/assets");
    println!("cargo::rerun-if-changed=assets");

    let mut renames: Vec<(String, String)> = Vec::new();
    let mut table = String::from("&[\n");
    for (path, content_type) in ASSETS {
        let source = Path::new("assets").join(path);
        println!("cargo::rerun-if-changed={}", source.display());
        let mut bytes = fs::read(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        if path.ends_with(".css") {
            bytes = rewrite(&bytes, &renames);
        }
        let hash = fnv1a(&bytes);
        let fingerprinted = fingerprint(path, hash);
        renames.push((
            format!("/static/{path}"),
            format!("/static/{fingerprinted}"),
        ));
        fs::write(out.join("assets").join(path), &bytes).expect("write asset");

        let gzip = if content_type.starts_with("font/") {
            None // woff2 is compressed already
        } else {
            let gz = gzip(&bytes);
            (gz.len() < bytes.len()).then(|| {
                fs::write(out.join("assets").join(format!("{path}.gz")), gz).expect("write .gz");
                format!("Some(include_bytes!(concat!(env!(\"OUT_DIR\"), \"/assets/{path}.gz\")))")
            })
        };
        writeln!(
            table,
            "    Asset {{ path: {path:?}, fingerprinted: {fingerprinted:?}, content_type: {content_type:?}, \
             hash: {hash}, bytes: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/assets/{path}\")), \
             gzip: {gzip} }},",
            gzip = gzip.as_deref().unwrap_or("None"),
        )
        .expect("write to a String");
    }
    table.push(']');
    fs::write(out.join("assets.rs"), table).expect("write the asset table");
}

/// `fonts/bungee.woff2` → `fonts/bungee.<hash>.woff2`.
fn fingerprint(path: &str, hash: u64) -> String {
    let short = format!("{:012x}", hash >> 16);
    match path.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{short}.{ext}"),
        None => format!("{path}.{short}"),
    }
}

/// Replaces every `/static/<name>"` with its fingerprinted URL.
fn rewrite(css: &[u8], renames: &[(String, String)]) -> Vec<u8> {
    let mut text = String::from_utf8(css.to_vec()).expect("the stylesheet is UTF-8");
    for (from, to) in renames {
        text = text.replace(&format!("{from}\""), &format!("{to}\""));
    }
    text.into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// FNV-1a: tiny, stable across builds, good enough to tell versions apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
