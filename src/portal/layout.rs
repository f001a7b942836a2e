//! The page frame (head, header, sign-out) and small shared pieces: times, badges, the
//! CSRF field.

use super::guard::CSRF_FIELD;
use super::session::Session;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hallway_domain::Timestamp;
use maud::{html, Markup, DOCTYPE};

/// An HTML answer.
pub fn html(page: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

/// A whole page: `title` in the tab, `body` in `<main>`, a sign-out button when signed in.
pub fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) @if title != "Webhooks" { " · Webhooks" } }
                link rel="stylesheet" href="/portal/assets/portal.css";
                script src="/portal/assets/portal.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav aria-label="Breadcrumb" {
                        ol.crumbs {
                            li { "Settings" }
                            li { "Integrations" }
                            li { a href="/portal/" aria-current="page" { "Webhooks" } }
                        }
                    }
                    @if let Some(s) = session {
                        form method="post" action="/portal/logout" {
                            (csrf_field(s))
                            button.btn.quiet type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// A page with a heading and one message (errors, signed out).
pub fn message_page(title: &str, message: &str) -> Markup {
    page(
        title,
        None,
        html! {
            h1 { (title) }
            p.lead { (message) }
        },
    )
}

/// The hidden field every form post carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf); }
}

/// A time as `2026-01-10 15:30:00 UTC`, machine-readable in `datetime`.
pub fn time(t: Timestamp) -> Markup {
    let iso = t.to_rfc3339();
    let shown = format!("{} {} UTC", &iso[..10], &iso[11..19]);
    html! { time datetime=(iso) { (shown) } }
}

/// `n` and the noun, singular for one: "1 attempt", "3 attempts".
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A status word in a coloured pill; the word carries the meaning, the colour only helps.
pub fn badge(kind: &str, text: &str) -> Markup {
    html! { span class={ "badge " (kind) } { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc() {
        let t = time(Timestamp(1_768_059_000_000)).into_string();
        assert!(t.contains("2026-01-10 15:30:00 UTC"), "{t}");
        assert!(t.contains("datetime=\"2026-01-10T15:30:00.000Z\""), "{t}");
    }

    #[test]
    fn counts_agree_with_their_number() {
        assert_eq!(count(1u32, "attempt"), "1 attempt");
        assert_eq!(count(0u32, "attempt"), "0 attempts");
        assert_eq!(count(5u32, "webhook"), "5 webhooks");
    }
}
