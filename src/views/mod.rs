//! Server-rendered pages (maud). Each page takes one view struct; `Page`
//! carries what every page needs (branding, version, the query to keep).

pub mod admin;
pub mod layout;
pub mod results;
pub mod vote;

use crate::brand::Conference;

/// What every page knows about its request.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub version: String,
    pub conference: Option<Conference>,
    /// `?referral=` of the page URL, carried through the vote.
    pub referral: Option<String>,
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
}
