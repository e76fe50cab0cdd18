//! The projector's seat (docs/contract.md, stream reserve): a share of the
//! stream budget only a signed screen ticket may use; `/admin` hands the
//! ticket out in its projector links, and every render renews it.

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use vote_api::config::DeviceKey;
use vote_api::signing::{SCREEN_TICKET_TTL, Signer};

const KEY: [u8; 32] = [7; 32];

/// Opens `GET path` and keeps the response (a stream stays open while held).
async fn open(app: &TestApp, path: &str) -> Response<Incoming> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = app
        .request(Method::GET, path)
        .body(Full::default())
        .expect("request");
    tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("answer in time")
        .expect("request")
}

async fn head(app: &TestApp, path: &str) -> StatusCode {
    let req = app
        .request(Method::HEAD, path)
        .body(Full::default())
        .expect("request");
    send(req).await.status
}

/// The `screen=` ticket of the first link to `path` in `html`.
fn ticket_in(html: &str, path: &str) -> String {
    let start = html
        .find(&format!("href=\"{path}?screen="))
        .unwrap_or_else(|| panic!("a {path} link with a ticket in {html}"));
    let rest = &html[start + path.len() + 14..];
    rest[..rest.find('"').expect("closing quote")].to_owned()
}

/// Three stream slots, one of them reserved, and the two open ones taken by
/// anonymous screens.
async fn full_of_anonymous_screens(stack: &Stack) -> (TestApp, Vec<Response<Incoming>>) {
    let mut config = stack.config();
    config.max_streams = Some(3);
    config.stream_reserve = Some(1);
    config.device_key = Some(DeviceKey(KEY.to_vec()));
    let app = TestApp::start_on(stack, config).await;
    let mut screens = Vec::new();
    for _ in 0..2 {
        let screen = open(&app, "/stream").await;
        assert_eq!(screen.status(), StatusCode::OK);
        screens.push(screen);
    }
    let anonymous = open(&app, "/stream").await;
    assert_eq!(
        anonymous.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the reserve is not for anonymous screens"
    );
    assert_eq!(head(&app, "/stream").await, StatusCode::SERVICE_UNAVAILABLE);
    (app, screens)
}

#[tokio::test]
async fn a_ticket_takes_the_reserve_a_forged_or_expired_one_does_not() {
    let stack = Stack::fresh().await;
    let (app, _screens) = full_of_anonymous_screens(&stack).await;
    let signer = Signer::new(KEY.to_vec());
    let now = SystemTime::now();
    let ticket = signer.screen_ticket(now);

    let forged = Signer::new(vec![8; 32]).screen_ticket(now);
    let expired = signer.screen_ticket(now - SCREEN_TICKET_TTL - Duration::from_secs(60));
    let tampered = ticket.replacen('.', ".9", 1);
    for bad in [&forged, &expired, &tampered, &"screen.x.y".to_owned()] {
        let path = format!("/stream?screen={bad}");
        assert_eq!(
            head(&app, &path).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "{bad}"
        );
        assert_eq!(
            open(&app, &path).await.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{bad}"
        );
    }

    let path = format!("/stream?screen={ticket}");
    assert_eq!(
        head(&app, &path).await,
        StatusCode::OK,
        "HEAD with the ticket"
    );
    let projector = open(&app, &path).await;
    assert_eq!(projector.status(), StatusCode::OK, "GET with the ticket");
    assert_eq!(
        head(&app, &path).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "the one reserved slot is taken"
    );
    drop(projector);
    app.stop().await;
}

#[tokio::test]
async fn the_admin_link_carries_a_ticket_that_works_and_each_render_renews_it() {
    let stack = Stack::fresh().await;
    let (app, _screens) = full_of_anonymous_screens(&stack).await;

    // From loopback without ADMIN_TOKEN, the test is the speaker.
    let admin = app.get("/admin").await.text();
    let ticket = ticket_in(&admin, "/results");
    assert_eq!(ticket_in(&admin, "/timeline"), ticket);

    let results = app.get(&format!("/results?screen={ticket}")).await.text();
    let renewed = results
        .split("data-screen=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page hands its script a ticket")
        .to_owned();
    assert!(renewed.starts_with("screen."), "{renewed}");
    let timeline = app.get(&format!("/timeline?screen={renewed}")).await.text();
    assert!(
        timeline.contains("data-screen=\"screen."),
        "the timeline too"
    );
    assert!(
        !app.get("/results").await.text().contains("data-screen"),
        "no ticket for an anonymous screen"
    );
    assert!(
        !app.get("/results?screen=screen.1.00")
            .await
            .text()
            .contains("data-screen"),
        "nor for a forged one"
    );

    let path = format!("/stream?screen={renewed}");
    assert_eq!(head(&app, &path).await, StatusCode::OK);
    assert_eq!(open(&app, &path).await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn replicas_share_the_key_they_keep_in_postgresql() {
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.max_streams = Some(2);
    config.stream_reserve = Some(1);
    let a = TestApp::start_on(&stack, config.clone()).await;
    let b = TestApp::start_on(&stack, config).await;
    let _anonymous = open(&b, "/stream").await;
    assert_eq!(
        open(&b, "/stream").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let ticket = ticket_in(&a.get("/admin").await.text(), "/results");
    let path = format!("/stream?screen={ticket}");
    assert_eq!(
        open(&b, &path).await.status(),
        StatusCode::OK,
        "a ticket from one replica opens the other's reserve"
    );
    a.stop().await;
    b.stop().await;
}

/// `POST /admin/screen` as the admin page's form sends it.
async fn admin_form(app: &TestApp, token: &str) -> Resp {
    app.post_with(
        "/admin/screen",
        "application/x-www-form-urlencoded",
        format!("token={token}"),
        &[("accept", "text/html")],
    )
    .await
}

#[tokio::test]
async fn with_admin_token_the_ticket_comes_from_a_form_post_or_the_api() {
    const TOKEN: &str = "reserve-test-token-0123456789";
    let stack = Stack::fresh().await;
    let mut config = stack.config();
    config.max_streams = Some(2);
    config.stream_reserve = Some(1);
    config.admin_token = Some(TOKEN.into());
    let app = TestApp::start_on(&stack, config).await;
    let _anonymous = open(&app, "/stream").await;

    // The browser's GET /admin carries no token: a form, no ticket.
    let admin = app.get("/admin").await.text();
    assert!(!admin.contains("screen="), "no ticket without the token");
    assert!(admin.contains(r#"action="/admin/screen""#), "{admin}");

    let refused = admin_form(&app, "wrong-token-wrong-token-wrong").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        !refused.text().contains("screen."),
        "no ticket for a wrong token"
    );
    let granted = admin_form(&app, TOKEN).await;
    assert_eq!(granted.status, StatusCode::SEE_OTHER);
    let location = granted.header("location").to_owned();
    let ticket = location
        .strip_prefix("/results?screen=")
        .unwrap_or_else(|| panic!("{location}"));
    assert_eq!(
        open(&app, &format!("/stream?screen={ticket}"))
            .await
            .status(),
        StatusCode::OK,
        "the form's ticket takes the reserve"
    );

    let api = app
        .post_with(
            "/admin/screen",
            "application/json",
            "",
            &[("authorization", &format!("Bearer {TOKEN}"))],
        )
        .await;
    assert_eq!(api.status, StatusCode::OK);
    assert!(
        api.json()["screen"]
            .as_str()
            .is_some_and(|t| t.starts_with("screen."))
    );
    assert!(
        api.json()["timeline"]
            .as_str()
            .is_some_and(|t| t.starts_with("/timeline?screen="))
    );
    let anonymous = app.post("/admin/screen", "application/json", "").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}
