//! The projector page (`/results`): live counts fed by `/stream`.

use maud::{Markup, html};

use super::{Page, layout};
use crate::poll::{Choice, Counts, QUESTION};

/// What the results page shows before the stream's first frame.
pub struct Results<'a> {
    pub page: &'a Page,
    pub counts: Counts,
}

pub fn results(view: &Results) -> Markup {
    layout::page(
        view.page,
        "Results",
        &["results.js"],
        html! {
            h1 { (QUESTION) }
            p id="connection" role="status" hidden { "Connection lost, reconnecting…" }
            ol id="results" {
                @for choice in Choice::ALL {
                    li data-choice=(choice.key()) {
                        span class="label" { (choice.label()) } ": "
                        span class="count" { (view.counts.get(choice)) }
                    }
                }
            }
            p { "Total: " span id="total" { (view.counts.total()) } }
        },
    )
}
