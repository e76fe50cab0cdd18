//! `POST /vote` and `GET /votes`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::http::body::{self, Body, Encoding, Strings};
use crate::http::error::ApiError;
use crate::http::handlers::pages;
use crate::poll::Choice;

/// Longest referral code accepted (partner codes are far shorter).
pub const MAX_REFERRAL_CHARS: usize = 64;

/// A vote as sent by the page (form) or an API client (JSON).
#[derive(Debug, Deserialize)]
pub struct VoteInput {
    choice: String,
    #[serde(default)]
    referral: Option<String>,
    /// Branding key carried by the form so the thank-you page keeps it.
    #[serde(default)]
    conf: Option<String>,
}

impl Strings for VoteInput {
    fn strings(&self) -> impl Iterator<Item = &str> {
        [
            Some(&self.choice),
            self.referral.as_ref(),
            self.conf.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
    }
}

#[derive(Serialize)]
struct Accepted {
    status: &'static str,
    choice: Choice,
}

pub async fn vote(
    state: &Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let encoding = body::encoding(&req)?;
    // A browser posting the plain form gets a page for an error, not JSON.
    let page = encoding == Encoding::Form && pages::wants_html(&req);
    let input = match read_input(encoding, req).await {
        Ok(input) => input,
        Err(e) if page => {
            return Ok(pages::vote_refused(state, None, None, None, &e));
        }
        Err(e) => return Err(e),
    };
    let (choice, referral) = match record(state, &input).await {
        Ok(accepted) => accepted,
        Err(e) if page => {
            return Ok(pages::vote_refused(
                state,
                Some(&input.choice),
                input.referral.as_deref(),
                input.conf.as_deref(),
                &e,
            ));
        }
        Err(e) => return Err(e),
    };

    Ok(match encoding {
        Encoding::Json => body::json(
            StatusCode::OK,
            &Accepted {
                status: "ok",
                choice,
            },
        ),
        Encoding::Form => {
            let query = serde_urlencoded::to_string([
                ("choice", Some(choice.key())),
                ("referral", referral.as_deref()),
                ("conf", input.conf.as_deref().filter(|c| !c.is_empty())),
            ])
            .unwrap_or_default();
            body::see_other(&format!("/thanks?{query}"))
        }
    })
}

async fn read_input(encoding: Encoding, req: Request<Incoming>) -> Result<VoteInput, ApiError> {
    let bytes = body::read(req).await?;
    body::decode(encoding, &bytes)
}

/// Validates and stores one vote; answers only after the commit.
async fn record(state: &AppState, input: &VoteInput) -> Result<(Choice, Option<String>), ApiError> {
    let choice: Choice = input.choice.parse().map_err(|_| ApiError::InvalidChoice)?;
    // An empty referral is the same as none (docs/contract.md#post-vote).
    let referral = input.referral.clone().filter(|r| !r.is_empty());
    if let Some(code) = &referral {
        if code.chars().count() > MAX_REFERRAL_CHARS {
            return Err(ApiError::ReferralTooLong(MAX_REFERRAL_CHARS));
        }
        state.actors.referral.validate(code).await?;
    }
    state.actors.writer.record(choice, referral.clone()).await?;
    Ok((choice, referral))
}

pub fn votes(state: &Arc<AppState>) -> Response<Body> {
    body::json(StatusCode::OK, &state.view.current().counts)
}
