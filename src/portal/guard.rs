//! What every page request passes through: the session extractor, the CSRF check on form
//! posts, the error pages, and the security headers (CSP and friends).

use super::layout;
use super::session::{cookie_value, Session};
use super::Portal;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hallway_domain::RejectionKind;
use hallway_runtime::EngineError;

/// Largest form body the page accepts, in bytes.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The form field and the header that carry the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
const CSRF_HEADER: &str = "x-csrf-token";

/// Why a page request failed; each renders as an HTML page with its status.
#[derive(Debug)]
pub enum PageError {
    /// No live session (never signed in, expired, or signed out).
    SignedOut,
    /// A sign-in link that is unknown, used or expired.
    LinkRefused,
    /// A state-changing request without this session's CSRF token.
    Csrf,
    /// Nothing here, or it belongs to another account.
    NotFound,
    /// A malformed request.
    BadRequest(String),
    /// The engine refused or failed.
    Engine(EngineError),
}

impl From<EngineError> for PageError {
    fn from(e: EngineError) -> Self {
        match &e {
            EngineError::Rejected(r) if r.kind() == RejectionKind::NotFound => PageError::NotFound,
            _ => PageError::Engine(e),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::SignedOut => (
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Your session has ended. Open the webhooks page again from your app's Settings → Integrations.".to_owned(),
            ),
            PageError::LinkRefused => (
                StatusCode::GONE,
                "Link expired",
                "This sign-in link has expired or was already used. Open the webhooks page again from your app's Settings → Integrations.".to_owned(),
            ),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "Request refused",
                "The form was missing its security token. Reload the page and try again.".to_owned(),
            ),
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here. It may have been deleted.".to_owned(),
            ),
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            PageError::Engine(EngineError::Rejected(r)) => {
                let status = match r.kind() {
                    RejectionKind::Conflict | RejectionKind::LimitReached => StatusCode::CONFLICT,
                    RejectionKind::PlanRequired => StatusCode::FORBIDDEN,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                (status, "Not done", r.to_string())
            }
            PageError::Engine(EngineError::Closed) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The service is restarting. Try again in a moment.".to_owned(),
            ),
            PageError::Engine(e) => {
                tracing::error!(error = %e, "portal: engine failure");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "An internal error occurred. Try again later.".to_owned(),
                )
            }
        };
        let page = layout::message_page(title, &message);
        (status, layout::html(page)).into_response()
    }
}

impl FromRequestParts<Portal> for Session {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, portal: &Portal) -> Result<Self, PageError> {
        let now = portal.engine().now();
        parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(cookie_value)
            .find_map(|value| portal.sessions().find(value, now))
            .ok_or(PageError::SignedOut)
    }
}

/// A parsed form body whose CSRF token was checked.
pub struct Form(Vec<(String, String)>);

impl Form {
    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated field (checkboxes).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Reads a form post and checks that it carries the session's CSRF token (as the `_csrf`
/// field, or the `X-CSRF-Token` header for script requests); without it: 403.
pub async fn read_form(
    session: &Session,
    headers: &HeaderMap,
    body: Body,
) -> Result<Form, PageError> {
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            PageError::BadRequest(format!("the form is larger than {MAX_FORM_BYTES} bytes"))
        })?;
    let form = Form(form_urlencoded::parse(&bytes).into_owned().collect());
    let presented = form
        .get(CSRF_FIELD)
        .or_else(|| headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()));
    match presented {
        Some(t) if session.csrf_matches(t) => Ok(form),
        _ => Err(PageError::Csrf),
    }
}

/// The Content-Security-Policy of every page: only this origin's script and style (no inline
/// script or style), no plugins, forms post only here, framed only by the allowed origins.
pub fn content_security_policy(frame_ancestors: &[String]) -> String {
    let ancestors = if frame_ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        frame_ancestors.join(" ")
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    )
}

/// Adds the security headers to every answer under `/portal/`.
pub async fn security_headers(State(portal): State<Portal>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let ancestors = &portal.config().frame_ancestors;
    let h = resp.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(ancestors)) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    if ancestors.is_empty() {
        // For browsers without CSP level 2; it cannot name allowed origins, so only here.
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        // Pages may hold a secret shown once: never from a cache or the back button's copy.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_no_one_may_frame_the_page() {
        let csp = content_security_policy(&[]);
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains("script-src 'self';"));
        assert!(!csp.contains("unsafe-inline"));
        let csp = content_security_policy(&["https://app.example.com".to_owned()]);
        assert!(csp.ends_with("frame-ancestors https://app.example.com"));
    }
}
