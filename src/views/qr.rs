//! QR codes as inline SVG, drawn server-side so the projector needs no
//! script and no image request for them. One `<path>` of horizontal runs
//! keeps the markup small; the white quiet zone is part of the image,
//! because phones fail to scan a code that touches a dark background.

use std::fmt::Write;

use maud::{Markup, html};
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
