//! HTML pages: `/`, `/thanks`, `/results`, `/admin`.

use std::sync::Arc;

use hyper::{Request, Response, StatusCode};
use serde::Deserialize;

use crate::brand::Conference;
use crate::http::AppState;
use crate::http::body::{self, Body};
use crate::poll::Choice;
use crate::views::{self, Page};

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    referral: Option<String>,
    conf: Option<String>,
    choice: Option<String>,
}

fn page_for<B>(state: &AppState, req: &Request<B>) -> (Page, PageQuery) {
    let query: PageQuery = body::query(req.uri().query());
    let conference = query
        .conf
        .as_deref()
        .and_then(Conference::from_key)
        .or(state.config.conference);
    let page = Page {
        version: state.config.app_version.clone(),
        conference,
        referral: query.referral.clone().filter(|r| !r.is_empty()),
    };
    (page, query)
}

pub fn index<B>(state: &Arc<AppState>, req: &Request<B>) -> Response<Body> {
    let (page, _) = page_for(state, req);
    body::html(StatusCode::OK, views::vote::vote(&page))
}

pub fn thanks<B>(state: &Arc<AppState>, req: &Request<B>) -> Response<Body> {
    let (page, query) = page_for(state, req);
    match query
        .choice
        .as_deref()
        .and_then(|c| c.parse::<Choice>().ok())
    {
        Some(choice) => body::html(StatusCode::OK, views::vote::thanks(&page, choice)),
        None => body::see_other(&format!("/{}", page.carry_query())),
    }
}

pub fn results<B>(state: &Arc<AppState>, req: &Request<B>) -> Response<Body> {
    let (page, _) = page_for(state, req);
    let view = views::results::Results {
        page: &page,
        counts: state.view.current().counts,
    };
    body::html(StatusCode::OK, views::results::results(&view))
}

pub fn admin<B>(state: &Arc<AppState>, req: &Request<B>) -> Response<Body> {
    let (page, _) = page_for(state, req);
    body::html(StatusCode::OK, views::admin::admin(&page))
}
