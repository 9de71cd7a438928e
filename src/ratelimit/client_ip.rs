//! The client's IP: the socket peer, unless the peer is a trusted proxy; then the right-most
//! address in `Forwarded` / `X-Forwarded-For` that is not a trusted proxy. Headers from
//! anyone else are ignored, so they cannot be used to dodge a limit.

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses `10.0.0.0/8` or a bare address (as a /32 or /128).
pub fn parse_network(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Which header the trusted proxies write. Only that one is read: a proxy that appends to
/// `X-Forwarded-For` passes a client's own `Forwarded` through untouched, and vice versa.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
}

#[derive(Debug, Clone)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    pub fn new(list: &[String], header: ForwardedHeader) -> Self {
        Self {
            nets: list.iter().filter_map(|s| parse_network(s)).collect(),
            header,
        }
    }

    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Resolves the client from the peer and the configured header's value (every line of
    /// it, joined in order with commas).
    pub fn client_ip(&self, peer: IpAddr, header_value: Option<&str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let entries: Vec<Option<IpAddr>> = match (self.header, header_value) {
            (_, None) => Vec::new(),
            (ForwardedHeader::Forwarded, Some(f)) => parse_forwarded(f),
            (ForwardedHeader::XForwardedFor, Some(x)) => {
                x.split(',').map(|a| parse_addr(a.trim())).collect()
            }
        };
        // Walk from the nearest hop outwards while hops are trusted proxies. An entry that
        // is not an address (`unknown`, garbage) ends the walk: everything left of it was
        // written by someone we cannot vouch for, so the last good hop stands as the client.
        let mut client = peer;
        for entry in entries.into_iter().rev() {
            let Some(ip) = entry else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `for=` value of each element of a Forwarded header, in order (None when an element
/// has no usable address).
fn parse_forwarded(value: &str) -> Vec<Option<IpAddr>> {
    value
        .split(',')
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
                })
                .next()
                .and_then(|v| parse_addr(v.trim_matches('"')))
        })
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`; anything else (`unknown`, `_hidden`)
/// is skipped.
fn parse_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok().map(canonical);
    }
    let (host, _port) = s.rsplit_once(':')?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let none = TrustedProxies::new(&[], ForwardedHeader::XForwardedFor);
        assert_eq!(
            none.client_ip(ip("198.51.100.7"), Some("1.2.3.4")),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn right_most_untrusted_address_from_a_trusted_proxy() {
        let nets = ["10.0.0.0/8".to_owned(), "127.0.0.1".to_owned()];
        let xff = TrustedProxies::new(&nets, ForwardedHeader::XForwardedFor);
        let cases = [
            // (peer, X-Forwarded-For, client, why)
            ("10.0.0.2", Some("203.0.113.9"), "203.0.113.9", "one hop"),
            (
                "10.0.0.2",
                Some("6.6.6.6, 203.0.113.9, 10.0.0.5"),
                "203.0.113.9",
                "spoofed left part ignored",
            ),
            ("10.0.0.2", None, "10.0.0.2", "no header"),
            (
                "10.0.0.2",
                Some("10.0.0.9, 10.0.0.5"),
                "10.0.0.9",
                "all trusted: left-most",
            ),
            (
                "10.0.0.2",
                Some("6.6.6.6, unknown"),
                "10.0.0.2",
                "garbage ends the walk",
            ),
            (
                "10.0.0.2",
                Some("6.6.6.6, unknown, 10.0.0.7"),
                "10.0.0.7",
                "garbage behind a proxy",
            ),
            (
                "::ffff:127.0.0.1",
                Some("203.0.113.1:8080"),
                "203.0.113.1",
                "mapped peer, port on address",
            ),
            (
                "192.0.2.1",
                Some("203.0.113.9"),
                "192.0.2.1",
                "untrusted peer",
            ),
        ];
        for (peer, header, want, why) in cases {
            assert_eq!(xff.client_ip(ip(peer), header), ip(want), "{why}");
        }
        let fwd = TrustedProxies::new(&nets, ForwardedHeader::Forwarded);
        let cases = [
            (
                "10.0.0.2",
                Some("for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\""),
                "2001:db8::1",
                "IPv6 in brackets",
            ),
            ("10.0.0.2", Some("for=unknown"), "10.0.0.2", "obfuscated"),
            (
                "10.0.0.2",
                Some("for=6.6.6.6, for=_hidden, for=10.0.0.3"),
                "10.0.0.3",
                "obfuscated behind a proxy",
            ),
        ];
        for (peer, header, want, why) in cases {
            assert_eq!(fwd.client_ip(ip(peer), header), ip(want), "{why}");
        }
    }
}
