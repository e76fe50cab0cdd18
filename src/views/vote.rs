//! The vote page (`/`), the thank-you page after a no-JavaScript vote and
//! the page a refused no-JavaScript vote lands on. The form works without
//! script; `vote.js` enhances it (JSON, loading state, confirmation, and the
//! failure dialog whose markup is rendered here, hidden). Every vote form
//! carries a `vote_id`, so a form posted twice is counted once (docs/contract.md, exactly-once votes).

use maud::{Markup, html};

use super::Page;
use super::layout::{self, Chrome};
use crate::poll::Choice;

/// A fresh idempotency key for one no-JavaScript vote: 128 bits from the
/// operating system's random source, in hex, so keys can be neither guessed
/// (another visitor's vote pre-empted) nor repeated.
pub fn fresh_vote_id() -> String {
    crate::signing::random_hex::<16>()
}

/// What the vote page knows of its request.
pub struct VotePage<'a> {
    pub page: &'a Page,
    /// `ONE_VOTE_PER_DEVICE`: a later vote changes this device's choice.
    pub one_per_device: bool,
    /// The choice this device's cookie voted for, if any.
    pub voted: Option<Choice>,
}

/// The vote form: one button per choice; hidden fields keep referral and
/// conf, and a fresh `vote_id` is rendered with every page. With one vote
/// per device, the page says what this device voted (read from its
/// cookie, so also after a form post without JavaScript).
pub fn vote(view: &VotePage) -> Markup {
    let page = view.page;
    layout::page(
        page,
        &Chrome {
            title: "Vote",
            class: "page-vote",
            scripts: &["vote.js"],
        },
        html! {
            section class="question" aria-labelledby="question" {
                p class="kicker" { "Tonight's question" }
                h1 id="question" { (page.poll.question()) }
                @if let Some(referral) = &page.referral {
                    p class="referral" { "Referral code: " strong { (referral) } }
                }
                @if view.one_per_device {
                    // vote.js fills it in after a vote sent with JavaScript.
                    p id="you-voted" class="referral" hidden[view.voted.is_none()] {
                        "You voted: " strong id="you-voted-choice" {
                            @if let Some(choice) = view.voted { (page.poll.label(choice)) }
                        }
                        " — tap another to change"
                    }
                }
            }
            form method="post" action="/vote" id="vote-form" class="choices" aria-labelledby="question" {
                input type="hidden" name="vote_id" value=(fresh_vote_id());
                (page.carried_fields())
                @for (n, choice) in page.poll.choices().enumerate() {
                    button type="submit" name="choice" value=(page.poll.key(choice)) class="choice" {
                        span class="choice__num" aria-hidden="true" { (n + 1) }
                        span class="choice__label" { (page.poll.label(choice)) }
                    }
                }
            }
            p id="vote-status" class="vote-status" role="status" aria-live="polite" {}
            (confirmation(page, view.one_per_device))
            (failure_dialog())
        },
    )
}

/// Shown by `vote.js` after an accepted vote (the choice is filled in).
fn confirmation(page: &Page, one_per_device: bool) -> Markup {
    html! {
        section id="confirm" class="confirm" hidden aria-labelledby="confirm-title" tabindex="-1" {
            h2 id="confirm-title" class="graffiti" { "Vote counted!" }
            p class="confirm__choice" { "You picked: " strong id="confirm-choice" {} }
            p class="actions" {
                a class="btn" href=(page.link("/results")) { "See the live results" }
                button type="button" id="vote-again" class="btn btn--ghost" {
                    @if one_per_device { "Change my vote" } @else { "Vote again" }
                }
            }
        }
    }
}

/// The dialog `vote.js` opens when a vote fails; it says what happened.
fn failure_dialog() -> Markup {
    html! {
        dialog id="overlay" class="overlay" role="alertdialog" aria-labelledby="overlay-title" aria-describedby="overlay-detail overlay-hint" {
            h2 id="overlay-title" class="overlay__title" { "Vote not counted" }
            p id="overlay-detail" class="overlay__detail" {}
            p id="overlay-hint" class="overlay__hint" {}
            p class="actions" {
                button type="button" id="retry" class="btn" { "Try again" }
                button type="button" id="overlay-close" class="btn btn--ghost" { "Close" }
            }
        }
    }
}

/// Confirmation for a vote posted as a plain form.
pub fn thanks(page: &Page, choice: Choice) -> Markup {
    layout::page(
        page,
        &Chrome {
            title: "Thanks",
            class: "page-thanks",
            scripts: &[],
        },
        html! {
            section class="confirm" aria-labelledby="thanks-title" {
                h1 id="thanks-title" class="graffiti" { "Vote counted!" }
                p class="confirm__choice" { "You picked: " strong { (page.poll.label(choice)) } }
                p class="actions" {
                    a class="btn" href=(page.link("/results")) { "See the live results" }
                    a class="btn btn--ghost" href=(page.link("/")) { "Vote again" }
                }
            }
        },
    )
}

/// Why a no-JavaScript vote was refused, answered with the API's status.
pub struct Refused<'a> {
    pub page: &'a Page,
    /// The choice to offer again, when the form named a valid one.
    pub choice: Option<Choice>,
    /// The refused vote's key, posted again with the retry.
    pub vote_id: Option<&'a str>,
    /// HTTP status code of the answer.
    pub status: u16,
    /// The API's `detail` sentence.
    pub detail: String,
}

/// The page a refused form vote shows: what happened, and a retry button
/// that posts the same vote again.
pub fn refused(view: &Refused) -> Markup {
    let degraded = view.status >= 500;
    let page = view.page;
    layout::page(
        page,
        &Chrome {
            title: if degraded {
                "Service degraded"
            } else {
                "Vote not counted"
            },
            class: "page-refused",
            scripts: &[],
        },
        html! {
            section class=(if degraded { "failure failure--degraded" } else { "failure" }) aria-labelledby="failure-title" {
                h1 id="failure-title" class="failure__title" {
                    @if degraded { "Service degraded" } @else { "Vote not counted" }
                }
                p class="failure__detail" { (view.detail) }
                p class="failure__hint" {
                    "HTTP " (view.status) ": your vote was not counted. "
                    @if degraded { "The server is up but refusing votes right now." }
                }
                @if let Some(choice) = view.choice {
                    form method="post" action="/vote" class="actions" {
                        input type="hidden" name="choice" value=(page.poll.key(choice));
                        @if let Some(vote_id) = view.vote_id {
                            input type="hidden" name="vote_id" value=(vote_id);
                        }
                        (page.carried_fields())
                        button type="submit" class="btn" { "Try again: " (page.poll.label(choice)) }
                        a class="btn btn--ghost" href=(page.link("/")) { "Back to the question" }
                    }
                } @else {
                    p class="actions" { a class="btn" href=(page.link("/")) { "Back to the question" } }
                }
            }
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
        let html = vote(&VotePage {
            page: &page,
            one_per_device: false,
            voted: None,
        })
        .into_string();
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&quot;&gt;&lt;script&gt;"));
        assert_eq!(html.matches("name=\"choice\"").count(), 5);
    }

    #[test]
    fn pages_carry_no_inline_style_or_script() {
        let page = Page {
            referral: Some("conf-partner-2026".into()),
            conference: Some(crate::brand::Conference::Lisbon),
            version: "1.2.3".into(),
            ..Page::default()
        };
        let view = Refused {
            page: &page,
            choice: page.poll.choice("ai"),
            vote_id: None,
            status: 503,
            detail: "Service degraded: referral cache exhausted (11 entries).".into(),
        };
        for html in [
            vote(&VotePage {
                page: &page,
                one_per_device: true,
                voted: page.poll.choice("ai"),
            })
            .into_string(),
            thanks(&page, page.poll.choice("stare").expect("seed key")).into_string(),
            refused(&view).into_string(),
        ] {
            assert!(!html.contains("style="), "inline style");
            assert!(!html.contains("<style"), "style block");
            assert!(!html.contains("<script>"), "inline script");
            assert!(
                html.contains("referral=conf-partner-2026&amp;conf=lisbon"),
                "context kept in links"
            );
        }
    }

    #[test]
    fn refused_form_vote_names_the_problem_and_offers_the_same_vote() {
        let page = Page::default();
        let html = refused(&Refused {
            page: &page,
            choice: page.poll.choice("revert"),
            vote_id: Some("k-123"),
            status: 503,
            detail: "Service degraded: referral cache exhausted (11 entries).".into(),
        })
        .into_string();
        assert!(html.contains("Service degraded"));
        assert!(html.contains("referral cache exhausted (11 entries)"));
        assert!(html.contains(r#"name="choice" value="revert""#));
        assert!(
            html.contains(r#"name="vote_id" value="k-123""#),
            "retry reuses the key"
        );
    }

    #[test]
    fn the_page_says_what_this_device_voted_escaped() {
        let poll = crate::poll::Poll::parse(
            "question = \"Q?\"\n[[option]]\nkey = \"a\"\nlabel = \"<b>Tom & \\\"Jerry's\\\"\"\n[[option]]\nkey = \"b\"\nlabel = \"B\"\n",
        )
        .expect("valid poll");
        let page = Page {
            poll: std::sync::Arc::new(poll),
            ..Page::default()
        };
        let mut view = VotePage {
            page: &page,
            one_per_device: true,
            voted: page.poll.choice("a"),
        };
        let html = vote(&view).into_string();
        assert!(
            html.contains("You voted: <strong id=\"you-voted-choice\">&lt;b&gt;Tom &amp; &quot;Jerry's&quot;</strong> — tap another to change"),
            "{html}"
        );
        assert!(!html.contains("<b>Tom"));
        assert!(html.contains("Change my vote"));
        view.voted = None;
        assert!(
            vote(&view)
                .into_string()
                .contains(r#"<p id="you-voted" class="referral" hidden>"#)
        );
        view.one_per_device = false;
        assert!(!vote(&view).into_string().contains("you-voted"));
    }

    #[test]
    fn every_vote_page_carries_a_fresh_vote_id() {
        let id = |html: &str| {
            let at = html
                .find(r#"name="vote_id" value=""#)
                .expect("vote_id field")
                + 22;
            html[at..at + 32].to_owned()
        };
        let page = Page::default();
        let view = VotePage {
            page: &page,
            one_per_device: false,
            voted: None,
        };
        let (a, b) = (
            id(&vote(&view).into_string()),
            id(&vote(&view).into_string()),
        );
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    }
}
