//! Which URLs a webhook may point at, and which addresses the engine refuses to connect to.

use crate::policy::Policy;
use crate::rejection::Rejection;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The parts of a webhook URL the engine needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedUrl<'a> {
    /// `true` for `https`.
    pub https: bool,
    /// The host as written (IPv6 literals without brackets).
    pub host: &'a str,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

/// Parses a webhook URL strictly: `http(s)://host[:port][/path][?query]`, no credentials,
/// no whitespace, no fragment.
pub fn parse_url(url: &str) -> Result<ParsedUrl<'_>, Rejection> {
    let bad = |m: &str| Rejection::InvalidUrl(m.to_owned());
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain whitespace or control characters"));
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
    let authority = &rest[..authority_end];
    if authority.contains('@') {
        return Err(bad("must not contain credentials"));
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port_text) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']').ok_or_else(|| bad("unclosed IPv6 literal"))?;
        let after = &v6[close + 1..];
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("bad text after IPv6 literal"))?,
            ),
        };
        let host = &v6[..close];
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(bad("invalid IPv6 literal"));
        }
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("must have a host"));
    }
    if !authority.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(bad("host has invalid characters"));
    }
    let port = match port_text {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("invalid port")),
        },
    };
    Ok(ParsedUrl { https, host, port })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Checks a webhook URL against the policy: parseable, HTTPS unless allowed, and not a
/// refused literal address or `localhost` unless private targets are allowed.
/// Hostnames are checked again after DNS, at connect time, by the runtime.
pub fn validate_url(url: &str, policy: &Policy) -> Result<(), Rejection> {
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
    if !policy.allow_private_targets {
        let host = parsed.host.trim_end_matches('.').to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            return Err(Rejection::TargetRefused(parsed.host.to_owned()));
        }
        if let Ok(ip) = parsed.host.parse::<IpAddr>() {
            if is_refused_ip(ip) {
                return Err(Rejection::TargetRefused(parsed.host.to_owned()));
            }
        }
    }
    Ok(())
}

/// Whether the engine refuses to connect to `ip` when private targets are not allowed:
/// loopback, private, shared, link-local, multicast, broadcast, unspecified and reserved
/// ranges, in IPv4 and IPv6 (IPv4-mapped, -compatible and NAT64 addresses are judged by
/// the IPv4 address inside).
pub fn is_refused_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_refused_v4(v4),
        IpAddr::V6(v6) => is_refused_v6(v6),
    }
}

fn is_refused_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || a >= 240 // reserved
}

fn is_refused_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_refused_v4(v4);
    }
    // IPv4-compatible (deprecated) and NAT64 well-known prefix carry an IPv4 address.
    let embedded = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_unspecified() && !ip.is_loopback() {
        return is_refused_v4(embedded);
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_refused_v4(embedded);
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local
        || (seg[0] & 0xffc0) == 0xfe80 // link-local
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
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
            assert_eq!(validate_url(url, &strict()), Ok(()), "{url}");
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
        assert_eq!(validate_url("http://example.com/", &lax), Ok(()));
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
        assert_eq!(validate_url("https://127.0.0.1:9000/", &lax), Ok(()));
    }

    #[test]
    fn public_addresses_are_not_refused() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!is_refused_ip(ip.parse().unwrap()), "{ip}");
        }
    }
}
