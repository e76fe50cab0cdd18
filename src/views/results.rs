//! The projector page (`/results`): five bars fed by the `votes` events of
//! `/stream`, the SERVICE DEGRADED sign and the screen count fed by its
//! `status` events (both applied by `results.js`), and the two QR codes.
//! The first render already shows the current counts, so a projector
//! whose script fails still shows numbers. While the speaker hides the
//! results, the page carries the total only (no per-choice count anywhere)
//! and a RESULTS HIDDEN sign stands where the bars were.

use maud::{Markup, html};

use super::layout::{self, Chrome};
use super::{Page, qr};
use crate::poll::Counts;

/// What the results page shows before the stream's first frame.
pub struct Results<'a> {
    pub page: &'a Page,
    pub counts: Counts,
    /// The plain vote URL printed in the first QR code.
    pub vote_url: String,
    /// The same with the partner referral, for the second QR code.
    pub referral_url: String,
    /// `/stream` clients of this replica when the page was rendered.
    pub watching: i64,
    /// The speaker hid the results: show the total only.
    pub hidden: bool,
    /// Where both QR codes are drawn once per URL.
    pub qr: &'a qr::QrCache,
}

/// Whole percent of `n` in `total` (0 when nobody voted yet).
fn percent(n: u64, total: u64) -> u64 {
    (n * 100 + total / 2).checked_div(total).unwrap_or(0)
}

/// The banner a live page shows while its stream is down.
pub fn connection_banner() -> Markup {
    html! {
        p id="connection" class="connection" role="status" hidden {
            span class="connection__title" { "Connection lost" }
            " "
            span class="connection__hint" { "Reconnecting by itself…" }
        }
    }
}

pub fn results(view: &Results) -> Markup {
    layout::page(
        view.page,
        &Chrome {
            title: "Results",
            class: "page-results",
            scripts: &["results.js"],
        },
        html! {
            (connection_banner())
            (degraded_sign())
            div class="board" {
                (poll(view))
                aside class="scan" aria-label="Scan to vote" {
                    p class="scan__tag graffiti" aria-hidden="true" { "Vote now!" }
                    (qr_card(view, "qr-card", &view.vote_url, "QR code to vote", "Scan to vote"))
                    (qr_card(view, "qr-card qr-card--partner", &view.referral_url,
                        "QR code to vote with the partner referral", "Partner link"))
                }
            }
            (meter(view))
        },
    )
}

/// SERVICE DEGRADED, shown by `results.js` while votes fail.
fn degraded_sign() -> Markup {
    html! {
        section id="degraded" class="degraded" role="alert" hidden aria-labelledby="degraded-title" {
            h2 id="degraded-title" class="degraded__sign" { "Service degraded" }
            p class="degraded__stats" {
                strong id="failed-count" { "0" } " " span id="failed-unit" { "failed votes" } " in the last minute"
            }
            p id="degraded-detail" class="degraded__detail" {}
        }
    }
}

/// The question and its bars, or RESULTS HIDDEN.
fn poll(view: &Results) -> Markup {
    // Hidden: the bars are drawn empty, so no count leaks through the markup.
    let shown = if view.hidden {
        Counts::default()
    } else {
        view.counts
    };
    html! {
        section class="poll" aria-labelledby="question" {
            h1 id="question" class="poll__question" { (view.page.poll.question()) }
            section id="results-hidden" class="hidden-sign" hidden[!view.hidden] aria-labelledby="hidden-title" {
                h2 id="hidden-title" class="hidden-sign__tube" {
                    span { "Results hidden" } " " span class="hidden-sign__dash" { "—" } " " span { "keep voting" }
                }
            }
            ol id="results" class="bars" hidden[view.hidden] {
                @for choice in view.page.poll.choices() {
                    @let n = shown.get(choice);
                    li class="bar" data-choice=(view.page.poll.key(choice)) data-count=(n) {
                        span class="bar__label" { (view.page.poll.label(choice)) }
                        span class="bar__track" aria-hidden="true" { span class="bar__fill" {} }
                        span class="bar__value" {
                            span class="count" { (n) }
                            span class="visually-hidden" { " votes, " }
                            span class="pct" { (percent(n, shown.total())) "%" }
                        }
                    }
                }
            }
        }
    }
}

/// One QR code with its caption.
fn qr_card(view: &Results, class: &str, url: &str, alt: &'static str, title: &str) -> Markup {
    html! {
        figure class=(class) {
            (view.qr.svg(url, alt))
            figcaption {
                strong { (title) }
                span class="qr-card__url" { (url) }
            }
        }
    }
}

/// The total, the screens, the version, the stream and the timeline link.
fn meter(view: &Results) -> Markup {
    html! {
        dl class="meter" {
            div class="meter__item meter__item--total" {
                dt { "Total votes" }
                dd id="total" { (view.counts.total()) }
            }
            div class="meter__item" {
                dt { "Screens watching" }
                dd id="watching" { (view.watching) }
            }
            div class="meter__item" {
                dt { "Version" }
                dd id="version" { (view.page.version) }
            }
            div class="meter__item meter__item--live" {
                dt { "Stream" }
                dd id="live" { "connecting" }
            }
            div class="meter__item" {
                dt { "Incident" }
                dd { a id="timeline-link" href=(view.page.link("/timeline")) { "Timeline" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(page: &'a Page, qr: &'a qr::QrCache) -> Results<'a> {
        Results {
            qr,
            page,
            counts: Counts([3, 1, 0, 0, 0, 0, 0, 0]),
            vote_url: "http://vote.example/".into(),
            referral_url: "http://vote.example/?referral=conf-partner-2026".into(),
            watching: 2,
            hidden: false,
        }
    }

    #[test]
    fn renders_counts_percentages_and_both_qr_codes() {
        let page = Page::default();
        let html = results(&view(&page, &qr::QrCache::default())).into_string();
        assert!(html.contains(r#"data-choice="print" data-count="3""#));
        assert!(html.contains("75%") && html.contains("25%"));
        assert_eq!(html.matches(r#"class="qr""#).count(), 2);
        assert!(html.contains("http://vote.example/?referral=conf-partner-2026"));
        assert!(!html.contains("style="), "CSP forbids inline styles");
    }

    #[test]
    fn hidden_results_carry_the_total_only() {
        let page = Page::default();
        let cache = qr::QrCache::default();
        let mut hidden = view(&page, &cache);
        hidden.hidden = true;
        let html = results(&hidden).into_string();
        assert!(html.contains("Results hidden"));
        assert!(html.contains(r#"<dd id="total">4</dd>"#));
        assert!(!html.contains(r#"data-count="3""#) && !html.contains(r#"data-count="1""#));
        assert!(!html.contains("75%"));
        let shown = results(&view(&page, &qr::QrCache::default())).into_string();
        assert!(shown.contains(r#"id="results-hidden" class="hidden-sign" hidden"#));
    }

    #[test]
    fn percentages_round_and_survive_zero() {
        assert_eq!(percent(0, 0), 0);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(2, 3), 67);
    }
}
