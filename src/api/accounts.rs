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
