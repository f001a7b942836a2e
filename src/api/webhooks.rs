//! Webhooks: register, list, read, change, delete, rotate their secrets, send tests.

use super::*;

/// Registers a webhook; its signing secret is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    request_body = NewWebhookBody,
    responses(
        (status = 201, description = "The webhook and its secret (shown once)", body = CreatedWebhook),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`plan_required`: the account is on the free plan", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`limit_reached`: the account has the most webhooks it may have", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a bad or refused URL, an unknown event type, an empty name", body = ErrorBody)
    )
)]
pub(super) async fn create_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
    body: Body,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let b: NewWebhookBody = json_body(body).await?;
    let input = NewWebhook {
        name: required(b.name, "name")?,
        url: required(b.url, "url")?,
        description: b.description.flatten(),
        events: required(b.events, "events")?,
        project_ids: b.project_ids.unwrap_or_default(),
        signature_scheme: scheme(b.signature_scheme)?.unwrap_or_default(),
    };
    let (webhook, secret) = state.engine.create_webhook(&acc, input).await?;
    Ok(respond(
        StatusCode::CREATED,
        CreatedWebhook {
            webhook: WebhookView::of(&webhook),
            secret: secret.expose().to_owned(),
        },
    ))
}

/// An account's webhooks, oldest first.
#[utoipa::path(
    get,
    path = "/v1/accounts/{acc}/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The webhooks", body = WebhookList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
pub(super) async fn list_webhooks(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let list = state.engine.list_webhooks(&acc).await?;
    let data = list.iter().map(WebhookView::of).collect();
    Ok(respond(StatusCode::OK, WebhookList { data }))
}

/// One webhook.
#[utoipa::path(
    get,
    path = "/v1/accounts/{acc}/webhooks/{wh}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
pub(super) async fn get_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let w = state.engine.webhook(&acc, &WebhookId::from(wh)).await?;
    Ok(respond(StatusCode::OK, WebhookView::of(&w)))
}

/// Changes a webhook; `"enabled": true` re-enables it and resets its failure counter.
#[utoipa::path(
    patch,
    path = "/v1/accounts/{acc}/webhooks/{wh}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    request_body = WebhookChangesBody,
    responses(
        (status = 200, description = "The webhook now", body = WebhookView),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody)
    )
)]
pub(super) async fn update_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
    body: Body,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let b: WebhookChangesBody = json_body(body).await?;
    let changes = WebhookChanges {
        name: b.name,
        url: b.url,
        description: b.description,
        events: b.events,
        project_ids: b
            .project_ids
            .map(|ps| ps.into_iter().map(Into::into).collect()),
        enabled: b.enabled,
        signature_scheme: scheme(b.signature_scheme)?,
    };
    let w = state
        .engine
        .update_webhook(&acc, &WebhookId::from(wh), changes)
        .await?;
    Ok(respond(StatusCode::OK, WebhookView::of(&w)))
}

/// Deletes a webhook for good, cancelling what it had pending.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{acc}/webhooks/{wh}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    responses(
        (status = 204, description = "Deleted; later calls on it answer 404"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
pub(super) async fn delete_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    state
        .engine
        .delete_webhook(&acc, &WebhookId::from(wh))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Replaces a webhook's secret; the old one signs nothing from then on, or, with a `grace`,
/// signs beside the new one until the grace ends.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/webhooks/{wh}/rotate-secret",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    request_body(content = Option<RotateBody>, description = "Optional: a grace for the previous secret"),
    responses(
        (status = 200, description = "The new secret (shown once)", body = SecretView),
        (status = 400, description = "`invalid_request`: an unknown field or bad JSON", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a `grace` that does not parse or exceeds 7 days", body = ErrorBody)
    )
)]
pub(super) async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
    body: Body,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let b: RotateBody = optional_json_body(body).await?;
    let (secret, until) = state
        .engine
        .rotate_secret_with_grace(&acc, &WebhookId::from(wh), grace(b.grace)?)
        .await?;
    Ok(respond(
        StatusCode::OK,
        SecretView {
            secret: secret.expose().to_owned(),
            previous_secret_expires_at: until.map(|t| t.to_rfc3339()),
        },
    ))
}

/// Sends the example payload of the webhook's event type, marked `"_test": true`, once (also
/// while disabled).
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/webhooks/{wh}/test",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("acc" = String, Path, description = "The account's id"),
        ("wh" = String, Path, description = "The webhook's id")
    ),
    responses(
        (status = 202, description = "The test delivery was created", body = TestSent),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many retries and test sends; see `Retry-After`", body = ErrorBody)
    )
)]
pub(super) async fn send_test(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((acc, wh)): ApiPath<(String, String)>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let id = state.engine.send_test(&acc, &WebhookId::from(wh)).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        TestSent {
            delivery_id: id.to_string(),
        },
    ))
}
