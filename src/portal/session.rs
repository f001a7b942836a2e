//! Sign-in links and sessions of the webhooks page, held in memory (they die with the
//! process; see `docs/decisions.md`). Tokens are random; only their SHA-256 is kept, so a
//! memory dump or a log line of the maps reveals nothing a browser could present.

use hallway_domain::{AccountId, DurationMs, Timestamp, WebhookId};
use hallway_runtime::ids::{hash_api_key, same_secret};
use std::collections::HashMap;
use std::sync::Mutex;

/// Most sign-in links and sessions kept at once (each), so a caller cannot grow memory
/// without bound; expired ones are dropped first.
const MAX_ENTRIES: usize = 10_000;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "hallway_portal";

/// A secret shown once on the next page view, then forgotten.
#[derive(Clone, Debug)]
pub struct Flash {
    /// The webhook it belongs to.
    pub webhook: WebhookId,
    /// The webhook's name, for the heading.
    pub name: String,
    /// The signing secret.
    pub secret: String,
    /// Whether it replaced an earlier secret (rotation) rather than came with a new webhook.
    pub rotated: bool,
}

struct Link {
    account: AccountId,
    expires_at: Timestamp,
}

struct Entry {
    account: AccountId,
    csrf: String,
    expires_at: Timestamp,
    flash: Option<Flash>,
}

/// A signed-in session as a request sees it.
#[derive(Clone, Debug)]
pub struct Session {
    /// The account it acts for; every call is scoped to it.
    pub account: AccountId,
    /// The token every state-changing request must carry.
    pub csrf: String,
    /// The hash of the cookie value, which names the session in the store.
    pub key: String,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant-time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        same_secret(presented, &self.csrf)
    }
}

/// Why a new link or session could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Too many live links or sessions.
    #[error("too many portal sessions are open; try again later")]
    Full,
}

/// The links and sessions.
pub struct Sessions {
    link_ttl: DurationMs,
    session_ttl: DurationMs,
    links: Mutex<HashMap<String, Link>>,
    sessions: Mutex<HashMap<String, Entry>>,
}

fn random_token() -> String {
    let mut raw = [0u8; 32];
    // The OS random source failing is not recoverable: a guessable token signs anyone in.
    getrandom::getrandom(&mut raw).expect("the operating system's random source failed");
    hex::encode(raw)
}

fn make_room<V>(map: &mut HashMap<String, V>, expiry: impl Fn(&V) -> Timestamp, now: Timestamp) {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, v| expiry(v) > now);
    }
}

impl Sessions {
    /// Empty, with the links' and sessions' lifetimes.
    pub fn new(link_ttl: DurationMs, session_ttl: DurationMs) -> Sessions {
        Sessions {
            link_ttl,
            session_ttl,
            links: Mutex::default(),
            sessions: Mutex::default(),
        }
    }

    /// How long a session lasts.
    pub fn session_ttl(&self) -> DurationMs {
        self.session_ttl
    }

    /// A new single-use sign-in token for `account` and when it expires.
    pub fn issue_link(
        &self,
        account: AccountId,
        now: Timestamp,
    ) -> Result<(String, Timestamp), SessionError> {
        let token = random_token();
        let expires_at = now.plus(self.link_ttl);
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut links, |l| l.expires_at, now);
        if links.len() >= MAX_ENTRIES {
            return Err(SessionError::Full);
        }
        links.insert(
            hash_api_key(&token),
            Link {
                account,
                expires_at,
            },
        );
        Ok((token, expires_at))
    }

    /// Spends a sign-in token: the first use of a live token opens a session and returns the
    /// cookie value; an unknown, used or expired token gives `None`.
    pub fn exchange(&self, token: &str, now: Timestamp) -> Result<Option<String>, SessionError> {
        let link = {
            let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            // Removed whether live or not: a token is never accepted twice.
            links.remove(&hash_api_key(token))
        };
        let Some(link) = link.filter(|l| l.expires_at > now) else {
            return Ok(None);
        };
        let cookie = random_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut sessions, |e| e.expires_at, now);
        if sessions.len() >= MAX_ENTRIES {
            return Err(SessionError::Full);
        }
        sessions.insert(
            hash_api_key(&cookie),
            Entry {
                account: link.account,
                csrf: random_token(),
                expires_at: now.plus(self.session_ttl),
                flash: None,
            },
        );
        Ok(Some(cookie))
    }

    /// The live session a cookie value names.
    pub fn find(&self, cookie: &str, now: Timestamp) -> Option<Session> {
        let key = hash_api_key(cookie);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(&key) {
            Some(e) if e.expires_at > now => Some(Session {
                account: e.account.clone(),
                csrf: e.csrf.clone(),
                key,
            }),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session (sign out).
    pub fn end(&self, session: &Session) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(&session.key);
    }

    /// Keeps a secret to show on the session's next page view.
    pub fn set_flash(&self, session: &Session, flash: Flash) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = sessions.get_mut(&session.key) {
            e.flash = Some(flash);
        }
    }

    /// Takes the secret to show, if any: it is gone for every later view.
    pub fn take_flash(&self, session: &Session) -> Option<Flash> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get_mut(&session.key).and_then(|e| e.flash.take())
    }
}

/// The value of the cookie named [`COOKIE_NAME`] in a `Cookie` header.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that carries a session. `SameSite=None` when the page may be
/// framed by other sites (the cookie must travel inside their iframe), else `Lax` (sent on
/// the top-level navigation from the host's app, never on cross-site subrequests).
pub fn set_cookie(value: &str, max_age: DurationMs, secure: bool, framed: bool) -> String {
    let same_site = if framed { "None" } else { "Lax" };
    format!(
        "{COOKIE_NAME}={value}; Path=/portal; Max-Age={}; HttpOnly; SameSite={same_site}{}",
        max_age.0 / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE_NAME}=; Path=/portal; Max-Age=0; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(DurationMs::from_mins(10), DurationMs::from_hours(12))
    }

    #[test]
    fn a_link_signs_in_once_and_only_before_it_expires() {
        let s = sessions();
        let (token, expires) = s.issue_link("acc_1".into(), Timestamp(1_000)).unwrap();
        assert_eq!(expires, Timestamp(1_000 + 600_000));
        let cookie = s
            .exchange(&token, Timestamp(2_000))
            .unwrap()
            .expect("first use");
        assert!(s.exchange(&token, Timestamp(2_001)).unwrap().is_none());
        let session = s.find(&cookie, Timestamp(3_000)).expect("live session");
        assert_eq!(session.account.as_str(), "acc_1");
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches("nope"));

        let (late, _) = s.issue_link("acc_1".into(), Timestamp(0)).unwrap();
        assert!(s.exchange(&late, Timestamp(600_000)).unwrap().is_none());
    }

    #[test]
    fn sessions_expire_and_end() {
        let s = sessions();
        let (token, _) = s.issue_link("acc_1".into(), Timestamp(0)).unwrap();
        let cookie = s.exchange(&token, Timestamp(0)).unwrap().unwrap();
        assert!(s
            .find(&cookie, Timestamp(DurationMs::from_hours(12).0))
            .is_none());
        let (token, _) = s.issue_link("acc_1".into(), Timestamp(0)).unwrap();
        let cookie = s.exchange(&token, Timestamp(0)).unwrap().unwrap();
        let session = s.find(&cookie, Timestamp(1)).unwrap();
        s.end(&session);
        assert!(s.find(&cookie, Timestamp(2)).is_none());
    }

    #[test]
    fn only_hashes_are_kept() {
        let s = sessions();
        let (token, _) = s.issue_link("acc_1".into(), Timestamp(0)).unwrap();
        let links = s.links.lock().unwrap();
        assert!(!links.contains_key(&token));
        assert!(links.contains_key(&hash_api_key(&token)));
    }

    #[test]
    fn a_flash_is_shown_once() {
        let s = sessions();
        let (token, _) = s.issue_link("acc_1".into(), Timestamp(0)).unwrap();
        let cookie = s.exchange(&token, Timestamp(0)).unwrap().unwrap();
        let session = s.find(&cookie, Timestamp(1)).unwrap();
        s.set_flash(
            &session,
            Flash {
                webhook: "wh_1".into(),
                name: "n".into(),
                secret: "whsec_x".into(),
                rotated: false,
            },
        );
        assert!(s.take_flash(&session).is_some());
        assert!(s.take_flash(&session).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(cookie_value("a=1; hallway_portal=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("hallway_portal="), None);
        assert_eq!(cookie_value("other=1"), None);
        let c = set_cookie("v", DurationMs::from_hours(12), true, false);
        assert!(c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Lax"));
        assert!(c.contains("Max-Age=43200"));
        assert!(!set_cookie("v", DurationMs(1000), false, false).contains("Secure"));
    }
}
