//! The speaker's console (SPEC §10.3): hiding and revealing the results,
//! and `/votes`, which tells only the total while they are hidden. Admin
//! actions use the same check as the reset (`admin::authorize`); a form
//! posted by the admin page gets a page back, API clients get JSON.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use tracing::warn;

use crate::actors::broadcaster::hidden_json;
use crate::http::AppState;
use crate::http::body::{self, Body, Encoding, Strings};
use crate::http::error::ApiError;
use crate::http::handlers::{admin, pages, vote};
use crate::views;

/// `GET /votes`: the v1 counts, or `{"hidden":true,"total":N}` while hidden.
pub fn votes(state: &Arc<AppState>) -> Response<Body> {
    if state.actors.reveal.hidden() {
        let counts = state.view.current().counts;
        return body::with_type(StatusCode::OK, "application/json", hidden_json(&counts));
    }
    vote::votes(state)
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
}

impl Strings for AdminForm {
    fn strings(&self) -> impl Iterator<Item = &str> {
        self.token.as_deref().into_iter()
    }
}

/// `POST /admin/results?visible=no|yes`.
pub async fn results_visibility(
    state: &Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query: VisibilityQuery = body::query(req.uri().query());
    let header_token = admin::bearer(&req).map(str::to_owned);
    let from_page = body::encoding(&req).ok() == Some(Encoding::Form) && pages::wants_html(&req);
    if !from_page {
        let (visible, message) = set_visibility(state, header_token.as_deref(), &query).await?;
        return Ok(body::json(
            StatusCode::OK,
            &serde_json::json!({ "status": "success", "visible": visible, "message": message }),
        ));
    }
    let form = match body::read(req).await {
        Ok(bytes) => body::decode::<AdminForm>(Encoding::Form, &bytes),
        Err(e) => Err(e),
    };
    let result = match form {
        Ok(form) => {
            let token = header_token.or(form.token);
            set_visibility(state, token.as_deref(), &query).await
        }
        Err(e) => Err(e),
    };
    let page = pages::page_with(state, None, query.conf.as_deref());
    let (status, ok, message) = match result {
        Ok((_, message)) => (StatusCode::OK, true, message.to_owned()),
        Err(e) => (e.status(), false, e.to_string()),
    };
    let view = views::admin::Done {
        page: &page,
        ok,
        title: if ok { "Done" } else { "Not changed" },
        message,
    };
    Ok(body::html(status, views::admin::done(&view)))
}

/// Checks the token and the query, then flips the flag on every replica.
async fn set_visibility(
    state: &AppState,
    token: Option<&str>,
    query: &VisibilityQuery,
) -> Result<(bool, &'static str), ApiError> {
    admin::authorize(state, token)?;
    let hidden = match query.visible.as_deref() {
        Some("yes") => false,
        Some("no") => true,
        _ => return Err(ApiError::Malformed("Add ?visible=yes or ?visible=no")),
    };
    state.actors.reveal.set(hidden).await.map_err(|e| {
        warn!(error = %e, "cannot change the results visibility");
        ApiError::RedisUnavailable
    })?;
    Ok(if hidden {
        (false, "Results hidden: the projector shows the total only.")
    } else {
        (true, "Results visible.")
    })
}

/// What a session reset also clears: the results become visible again.
pub async fn after_reset(state: &AppState) {
    if let Err(e) = state.actors.reveal.set(false).await {
        // The votes are gone already; the flag stays as it was until the next try.
        warn!(error = %e, "reset could not make the results visible again");
    }
}
