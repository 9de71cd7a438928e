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

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(list: &[String]) -> Self {
        Self(list.iter().filter_map(|s| parse_network(s)).collect())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Resolves the client from the peer and the forwarding headers' values (in order).
    pub fn client_ip(
        &self,
        peer: IpAddr,
        forwarded: Option<&str>,
        x_forwarded_for: Option<&str>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        // RFC 7239 wins over the de-facto header when both are present.
        let chain: Vec<IpAddr> = match (forwarded, x_forwarded_for) {
            (Some(f), _) => parse_forwarded(f),
            (None, Some(x)) => x.split(',').filter_map(|a| parse_addr(a.trim())).collect(),
            (None, None) => Vec::new(),
        };
        let mut client = peer;
        for ip in chain.into_iter().rev() {
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

/// `for=` values of a Forwarded header, in order.
fn parse_forwarded(value: &str) -> Vec<IpAddr> {
    value
        .split(',')
        .flat_map(|element| element.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
        })
        .filter_map(|v| parse_addr(v.trim_matches('"')))
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
        let none = TrustedProxies::new(&[]);
        assert_eq!(
            none.client_ip(ip("198.51.100.7"), None, Some("1.2.3.4")),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn right_most_untrusted_address_from_a_trusted_proxy() {
        let trusted = TrustedProxies::new(&["10.0.0.0/8".into(), "127.0.0.1".into()]);
        let cases = [
            // (peer, Forwarded, X-Forwarded-For, client, why)
            (
                "10.0.0.2",
                None,
                Some("203.0.113.9"),
                "203.0.113.9",
                "one hop",
            ),
            (
                "10.0.0.2",
                None,
                Some("6.6.6.6, 203.0.113.9, 10.0.0.5"),
                "203.0.113.9",
                "spoofed left part ignored",
            ),
            ("10.0.0.2", None, None, "10.0.0.2", "no header"),
            (
                "10.0.0.2",
                None,
                Some("10.0.0.9, 10.0.0.5"),
                "10.0.0.9",
                "all trusted: left-most",
            ),
            (
                "10.0.0.2",
                Some("for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\""),
                Some("9.9.9.9"),
                "2001:db8::1",
                "Forwarded wins",
            ),
            (
                "10.0.0.2",
                Some("for=unknown"),
                None,
                "10.0.0.2",
                "obfuscated",
            ),
            (
                "::ffff:127.0.0.1",
                None,
                Some("203.0.113.1:8080"),
                "203.0.113.1",
                "mapped peer, port on address",
            ),
            (
                "192.0.2.1",
                None,
                Some("203.0.113.9"),
                "192.0.2.1",
                "untrusted peer",
            ),
        ];
        for (peer, fwd, xff, want, why) in cases {
            assert_eq!(trusted.client_ip(ip(peer), fwd, xff), ip(want), "{why}");
        }
    }
}
