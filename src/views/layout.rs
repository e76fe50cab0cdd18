//! The HTML skeleton shared by every page: head (one stylesheet, deferred
//! scripts, self-hosted fonts), the neon masthead with the conference sign
//! and welcome banner, and the street-level footer with the version.

use maud::{DOCTYPE, Markup, html};

use super::{Page, sign};
use crate::assets::url;

/// The parts of the skeleton that differ per page.
pub struct Chrome<'a> {
    /// First part of `<title>`; the conference and city follow it.
    pub title: &'a str,
    /// Class on `<body>` that selects the page's layout in `app.css`.
    pub class: &'static str,
    /// Scripts under `assets/`, loaded with `defer` from their long-cached URLs.
    pub scripts: &'a [&'static str],
}

/// Wraps `body` in the document.
pub fn page(page: &Page, chrome: &Chrome, body: Markup) -> Markup {
    let (name, city) = match page.conference {
        Some(conf) => (conf.name(), conf.city()),
        None => (sign::DEFAULT_NAME, sign::DEFAULT_CITY),
    };
    let full_title = format!("{} · {name} · {city}", chrome.title);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="dark";
                meta name="theme-color" content="#0d0a10";
                title { (full_title) }
                link rel="icon" href=(url("img/favicon.svg")) type="image/svg+xml";
                // The sign font is on every first screen: fetch it with the CSS, not after.
                link rel="preload" href=(url("fonts/bungee.woff2")) as="font" type="font/woff2" crossorigin;
                link rel="stylesheet" href=(url("app.css"));
                @for script in chrome.scripts {
                    script src=(url(script)) defer {}
                }
            }
            // The screen ticket for the page's scripts (CSP forbids inline ones).
            body class=(chrome.class) data-screen=[page.screen.as_deref()] {
                a class="skip" href="#main" { "Skip to content" }
                header class="masthead" {
                    (sign::sign(page.conference))
                    @if let Some(conf) = page.conference {
                        p class="welcome" {
                            span class="welcome__tag" { "Welcome to " (conf.name()) "!" }
                            " "
                            span class="welcome__city" { (conf.city()) }
                        }
                    }
                }
                main id="main" tabindex="-1" { (body) }
                footer class="street" {
                    p class="street__meta" {
                        a href=(page.link("/")) { "Vote" }
                        " · "
                        a href=(page.link("/results")) { "Live results" }
                        " · "
                        span class="street__version" { "vote-api " (page.version) }
                    }
                }
            }
        }
    }
}
