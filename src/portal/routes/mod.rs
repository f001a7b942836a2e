//! The page's routes: each handler reads through the session's account, calls the engine
//! as the JSON API does, and answers a page or a redirect (post/redirect/get).

mod access;
mod history;
mod manage;

use super::guard::{security_headers, PageError};
use super::{assets, Portal};
use crate::api::openapi::Routes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{middleware, Router};

pub(super) type PageResult = Result<Response, PageError>;

/// The page's routes under `/portal/`, and the admin route that hands out sign-in links.
pub fn router(portal: Portal) -> Router {
    let pages = Router::new()
        .route("/portal", get(|| async { see_other("/portal/") }))
        .route("/portal/", get(manage::list))
        .route("/portal/login/{token}", get(access::login))
        .route("/portal/logout", post(access::logout))
        .route("/portal/assets/portal.css", get(assets::css))
        .route("/portal/assets/portal.js", get(assets::js))
        .route("/portal/webhooks", post(manage::create))
        .route("/portal/webhooks/new", get(manage::new_form))
        .route(
            "/portal/webhooks/{wh}/edit",
            get(manage::edit_form).post(manage::edit),
        )
        .route("/portal/webhooks/{wh}/enabled", post(manage::set_enabled))
        .route(
            "/portal/webhooks/{wh}/rotate",
            get(manage::confirm_rotate).post(manage::rotate),
        )
        .route(
            "/portal/webhooks/{wh}/delete",
            get(manage::confirm_delete).post(manage::delete),
        )
        .route("/portal/webhooks/{wh}/test", post(history::send_test))
        .route("/portal/webhooks/{wh}/deliveries", get(history::history))
        .route(
            "/portal/webhooks/{wh}/deliveries/{dlv}",
            get(history::detail),
        )
        .route(
            "/portal/webhooks/{wh}/deliveries/{dlv}/retry",
            post(history::retry),
        )
        .route("/portal/{*rest}", any(|| async { PageError::NotFound }))
        .layer(middleware::from_fn_with_state(
            portal.clone(),
            security_headers,
        ))
        .with_state(portal.clone());
    pages.merge(api_routes().into_router().with_state(portal))
}

/// The page's route in the JSON API (admin), documented with the API's routes.
pub(crate) fn api_routes() -> Routes<Portal> {
    Routes::new().add::<access::__path_create_link, _, _>(access::create_link)
}

pub(super) fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

pub(super) fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
