//! Server-rendered pages (maud). Each page takes one view struct; `Page`
//! carries what every page needs (branding, version, the query to keep).
//! The look (90s New York at night) lives in `assets/app.css`; these
//! templates only emit semantic HTML, classes and inline SVG, because the
//! Content-Security-Policy forbids inline styles and scripts.

pub mod admin;
pub mod layout;
pub mod qr;
pub mod results;
pub mod sign;
pub mod timeline;
pub mod vote;

use std::sync::Arc;

use crate::brand::Conference;
use crate::poll::Poll;

/// The seeded partner code printed in the projector's second QR code.
pub const PARTNER_REFERRAL: &str = "conf-partner-2026";

/// What every page knows about its request.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub version: String,
    pub conference: Option<Conference>,
    /// `?referral=` of the page URL, carried through the vote.
    pub referral: Option<String>,
    /// The active poll (the seed's by default).
    pub poll: Arc<Poll>,
}

impl Page {
    /// The query string (`?referral=…&conf=…`) that keeps this page's context.
    pub fn carry_query(&self) -> String {
        let pairs = [
            ("referral", self.referral.as_deref()),
            ("conf", self.conference.map(|c| c.key())),
        ];
        let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
        if query.is_empty() {
            query
        } else {
            format!("?{query}")
        }
    }

    /// `path` with this page's context appended.
    pub fn link(&self, path: &str) -> String {
        format!("{path}{}", self.carry_query())
    }

    /// The same context as hidden form fields, for every form a page posts.
    pub fn carried_fields(&self) -> maud::Markup {
        maud::html! {
            @if let Some(referral) = &self.referral {
                input type="hidden" name="referral" value=(referral);
            }
            @if let Some(conf) = self.conference {
                input type="hidden" name="conf" value=(conf.key());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carry_query_keeps_referral_and_conf_encoded() {
        let page = Page {
            referral: Some("a b&c".into()),
            conference: Some(Conference::Kubecon),
            ..Page::default()
        };
        assert_eq!(
            page.link("/results"),
            "/results?referral=a+b%26c&conf=kubecon"
        );
        assert_eq!(Page::default().link("/"), "/");
    }

    #[test]
    fn carried_fields_escape_the_referral_and_keep_conf() {
        let page = Page {
            referral: Some("a\"><b".into()),
            conference: Some(Conference::Kubecon),
            ..Page::default()
        };
        let html = page.carried_fields().into_string();
        assert!(
            html.contains(r#"name="referral" value="a&quot;&gt;&lt;b""#),
            "{html}"
        );
        assert!(html.contains(r#"name="conf" value="kubecon""#), "{html}");
        assert_eq!(Page::default().carried_fields().into_string(), "");
    }
}
