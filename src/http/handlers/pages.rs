//! HTML pages: `/`, `/thanks`, `/results`, `/admin`, plus the HTML answers
//! of form posts (`POST /vote`, `POST /admin/reset`) that `vote` and `admin`
//! hand over here, so every page is built from the same `Page` context.

use std::sync::Arc;
use std::time::SystemTime;

use hyper::header;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;

use tracing::warn;

use crate::brand::Conference;
use crate::db;
use crate::http::AppState;
use crate::http::body::{self, Body};
use crate::http::error::ApiError;
use crate::http::guard::Credentials;
use crate::views::{self, PARTNER_REFERRAL, Page};

/// Longest `Host` header used to build QR URLs (a DNS name is at most 253).
const MAX_HOST_CHARS: usize = 260;

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    referral: Option<String>,
    conf: Option<String>,
    choice: Option<String>,
    step: Option<String>,
    /// A screen ticket (`/admin`'s projector links).
    screen: Option<String>,
}

/// The page context for a `referral` and `conf` from a URL or form.
pub fn page_with(state: &AppState, referral: Option<&str>, conf: Option<&str>) -> Page {
    Page {
        version: state.config.app_version.clone(),
        conference: conf
            .and_then(Conference::from_key)
            .or(state.config.conference),
        referral: referral.filter(|r| !r.is_empty()).map(str::to_owned),
        poll: state.config.poll.clone(),
        screen: None,
    }
}

/// A fresh screen ticket when `presented` is a valid one: every render of a
/// projector page renews it, so a projector that reloads keeps its seat.
pub fn renewed_ticket(state: &AppState, presented: Option<&str>) -> Option<String> {
    let now = SystemTime::now();
    presented
        .filter(|t| state.signer.valid_screen_ticket(t, now))
        .map(|_| state.signer.screen_ticket(now))
}

fn page_for<B>(state: &AppState, req: &Request<B>) -> (Page, PageQuery) {
    let query: PageQuery = body::query(req.uri().query());
    let page = page_with(state, query.referral.as_deref(), query.conf.as_deref());
    (page, query)
}

pub async fn index<B>(state: &Arc<AppState>, req: &Request<B>) -> Response<Body> {
    let (page, _) = page_for(state, req);
    let one_per_device = state.config.one_vote_per_device;
    let device = one_per_device
        .then(|| super::vote::device_cookie(state, req))
        .flatten();
    // The device's vote as PostgreSQL has it: after a reset it is gone,
    // whatever the cookie. Not known (PostgreSQL slow): the plain page.
    let voted = match device {
        None => None,
        Some(id) => match db::votes::device_choice(&state.pool, &id).await {
            Ok(key) => key.and_then(|k| page.poll.choice(&k)),
            Err(e) => {
                warn!(error = %e, "could not read this device's vote");
                None
            }
        },
    };
    let view = views::vote::VotePage {
        page: &page,
        one_per_device,
        voted,
    };
    body::html(StatusCode::OK, views::vote::vote(&view))
}

pub fn thanks<B>(state: &Arc<AppState>, req: &Request<B>) -> Response<Body> {
    let (page, query) = page_for(state, req);
    match query.choice.as_deref().and_then(|c| page.poll.choice(c)) {
        Some(choice) => body::html(StatusCode::OK, views::vote::thanks(&page, choice)),
        None => body::see_other(&page.link("/")),
    }
}

pub fn results<B>(state: &Arc<AppState>, req: &Request<B>) -> Response<Body> {
    let (mut page, query) = page_for(state, req);
    page.screen = renewed_ticket(state, query.screen.as_deref());
    let base = public_base(state, req);
    // A `?conf=` on the projector's URL is the only branding the phones would
    // not get from CONFERENCE, so the QR codes carry it.
    let conf = query
        .conf
        .as_deref()
        .and_then(Conference::from_key)
        .filter(|c| Some(*c) != state.config.conference)
        .map(|c| c.key());
    let vote_url = |referral: Option<&str>| {
        let query = serde_urlencoded::to_string([("referral", referral), ("conf", conf)])
            .unwrap_or_default();
        if query.is_empty() {
            format!("{base}/")
        } else {
            format!("{base}/?{query}")
        }
    };
    let view = views::results::Results {
        page: &page,
        counts: state.view.current().counts,
        vote_url: vote_url(None),
        referral_url: vote_url(Some(PARTNER_REFERRAL)),
        watching: state.metrics.sse_clients.get(),
        hidden: state.actors.reveal.hidden(),
        qr: &state.qr_codes,
    };
    body::html(StatusCode::OK, views::results::results(&view))
}

pub fn admin<B>(state: &Arc<AppState>, req: &Request<B>) -> Response<Body> {
    let (mut page, query) = page_for(state, req);
    // Tickets only for whoever may act as admin: the page itself is public,
    // and a ticket handed to anyone would let a flood into the reserve.
    if Credentials::of(req).authorize(&state.config, None).is_ok() {
        page.screen = Some(state.signer.screen_ticket(SystemTime::now()));
    }
    let step = match query.step.as_deref() {
        Some("confirm") => views::admin::Step::Confirm,
        _ => views::admin::Step::Start,
    };
    let view = views::admin::Admin {
        page: &page,
        step,
        total: state.view.current().counts.total(),
        token_required: state.config.admin_token.is_some(),
        hidden: state.actors.reveal.hidden(),
    };
    body::html(StatusCode::OK, views::admin::admin(&view))
}

/// How a `POST` is answered: JSON for API clients, a page for a browser that
/// posted one of our plain forms (the one negotiation every handler uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Json,
    Page,
}

impl Answer {
    /// A page only for a form post whose `Accept` names `text/html`.
    pub fn of<B>(req: &Request<B>) -> Answer {
        let form = body::encoding(req).ok() == Some(body::Encoding::Form);
        if form && wants_html(req) {
            Answer::Page
        } else {
            Answer::Json
        }
    }
}

/// Whether the client is a browser navigating (a form post), which should
/// get a page: `Accept` names `text/html`. API clients (curl, tests, `oha`)
/// do not, and keep the JSON answers of docs/contract.md.
pub fn wants_html<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

/// The HTML answer to a refused form vote: same status as the JSON API,
/// same `Retry-After` on a 503, and a button that posts the vote again
/// (with the same `vote_id`, so a vote that did land is not counted twice).
pub fn vote_refused(
    state: &AppState,
    choice: Option<&str>,
    referral: Option<&str>,
    conf: Option<&str>,
    vote_id: Option<&str>,
    error: &ApiError,
) -> Response<Body> {
    let page = page_with(state, referral, conf);
    let view = views::vote::Refused {
        page: &page,
        choice: choice.and_then(|c| page.poll.choice(c)),
        vote_id,
        status: error.status().as_u16(),
        detail: error.to_string(),
    };
    body::mark_error(
        body::html(error.status(), views::vote::refused(&view)),
        error,
    )
}

/// Base URL for the QR codes: `PUBLIC_URL`, else the scheme and `Host` the
/// request came with (checked, so a forged header cannot inject markup or
/// point the code elsewhere than a plain host name).
fn public_base<B>(state: &AppState, req: &Request<B>) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| is_plain_host(h))
        .unwrap_or("localhost:8000");
    // Behind the TLS-terminating ingress the app itself only sees http.
    let scheme = match req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// A host name or address with an optional port, nothing else.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_CHARS
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::{is_plain_host, wants_html};
    use hyper::Request;

    #[test]
    fn only_browsers_get_pages_for_errors() {
        let with = |accept: &str| {
            Request::builder()
                .header("accept", accept)
                .body(())
                .expect("valid")
        };
        assert!(wants_html(&with(
            "text/html,application/xhtml+xml,*/*;q=0.8"
        )));
        assert!(!wants_html(&with("*/*")));
        assert!(!wants_html(&with("application/json")));
        assert!(!wants_html(&Request::new(())));
    }

    #[test]
    fn only_plain_hosts_reach_the_qr_codes() {
        assert!(is_plain_host("vote.example.org"));
        assert!(is_plain_host("127.0.0.1:8000"));
        assert!(is_plain_host("[::1]:8000"));
        assert!(!is_plain_host(""));
        assert!(!is_plain_host("evil.example/\"><script>"));
        assert!(!is_plain_host("user@host"));
        assert!(!is_plain_host(&"a".repeat(300)));
    }
}
