//! Delivery history (newest first, paged, with the 24-hour chart) and one delivery's page
//! (its attempts, each with the headers it sent and what came back, the exact body sent,
//! Retry).

use super::charts::{hourly_chart, DayStats, MAX_SCANNED};
use super::layout::{badge, count, csrf_field, page, time};
use super::session::Session;
use hallway_domain::Webhook;
use hallway_runtime::transport::USER_AGENT_VALUE;
use hallway_store::{AttemptRecord, DeliveryRecord, DeliveryStatus, Page};
use maud::{html, Markup};

/// Longest body shown in full, in bytes; larger ones are cut with a note.
const MAX_BODY_SHOWN: usize = 256 * 1024;

fn status_badge(s: DeliveryStatus) -> Markup {
    match s {
        DeliveryStatus::Succeeded => badge("ok", "Succeeded"),
        DeliveryStatus::Failed => badge("bad", "Failed"),
        DeliveryStatus::Pending => badge("muted", "Pending"),
        DeliveryStatus::Cancelled => badge("muted", "Cancelled"),
        DeliveryStatus::Paused => badge("muted", "Paused"),
    }
}

fn base(w: &Webhook) -> String {
    format!("/portal/webhooks/{}", w.id.as_str())
}

/// Everything the history page shows.
pub struct HistoryView<'a> {
    /// The signed-in session.
    pub session: &'a Session,
    /// The webhook.
    pub webhook: &'a Webhook,
    /// This page of its deliveries.
    pub page: &'a Page,
    /// Whether this is the first (newest) page.
    pub first: bool,
    /// The last 24 hours, on the first page only.
    pub stats: Option<&'a DayStats>,
}

/// The history page.
pub fn history_page(v: HistoryView) -> Markup {
    let w = v.webhook;
    let pending = v
        .page
        .data
        .iter()
        .any(|d| d.status == DeliveryStatus::Pending);
    let body = html! {
        p.back { a href="/portal/" { "← Webhooks" } }
        h1 { "Delivery history" }
        p.lead { strong { (w.config.name) } " · " code.url { (w.config.url) } }
        @if let Some(stats) = v.stats {
            (stats_section(stats))
        }
        h2 { "Deliveries" }
        @if v.first && pending {
            p.live data-poll="2000" aria-live="polite" { "Some deliveries are still pending; this list updates by itself." }
        }
        @if v.page.data.is_empty() {
            p.empty { "No deliveries yet. Use " strong { "Send test" } " from the webhook's options menu to try your endpoint." }
        } @else {
            div.table-scroll {
                table.deliveries {
                    caption.visually-hidden { "Deliveries, newest first" }
                    thead {
                        tr {
                            th scope="col" { "Status" }
                            th scope="col" { "Event" }
                            th scope="col" { "Code" }
                            th scope="col" { "Response time" }
                            th scope="col" { "Attempts" }
                            th scope="col" { "Time" }
                        }
                    }
                    tbody {
                        @for d in &v.page.data {
                            @let last = d.attempts.last();
                            tr {
                                td { (status_badge(d.status)) @if d.test { " " (badge("test", "Test")) } }
                                td {
                                    a href={ (base(w)) "/deliveries/" (d.id) } { code { (d.event_id.as_str()) } }
                                    br;
                                    span.sub { (d.event_type) }
                                }
                                td {
                                    @match last {
                                        Some(a) => {
                                            @if let Some(c) = a.status_code { (c) } @else { "—" }
                                            @if let Some(e) = a.error { br; span.sub { (e.as_str()) } }
                                        }
                                        None => "—",
                                    }
                                }
                                td.num { @match last { Some(a) => { (a.duration_ms) " ms" } None => "—" } }
                                td.num { (d.attempts.len()) }
                                td { (time(d.created_at)) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if !v.first { a.btn href={ (base(w)) "/deliveries" } { "← Newest" } }
            @if let Some(c) = &v.page.next_cursor {
                a.btn href={ (base(w)) "/deliveries?cursor=" (c) } { "Older →" }
            }
        }
    };
    page("Delivery history", Some(v.session), body)
}

fn stats_section(stats: &DayStats) -> Markup {
    html! {
        section.stats aria-labelledby="stats-title" {
            h2 #stats-title { "Last 24 hours" }
            (hourly_chart(stats))
            p.legend { span.key.ok {} "Succeeded " span.key.bad {} "Failed" }
            @if let Some([p50, p90, p99]) = stats.percentiles {
                dl.percentiles {
                    div { dt { "p50" } dd { (p50) " ms" } }
                    div { dt { "p90" } dd { (p90) " ms" } }
                    div { dt { "p99" } dd { (p99) " ms" } }
                }
                p.sub { "Response times of " (count(stats.attempts as u64, "attempt")) "." }
            }
            @if stats.capped {
                p.sub { "Counted from the latest " (MAX_SCANNED) " deliveries only." }
            }
        }
    }
}

/// Everything a delivery's page shows.
pub struct DetailView<'a> {
    /// The signed-in session.
    pub session: &'a Session,
    /// The webhook.
    pub webhook: &'a Webhook,
    /// The delivery.
    pub delivery: &'a DeliveryRecord,
    /// The exact body its attempts send, if still kept.
    pub body: Option<&'a str>,
}

/// A delivery's page.
pub fn detail_page(v: DetailView) -> Markup {
    let (w, d) = (v.webhook, v.delivery);
    let finished = !matches!(d.status, DeliveryStatus::Pending);
    let body = html! {
        p.back { a href={ (base(w)) "/deliveries" } { "← Delivery history" } }
        h1 { "Delivery " code { (d.id) } }
        div.delivery-status {
            (status_badge(d.status))
            @if d.test { " " (badge("test", "Test")) }
            @if !finished {
                @if let Some(next) = d.next_attempt_at {
                    // A retry minutes away: look now and then, not every second.
                    span.live data-poll="5000" aria-live="polite" { " Next attempt at " (time(next)) "." }
                } @else {
                    span.live data-poll="1000" aria-live="polite" { " Waiting for the endpoint's answer…" }
                }
            }
        }
        @if finished && d.status != DeliveryStatus::Succeeded {
            form method="post" action={ (base(w)) "/deliveries/" (d.id) "/retry" } {
                (csrf_field(v.session))
                button.btn.primary type="submit" { "Retry" }
            }
        }
        dl.facts {
            dt { "Webhook" } dd { (w.config.name) }
            dt { "Event" } dd { code { (d.event_id.as_str()) } }
            dt { "Type" } dd { code { (d.event_type) } }
            dt { "Created" } dd { (time(d.created_at)) }
        }
        h2 { "Attempts" }
        @if d.attempts.is_empty() {
            p.empty { "No attempt yet." }
        } @else {
            div.table-scroll {
                table.attempts {
                    thead {
                        tr {
                            th scope="col" { "#" }
                            th scope="col" { "Time" }
                            th scope="col" { "Duration" }
                            th scope="col" { "Code" }
                            th scope="col" { "Error" }
                        }
                    }
                    tbody {
                        @for a in &d.attempts {
                            tr {
                                td.num { (a.attempt) }
                                td { (time(a.started_at)) }
                                td.num { (a.duration_ms) " ms" }
                                td { @if let Some(c) = a.status_code { (c) } @else { "—" } }
                                td { @if let Some(e) = a.error { code { (e.as_str()) } } @else { "—" } }
                            }
                        }
                    }
                }
            }
        }
        @let detailed: Vec<&AttemptRecord> = d.attempts.iter().filter(|a| a.detail.is_some()).collect();
        @if detailed.is_empty() {
            h2 { "Request headers" }
            pre.code {
                "POST " (w.config.url) "\n"
                "Content-Type: application/json\n"
                "User-Agent: " (USER_AGENT_VALUE) "\n"
                (signature_lines(w))
            }
            p.sub { "The signature is computed for each attempt at send time; each attempt's own headers show here once it is made." }
        } @else {
            h2 { "Attempt details" }
            @for (i, a) in detailed.iter().enumerate() {
                (attempt_detail(w, a, i + 1 == detailed.len()))
            }
        }
        h2 { "Body" }
        @match v.body {
            Some(b) if b.len() > MAX_BODY_SHOWN => {
                pre.code { (cut(b)) "…" }
                p.sub { "The body is " (b.len()) " bytes; the first " (MAX_BODY_SHOWN / 1024) " KiB are shown." }
            }
            Some(b) => {
                pre.code.body { (b) }
                p.sub { "The exact bytes every attempt of this delivery sends." }
            }
            None => p.empty { "The body is no longer kept (it is removed after the retention period)." },
        }
    };
    page("Delivery", Some(v.session), body)
}

/// The signature lines of a webhook's scheme, with placeholders.
fn signature_lines(w: &Webhook) -> &'static str {
    match w.config.signature_scheme {
        hallway_domain::SignatureScheme::Hallway => {
            "X-Hallway-Signature: t=<send time>,v1=<HMAC-SHA256>\nX-Hallway-Event-Id: <event id>"
        }
        hallway_domain::SignatureScheme::Standard => {
            "webhook-id: <event id>\nwebhook-timestamp: <send time>\nwebhook-signature: v1,<HMAC-SHA256>\nX-Hallway-Event-Id: <event id>"
        }
    }
}

/// Headers one a line, as `Name: value`.
fn header_lines(headers: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push('\n');
    }
    out
}

/// One attempt's detail: why it failed, the headers it sent, what came back. The latest is
/// open.
fn attempt_detail(w: &Webhook, a: &AttemptRecord, latest: bool) -> Markup {
    let Some(detail) = a.detail.as_deref() else {
        return html! {};
    };
    let words = crate::views::error_words(a);
    html! {
        details.attempt-detail open[latest] {
            summary {
                "Attempt " (a.attempt) " · " (time(a.started_at)) " · "
                @if let Some(c) = a.status_code { (c) } @else { "no response" }
            }
            @if let Some(why) = &words {
                p.error { strong { "Error: " } (why) }
            }
            @if !detail.request_headers.is_empty() {
                h3 { "Request headers" }
                pre.code.request-headers { "POST " (w.config.url) "\n" (header_lines(&detail.request_headers)) }
            }
            @if a.status_code.is_some() {
                h3 { "Response headers" }
                pre.code.response-headers { (header_lines(&detail.response_headers)) }
                h3 { "Response body" }
                @if detail.response_body.is_empty() {
                    p.empty { "Empty." }
                } @else {
                    pre.code.response-body { (detail.response_body) }
                }
                @if detail.response_body_truncated {
                    p.sub { "Only the first " (hallway_domain::attempt::MAX_RESPONSE_BODY_BYTES / 1024) " KiB of the response body are kept." }
                }
            }
        }
    }
}

/// The first [`MAX_BODY_SHOWN`] bytes, cut at a character boundary.
fn cut(s: &str) -> &str {
    let mut end = MAX_BODY_SHOWN.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
