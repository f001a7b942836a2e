//! The address rules, one table run against the create/update check (`WebhookConfig::validated`
//! and `validate_url`), the send-time check (`read_url` + `check_host`, which the transport
//! calls on a literal host) and the connect-time check (`is_refused_ip`, which the runtime's
//! resolver calls on every resolved address).

use hallway_domain::target::{
    check_host, is_refused_ip, parse_url, read_url, refused_range, validate_url, TargetHost,
};
use hallway_domain::{Policy, Rejection, WebhookConfig};
use std::net::IpAddr;

/// `(host as written in the URL, the address it means, refused in strict mode)`.
const TABLE: &[(&str, &str, bool)] = &[
    // Numeric and alternate IPv4 spellings, canonicalised the way the url crate reads them.
    ("2130706433", "127.0.0.1", true),
    ("0x7f000001", "127.0.0.1", true),
    ("0177.0.0.1", "127.0.0.1", true),
    ("127.1", "127.0.0.1", true),
    ("127.000.000.001", "127.0.0.1", true),
    ("0x7f.1", "127.0.0.1", true),
    ("0", "0.0.0.0", true),
    ("3232235777", "192.168.1.1", true),
    ("134744072", "8.8.8.8", false),
    // IPv4 special-purpose ranges.
    ("0.1.2.3", "0.1.2.3", true),
    ("10.1.2.3", "10.1.2.3", true),
    ("100.64.0.1", "100.64.0.1", true),
    ("100.127.255.255", "100.127.255.255", true),
    ("127.0.0.1", "127.0.0.1", true),
    ("169.254.169.254", "169.254.169.254", true),
    ("172.16.0.1", "172.16.0.1", true),
    ("172.31.255.255", "172.31.255.255", true),
    ("192.0.0.8", "192.0.0.8", true),
    ("192.0.2.1", "192.0.2.1", true),
    ("192.31.196.1", "192.31.196.1", true),
    ("192.52.193.1", "192.52.193.1", true),
    ("192.88.99.1", "192.88.99.1", true),
    ("192.168.1.1", "192.168.1.1", true),
    ("192.175.48.1", "192.175.48.1", true),
    ("198.18.0.1", "198.18.0.1", true),
    ("198.19.255.254", "198.19.255.254", true),
    ("198.51.100.7", "198.51.100.7", true),
    ("203.0.113.9", "203.0.113.9", true),
    ("224.0.0.1", "224.0.0.1", true),
    ("240.0.0.1", "240.0.0.1", true),
    ("255.255.255.255", "255.255.255.255", true),
    // Their public neighbours.
    ("8.8.8.8", "8.8.8.8", false),
    ("93.184.216.34", "93.184.216.34", false),
    ("100.128.0.1", "100.128.0.1", false),
    ("172.32.0.1", "172.32.0.1", false),
    ("192.0.3.1", "192.0.3.1", false),
    ("198.20.0.1", "198.20.0.1", false),
    ("198.51.101.1", "198.51.101.1", false),
    ("203.0.114.1", "203.0.114.1", false),
    // IPv6 special-purpose ranges.
    ("[::]", "::", true),
    ("[::1]", "::1", true),
    ("[0:0:0:0:0:0:0:1]", "::1", true),
    ("[100::1]", "100::1", true),
    ("[100::ffff:1]", "100::ffff:1", true),
    ("[2001:2::1]", "2001:2::1", true),
    ("[2001:10::1]", "2001:10::1", true),
    ("[2001:db8::1]", "2001:db8::1", true),
    ("[2620:4f:8000::1]", "2620:4f:8000::1", true),
    ("[3fff::1]", "3fff::1", true),
    ("[5f00::1]", "5f00::1", true),
    ("[fc00::1]", "fc00::1", true),
    ("[fd12:3456::1]", "fd12:3456::1", true),
    ("[fe80::1]", "fe80::1", true),
    ("[fec0::1]", "fec0::1", true),
    ("[ff02::1]", "ff02::1", true),
    ("[2606:4700::1111]", "2606:4700::1111", false),
    ("[2a00:1450:4001::1]", "2a00:1450:4001::1", false),
    // IPv6 forms carrying an IPv4 address: judged by the address inside.
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1", true),
    ("[::ffff:7f00:1]", "::ffff:127.0.0.1", true),
    ("[::ffff:198.51.100.1]", "::ffff:198.51.100.1", true),
    ("[::ffff:8.8.8.8]", "::ffff:8.8.8.8", false),
    ("[::127.0.0.1]", "::127.0.0.1", true),
    ("[::8.8.8.8]", "::8.8.8.8", false),
    ("[64:ff9b::127.0.0.1]", "64:ff9b::7f00:1", true),
    ("[64:ff9b::10.0.0.1]", "64:ff9b::a00:1", true),
    ("[64:ff9b::8.8.8.8]", "64:ff9b::808:808", false),
    ("[64:ff9b:1::192.168.0.1]", "64:ff9b:1::c0a8:1", true),
    ("[64:ff9b:1:a00:1::]", "64:ff9b:1:a00:1::", true),
    ("[64:ff9b:1::8.8.8.8]", "64:ff9b:1::808:808", false),
    // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
    ("[2002:7f00:1::1]", "2002:7f00:1::1", true),
    ("[2002:c000:201::]", "2002:c000:201::", true),
    ("[2002:808:808::1]", "2002:808:808::1", false),
    // Teredo: server 65.54.227.120, client (inverted in the last 32 bits).
    (
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        true,
    ), // client 192.0.2.45
    (
        "[2001:0:4136:e378::80ff:fffe]",
        "2001:0:4136:e378::80ff:fffe",
        true,
    ), // client 127.0.0.1
    ("[2001:0:a00:1::f7f7:f7f7]", "2001:0:a00:1::f7f7:f7f7", true), // server 10.0.0.1
    (
        "[2001:0:4136:e378::f7f7:f7f7]",
        "2001:0:4136:e378::f7f7:f7f7",
        false,
    ), // client 8.8.8.8
];

fn strict() -> Policy {
    Policy::default()
}

fn lax() -> Policy {
    Policy {
        allow_private_targets: true,
        require_https: false,
        ..Policy::default()
    }
}

fn config(url: &str) -> WebhookConfig {
    WebhookConfig {
        name: "n".into(),
        url: url.into(),
        description: None,
        events: vec![hallway_domain::SESSION_PROCESSING_COMPLETED.into()],
        project_ids: vec![],
        signature_scheme: hallway_domain::SignatureScheme::Hallway,
    }
}

#[test]
fn create_and_connect_judge_every_spelling_and_range_alike() {
    for &(written, meant, refused) in TABLE {
        let url = format!("https://{written}:8443/hook");
        let ip: IpAddr = meant.parse().unwrap();
        // The host is read as the sender reads it.
        let parsed = parse_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(parsed.host, TargetHost::Ip(ip), "{url}");
        assert_eq!(parsed.port, 8443, "{url}");
        // Send time: the transport reads the stored URL with `read_url` and asks
        // `check_host` (it refuses literal hosts before connecting).
        let sent = read_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(sent.host, TargetHost::Ip(ip), "{url}");
        assert_eq!(
            check_host(&sent.host, false).is_err(),
            refused,
            "send {url}"
        );
        assert!(check_host(&sent.host, true).is_ok(), "send lax {url}");
        // Connect time: the function the resolver calls on each address DNS returns.
        assert_eq!(
            is_refused_ip(ip),
            refused,
            "connect {meant} (from {written})"
        );
        assert_eq!(refused_range(ip).is_some(), refused, "{meant}");
        // Create and update time.
        let created = config(&url).validated(&strict());
        if refused {
            assert_eq!(
                created,
                Err(Rejection::TargetRefused(ip.to_string())),
                "create {url}"
            );
            let message = created.unwrap_err().to_string();
            assert!(message.starts_with("url: "), "{message}");
        } else {
            assert!(created.is_ok(), "create {url}: {created:?}");
        }
        // With private targets allowed (tests, local demos), every spelling is accepted.
        assert!(validate_url(&url, &lax()).is_ok(), "lax {url}");
    }
}

#[test]
fn local_targets_work_as_before_when_private_targets_are_allowed() {
    for url in [
        "http://127.0.0.1:28490/hook",
        "http://localhost:28490/hook",
        "https://localhost/",
        "http://[::1]:9000/hook?x=1",
    ] {
        let parsed = validate_url(url, &lax()).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(parsed.normalized, url, "sent as written");
    }
    assert_eq!(
        validate_url("https://localhost/", &strict()),
        Err(Rejection::TargetRefused("localhost".into()))
    );
    assert_eq!(
        validate_url("https://api.LOCALHOST./", &strict()),
        Err(Rejection::TargetRefused("api.localhost.".into()))
    );
}

#[test]
fn a_url_the_sender_cannot_send_as_written_is_refused() {
    for url in [
        "http://127.0.0.1:28490/é<>\"{}|^",
        "https://example.com/é",
        "https://example.com/a<b",
        "https://example.com/a|b",
        "https://example.com/{id}",
        "https://example.com/a^b",
        "https://example.com/a`b",
        "https://example.com/a[0]",
        "https://example.com/?q=\"x\"",
        "https://example.com/?q='x'",
        "https://example.com/100%",
        "https://example.com/%zz",
        "https://example.com/a/../b",
        "https://example.com/./b",
        "https://example.com\\evil.com/",
        "https:///example.com/",
        "https://:443/",
        "https://example.com:/",
        "https://1.2.3.4.5/",
        "https://256.0.0.1/",
        "https://[::1/",
        "https://ex<ample.com/",
        "https://ex!ample.com/",
    ] {
        match validate_url(url, &lax()) {
            Err(Rejection::InvalidUrl(m)) => {
                let message = Rejection::InvalidUrl(m).to_string();
                assert!(message.starts_with("url: "), "{message}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn sendable_urls_are_sent_as_written_up_to_the_host_spelling() {
    for (url, sent) in [
        (
            "https://example.com/a%C3%A9?x=1&y=a:b@c/d",
            "https://example.com/a%C3%A9?x=1&y=a:b@c/d",
        ),
        ("https://example.com?x=1", "https://example.com/?x=1"),
        ("https://Example.COM", "https://example.com/"),
        ("HTTPS://example.com:443/x", "https://example.com/x"),
        ("https://example.com./x", "https://example.com./x"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ("https://BÜCHER.example/", "https://xn--bcher-kva.example/"),
        (
            "https://[2606:4700:0::1111]:8443/x",
            "https://[2606:4700::1111]:8443/x",
        ),
        ("https://134744072/hook", "https://8.8.8.8/hook"),
        ("https://my_host.example/", "https://my_host.example/"),
    ] {
        let parsed = validate_url(url, &strict()).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(parsed.normalized, sent, "{url}");
    }
    let idn = parse_url("https://bücher.example:8443/").unwrap();
    assert_eq!(idn.host, TargetHost::Domain("xn--bcher-kva.example".into()));
    assert_eq!(idn.port, 8443);
}

#[test]
fn urls_stored_before_the_path_rules_are_still_sent_as_the_url_crate_writes_them() {
    for (stored, sent) in [
        (
            "https://example.com/{id}|x^",
            "https://example.com/%7Bid%7D|x^",
        ),
        ("https://example.com/a/../b", "https://example.com/b"),
        ("https://2130706433:8443/é", "https://127.0.0.1:8443/%C3%A9"),
    ] {
        assert!(parse_url(stored).is_err(), "{stored} is refused at create");
        let read = read_url(stored).unwrap_or_else(|e| panic!("{stored}: {e}"));
        assert_eq!(read.normalized, sent, "{stored}");
    }
    // Scheme, credential and host rules hold at send time too.
    for stored in [
        "ftp://example.com/",
        "https://u:p@example.com/",
        "https://ex<ample.com/",
    ] {
        assert!(read_url(stored).is_err(), "{stored}");
    }
}
