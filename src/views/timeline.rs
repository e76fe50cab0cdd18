//! The incident timeline (`/timeline`): what the audience did to the app,
//! for the closing slide. One inline SVG drawn here — accepted votes rise
//! above the line, refusals hang below it by reason, and a marker stands
//! where a process with another version started answering — plus the same
//! numbers as a table for screen readers. `timeline.js` swaps in a fresh
//! `chart` whenever the stream says something happened.

use maud::{Markup, html};

use super::Page;
use super::layout::{self, Chrome};
use super::results::connection_banner;
use crate::timeline::{Bucket, Outcome, Timeline, rfc3339};

/// Drawing size in SVG units (scaled to the screen by CSS).
const WIDTH: f64 = 1600.0;
const HEIGHT: f64 = 620.0;
const LEFT: f64 = 220.0;
const RIGHT: f64 = 1580.0;
/// The line between accepted (above) and refused (below).
const BASELINE: f64 = 360.0;
/// Tallest bar above and below the line.
const UP_PX: f64 = 270.0;
const DOWN_PX: f64 = 190.0;

/// What the timeline page shows.
pub struct TimelinePage<'a> {
    pub page: &'a Page,
    pub timeline: &'a Timeline,
}

/// Refusal reasons bottom-up as stacked below the line, with their label.
const REFUSALS: [(Outcome, &str); 4] = [
    (Outcome::ReferralCacheExhausted, "Referral cache exhausted"),
    (Outcome::Invalid, "Invalid"),
    (Outcome::DbUnavailable, "PostgreSQL unavailable"),
    (Outcome::Overloaded, "Overloaded"),
];

fn label(outcome: Outcome) -> &'static str {
    REFUSALS
        .iter()
        .find(|(o, _)| *o == outcome)
        .map_or("Accepted", |(_, l)| l)
}

fn class(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Accepted => "tl-accepted",
        Outcome::ReferralCacheExhausted => "tl-cache",
        Outcome::Invalid => "tl-invalid",
        Outcome::DbUnavailable => "tl-db",
        Outcome::Overloaded => "tl-overloaded",
    }
}

/// `HH:MM:SS` (UTC) of Unix `ms`.
fn clock(ms: i64) -> String {
    let text = rfc3339(ms);
    text.get(11..19).unwrap_or(&text).to_owned()
}

pub fn page(view: &TimelinePage) -> Markup {
    layout::page(
        view.page,
        &Chrome {
            title: "Incident timeline",
            class: "page-timeline",
            scripts: &["timeline.js"],
        },
        html! {
            (connection_banner())
            section class="tl-board" aria-labelledby="tl-heading" {
                div class="tl-head" {
                    h1 id="tl-heading" class="tl-heading" { "Incident timeline" }
                    p class="tl-links" {
                        a href=(view.page.screen_link("/results")) { "Live results" }
                        " · "
                        a href="/timeline.json" { "JSON" }
                        " · "
                        span { "vote-api " (view.page.version) }
                    }
                }
                (chart(view.timeline))
            }
        },
    )
}

/// The live part: SVG, legend with totals, and the accessible table.
pub fn chart(timeline: &Timeline) -> Markup {
    let buckets = &timeline.buckets;
    html! {
        div id="timeline-chart" class="tl" {
            @if buckets.is_empty() {
                p class="tl-empty" { "No votes since the last reset. The timeline starts with the first one." }
            } @else {
                (svg(timeline))
                (legend(timeline))
                (table(timeline))
            }
        }
    }
}

fn svg(timeline: &Timeline) -> Markup {
    let buckets = &timeline.buckets;
    let width = buckets[0].seconds;
    let first = buckets[0].start;
    let span = (buckets.len() as i64 * width) as f64;
    let max_up = buckets
        .iter()
        .map(|b| b.get(Outcome::Accepted))
        .max()
        .unwrap_or(0);
    let max_down = buckets.iter().map(Bucket::refused).max().unwrap_or(0);
    // A scale for each side, each labelled with its peak: a hundred refusals
    // must show as a wall next to a thousand votes a second.
    let scale = |px: f64, max: u64| if max == 0 { 0.0 } else { px / max as f64 };
    let (up_scale, down_scale) = (scale(UP_PX, max_up), scale(DOWN_PX, max_down));
    let slot = (RIGHT - LEFT) / buckets.len() as f64;
    let bar = (slot * 0.82).max(0.6);
    let x_of_ms = |ms: i64| LEFT + ((ms as f64 / 1000.0 - first as f64) / span) * (RIGHT - LEFT);
    let accepted = timeline.total(Outcome::Accepted);
    let refused: u64 = REFUSALS.iter().map(|(o, _)| timeline.total(*o)).sum();
    let end_ms = (first + span as i64) * 1000;
    html! {
        svg class="tl-svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby="tl-title tl-desc" {
            title id="tl-title" { "Votes per " (width) "-second bucket" }
            desc id="tl-desc" {
                (accepted) " accepted and " (refused) " refused votes between "
                (clock(first * 1000)) " and " (clock(end_ms)) " UTC."
                @for m in &timeline.versions { " Version " (m.version) " from " (clock(m.first_seen_ms)) "." }
            }
            text class="tl-axis-label" x="20" y=(BASELINE - 20.0) { "Accepted ↑" }
            text class="tl-axis-label" x="20" y=(BASELINE + 40.0) { "Refused ↓" }
            @for (i, b) in buckets.iter().enumerate() {
                @let x = fmt(LEFT + i as f64 * slot);
                @for (outcome, y, h) in stack(b, up_scale, down_scale) {
                    rect class=(class(outcome)) x=(x) y=(fmt(y)) width=(fmt(bar)) height=(fmt(h)) {}
                }
            }
            line class="tl-baseline" x1=(LEFT) y1=(BASELINE) x2=(RIGHT) y2=(BASELINE) {}
            @for (n, y) in [(max_up, BASELINE - UP_PX), (max_down, BASELINE + DOWN_PX)] {
                @if n > 0 {
                    line class="tl-peak" x1=(LEFT - 8.0) y1=(y) x2=(RIGHT) y2=(y) {}
                    text class="tl-peak-label" x=(LEFT - 14.0) y=(y + 8.0) text-anchor="end" { (n) }
                }
            }
            @for m in &timeline.versions {
                @let x = x_of_ms(m.first_seen_ms).clamp(LEFT, RIGHT);
                @let end = x > RIGHT - 260.0;
                g class="tl-marker" {
                    line x1=(fmt(x)) y1="46" x2=(fmt(x)) y2=(BASELINE + DOWN_PX + 10.0) {}
                    text x=(fmt(if end { x - 10.0 } else { x + 10.0 })) y="40" text-anchor=(if end { "end" } else { "start" }) {
                        (m.version)
                    }
                }
            }
            text class="tl-time" x=(LEFT) y=(HEIGHT - 12.0) { (clock(first * 1000)) }
            text class="tl-time" x=(RIGHT) y=(HEIGHT - 12.0) text-anchor="end" { (clock(end_ms)) " UTC" }
            text class="tl-time" x=((LEFT + RIGHT) / 2.0) y=(HEIGHT - 12.0) text-anchor="middle" { (width) " s per bar" }
        }
    }
}

/// The bars of one bucket as (outcome, top, height): accepted above the
/// line, refusals stacked below it in `REFUSALS` order.
fn stack(bucket: &Bucket, up_scale: f64, down_scale: f64) -> Vec<(Outcome, f64, f64)> {
    let mut bars = Vec::new();
    let up = bucket.get(Outcome::Accepted) as f64 * up_scale;
    if up > 0.0 {
        bars.push((Outcome::Accepted, BASELINE - up, up));
    }
    let mut y = BASELINE;
    for (outcome, _) in REFUSALS {
        let h = bucket.get(outcome) as f64 * down_scale;
        if h > 0.0 {
            bars.push((outcome, y, h));
            y += h;
        }
    }
    bars
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

fn legend(timeline: &Timeline) -> Markup {
    html! {
        ul class="tl-legend" {
            @for outcome in Outcome::ALL {
                li class=(class(outcome)) {
                    span class="tl-swatch" aria-hidden="true" {}
                    span class="tl-legend__label" { (label(outcome)) }
                    " "
                    strong id=(format!("tl-total-{}", outcome.key())) { (timeline.total(outcome)) }
                }
            }
        }
    }
}

fn table(timeline: &Timeline) -> Markup {
    html! {
        // A table will not shrink to 1 px: the wrapper hides it.
        div class="visually-hidden" {
        table {
            caption { "Votes per time bucket (UTC), buckets with votes only" }
            thead {
                tr {
                    th scope="col" { "Start" }
                    th scope="col" { "Seconds" }
                    @for outcome in Outcome::ALL { th scope="col" { (label(outcome)) } }
                }
            }
            tbody {
                @for b in timeline.buckets.iter().filter(|b| b.counts.iter().any(|n| *n > 0)) {
                    tr {
                        th scope="row" { (clock(b.start * 1000)) }
                        td { (b.seconds) }
                        @for n in b.counts { td { (n) } }
                    }
                }
            }
        }
        }
        @if !timeline.versions.is_empty() {
            ul class="visually-hidden" aria-label="Versions answering" {
                @for m in &timeline.versions {
                    li { (m.version) " from " (clock(m.first_seen_ms)) " UTC" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Marker;

    fn sample() -> Timeline {
        let bucket = |start, counts| Bucket {
            start,
            seconds: 1,
            counts,
        };
        Timeline {
            buckets: vec![
                bucket(1_800_000_000, [10, 0, 1, 0, 0]),
                bucket(1_800_000_001, [0, 0, 0, 0, 0]),
                bucket(1_800_000_002, [2, 5, 0, 0, 0]),
            ],
            versions: vec![
                Marker {
                    version: "1.0.0".into(),
                    first_seen_ms: 1_800_000_000_100,
                },
                Marker {
                    version: "dev-<mirrord>".into(),
                    first_seen_ms: 1_800_000_002_500,
                },
            ],
        }
    }

    #[test]
    fn draws_bars_markers_and_a_table_of_non_empty_buckets() {
        let html = chart(&sample()).into_string();
        assert_eq!(html.matches(r#"<rect class="tl-accepted""#).count(), 2);
        assert_eq!(html.matches(r#"<rect class="tl-cache""#).count(), 1);
        assert_eq!(html.matches(r#"<g class="tl-marker">"#).count(), 2);
        assert!(html.contains("dev-&lt;mirrord&gt;"), "versions are escaped");
        assert_eq!(html.matches("<tr><th scope=\"row\">").count(), 2);
        assert!(html.contains(r#"<strong id="tl-total-referral_cache_exhausted">5</strong>"#));
        assert!(!html.contains("style="), "CSP forbids inline styles");
    }

    #[test]
    fn each_side_fills_its_height_and_names_its_peak() {
        let bars = stack(&sample().buckets[2], UP_PX / 10.0, DOWN_PX / 5.0);
        assert_eq!(bars[0], (Outcome::Accepted, BASELINE - 54.0, 54.0));
        assert_eq!(
            bars[1],
            (Outcome::ReferralCacheExhausted, BASELINE, DOWN_PX)
        );
        let html = chart(&sample()).into_string();
        assert!(html.contains(r#"text-anchor="end">10</text>"#), "{html}");
        assert!(html.contains(r#"text-anchor="end">5</text>"#));
    }

    #[test]
    fn an_empty_timeline_says_so() {
        let html = chart(&Timeline::default()).into_string();
        assert!(html.contains("No votes since the last reset"));
        assert!(!html.contains("<svg"));
    }
}
