//! Delivery history, manual retries and recovers.

use super::*;

/// The delivery a path names. Text in no form the engine gives ids is not found, after the
/// webhook, whose absence answers first as it does for any other id.
async fn path_delivery(
    state: &AppState,
    acc: &AccountId,
    wh: &WebhookId,
    text: &str,
) -> Result<DeliveryId, ApiError> {
    match DeliveryId::parse(text) {
        Some(id) => Ok(id),
        None => {
            state.engine.webhook(acc, wh).await?;
            Err(ApiError::not_found(format!(
                "delivery {} not found",
                Echo(text)
            )))
        }
    }
}

/// A webhook's deliveries, newest first.
///
/// Optionally filtered by status, event type and creation time. Follow `next_cursor` until
/// it is `null`: with filters, a page may hold fewer than `limit` deliveries (even none)
/// when many in a row do not pass.
#[utoipa::path(
    get,
    path = "/v1/accounts/{acc}/webhooks/{wh}/deliveries",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id"),
        PageQuery
    ),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "`invalid_request`: an unknown, repeated or mistyped parameter, or a bad filter value (named)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: `limit` out of range, or a cursor this list did not hand out", body = ErrorBody)
    )
)]
pub(super) async fn list_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let (limit, cursor) = page_params(query.limit, query.cursor.as_ref())?;
    let filter = query.filter()?;
    let page = state
        .engine
        .deliveries_where(
            &acc,
            &WebhookId::from(wh),
            &filter,
            limit,
            cursor.as_deref(),
        )
        .await?;
    let data = page.data.iter().map(DeliveryView::of).collect();
    Ok(respond(
        StatusCode::OK,
        DeliveryPage {
            data,
            next_cursor: page.next_cursor,
        },
    ))
}

/// One delivery with every attempt.
#[utoipa::path(
    get,
    path = "/v1/accounts/{acc}/webhooks/{wh}/deliveries/{dlv}",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id"),
        ("dlv" = String, Path, description = "The delivery's id")
    ),
    responses(
        (status = 200, description = "The delivery", body = DeliveryView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
pub(super) async fn get_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh, dlv)): ApiPath<(String, String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let wh = WebhookId::from(wh);
    let dlv = path_delivery(&state, &acc, &wh, &dlv).await?;
    let d = state.engine.delivery(&acc, &wh, &dlv).await?;
    Ok(respond(StatusCode::OK, DeliveryView::of(&d)))
}

/// Makes one more attempt of a finished delivery now, recorded in the same delivery.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/webhooks/{wh}/deliveries/{dlv}/retry",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id"),
        ("dlv" = String, Path, description = "The delivery's id")
    ),
    responses(
        (status = 202, description = "The attempt is under way or due now", body = RetryQueued),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict` while the delivery is pending or its webhook disabled; `limit_reached` past its attempts cap", body = ErrorBody),
        (status = 429, description = "`rate_limited`; see `Retry-After`", body = ErrorBody)
    )
)]
pub(super) async fn retry_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh, dlv)): ApiPath<(String, String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let wh = WebhookId::from(wh);
    let dlv = path_delivery(&state, &acc, &wh, &dlv).await?;
    state.engine.retry_delivery(&acc, &wh, &dlv).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        RetryQueued {
            delivery_id: dlv.to_string(),
            status: DeliveryStatusName::Pending,
        },
    ))
}

/// Sends again every paused, failed or cancelled delivery created in `[since, until)`.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/webhooks/{wh}/recover",
    tag = "deliveries",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    request_body = RecoverBody,
    responses(
        (status = 202, description = "How many deliveries are sent again", body = DeliveryCount),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict` while the webhook is disabled; `limit_reached` past `--max-recover`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a missing or malformed `since`, or `until` not after it", body = ErrorBody)
    )
)]
pub(super) async fn recover_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
    body: Body,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let b: RecoverBody = json_body(body).await?;
    let since = required(time(b.since, "since")?, "since")?;
    let until = time(b.until, "until")?;
    let n = state
        .engine
        .recover(&acc, &WebhookId::from(wh), since, until)
        .await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        DeliveryCount { deliveries: n },
    ))
}
