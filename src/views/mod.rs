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
    /// A fresh screen ticket, on the projector's pages opened with a valid
    /// one and on an authorised `/admin`: the page's scripts pass it to
    /// `/stream` (the stream reserve), its screen links carry it.
    pub screen: Option<String>,
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

    /// `link(path)` plus this page's screen ticket, for the links from one
    /// projector page to another (never for a page a phone is sent to).
    pub fn screen_link(&self, path: &str) -> String {
        let link = self.link(path);
        match &self.screen {
            None => link,
            Some(ticket) => {
                let sep = if link.contains('?') { '&' } else { '?' };
                let query = serde_urlencoded::to_string([("screen", ticket)]).unwrap_or_default();
                format!("{link}{sep}{query}")
            }
        }
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
    fn screen_links_carry_the_ticket_and_plain_links_do_not() {
        let page = Page {
            conference: Some(Conference::Kubecon),
            screen: Some("screen.1.ab".into()),
            ..Page::default()
        };
        assert_eq!(
            page.screen_link("/results"),
            "/results?conf=kubecon&screen=screen.1.ab"
        );
        assert_eq!(page.link("/"), "/?conf=kubecon");
        assert_eq!(Page::default().screen_link("/timeline"), "/timeline");
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
