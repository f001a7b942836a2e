//! Which IP addresses the engine refuses to deliver to when private targets are not allowed.
//!
//! One function, [`refused_range`], decides it for every caller: the create and update checks
//! (after the URL's host is canonicalised by the `url` crate) and the runtime's connector, on
//! every address DNS returns. The ranges are IANA's IPv4 and IPv6 special-purpose address
//! registries (every entry, including the few marked globally reachable, such as the AS112
//! and anycast blocks, where no webhook receiver lives), plus multicast and, for IPv6,
//! everything outside global unicast `2000::/3`. Addresses that carry an IPv4 address
//! (mapped, compatible, NAT64, 6to4, Teredo) are judged by the IPv4 address inside, so a
//! refused IPv4 address cannot be reached through an IPv6 spelling of it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether the engine refuses to connect to `ip` when private targets are not allowed.
pub fn is_refused_ip(ip: IpAddr) -> bool {
    refused_range(ip).is_some()
}

/// The name of the refused range `ip` falls in, or `None` for an address the engine may
/// deliver to. The name goes into logs and errors, so an operator can see why.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

/// One IPv4 block: network address, prefix length, name.
type V4Block = ([u8; 4], u8, &'static str);

/// IANA IPv4 Special-Purpose Address Registry, plus multicast and limited broadcast.
const REFUSED_V4: &[V4Block] = &[
    ([0, 0, 0, 0], 8, "this network"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared address space"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignments"),
    ([192, 0, 2, 0], 24, "documentation (TEST-NET-1)"),
    ([192, 31, 196, 0], 24, "AS112"),
    ([192, 52, 193, 0], 24, "AMT"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast"),
    ([192, 168, 0, 0], 16, "private"),
    ([192, 175, 48, 0], 24, "AS112 direct delegation"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation (TEST-NET-2)"),
    ([203, 0, 113, 0], 24, "documentation (TEST-NET-3)"),
    ([224, 0, 0, 0], 4, "multicast"),
    // 240.0.0.0/4 (reserved) also holds 255.255.255.255, the limited broadcast address.
    ([240, 0, 0, 0], 4, "reserved"),
];

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let addr = u32::from(ip);
    REFUSED_V4.iter().find_map(|&(net, len, name)| {
        let mask = u32::MAX << (32 - u32::from(len));
        (addr & mask == u32::from(Ipv4Addr::from(net))).then_some(name)
    })
}

/// One IPv6 block: network address, prefix length, name.
type V6Block = (u128, u8, &'static str);

/// IANA IPv6 Special-Purpose Address Registry entries inside `2000::/3` (everything outside
/// it is refused wholesale), after the embedded-IPv4 forms are handled.
const REFUSED_V6_GLOBAL: &[V6Block] = &[
    (0x2001_0000 << 96, 23, "IETF protocol assignments"),
    (0x2001_0db8 << 96, 32, "documentation"),
    (0x2620_004f_8000 << 80, 48, "AS112 direct delegation"),
    (0x3fff << 112, 20, "documentation"),
];

fn in_block(addr: u128, net: u128, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    addr & mask == net
}

fn v4_at(addr: u128, shift: u32) -> Ipv4Addr {
    // Truncation keeps exactly the 32 bits that start `shift` bits from the right.
    Ipv4Addr::from((addr >> shift) as u32)
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let addr = u128::from(ip);
    if addr == 0 {
        return Some("unspecified");
    }
    if addr == 1 {
        return Some("loopback");
    }
    // Forms that carry an IPv4 address: the address inside decides. The last 32 bits hold
    // it in IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96 (deprecated), NAT64's
    // 64:ff9b::/96 and local-use NAT64 64:ff9b:1::/48 (RFC 8215) read in the /96 layout;
    // its other layouts leave zeros in the last bits, which read as 0.0.0.0/8 and are refused.
    let in_last_32_bits = in_block(addr, 0xffff << 32, 96)
        || in_block(addr, 0, 96)
        || in_block(addr, 0x0064_ff9b << 96, 96)
        || in_block(addr, 0x0064_ff9b_0001 << 80, 48);
    let embedded = if in_last_32_bits {
        Some(v4_at(addr, 0))
    } else if in_block(addr, 0x2002 << 112, 16) {
        Some(v4_at(addr, 80)) // 6to4: 2002:AABB:CCDD::/48
    } else {
        None
    };
    if let Some(v4) = embedded {
        return refused_v4(v4);
    }
    if in_block(addr, 0x2001_0000 << 96, 32) {
        // Teredo: the server's address in bits 32..64, the client's (inverted) in the last
        // 32 bits; traffic reaches the client, and a refused server is refused too.
        let server = v4_at(addr, 64);
        let client = Ipv4Addr::from(!(addr as u32));
        return refused_v4(client).or_else(|| refused_v4(server));
    }
    if !in_block(addr, 0x2000 << 112, 3) {
        // Outside global unicast: loopback, ULA fc00::/7, link-local fe80::/10, site-local
        // fec0::/10, multicast ff00::/8, discard-only 100::/64, SRv6 5f00::/16 and the
        // blocks IANA keeps reserved.
        return Some(if in_block(addr, 0xff << 120, 8) {
            "multicast"
        } else if in_block(addr, 0xfc << 120, 7) {
            "unique local"
        } else if in_block(addr, 0xfe80 << 112, 10) {
            "link-local"
        } else {
            "reserved"
        });
    }
    REFUSED_V6_GLOBAL
        .iter()
        .find_map(|&(net, len, name)| in_block(addr, net, len).then_some(name))
}
