//! `POST /vote` and `GET /votes` (the counts, or only the total while hidden). With `ONE_VOTE_PER_DEVICE=yes` a vote
//! carries its device (the signed `vote_device` cookie, or a new one set on
//! the answer), and a later vote of the device changes its choice.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use tracing::warn;

use crate::actors::writer::{NewVote, Recorded};
use crate::db;
use crate::http::AppState;
use crate::http::body::{self, Body, Encoding, Strings};
use crate::http::error::ApiError;
use crate::http::guard;
use crate::http::handlers::pages;
use crate::poll::{Choice, hidden_json};
use crate::timeline::Outcome;

/// Longest referral code accepted (partner codes are far shorter).
pub const MAX_REFERRAL_CHARS: usize = 64;
/// Longest idempotency key accepted (docs/contract.md, exactly-once votes).
pub const MAX_KEY_CHARS: usize = 64;

/// The client's key for one vote, reused for every retry of it.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Marks the answer to a repeat of an already stored vote.
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A vote as sent by the page (form) or an API client (JSON).
#[derive(Debug, Deserialize)]
pub struct VoteInput {
    choice: String,
    #[serde(default)]
    referral: Option<String>,
    /// Branding key carried by the form so the thank-you page keeps it.
    #[serde(default)]
    conf: Option<String>,
    /// The form's idempotency key (the `Idempotency-Key` header wins).
    #[serde(default)]
    vote_id: Option<String>,
}

impl Strings for VoteInput {
    fn strings(&self) -> impl Iterator<Item = &str> {
        [
            Some(&self.choice),
            self.referral.as_ref(),
            self.conf.as_ref(),
            self.vote_id.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
    }
}

#[derive(Serialize)]
struct Accepted<'a> {
    status: &'static str,
    choice: &'a str,
    /// The device's previous choice, when this vote changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    changed_from: Option<&'a str>,
}

/// The device cookie (`ONE_VOTE_PER_DEVICE`): a signed device id.
pub const DEVICE_COOKIE: &str = "vote_device";
/// How long a phone keeps its device cookie: longer than any conference.
const DEVICE_COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 60 * 60;

/// The device a vote comes from: its cookie's, or a new one whose token
/// the answer sets.
struct Device {
    id: String,
    new_token: Option<String>,
}

/// The device of `req` (`None` unless `ONE_VOTE_PER_DEVICE`). No cookie, or
/// one this key did not sign, is a new device.
fn device_of<B>(state: &AppState, req: &Request<B>) -> Option<Device> {
    if !state.config.one_vote_per_device {
        return None;
    }
    match device_cookie(state, req) {
        Some(id) => Some(Device {
            id,
            new_token: None,
        }),
        None => {
            let (id, token) = state.signer.new_device();
            Some(Device {
                id,
                new_token: Some(token),
            })
        }
    }
}

/// The device id of a valid `vote_device` cookie in `req`.
pub fn device_cookie<B>(state: &AppState, req: &Request<B>) -> Option<String> {
    req.headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == DEVICE_COOKIE)
        .find_map(|(_, token)| state.signer.device(token))
}

/// `Set-Cookie` for a new device: script cannot read it, other sites'
/// forms do not send it, and over HTTPS it never travels in clear.
fn device_set_cookie(state: &AppState, token: &str) -> Option<HeaderValue> {
    let secure = state
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let cookie = format!(
        "{DEVICE_COOKIE}={token}; Path=/; Max-Age={DEVICE_COOKIE_MAX_AGE_SECS}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).ok()
}

/// A vote's answer and what the vote came to, for the incident timeline and
/// the degraded sign (`None`: nothing to count, as for a replay, which was
/// counted the first time).
pub struct Answered {
    pub response: Response<Body>,
    pub outcome: Option<Outcome>,
}

impl Answered {
    /// The answer to a request that was no vote.
    pub fn not_a_vote(answer: Result<Response<Body>, ApiError>) -> Self {
        Answered {
            response: answer.unwrap_or_else(|e| body::error(&e)),
            outcome: None,
        }
    }

    /// A vote refused with `e`, answered with `response`.
    pub fn refused_with(response: Response<Body>, e: &ApiError) -> Self {
        Answered {
            response,
            outcome: e.vote_outcome(),
        }
    }

    /// A vote refused with `e`, answered with its JSON error.
    pub fn refused(e: &ApiError) -> Self {
        Self::refused_with(body::error(e), e)
    }
}

pub async fn vote(state: &Arc<AppState>, req: Request<Incoming>) -> Answered {
    let device = device_of(state, &req);
    let mut answered = cast(state, req, device.as_ref().map(|d| d.id.clone())).await;
    // A new device gets its cookie with any answer, a 503 too: a retry of a
    // vote whose answer was lost then comes from the same device and finds
    // its vote instead of counting a second one.
    let token = device.and_then(|d| d.new_token);
    if let Some(cookie) = token.and_then(|t| device_set_cookie(state, &t)) {
        answered
            .response
            .headers_mut()
            .insert(hyper::header::SET_COOKIE, cookie);
    }
    answered
}

/// One vote, from `device` when `ONE_VOTE_PER_DEVICE`.
async fn cast(state: &Arc<AppState>, req: Request<Incoming>, device: Option<String>) -> Answered {
    let encoding = match body::encoding(&req) {
        Ok(encoding) => encoding,
        Err(e) => return Answered::refused(&e),
    };
    // A browser posting the plain form gets a page for an error, not JSON.
    let page = pages::Answer::of(&req) == pages::Answer::Page;
    let header_key = header_key(&req);
    let peer = req.extensions().get::<guard::Peer>().map(|p| p.0.ip());
    let input = match read_input(encoding, req).await {
        Ok(input) => input,
        Err(e) if page => {
            let refused = pages::vote_refused(state, None, None, None, None, &e);
            return Answered::refused_with(refused, &e);
        }
        Err(e) => return Answered::refused(&e),
    };
    let key = header_key.map(|key| key.or_else(|| input.vote_id.clone()));
    let one_per_device = device.is_some();
    let (choice, referral, recorded) = match record(state, &input, key, device, peer).await {
        Ok(accepted) => accepted,
        Err(e) if page => {
            // A key refused or used for another choice cannot vote again;
            // a fresh vote page brings a fresh key.
            let retry = !matches!(
                e,
                ApiError::IdempotencyKeyReused | ApiError::InvalidIdempotencyKey
            );
            let refused = pages::vote_refused(
                state,
                Some(input.choice.as_str()).filter(|_| retry),
                input.referral.as_deref(),
                input.conf.as_deref(),
                input.vote_id.as_deref().filter(|_| retry),
                &e,
            );
            return Answered::refused_with(refused, &e);
        }
        Err(e) => return Answered::refused(&e),
    };

    let changed_from = match &recorded {
        Recorded::Changed(old) => Some(old.as_str()),
        _ => None,
    };
    let mut resp = match encoding {
        Encoding::Json => body::json(
            StatusCode::OK,
            &Accepted {
                status: "ok",
                choice: state.config.poll.key(choice),
                changed_from,
            },
        ),
        // The vote page reads the cookie and says what this device voted.
        Encoding::Form if one_per_device => {
            let page = pages::page_with(state, referral.as_deref(), input.conf.as_deref());
            body::see_other(&page.link("/"))
        }
        Encoding::Form => {
            let query = serde_urlencoded::to_string([
                ("choice", Some(state.config.poll.key(choice))),
                ("referral", referral.as_deref()),
                ("conf", input.conf.as_deref().filter(|c| !c.is_empty())),
            ])
            .unwrap_or_default();
            body::see_other(&format!("/thanks?{query}"))
        }
    };
    if recorded == Recorded::Replayed {
        resp.headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    Answered {
        response: resp,
        outcome: (recorded != Recorded::Replayed).then_some(Outcome::Accepted),
    }
}

/// The `Idempotency-Key` header, if there is exactly one. Its validity is
/// checked with the body's `vote_id`, so a bad one is refused like bad input.
fn header_key<B>(req: &Request<B>) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all(&IDEMPOTENCY_KEY).iter();
    let key = values.next().map(|v| v.as_bytes());
    if values.next().is_some() {
        return Err(ApiError::InvalidIdempotencyKey);
    }
    key.map(|k| String::from_utf8(k.to_vec()).map_err(|_| ApiError::InvalidIdempotencyKey))
        .transpose()
}

/// 1–64 visible ASCII characters (docs/contract.md, exactly-once votes).
fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_CHARS).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

async fn read_input(encoding: Encoding, req: Request<Incoming>) -> Result<VoteInput, ApiError> {
    let bytes = body::read(req).await?;
    body::decode(encoding, &bytes)
}

/// Validates and stores one vote; answers only once the writer knows its
/// outcome (stored now, or stored before under the same key).
async fn record(
    state: &AppState,
    input: &VoteInput,
    key: Result<Option<String>, ApiError>,
    device: Option<String>,
    peer: Option<IpAddr>,
) -> Result<(Choice, Option<String>, Recorded), ApiError> {
    let key = key?;
    if key.as_deref().is_some_and(|k| !valid_key(k)) {
        return Err(ApiError::InvalidIdempotencyKey);
    }
    let poll = &state.config.poll;
    // Keys outside this replica's poll are refused, also while a rollout
    // runs two polls side by side.
    let choice = poll
        .choice(&input.choice)
        .ok_or_else(|| ApiError::InvalidChoice(poll.key_list()))?;
    // An empty referral is the same as none (docs/contract.md#post-vote).
    let referral = input.referral.clone().filter(|r| !r.is_empty());
    if let Some(code) = &referral {
        if code.chars().count() > MAX_REFERRAL_CHARS {
            return Err(ApiError::ReferralTooLong(MAX_REFERRAL_CHARS));
        }
        // PostgreSQL refuses NUL in text: bad input, not a database outage.
        if code.chars().any(char::is_control) {
            return Err(ApiError::Malformed(
                "Referral code contains control characters",
            ));
        }
        // A repeat of a known key is answered from the stored vote: a
        // replay never touches the referral cache (docs/contract.md).
        // Boxed, both: their futures (a PostgreSQL query) are several KiB
        // that every vote's future would otherwise carry and copy.
        if let Some(recorded) = Box::pin(replayed(state, key.as_deref(), choice)).await? {
            return Ok((choice, referral, recorded));
        }
        Box::pin(state.actors.referral.validate(code)).await?;
    }
    let vote = NewVote {
        choice,
        referral: referral.clone(),
        key,
        device,
        peer: peer.map(|p| p.to_canonical()),
    };
    let recorded = state.actors.writer.record(vote).await?;
    Ok((choice, referral, recorded))
}

/// The answer to a repeat of a stored key (`None`: not stored, or not
/// known now; the writer then settles it as for any keyed vote).
async fn replayed(
    state: &AppState,
    key: Option<&str>,
    choice: Choice,
) -> Result<Option<Recorded>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    match db::votes::stored_vote(&state.pool, key).await {
        Ok(Some(stored)) if stored.choice == state.config.poll.key(choice) => {
            state.metrics.vote_replays.inc();
            Ok(Some(Recorded::Replayed))
        }
        Ok(Some(_)) => Err(ApiError::IdempotencyKeyReused),
        Ok(None) => Ok(None),
        Err(e) => {
            warn!(error = %e, "could not look up an idempotency key before the referral check");
            Ok(None)
        }
    }
}

/// `GET /votes`: every choice's count, or `{"hidden":true,"total":N}`
/// while the speaker hides the results.
pub fn votes(state: &Arc<AppState>) -> Response<Body> {
    let counts = state.view.current().counts;
    if state.actors.reveal.hidden() {
        return body::with_type(StatusCode::OK, "application/json", hidden_json(&counts));
    }
    body::json(StatusCode::OK, &state.config.poll.show(&counts))
}
