//! Which URLs a webhook may point at. The address rules themselves live in
//! [`crate::address`]; this module reads a URL's host the way the sender will (the `url`
//! crate's WHATWG parser, which canonicalises `2130706433`, `0x7f000001`, `0177.0.0.1`,
//! `127.1` and IDN hosts) and applies the same rules to it.

use crate::policy::Policy;
use crate::rejection::Rejection;
use std::net::IpAddr;

pub use crate::address::{is_refused_ip, refused_range};

/// A webhook URL's host, canonicalised the way the sender connects to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetHost {
    /// A domain name, lowercase ASCII (IDN hosts in their `xn--` form).
    Domain(String),
    /// A literal address, whatever spelling the URL used.
    Ip(IpAddr),
}

impl std::fmt::Display for TargetHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetHost::Domain(d) => f.write_str(d),
            TargetHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The parts of a webhook URL the engine needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedUrl {
    /// `true` for `https`.
    pub https: bool,
    /// The canonical host.
    pub host: TargetHost,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// The URL as the sender sends it: the `url` crate's serialisation, which differs from
    /// the text given only in the scheme's and host's spelling and an empty path's `/`.
    pub normalized: String,
}

/// Parses a webhook URL strictly: `http(s)://host[:port][/path][?query]`, no credentials,
/// no whitespace, no fragment, and a path and query the sender sends exactly as written.
pub fn parse_url(url: &str) -> Result<ParsedUrl, Rejection> {
    let (parsed, path_and_query, sent) = read(url)?;
    check_path_and_query(path_and_query)?;
    // What the parser made of the path and query must be what was written, or the sender
    // would request another resource than the one the user sees stored.
    let written = if path_and_query.starts_with('/') {
        path_and_query.to_owned()
    } else {
        format!("/{path_and_query}")
    };
    if sent != written {
        return Err(Rejection::InvalidUrl(format!(
            "path and query must be in normal form (they would be sent as {sent:?})"
        )));
    }
    Ok(parsed)
}

/// Reads a stored webhook URL the way the sender does: the scheme, host and port rules of
/// [`parse_url`] without its path rules, so URLs stored before those rules can still be sent
/// (as the `url` crate serialises them).
pub fn read_url(url: &str) -> Result<ParsedUrl, Rejection> {
    read(url).map(|(parsed, _, _)| parsed)
}

/// [`read_url`], also returning the path and query as written and as they would be sent.
fn read(url: &str) -> Result<(ParsedUrl, &str, String), Rejection> {
    let bad = |m: &str| Rejection::InvalidUrl(m.to_owned());
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain whitespace or control characters"));
    }
    // The WHATWG parser reads `\` as `/` in http(s) URLs; refusing it keeps the text and
    // the parse in agreement about where the host ends.
    if url.contains('\\') {
        return Err(bad("must not contain a backslash"));
    }
    let (https, rest) = if let Some(r) = strip_prefix_ci(url, "https://") {
        (true, r)
    } else if let Some(r) = strip_prefix_ci(url, "http://") {
        (false, r)
    } else {
        return Err(bad("must be an absolute https:// URL"));
    };
    if rest.contains('#') {
        return Err(bad("must not contain a fragment"));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(bad("must not contain credentials"));
    }
    // The WHATWG parser skips extra slashes (`https:///x` reads as host `x`), so the
    // authority's presence is checked on the text.
    if authority.is_empty() || authority.starts_with(':') {
        return Err(bad("must have a host"));
    }
    if authority.ends_with(':') {
        return Err(bad("invalid port"));
    }
    let parsed = url::Url::parse(url).map_err(|e| match e {
        // The parser names IDNA for any host it cannot map, `<` included.
        url::ParseError::IdnaError | url::ParseError::InvalidDomainCharacter => {
            bad("host has invalid characters")
        }
        other => Rejection::InvalidUrl(other.to_string()),
    })?;
    let host = match parsed.host() {
        Some(url::Host::Ipv4(v4)) => TargetHost::Ip(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => TargetHost::Ip(IpAddr::V6(v6)),
        Some(url::Host::Domain(d)) => {
            if !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            {
                return Err(bad("host has invalid characters"));
            }
            TargetHost::Domain(d.to_owned())
        }
        None => return Err(bad("must have a host")),
    };
    let port = match parsed.port_or_known_default() {
        Some(p) if p > 0 => p,
        _ => return Err(bad("invalid port")),
    };
    let sent = parsed[url::Position::BeforePath..].to_owned();
    let parsed = ParsedUrl {
        https,
        host,
        port,
        normalized: parsed.as_str().to_owned(),
    };
    Ok((parsed, path_and_query, sent))
}

/// Refuses characters any HTTP client must percent-encode (RFC 3986 allows only unreserved,
/// sub-delims, `:@/?` and `%XX` there), so what is stored is exactly what is requested.
fn check_path_and_query(text: &str) -> Result<(), Rejection> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).unwrap_or(&[]);
            if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(Rejection::InvalidUrl(
                    "path and query: `%` must start a percent-encoded byte (%XX)".to_owned(),
                ));
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b);
        if !allowed {
            let c = text[i..].chars().next().unwrap_or('?');
            return Err(Rejection::InvalidUrl(format!(
                "path and query must percent-encode {c:?}"
            )));
        }
        i += 1;
    }
    Ok(())
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Refuses `host` when it is in a refused address range or is a `localhost` name, unless
/// private targets are allowed. Create, update and send all ask this; names are judged
/// again by address after DNS, at connect time.
pub fn check_host(host: &TargetHost, allow_private_targets: bool) -> Result<(), Rejection> {
    if allow_private_targets {
        return Ok(());
    }
    let refused = match host {
        TargetHost::Ip(ip) => is_refused_ip(*ip),
        TargetHost::Domain(d) => {
            let d = d.trim_end_matches('.');
            d == "localhost" || d.ends_with(".localhost")
        }
    };
    if refused {
        return Err(Rejection::TargetRefused(host.to_string()));
    }
    Ok(())
}

/// Checks a webhook URL against the policy: parseable, HTTPS unless allowed, and not a
/// refused address or `localhost` unless private targets are allowed.
/// Hostnames are checked again after DNS, at connect time, by the runtime.
pub fn validate_url(url: &str, policy: &Policy) -> Result<ParsedUrl, Rejection> {
    if url.len() > policy.max_url_bytes {
        return Err(Rejection::TooLong {
            field: "url",
            max: policy.max_url_bytes,
        });
    }
    let parsed = parse_url(url)?;
    if !parsed.https && policy.require_https {
        return Err(Rejection::HttpsRequired);
    }
    check_host(&parsed.host, policy.allow_private_targets)?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> Policy {
        Policy::default()
    }

    #[test]
    fn https_urls_are_accepted() {
        for url in [
            "https://example.com/hooks",
            "https://example.com:8443/a?b=c",
            "HTTPS://Example.COM",
            "https://[2606:4700::1111]/x",
            "https://93.184.216.34/",
        ] {
            assert!(validate_url(url, &strict()).is_ok(), "{url}");
        }
    }

    #[test]
    fn http_url_is_refused_unless_allowed() {
        assert_eq!(
            validate_url("http://example.com/", &strict()),
            Err(Rejection::HttpsRequired)
        );
        let lax = Policy {
            require_https: false,
            ..Policy::default()
        };
        assert!(validate_url("http://example.com/", &lax).is_ok());
    }

    #[test]
    fn malformed_urls_are_invalid() {
        for url in [
            "",
            "example.com",
            "ftp://example.com",
            "https://",
            "https:///path",
            "https://user:pw@example.com/",
            "https://exa mple.com/",
            "https://example.com:0/",
            "https://example.com:99999/",
            "https://example.com/#frag",
            "https://[::1/",
            "https://ex<ample.com/",
        ] {
            assert!(
                matches!(validate_url(url, &strict()), Err(Rejection::InvalidUrl(_))),
                "{url}: {:?}",
                validate_url(url, &strict())
            );
        }
    }

    #[test]
    fn private_literal_targets_are_refused_unless_allowed() {
        for url in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://0.0.0.0/",
            "https://100.64.0.1/",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[64:ff9b::10.0.0.1]/",
            "https://localhost:8443/",
            "https://api.localhost/",
        ] {
            assert!(
                matches!(
                    validate_url(url, &strict()),
                    Err(Rejection::TargetRefused(_))
                ),
                "{url}"
            );
        }
        let lax = Policy {
            allow_private_targets: true,
            ..Policy::default()
        };
        assert!(validate_url("https://127.0.0.1:9000/", &lax).is_ok());
    }

    #[test]
    fn public_addresses_are_not_refused() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!is_refused_ip(ip.parse().unwrap()), "{ip}");
        }
    }
}
