//! Who may change state (docs/contract.md, safer defaults). Two checks, each in one place:
//! - `same_origin`: the router runs it on every `POST`, so a page on another
//!   site cannot make a visitor's browser vote or reset;
//! - `authorize`: the admin decision, called by every admin handler through
//!   `Credentials` (whether the request is the speaker's own machine, and
//!   its `Bearer` token); `is_local` also guards `/metrics` on the public port.

use std::net::SocketAddr;

use hyper::header::{AUTHORIZATION, FORWARDED, HOST, HeaderName, ORIGIN, VIA};
use hyper::{HeaderMap, Request};

use crate::config::{AdminToken, Config};
use crate::http::error::ApiError;

/// The TCP peer of a request; the accept loop puts it in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// The admin decision. With `ADMIN_TOKEN` set, only the token opens admin
/// actions (from anywhere, loopback included). Without it, only the
/// speaker's own machine may act (`is_local`), never the venue's Wi-Fi nor
/// a visitor relayed by a local tunnel or proxy.
pub fn authorize(
    local: bool,
    token: Option<&AdminToken>,
    presented: Option<&str>,
) -> Result<(), ApiError> {
    match token {
        Some(token) if presented.is_some_and(|p| token.matches(p)) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized),
        None if local => Ok(()),
        None => Err(ApiError::AdminTokenUnset),
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// True when a request comes from this machine and was addressed to it: a
/// loopback peer, a loopback `Host` and no proxy header. A tunnel (ngrok,
/// `ssh -R`, `kubectl port-forward`) or a local proxy makes every visitor a
/// loopback peer, and DNS rebinding makes a foreign page's `Origin` equal its
/// `Host`; the `Host` and the proxy headers are what give them away. An
/// unknown peer is not loopback.
pub fn is_local(peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    let proxied = [FORWARDED, X_FORWARDED_FOR, VIA]
        .iter()
        .any(|h| headers.contains_key(h));
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    peer.is_some_and(|p| p.ip().to_canonical().is_loopback())
        && host.is_some_and(is_loopback_host)
        && !proxied
}

/// `localhost` or a loopback address, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1] or [::1]:8000
        match rest.split_once(']') {
            Some((ip, "")) => ip,
            Some((ip, port)) if port.strip_prefix(':').is_some_and(is_port) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// What a request brings to `authorize`. Taken before the body is read, so a
/// handler that reads a form can still add the form's `token` field.
///
/// ```ignore
/// let credentials = Credentials::of(&req);
/// // ... read the body ...
/// credentials.authorize(&state.config, form.token.as_deref())?;
/// ```
#[derive(Debug, Clone)]
pub struct Credentials {
    local: bool,
    bearer: Option<String>,
}

impl Credentials {
    pub fn of<B>(req: &Request<B>) -> Self {
        let bearer = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        Credentials {
            local: is_local(peer, req.headers()),
            bearer,
        }
    }

    /// `authorize` with the `Bearer` token, else `form_token` (a browser's
    /// form cannot set `Authorization`).
    pub fn authorize(&self, config: &Config, form_token: Option<&str>) -> Result<(), ApiError> {
        let presented = self.bearer.as_deref().or(form_token);
        authorize(self.local, config.admin_token.as_ref(), presented)
    }
}

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Refuses a state-changing request that a browser sent on behalf of
/// another site: `Sec-Fetch-Site: cross-site`, or an `Origin` that is
/// neither the request's own `Host` nor `PUBLIC_URL`. Clients that send
/// neither header (curl, oha, the tests) pass.
pub fn same_origin<B>(req: &Request<B>, public_url: Option<&str>) -> Result<(), ApiError> {
    let headers = req.headers();
    let site = headers.get(SEC_FETCH_SITE).and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
        return Err(ApiError::CrossSite);
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| ApiError::CrossSite)?.trim();
    // "null": sandboxed frames, data: URLs, or a strict referrer policy on
    // our own page; only the browser's own same-origin verdict lets it pass.
    if origin == "null" {
        return match site {
            Some(s) if s.eq_ignore_ascii_case("same-origin") => Ok(()),
            _ => Err(ApiError::CrossSite),
        };
    }
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    let own = host.is_some_and(|h| origin_is_host(origin, h))
        || public_url.is_some_and(|u| same_origin_url(origin, u));
    if own {
        Ok(())
    } else {
        Err(ApiError::CrossSite)
    }
}

/// `scheme://authority` → (scheme, authority with the scheme's default port
/// removed), lower-cased; `None` for anything but http(s).
fn split_origin(url: &str) -> Option<(String, String)> {
    let url = url.to_ascii_lowercase();
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.strip_suffix(default).unwrap_or(authority);
    (!authority.is_empty()).then(|| (scheme.to_owned(), authority.to_owned()))
}

/// The `Host` header names the origin's host and port. The scheme cannot be
/// compared: behind a TLS-terminating ingress the request itself is http.
fn origin_is_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = split_origin(origin) else {
        return false;
    };
    split_origin(&format!("{scheme}://{host}")).is_some_and(|(_, h)| h == authority)
}

fn same_origin_url(origin: &str, url: &str) -> bool {
    matches!((split_origin(origin), split_origin(url)), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str) -> Option<SocketAddr> {
        Some(addr.parse().expect("socket address"))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut b = Request::builder();
        for (k, v) in pairs {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").headers().clone()
    }

    #[test]
    fn without_a_token_only_loopback_peers_are_admins() {
        let host = headers(&[("host", "127.0.0.1:8000")]);
        for loopback in [
            "127.0.0.1:5000",
            "127.8.9.10:1",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(is_local(peer(loopback), &host), "{loopback}");
            assert!(authorize(true, None, None).is_ok(), "{loopback}");
        }
        for other in [
            "192.168.1.20:5000",
            "10.0.0.7:1",
            "[fe80::1]:5000",
            "[::ffff:10.0.0.1]:1",
            "0.0.0.0:1",
        ] {
            assert!(!is_local(peer(other), &host), "{other}");
        }
        assert!(!is_local(None, &host), "an unknown peer is not loopback");
        let err = authorize(false, None, Some("anything")).expect_err("not local");
        assert_eq!(err.status(), hyper::StatusCode::UNAUTHORIZED);
        assert!(err.to_string().contains("ADMIN_TOKEN"), "{err}");
    }

    #[test]
    fn a_tunnel_or_proxy_on_this_machine_is_not_the_speaker() {
        let me = peer("127.0.0.1:40000");
        for host in [
            "localhost",
            "LocalHost:8000",
            "127.0.0.1",
            "127.0.0.1:8000",
            "[::1]",
            "[::1]:8000",
        ] {
            assert!(is_local(me, &headers(&[("host", host)])), "{host}");
        }
        for host in [
            "evil.example:8000",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8000",
            "localhost:80:80",
            "localhost:http",
            "[::1]x",
            "::1",
            "",
        ] {
            assert!(!is_local(me, &headers(&[("host", host)])), "{host:?}");
        }
        assert!(!is_local(me, &headers(&[])), "no Host");
        for proxy in [
            ("forwarded", "for=203.0.113.7"),
            ("x-forwarded-for", "203.0.113.7"),
            ("via", "1.1 tunnel"),
        ] {
            let h = headers(&[("host", "localhost:8000"), proxy]);
            assert!(!is_local(me, &h), "{proxy:?}");
        }
    }

    #[test]
    fn with_a_token_everyone_needs_it_loopback_included() {
        let token = AdminToken::new("a-long-enough-admin-token-0001");
        let token = Some(&token);
        for local in [true, false] {
            assert!(authorize(local, token, Some("a-long-enough-admin-token-0001")).is_ok());
            for wrong in [
                None,
                Some(""),
                Some("a-long-enough-admin-token-000"),
                Some("x"),
            ] {
                let err = authorize(local, token, wrong).expect_err("wrong token");
                assert_eq!(err.status(), hyper::StatusCode::UNAUTHORIZED);
                assert!(err.to_string().contains("ADMIN_TOKEN"), "{err}");
            }
        }
    }

    #[test]
    fn credentials_take_the_bearer_token_before_the_form_field() {
        let mut config = Config::from_lookup(|_| None).expect("defaults");
        config.admin_token = Some("right-token-of-24-characters".into());
        let req = |auth: Option<&str>| {
            let mut b = Request::builder().uri("/admin/reset");
            if let Some(a) = auth {
                b = b.header(AUTHORIZATION, a);
            }
            let mut req = b.body(()).expect("request");
            req.extensions_mut()
                .insert(Peer("10.1.2.3:4".parse().expect("addr")));
            req
        };
        let bearer = Credentials::of(&req(Some("Bearer right-token-of-24-characters")));
        assert!(bearer.authorize(&config, Some("wrong")).is_ok());
        let form = Credentials::of(&req(None));
        assert!(
            form.authorize(&config, Some("right-token-of-24-characters"))
                .is_ok()
        );
        assert!(form.authorize(&config, None).is_err());
        let basic = Credentials::of(&req(Some("Basic right-token-of-24-characters")));
        assert!(basic.authorize(&config, None).is_err());
        config.admin_token = None;
        assert!(
            bearer.authorize(&config, None).is_err(),
            "10.1.2.3 is not loopback"
        );
    }

    fn post(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method("POST").uri("/vote");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn same_origin_posts_pass_and_cross_site_ones_do_not() {
        let host = ("host", "vote.example.org");
        let pass = [
            vec![],
            vec![host],
            vec![host, ("origin", "https://vote.example.org")],
            vec![host, ("origin", "http://vote.example.org")],
            vec![
                ("host", "Vote.Example.org:443"),
                ("origin", "https://vote.example.org"),
            ],
            vec![
                ("host", "127.0.0.1:8000"),
                ("origin", "http://127.0.0.1:8000"),
            ],
            vec![host, ("sec-fetch-site", "same-origin")],
            vec![host, ("sec-fetch-site", "none")],
            vec![host, ("origin", "null"), ("sec-fetch-site", "same-origin")],
        ];
        for headers in pass {
            assert!(same_origin(&post(&headers), None).is_ok(), "{headers:?}");
        }
        let refuse = [
            vec![host, ("origin", "https://evil.example")],
            vec![host, ("origin", "https://vote.example.org.evil.example")],
            vec![host, ("origin", "https://vote.example.org:8443")],
            vec![
                ("host", "127.0.0.1:8000"),
                ("origin", "http://127.0.0.1:9000"),
            ],
            vec![
                ("host", "127.0.0.1:8000"),
                ("origin", "http://localhost:8000"),
            ],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![
                host,
                ("origin", "https://vote.example.org"),
                ("sec-fetch-site", "cross-site"),
            ],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "null"), ("sec-fetch-site", "cross-site")],
            vec![host, ("origin", "file://vote.example.org")],
            vec![("origin", "https://vote.example.org")],
        ];
        for headers in refuse {
            let err = same_origin(&post(&headers), None).expect_err(&format!("{headers:?}"));
            assert_eq!(err.status(), hyper::StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn public_url_is_our_origin_too() {
        // A proxy that rewrites Host: PUBLIC_URL still names the page's origin.
        let req = post(&[
            ("host", "vote-api:8000"),
            ("origin", "https://vote.example.org"),
        ]);
        assert!(same_origin(&req, Some("https://vote.example.org")).is_ok());
        assert!(same_origin(&req, Some("https://vote.example.org/")).is_ok());
        assert!(
            same_origin(&req, Some("http://vote.example.org")).is_err(),
            "scheme differs"
        );
        assert!(same_origin(&req, None).is_err());
    }
}
