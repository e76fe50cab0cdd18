//! The conference branding: a neon sign drawn by us for each key (a tube
//! colour in `app.css`, a line-art motif here, the name as text), never a
//! third-party logo file. Without a conference it is the poll's own sign.

use maud::{Markup, PreEscaped, html};

use crate::brand::Conference;

/// What the unbranded sign reads.
pub const DEFAULT_NAME: &str = "Live Poll";
/// The city of the unbranded app: the look is New York's.
pub const DEFAULT_CITY: &str = "New York";

/// The neon sign for `conference` (or the default sign).
pub fn sign(conference: Option<Conference>) -> Markup {
    let (key, name, sub) = match conference {
        Some(conf) => (conf.key(), conf.name(), "live poll"),
        None => ("default", DEFAULT_NAME, "open 24 hrs"),
    };
    html! {
        // One image for assistive technology: the tubes are decoration.
        div class=(format!("neon-sign sign-{key}")) role="img" aria-label=(format!("{name}, {sub}")) {
            svg class="neon-sign__motif" viewBox="0 0 24 24" aria-hidden="true" focusable="false"
                fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round" {
                (PreEscaped(motif(conference)))
            }
            span class="neon-sign__text" {
                span class="neon-sign__name" { (name) }
                span class="neon-sign__sub" { (sub) }
            }
        }
    }
}

/// Line art for each sign, in a 24×24 box, stroked with the tube colour.
/// Constant SVG written here, so it is safe to emit unescaped.
fn motif(conference: Option<Conference>) -> &'static str {
    match conference {
        // A heartbeat: reliability is what SREs watch.
        Some(Conference::Sreday) => r#"<path d="M1.5 12.5h5l2-5 3.5 10 2.5-7 1.5 2h6.5"></path>"#,
        // A ship's wheel with eight spokes.
        Some(Conference::Kubecon) => {
            r#"<circle cx="12" cy="12" r="6.5"></circle><circle cx="12" cy="12" r="2"></circle><path d="M12 1.5v4M12 18.5v4M1.5 12h4M18.5 12h4M4.6 4.6l2.8 2.8M16.6 16.6l2.8 2.8M4.6 19.4l2.8-2.8M16.6 7.4l2.8-2.8"></path>"#
        }
        // The infinity loop of dev and ops.
        Some(Conference::Devopsdays) => {
            r#"<path d="M12 12c-2-2.8-3.8-4.3-6-4.3a4.3 4.3 0 0 0 0 8.6c2.2 0 4-1.5 6-4.3s3.8-4.3 6-4.3a4.3 4.3 0 0 1 0 8.6c-2.2 0-4-1.5-6-4.3z"></path>"#
        }
        // A Lisbon tram with its trolley pole.
        Some(Conference::Lisbon) => {
            r#"<path d="M9 6.5 15 1.5"></path><rect x="3.5" y="6.5" width="17" height="11" rx="2"></rect><path d="M3.5 12.5h17M8 6.5v6M12 6.5v6M16 6.5v6"></path><circle cx="7.5" cy="20" r="1.6"></circle><circle cx="16.5" cy="20" r="1.6"></circle>"#
        }
        // A globe: developers from all over the world.
        Some(Conference::Dwx) => {
            r#"<circle cx="12" cy="12" r="9.5"></circle><ellipse cx="12" cy="12" rx="4" ry="9.5"></ellipse><path d="M2.5 12h19M4 7h16M4 17h16"></path>"#
        }
        // A cloud.
        Some(Conference::Munich) => {
            r#"<path d="M7 18.5h10.5a4.2 4.2 0 0 0 .3-8.4 6.2 6.2 0 0 0-11.9 1.6A3.4 3.4 0 0 0 7 18.5z"></path>"#
        }
        // The Big Apple.
        None => {
            r#"<path d="M12 7.5c-1.2-1.6-3.3-2.5-5.2-1.9C3.7 6.6 3 10.3 4.1 13.6c1.1 3.5 3.6 7.1 5.8 7.1 1 0 1.3-.6 2.1-.6s1.1.6 2.1.6c2.2 0 4.7-3.6 5.8-7.1 1.1-3.3.4-7-2.7-8-1.9-.6-4 .3-5.2 1.9z"></path><path d="M12 7.5c0-2.2.9-4 2.8-5"></path><path d="M12.6 5.2c1.4-1.6 3.4-1.8 4.6-1.2-.9 1.4-2.8 2-4.6 1.2z"></path>"#
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_its_own_sign_class_and_name() {
        for key in Conference::KEYS {
            let conf = Conference::from_key(key).expect("listed key");
            let html = sign(Some(conf)).into_string();
            assert!(html.contains(&format!("sign-{key}")), "{key}");
            assert!(html.contains(conf.name()), "{key}");
        }
        assert!(sign(None).into_string().contains("sign-default"));
    }
}
