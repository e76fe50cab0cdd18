//! `POST /admin/reset?confirm=yes[&referral_cache=yes]`: JSON for API
//! clients (token in `Authorization: Bearer`), an HTML page for the admin
//! page's form posted by a browser (token in the `token` field). Who may
//! reset is decided by `guard::Credentials::authorize`, as for every admin action.
//! `POST /admin/results?visible=no|yes`: hides or reveals the counts.
//! `POST /admin/screen`: a screen ticket for the projector (the stream
//! reserve), for the speaker whose browser cannot send the token on `GET /admin`.

use std::sync::Arc;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use tracing::{info, warn};

use crate::http::AppState;
use crate::http::body::{self, Body, Encoding, Strings};
use crate::http::error::ApiError;
use crate::http::guard::Credentials;
use crate::http::handlers::pages;
use crate::views;

#[derive(Debug, Default, Deserialize)]
struct ResetQuery {
    confirm: Option<String>,
    referral_cache: Option<String>,
    /// Branding of the admin page, so its outcome page keeps it.
    conf: Option<String>,
}

pub async fn reset(
    state: &Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query: ResetQuery = body::query(req.uri().query());
    let credentials = Credentials::of(&req);
    let from_page = pages::Answer::of(&req) == pages::Answer::Page;
    if !from_page {
        // The API: token in the header, options in the query, JSON answer.
        let message = run_reset(state, &credentials, &query, None).await?;
        return Ok(body::json(
            StatusCode::OK,
            &serde_json::json!({ "status": "success", "message": message }),
        ));
    }
    // The admin page's form: the same checks, answered with a page.
    let result = match AdminForm::read(req).await {
        Ok(form) => run_reset(state, &credentials, &query, Some(&form)).await,
        Err(e) => Err(e),
    };
    let titles = ("Session reset", "Reset failed");
    Ok(done_page(state, query.conf.as_deref(), result, titles))
}

/// Checks who asks and the confirmation, then resets; returns the message.
async fn run_reset(
    state: &AppState,
    credentials: &Credentials,
    query: &ResetQuery,
    form: Option<&AdminForm>,
) -> Result<String, ApiError> {
    credentials.authorize(&state.config, form.and_then(|f| f.token.as_deref()))?;
    if query.confirm.as_deref() != Some("yes") {
        return Err(ApiError::ConfirmRequired);
    }
    let clear_cache = query.referral_cache.as_deref() == Some("yes")
        || form.and_then(|f| f.referral_cache.as_deref()) == Some("yes");
    let done = state.actors.reset_session(&state.pool, clear_cache).await?;
    let mut message = String::from("Session reset: all votes deleted, referral partners kept.");
    if let Some(entries) = done.referral_entries {
        message.push_str(&format!(
            " Referral cache of this replica emptied ({entries} entries)."
        ));
    }
    info!("{message}");
    Ok(message)
}

#[derive(Debug, Default, Deserialize)]
struct ScreenQuery {
    /// Branding of the admin page, kept on the projector's page.
    conf: Option<String>,
}

/// `POST /admin/screen`: for an admin, a fresh screen ticket: the form gets
/// `303` to `/results?screen=…`, an API client the ticket and both
/// projector links as JSON. Anyone else is refused as for every admin action.
pub async fn screen(
    state: &Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query: ScreenQuery = body::query(req.uri().query());
    let credentials = Credentials::of(&req);
    let from_page = pages::Answer::of(&req) == pages::Answer::Page;
    let mut page = pages::page_with(state, None, query.conf.as_deref());
    let authorized = if from_page {
        AdminForm::read(req)
            .await
            .and_then(|form| credentials.authorize(&state.config, form.token.as_deref()))
    } else {
        credentials.authorize(&state.config, None)
    };
    match authorized {
        Ok(()) => {
            let ticket = state.signer.screen_ticket(SystemTime::now());
            page.screen = Some(ticket.clone());
            if from_page {
                return Ok(body::see_other(&page.screen_link("/results")));
            }
            Ok(body::json(
                StatusCode::OK,
                &serde_json::json!({
                    "screen": ticket,
                    "results": page.screen_link("/results"),
                    "timeline": page.screen_link("/timeline"),
                }),
            ))
        }
        Err(e) if from_page => {
            let view = views::admin::Done {
                page: &page,
                ok: false,
                title: "No projector link",
                message: e.to_string(),
            };
            Ok(body::mark_error(
                body::html(e.status(), views::admin::done(&view)),
                &e,
            ))
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, Default, Deserialize)]
struct VisibilityQuery {
    visible: Option<String>,
    /// Branding of the admin page, so its outcome page keeps it.
    conf: Option<String>,
}

/// What the admin page's forms post (a browser cannot set `Authorization`).
#[derive(Debug, Default, Deserialize)]
struct AdminForm {
    token: Option<String>,
    /// The reset's "also empty the referral cache" box.
    referral_cache: Option<String>,
}

impl AdminForm {
    /// The form of an admin page's `POST`.
    async fn read(req: Request<Incoming>) -> Result<AdminForm, ApiError> {
        let bytes = body::read(req).await?;
        body::decode(Encoding::Form, &bytes)
    }
}

impl Strings for AdminForm {
    fn strings(&self) -> impl Iterator<Item = &str> {
        [self.token.as_ref(), self.referral_cache.as_ref()]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

/// `POST /admin/results?visible=no|yes`.
pub async fn results_visibility(
    state: &Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query: VisibilityQuery = body::query(req.uri().query());
    let credentials = Credentials::of(&req);
    let from_page = pages::Answer::of(&req) == pages::Answer::Page;
    if !from_page {
        let (visible, message) = set_visibility(state, &credentials, None, &query).await?;
        return Ok(body::json(
            StatusCode::OK,
            &serde_json::json!({ "status": "success", "visible": visible, "message": message }),
        ));
    }
    let result = match AdminForm::read(req).await {
        Ok(form) => set_visibility(state, &credentials, form.token.as_deref(), &query).await,
        Err(e) => Err(e),
    };
    let result = result.map(|(_, message)| message.to_owned());
    Ok(done_page(
        state,
        query.conf.as_deref(),
        result,
        ("Done", "Not changed"),
    ))
}

/// The page answering an admin action posted from a form: its message, or
/// the error's detail with the error's status. `titles`: (done, refused).
fn done_page(
    state: &AppState,
    conf: Option<&str>,
    result: Result<String, ApiError>,
    titles: (&'static str, &'static str),
) -> Response<Body> {
    let page = pages::page_with(state, None, conf);
    let (status, ok, message) = match result {
        Ok(message) => (StatusCode::OK, true, message),
        Err(e) => (e.status(), false, e.to_string()),
    };
    let view = views::admin::Done {
        page: &page,
        ok,
        title: if ok { titles.0 } else { titles.1 },
        message,
    };
    body::html(status, views::admin::done(&view))
}

/// Checks the token and the query, then flips the flag on every replica.
async fn set_visibility(
    state: &AppState,
    credentials: &Credentials,
    form_token: Option<&str>,
    query: &VisibilityQuery,
) -> Result<(bool, &'static str), ApiError> {
    credentials.authorize(&state.config, form_token)?;
    let hidden = match query.visible.as_deref() {
        Some("yes") => false,
        Some("no") => true,
        _ => return Err(ApiError::Malformed("Add ?visible=yes or ?visible=no")),
    };
    state.actors.reveal.set(hidden).await.map_err(|e| {
        warn!(error = %e, "cannot change the results visibility");
        ApiError::DbUnavailable
    })?;
    Ok(if hidden {
        (false, "Results hidden: the projector shows the total only.")
    } else {
        (true, "Results visible.")
    })
}
