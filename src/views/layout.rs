//! The HTML skeleton shared by every page.

use maud::{DOCTYPE, Markup, html};

use super::Page;

/// Wraps `body` in the document; `scripts` are paths under `/static/`.
pub fn page(page: &Page, title: &str, scripts: &[&str], body: Markup) -> Markup {
    let full_title = match page.conference {
        Some(conf) => format!("{title} · {} · {}", conf.name(), conf.city()),
        None => format!("{title} · vote-api"),
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (full_title) }
                link rel="stylesheet" href="/static/app.css";
                @for script in scripts {
                    script src=(format!("/static/{script}")) defer {}
                }
            }
            body {
                @if let Some(conf) = page.conference {
                    p class="welcome" { "Welcome, " (conf.name()) "!" }
                }
                main { (body) }
                footer { "vote-api " (page.version) }
            }
        }
    }
}
