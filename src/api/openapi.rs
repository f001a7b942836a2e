//! The OpenAPI 3.1 document of the JSON API, built from the handlers' own annotations: each
//! route is added to the router and to the document by one call ([`Routes::add`]), at the
//! path and methods its `#[utoipa::path]` names, so a route cannot be served undocumented.
//! `docs/openapi.json` is this document as committed; `tests/openapi.rs` fails when they
//! differ (`UPDATE_OPENAPI=1 cargo test --test openapi` rewrites it).

use super::AppState;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use std::sync::OnceLock;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, OpenApi as Document};
use utoipa::OpenApi;

/// The document's fixed parts: what every route shares.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hallway-webhooks HTTP API",
        version = "1",
        description = "Manage accounts and webhooks, publish events, read delivery history. \
Errors answer `{\"error\":{\"code\",\"message\"}}` with the status their code names. \
Auth: `Authorization: Bearer <token>`, the admin token or an account's key (which acts only \
under its own `/v1/accounts/{acc}/`, and gets 404 elsewhere).",
        license(name = "MIT")
    ),
    tags(
        (name = "operations", description = "Health, readiness, metrics and this document."),
        (name = "accounts", description = "Accounts (tenants) and their keys."),
        (name = "webhooks", description = "Endpoints, their secrets and test sends."),
        (name = "deliveries", description = "Delivery history, retries and recovers."),
        (name = "events", description = "Publishing and replaying events, and the catalog of types.")
    )
)]
struct Fixed;

/// Routes with their documented operations, added together.
pub(crate) struct Routes<S = AppState> {
    router: Router<S>,
    doc: Document,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes yet, and the document's fixed parts.
    pub(crate) fn new() -> Self {
        let mut doc = Fixed::openapi();
        let components = doc
            .components
            .get_or_insert_with(|| ComponentsBuilder::new().build());
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token, or an account's API key on its own account's routes",
                    ))
                    .build(),
            ),
        );
        Routes {
            router: Router::new(),
            doc,
        }
    }

    /// Serves `handler` at the path and methods of its annotation `P`, and documents it with
    /// the schemas it names.
    pub(crate) fn add<P, H, T>(mut self, handler: H) -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences,
        H: Handler<T, S>,
        T: 'static,
    {
        let path = P::path();
        let methods = P::methods();
        let mut route = MethodRouter::new();
        for method in &methods {
            route = route.on(filter(method), handler.clone());
        }
        self.router = self.router.route(&path, route);
        self.doc
            .paths
            .add_path_operation(&path, methods, P::operation());
        let mut schemas = Vec::new();
        P::schemas(&mut schemas);
        if let Some(components) = self.doc.components.as_mut() {
            components.schemas.extend(schemas);
        }
        self
    }

    /// The routes as a router.
    pub(crate) fn into_router(self) -> Router<S> {
        self.router
    }

    /// The routes' document.
    pub(crate) fn into_document(self) -> Document {
        self.doc
    }
}

fn filter(method: &HttpMethod) -> MethodFilter {
    match method {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

/// The whole document: the API's routes and the webhooks page's link route.
pub fn document() -> Document {
    let mut doc = super::routes().into_document();
    doc.merge(crate::portal::api_routes().into_document());
    doc
}

/// The document as served and as `hallway-webhooks openapi` prints it (pretty JSON, keys in
/// the document's order, a final newline).
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text = document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        text.push('\n');
        text
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json"))
)]
pub(super) async fn openapi_json() -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}
