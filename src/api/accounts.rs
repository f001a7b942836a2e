//! Accounts: create, read, change.

use super::*;

/// Creates an account; its API key is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "accounts",
    security(("bearer" = [])),
    request_body = NewAccountBody,
    responses(
        (status = 201, description = "The account and its key (shown once)", body = CreatedAccount),
        (status = 400, description = "`invalid_request`: malformed JSON, a wrong type or an unknown field", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = ErrorBody),
        (status = 409, description = "`conflict`: the id exists", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a missing or bad field", body = ErrorBody)
    )
)]
pub(super) async fn create_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    authorize_admin(&state, &headers, None).await?;
    let b: NewAccountBody = json_body(body).await?;
    let id = required(b.id, "id")?;
    let name = required(b.name, "name")?;
    let plan = required(plan(b.plan)?, "plan")?;
    let (account, api_key) = state
        .engine
        .create_account(&AccountId::from(id), &name, plan)
        .await?;
    Ok(respond(
        StatusCode::CREATED,
        CreatedAccount {
            account: AccountView::of(&account),
            api_key,
        },
    ))
}

/// An account.
#[utoipa::path(
    get,
    path = "/v1/accounts/{acc}",
    tag = "accounts",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
pub(super) async fn get_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
) -> ApiResult {
    let acc = authorize(&state, &headers, &acc).await?;
    let account = state.engine.account(&acc).await?;
    Ok(respond(StatusCode::OK, AccountView::of(&account)))
}

/// Changes an account's name or plan (admin).
#[utoipa::path(
    patch,
    path = "/v1/accounts/{acc}",
    tag = "accounts",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    request_body = AccountChangesBody,
    responses(
        (status = 200, description = "The account now", body = AccountView),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody)
    )
)]
pub(super) async fn update_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
    body: Body,
) -> ApiResult {
    authorize_admin(&state, &headers, Some(&acc)).await?;
    let b: AccountChangesBody = json_body(body).await?;
    let changes = AccountChanges {
        name: b.name,
        plan: plan(b.plan)?,
    };
    let account = state
        .engine
        .update_account(&AccountId::from(acc), changes)
        .await?;
    Ok(respond(StatusCode::OK, AccountView::of(&account)))
}

/// Every account, by id (admin).
#[utoipa::path(
    get,
    path = "/v1/accounts",
    tag = "accounts",
    security(("bearer" = [])),
    params(AccountsQuery),
    responses(
        (status = 200, description = "A page of accounts, by id", body = AccountList),
        (status = 400, description = "`invalid_request`: an unknown, repeated or mistyped parameter", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = ErrorBody),
        (status = 422, description = "`validation_failed`: `limit` out of range", body = ErrorBody)
    )
)]
pub(super) async fn list_accounts(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<AccountsQuery>,
) -> ApiResult {
    authorize_admin(&state, &headers, None).await?;
    let (limit, cursor) = page_params(query.limit, query.cursor.as_ref())?;
    let (accounts, more) = state.engine.list_accounts(limit, cursor.as_deref()).await?;
    let next_cursor = accounts.last().filter(|_| more).map(|a| a.id.to_string());
    let data = accounts.iter().map(AccountView::of).collect();
    Ok(respond(StatusCode::OK, AccountList { data, next_cursor }))
}

/// Gives an account a new API key (admin); the old one stops at once, or after `grace`.
#[utoipa::path(
    post,
    path = "/v1/accounts/{acc}/rotate-key",
    tag = "accounts",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    request_body(content = RotateKeyBody, description = "Optional: without a body the old key stops at once"),
    responses(
        (status = 200, description = "The new key (shown once) and when the old one stops", body = KeyRotated),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a `grace` that is not a duration, or longer than 7 days", body = ErrorBody)
    )
)]
pub(super) async fn rotate_account_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
    body: Body,
) -> ApiResult {
    authorize_admin(&state, &headers, Some(&acc)).await?;
    let b: RotateKeyBody = optional_json_body(body).await?;
    let grace = grace(b.grace)?.unwrap_or(hallway_domain::DurationMs(0));
    let (api_key, until) = state
        .engine
        .rotate_account_key(&AccountId::from(acc), grace)
        .await?;
    Ok(respond(
        StatusCode::OK,
        KeyRotated {
            api_key,
            previous_key_expires_at: until.map(|t| t.to_rfc3339()),
        },
    ))
}

/// Deletes an account (admin): its webhooks, their pending deliveries, its keys, and its
/// delivery history and event bodies.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{acc}",
    tag = "accounts",
    security(("bearer" = [])),
    params(("acc" = String, Path, description = "The account's id")),
    responses(
        (status = 204, description = "Deleted; later calls on it answer 404 and its keys 401"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an account key", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
pub(super) async fn delete_account(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(acc): ApiPath<String>,
) -> ApiResult {
    authorize_admin(&state, &headers, Some(&acc)).await?;
    state.engine.delete_account(&AccountId::from(acc)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
