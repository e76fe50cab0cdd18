//! QR codes as inline SVG, drawn server-side so the projector needs no
//! script and no image request for them. One `<path>` of horizontal runs
//! keeps the markup small; the white quiet zone is part of the image,
//! because phones fail to scan a code that touches a dark background.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use maud::{Markup, PreEscaped, html};
use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code, as the QR standard asks.
const QUIET_ZONE_MODULES: usize = 4;

/// `data` as an accessible inline SVG, or a plain-text fallback if it cannot
/// be encoded (only absurdly long URLs).
pub fn qr_svg(data: &str, label: &str) -> Markup {
    // Level M survives a projector's glare and moiré better than L, and a URL stays small.
    let Ok(code) = QrCode::with_error_correction_level(data, EcLevel::M) else {
        return html! { p class="qr-missing" { "Open " (data) } };
    };
    let width = code.width();
    let size = width + 2 * QUIET_ZONE_MODULES;
    let d = dark_runs(&code.to_colors(), width);
    html! {
        svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {size} {size}"))
            role="img" aria-label=(label) shape-rendering="crispEdges" {
            rect width=(size) height=(size) fill="#fff" {}
            path d=(d) fill="#000" {}
        }
    }
}

/// QR codes kept at most: one per host (and `?conf=`) the projector page
/// is opened with, which in practice is one or two.
pub const QR_CACHE_ENTRIES: usize = 64;

/// Drawn QR codes by their text, so the projector page costs no more than
/// a vote page: encoding and drawing one takes about as long as rendering
/// 15 pages. Bounded: with `QR_CACHE_ENTRIES` entries the oldest drawn is
/// dropped first (a forged `Host` per request only ever costs the drawing).
#[derive(Default)]
pub struct QrCache(Mutex<Drawn>);

#[derive(Default)]
struct Drawn {
    svgs: HashMap<(String, &'static str), Arc<str>>,
    order: VecDeque<(String, &'static str)>,
}

impl QrCache {
    /// `qr_svg(data, label)`, drawn once while it stays in the cache.
    pub fn svg(&self, data: &str, label: &'static str) -> PreEscaped<Arc<str>> {
        let key = (data.to_owned(), label);
        if let Some(svg) = self.lock().svgs.get(&key) {
            return PreEscaped(svg.clone());
        }
        // Drawn outside the lock: two first requests may both draw it.
        let svg: Arc<str> = qr_svg(data, label).into_string().into();
        let mut drawn = self.lock();
        if drawn.svgs.len() >= QR_CACHE_ENTRIES
            && let Some(oldest) = drawn.order.pop_front()
        {
            drawn.svgs.remove(&oldest);
        }
        if drawn.svgs.insert(key.clone(), svg.clone()).is_none() {
            drawn.order.push_back(key);
        }
        PreEscaped(svg)
    }

    /// Codes held now.
    pub fn len(&self) -> usize {
        self.lock().svgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Drawn> {
        // Never held across an await; the map stays consistent on a panic.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Path data with one `h`-run per horizontal stretch of dark modules.
fn dark_runs(colors: &[Color], width: usize) -> String {
    let mut d = String::new();
    for (y, row) in colors.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if row[x] != Color::Dark {
                x += 1;
                continue;
            }
            let start = x;
            while x < width && row[x] == Color::Dark {
                x += 1;
            }
            let run = x - start;
            let _ = write!(
                d,
                "M{} {}h{run}v1h-{run}z",
                start + QUIET_ZONE_MODULES,
                y + QUIET_ZONE_MODULES
            );
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_exactly_the_dark_modules() {
        use Color::{Dark as D, Light as L};
        let d = dark_runs(&[D, D, L, L, D, L, D, L, D], 3);
        assert_eq!(d, "M4 4h2v1h-2zM5 5h1v1h-1zM4 6h1v1h-1zM6 6h1v1h-1z");
    }

    #[test]
    fn the_cache_draws_once_and_stays_bounded() {
        let cache = QrCache::default();
        let first = cache.svg("http://a.example/", "Vote");
        let again = cache.svg("http://a.example/", "Vote");
        assert!(Arc::ptr_eq(&first.0, &again.0), "drawn once");
        assert_eq!(&*first.0, qr_svg("http://a.example/", "Vote").into_string());
        for i in 0..QR_CACHE_ENTRIES + 10 {
            cache.svg(&format!("http://h{i}.example/"), "Vote");
        }
        assert_eq!(cache.len(), QR_CACHE_ENTRIES);
        let redrawn = cache.svg("http://a.example/", "Vote");
        assert!(!Arc::ptr_eq(&first.0, &redrawn.0), "the oldest went first");
    }

    #[test]
    fn svg_is_labelled_and_has_a_quiet_zone() {
        let html = qr_svg(
            "http://example.org/?referral=conf-partner-2026",
            "Vote with referral",
        )
        .into_string();
        assert!(html.contains(r#"role="img""#));
        assert!(html.contains(r#"aria-label="Vote with referral""#));
        assert!(html.contains(r##"fill="#fff""##));
        assert!(html.starts_with("<svg"));
    }
}
