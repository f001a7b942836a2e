//! The webhooks page (Settings → Integrations → Webhooks) as server-rendered HTML under
//! `/portal/`, for a host to link to or embed. It calls the same [`EngineHandle`] methods
//! as the JSON API and keeps no state of its own beyond sign-in links and sessions.
//!
//! A host asks for a single-use link with `POST /v1/accounts/{acc}/portal-sessions` (admin);
//! the link's first use opens a session (an `HttpOnly` cookie) scoped to that account. Every
//! state-changing request carries the session's CSRF token. See `docs/portal.md`.

mod assets;
mod charts;
pub mod cli;
mod deliveries;
mod form;
mod guard;
mod layout;
mod routes;
pub mod session;
mod webhooks;

use crate::api::AppState;
use clap::Args;
use hallway_domain::DurationMs;
use hallway_runtime::EngineHandle;
use std::sync::Arc;

pub(crate) use routes::api_routes;
pub use routes::router;

/// Flags of `serve` for the webhooks page; each has an environment variable.
#[derive(Debug, Args)]
pub struct PortalArgs {
    /// How long a sign-in link from `POST /v1/accounts/{acc}/portal-sessions` stays usable.
    #[arg(long, env = "HALLWAY_PORTAL_LINK_TTL", default_value = "10m", value_parser = crate::cli::parse_duration)]
    pub portal_link_ttl: DurationMs,
    /// How long a webhooks-page session lasts after sign-in.
    #[arg(long, env = "HALLWAY_PORTAL_SESSION_TTL", default_value = "12h", value_parser = crate::cli::parse_duration)]
    pub portal_session_ttl: DurationMs,
    /// Origins allowed to embed the webhooks page in an iframe (CSP `frame-ancestors`),
    /// space- or comma-separated; by default no site may frame it.
    #[arg(long, env = "HALLWAY_PORTAL_FRAME_ANCESTORS")]
    pub portal_frame_ancestors: Option<String>,
    /// The server's address as browsers reach it, for the links it hands out (defaults to
    /// `http://` and the listening address).
    #[arg(long, env = "HALLWAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Where a free-plan customer upgrades (the host's Settings → Billing page), linked from
    /// the "Pro plan only" message.
    #[arg(long, env = "HALLWAY_PORTAL_BILLING_URL")]
    pub portal_billing_url: Option<String>,
}

/// How the page runs.
#[derive(Clone, Debug)]
pub struct PortalConfig {
    /// The base of the links handed out, without a trailing slash.
    pub public_url: String,
    /// Lifetime of a sign-in link.
    pub link_ttl: DurationMs,
    /// Lifetime of a session.
    pub session_ttl: DurationMs,
    /// Origins that may frame the page; empty: none.
    pub frame_ancestors: Vec<String>,
    /// Whether the session cookie is `Secure` (off only with `--allow-http`).
    pub secure_cookies: bool,
    /// The host's billing page, if it has one to link.
    pub billing_url: Option<String>,
}

impl PortalConfig {
    /// The configuration from `serve`'s flags and `--allow-http`; without `--public-url`,
    /// links use `http://` and `listening`, the address the server is bound to.
    pub fn from_args(
        args: &PortalArgs,
        listening: std::net::SocketAddr,
        allow_http: bool,
    ) -> Result<PortalConfig, String> {
        let frame_ancestors: Vec<String> = args
            .portal_frame_ancestors
            .as_deref()
            .unwrap_or("")
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        // Each source goes into a header verbatim: refuse anything that could end the
        // directive or the header.
        if let Some(bad) = frame_ancestors.iter().find(|s| {
            *s != "'self'" && (s.contains([';', '\'', '"']) || s.chars().any(|c| c.is_control()))
        }) {
            return Err(format!(
                "--portal-frame-ancestors: {bad:?} is not an origin (like https://app.example.com)"
            ));
        }
        let public_url = args
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{listening}"));
        let public_url = public_url.trim_end_matches('/').to_owned();
        if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
            return Err("--public-url must start with https:// or http://".into());
        }
        if args.portal_link_ttl.0 == 0 || args.portal_session_ttl.0 < 1000 {
            return Err("--portal-link-ttl and --portal-session-ttl must be positive".into());
        }
        Ok(PortalConfig {
            public_url,
            link_ttl: args.portal_link_ttl,
            session_ttl: args.portal_session_ttl,
            frame_ancestors,
            secure_cookies: !allow_http,
            billing_url: args.portal_billing_url.clone(),
        })
    }
}

/// What the page's routes share.
#[derive(Clone)]
pub struct Portal {
    inner: Arc<Inner>,
}

struct Inner {
    api: AppState,
    config: PortalConfig,
    sessions: session::Sessions,
}

impl Portal {
    /// The page over the API's state (its engine, and its admin token for the link route).
    pub fn new(api: AppState, config: PortalConfig) -> Portal {
        let sessions = session::Sessions::new(config.link_ttl, config.session_ttl);
        Portal {
            inner: Arc::new(Inner {
                api,
                config,
                sessions,
            }),
        }
    }

    fn engine(&self) -> &EngineHandle {
        &self.inner.api.engine
    }

    fn config(&self) -> &PortalConfig {
        &self.inner.config
    }

    fn sessions(&self) -> &session::Sessions {
        &self.inner.sessions
    }

    fn api(&self) -> &AppState {
        &self.inner.api
    }
}
