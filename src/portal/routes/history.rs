//! Deliveries: send a test, the history with its chart, one delivery, retry.

use super::{query_value, see_other, PageError, PageResult};
use crate::portal::charts::day_stats;
use crate::portal::deliveries::{detail_page, history_page, DetailView, HistoryView};
use crate::portal::guard::read_form;
use crate::portal::layout::html;
use crate::portal::session::Session;
use crate::portal::Portal;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use hallway_domain::{DeliveryId, WebhookId};

/// Deliveries per history page.
const HISTORY_PAGE: usize = 25;

pub(super) async fn send_test(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    read_form(&session, &headers, body).await?;
    let wh = WebhookId::from(wh);
    let dlv = portal.engine().send_test(&session.account, &wh).await?;
    Ok(see_other(&format!(
        "/portal/webhooks/{}/deliveries/{dlv}",
        wh.as_str()
    )))
}

pub(super) async fn history(
    State(portal): State<Portal>,
    session: Session,
    Path(wh): Path<String>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let engine = portal.engine();
    let w = engine
        .webhook(&session.account, &WebhookId::from(wh))
        .await?;
    let cursor = query_value(query.as_deref(), "cursor").filter(|c| !c.is_empty());
    let page = engine
        .deliveries(&session.account, &w.id, HISTORY_PAGE, cursor.as_deref())
        .await?;
    let stats = match cursor {
        None => Some(day_stats(engine, &session.account, &w.id, engine.now()).await?),
        Some(_) => None,
    };
    Ok(html(history_page(HistoryView {
        session: &session,
        webhook: &w,
        page: &page,
        first: cursor.is_none(),
        stats: stats.as_ref(),
    })))
}

pub(super) async fn detail(
    State(portal): State<Portal>,
    session: Session,
    Path((wh, dlv)): Path<(String, String)>,
) -> PageResult {
    let engine = portal.engine();
    let w = engine
        .webhook(&session.account, &WebhookId::from(wh))
        .await?;
    // Text in no form the engine gives delivery ids names no delivery.
    let dlv = DeliveryId::parse(&dlv).ok_or(PageError::NotFound)?;
    let d = engine.delivery(&session.account, &w.id, &dlv).await?;
    let body = engine.event_body(&session.account, &d.event_id).await?;
    Ok(html(detail_page(DetailView {
        session: &session,
        webhook: &w,
        delivery: &d,
        body: body.as_deref(),
    })))
}

pub(super) async fn retry(
    State(portal): State<Portal>,
    session: Session,
    Path((wh, dlv)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    read_form(&session, &headers, body).await?;
    let wh = WebhookId::from(wh);
    let dlv = DeliveryId::parse(&dlv).ok_or(PageError::NotFound)?;
    portal
        .engine()
        .retry_delivery(&session.account, &wh, &dlv)
        .await?;
    Ok(see_other(&format!(
        "/portal/webhooks/{}/deliveries/{dlv}",
        wh.as_str()
    )))
}
