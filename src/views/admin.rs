//! The admin page (`/admin`): reset the session between talks, in two
//! steps that work without JavaScript: RESET SESSION leads to a
//! confirmation (`/admin?step=confirm`) whose form posts
//! `/admin/reset?confirm=yes`; the outcome is rendered by `outcome`. It
//! also hides or reveals the projector's bars (`/admin/results`).

use maud::{Markup, html};

use super::Page;
use super::layout::{self, Chrome};

/// Which step of the reset the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Start,
    Confirm,
}

/// What the admin page knows.
pub struct Admin<'a> {
    pub page: &'a Page,
    pub step: Step,
    /// Votes that a reset would delete.
    pub total: u64,
    /// `ADMIN_TOKEN` is set, so the form asks for it.
    pub token_required: bool,
    /// The projector shows RESULTS HIDDEN instead of the bars.
    pub hidden: bool,
}

fn chrome(title: &'static str) -> Chrome<'static> {
    Chrome {
        title,
        class: "page-admin",
        scripts: &[],
    }
}

pub fn admin(view: &Admin) -> Markup {
    let page = view.page;
    layout::page(
        page,
        &chrome("Admin"),
        html! {
            section class="panel" aria-labelledby="admin-title" {
                h1 id="admin-title" class="panel__title" { "Back office" }
                p { "Votes in this session: " strong id="admin-total" { (view.total) } }
                @match view.step {
                    Step::Start => {
                        (reveal_form(view))
                        (active_poll(page))
                        (console_links(view))
                        p { "Between talks, reset the session: every vote is deleted from PostgreSQL and Redis; referral partners stay." }
                        form method="get" action="/admin" {
                            input type="hidden" name="step" value="confirm";
                            (page.carried_fields())
                            button type="submit" class="btn btn--danger" { "RESET SESSION" }
                        }
                    }
                    Step::Confirm => {
                        h2 class="panel__warning" { "Delete all " (view.total) " votes?" }
                        p { "This cannot be undone. Referral partners are kept." }
                        form method="post" action=(confirm_action(page)) class="stack" {
                            @if view.token_required {
                                label for="token" { "Admin token" }
                                input type="password" id="token" name="token" required autocomplete="current-password" spellcheck="false";
                            }
                            label class="check" {
                                input type="checkbox" name="referral_cache" value="yes";
                                " Also empty this replica's referral cache (with several replicas, restart the deployment instead)"
                            }
                            p class="actions" {
                                button type="submit" class="btn btn--danger" { "Yes, reset the session" }
                                a class="btn btn--ghost" href=(page.link("/admin")) { "Cancel" }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// HIDE RESULTS / SHOW RESULTS: one form posting the opposite of the current state.
fn reveal_form(view: &Admin) -> Markup {
    let page = view.page;
    let (state, visible, label) = if view.hidden {
        (
            "hidden: the projector shows the total only",
            "yes",
            "SHOW RESULTS",
        )
    } else {
        ("visible", "no", "HIDE RESULTS")
    };
    let mut action = format!("/admin/results?visible={visible}");
    if let Some(conf) = page.conference {
        action.push_str(&format!("&conf={}", conf.key()));
    }
    html! {
        p { "Results on the projector: " strong id="admin-visibility" { (state) } }
        form method="post" action=(action) class="stack" {
            @if view.token_required {
                label for="reveal-token" { "Admin token" }
                input type="password" id="reveal-token" name="token" required autocomplete="current-password" spellcheck="false";
            }
            p class="actions" {
                button type="submit" class="btn" { (label) }
            }
        }
    }
}

/// The poll every replica serves (`POLL_FILE` or `POLL`, else the seed's),
/// so the speaker can check it before the talk.
fn active_poll(page: &Page) -> Markup {
    let poll = &page.poll;
    html! {
        section id="active-poll" aria-labelledby="active-poll-title" {
            h2 id="active-poll-title" { "Active poll" }
            p id="active-question" { (poll.question()) }
            ol class="poll-keys" {
                @for choice in poll.choices() {
                    li { code { (poll.key(choice)) } " " (poll.label(choice)) }
                }
            }
        }
    }
}

/// The incident timeline and the downloads (with `ADMIN_TOKEN` set, the
/// downloads need the `Authorization` header: curl, see docs/demo.md,
/// "The closing slide — the incident timeline").
fn console_links(view: &Admin) -> Markup {
    html! {
        p class="actions" {
            a class="btn" href=(view.page.screen_link("/results")) { "Projector: live results" }
            a class="btn btn--ghost" href=(view.page.screen_link("/timeline")) { "Incident timeline" }
            a class="btn btn--ghost" href="/admin/export.csv" download { "Votes (CSV)" }
            a class="btn btn--ghost" href="/admin/timeline.csv" download { "Timeline (CSV)" }
        }
        @if view.page.screen.is_some() {
            p class="hint" { "Open the projector from these links: they keep it a seat among the screens for 24 hours, renewed at every reload." }
        } @else if view.token_required {
            // The browser sends no token with GET /admin: the ticket comes
            // from a form post, as for the other admin actions.
            form method="post" action=(screen_action(view.page)) class="stack" {
                label for="screen-token" { "Admin token" }
                input type="password" id="screen-token" name="token" required autocomplete="current-password" spellcheck="false";
                p class="actions" {
                    button type="submit" class="btn" { "Open the projector" }
                }
                p class="hint" { "It keeps the projector a seat among the screens for 24 hours, renewed at every reload." }
            }
        }
        @if view.token_required {
            p class="hint" { "The downloads need the admin token: " code { "curl -H \"Authorization: Bearer $ADMIN_TOKEN\" …/admin/export.csv" } }
        }
    }
}

/// The projector form's target, keeping the branding.
fn screen_action(page: &Page) -> String {
    match page.conference {
        Some(conf) => format!("/admin/screen?conf={}", conf.key()),
        None => "/admin/screen".into(),
    }
}

/// The form target: `confirm=yes` is in the URL as the API requires;
/// `conf` rides along so the outcome page keeps the branding.
fn confirm_action(page: &Page) -> String {
    match page.conference {
        Some(conf) => format!("/admin/reset?confirm=yes&conf={}", conf.key()),
        None => "/admin/reset?confirm=yes".into(),
    }
}

/// How any admin action posted from a form ended.
pub struct Done<'a> {
    pub page: &'a Page,
    pub ok: bool,
    pub title: &'static str,
    /// The API's message (success) or detail (failure).
    pub message: String,
}

pub fn done(view: &Done) -> Markup {
    let page = view.page;
    layout::page(
        page,
        &chrome(view.title),
        html! {
            section class="panel" aria-labelledby="outcome-title" {
                h1 id="outcome-title" class=(if view.ok { "panel__title" } else { "panel__title panel__title--bad" }) {
                    (view.title)
                }
                p id="outcome-message" role="status" { (view.message) }
                p class="actions" {
                    a class="btn" href=(page.link("/admin")) { "Back to admin" }
                    a class="btn btn--ghost" href=(page.link("/results")) { "Live results" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_step_asks_for_the_token_only_when_set() {
        let page = Page::default();
        let mut view = Admin {
            page: &page,
            step: Step::Confirm,
            total: 7,
            token_required: false,
            hidden: false,
        };
        let html = admin(&view).into_string();
        assert!(html.contains(r#"action="/admin/reset?confirm=yes""#));
        assert!(html.contains("Delete all 7 votes?"));
        assert!(!html.contains(r#"name="token""#));
        view.token_required = true;
        assert!(admin(&view).into_string().contains(r#"name="token""#));
        view.step = Step::Start;
        let start = admin(&view).into_string();
        assert!(start.contains("RESET SESSION"));
        assert!(
            start.contains("<li><code>print</code> Add more print statements</li>"),
            "the active poll is shown"
        );
        assert!(
            !start.contains("/admin/reset"),
            "no reset without the confirmation step"
        );
    }
}
