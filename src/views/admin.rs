//! The admin page (`/admin`): reset the session between talks.

use maud::{Markup, html};

use super::{Page, layout};

pub fn admin(page: &Page) -> Markup {
    layout::page(
        page,
        "Admin",
        &[],
        html! {
            h1 { "Admin" }
            form method="post" action="/admin/reset?confirm=yes" {
                button type="submit" { "RESET SESSION" }
            }
        },
    )
}
