//! Publishing events and replaying them.

use super::*;

/// Publishes an event (admin): the engine wraps it in the envelope and fans it out.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/events",
    tag = "events",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    request_body = EventBody,
    responses(
        (status = 202, description = "Published and fanned out", body = Published),
        (status = 200, description = "This `id` was published before with the same body: the first answer, nothing sent again", body = Published),
        (status = 400, description = "`invalid_request`: malformed JSON or a wrong type", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: this `id` was published before with a different body; nothing was sent", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a missing or unknown `type`, a missing `project.id`, a bad `id`", body = ErrorBody)
    )
)]
pub(super) async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
    body: Body,
) -> ApiResult {
    authorize_admin(&state, &headers, Some(&acc)).await?;
    let limit = state.engine.policy().max_payload_bytes;
    let bytes = read_body(body, limit).await?;
    // Timed from a complete body, so a slow upload does not count as a slow engine.
    let started = std::time::Instant::now();
    let receipt = state.engine.publish(&AccountId::from(acc), &bytes).await?;
    state
        .engine
        .live_metrics()
        .observe_publish(started.elapsed());
    let status = if receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(respond(
        status,
        Published {
            id: receipt.event_id.to_string(),
            deliveries: receipt.deliveries,
        },
    ))
}

/// Sends a published event again (admin), as new deliveries of the same body and event id.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/events/{evt}/replay",
    tag = "events",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("evt" = String, Path, description = "The event's id")
    ),
    request_body = ReplayBody,
    responses(
        (status = 202, description = "How many deliveries were created", body = DeliveryCount),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = ErrorBody),
        (status = 404, description = "`not_found`: no such account or webhook, or the event's body is not kept", body = ErrorBody),
        (status = 409, description = "`conflict`: a named webhook is disabled", body = ErrorBody)
    )
)]
pub(super) async fn replay_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, evt)): ApiPath<(String, String)>,
    body: Body,
) -> ApiResult {
    authorize_admin(&state, &headers, Some(&acc)).await?;
    let b: ReplayBody = json_body(body).await?;
    let webhook_ids = b
        .webhook_ids
        .map(|ids| ids.into_iter().map(WebhookId::from).collect());
    let n = state
        .engine
        .replay(&AccountId::from(acc), &EventId::from(evt), webhook_ids)
        .await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        DeliveryCount { deliveries: n },
    ))
}

/// The event catalog: every type webhooks may subscribe to and hosts may publish, with a
/// description and an example.
#[utoipa::path(
    get,
    path = "/v1/event-types",
    tag = "events",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The event types, in the order the catalog declares them", body = EventTypeList),
        (status = 401, description = "`unauthorized`", body = ErrorBody)
    )
)]
pub(super) async fn list_event_types(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult {
    caller(&state, &headers).await?;
    let data = state
        .engine
        .catalog()
        .types()
        .iter()
        .map(EventTypeView::of)
        .collect();
    Ok(respond(StatusCode::OK, EventTypeList { data }))
}
