//! The vote page (`/`) and the thank-you page after a no-JavaScript vote.

use maud::{Markup, html};

use super::{Page, layout};
use crate::poll::{Choice, QUESTION};

/// The vote form: one button per choice; hidden fields keep referral and conf.
pub fn vote(page: &Page) -> Markup {
    layout::page(
        page,
        "Vote",
        &["vote.js"],
        html! {
            h1 { (QUESTION) }
            form method="post" action="/vote" id="vote-form" {
                @if let Some(referral) = &page.referral {
                    input type="hidden" name="referral" value=(referral);
                }
                @if let Some(conf) = page.conference {
                    input type="hidden" name="conf" value=(conf.key());
                }
                @for choice in Choice::ALL {
                    button type="submit" name="choice" value=(choice.key()) { (choice.label()) }
                }
            }
            p id="vote-status" role="status" aria-live="polite" {}
        },
    )
}

/// Confirmation for a vote posted as a plain form.
pub fn thanks(page: &Page, choice: Choice) -> Markup {
    layout::page(
        page,
        "Thanks",
        &[],
        html! {
            h1 { "Thanks for voting!" }
            p { "Your vote: " strong { (choice.label()) } }
            p { a href=(format!("/{}", page.carry_query())) { "Vote again" } " · " a href=(format!("/results{}", page.carry_query())) { "See the results" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referral_is_escaped_and_kept() {
        let page = Page {
            referral: Some("\"><script>alert(1)</script>".into()),
            ..Page::default()
        };
        let html = vote(&page).into_string();
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&quot;&gt;&lt;script&gt;"));
        assert_eq!(html.matches("name=\"choice\"").count(), 5);
    }
}
