//! IP networks (`198.51.100.0/24`, `2001:db8::/32`, or a bare address) and
//! the client address as seen behind trusted proxies.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr {
            net: mask(ip, prefix),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are compared as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

/// The client of a request: the socket peer, unless the peer is a trusted
/// proxy, in which case the rightmost address of `X-Forwarded-For` that is not
/// itself a trusted proxy (or the leftmost one when all are trusted).
pub fn client_ip(peer: Option<IpAddr>, xff: &[&[u8]], trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = peer?;
    if trusted.is_empty() || !trusted.iter().any(|c| c.contains(peer)) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in xff {
        let Ok(v) = std::str::from_utf8(v) else {
            return Some(peer);
        };
        for part in v.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(canonical(ip)),
                // A malformed list cannot be trusted past this point.
                Err(_) => return hops.last().copied().or(Some(peer)),
            }
        }
    }
    for ip in hops.iter().rev() {
        if !trusted.iter().any(|c| c.contains(*ip)) {
            return Some(*ip);
        }
    }
    hops.first().copied().or(Some(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "198.51.100.17/24".parse().unwrap();
        assert_eq!(c.to_string(), "198.51.100.0/24");
        assert!(c.contains(ip("198.51.100.200")));
        assert!(c.contains(ip("::ffff:198.51.100.1")));
        assert!(!c.contains(ip("198.51.101.1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let one: Cidr = "203.0.113.7".parse().unwrap();
        assert!(one.contains(ip("203.0.113.7")) && !one.contains(ip("203.0.113.8")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "banana", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn client_ip_behind_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = Some(ip("10.0.0.5"));
        // Rightmost untrusted hop wins; a forged left part is ignored.
        assert_eq!(
            client_ip(peer, &[b"1.1.1.1, 203.0.113.9, 10.0.0.7"], &trusted),
            Some(ip("203.0.113.9"))
        );
        // Untrusted peer: its own address, whatever the header says.
        assert_eq!(
            client_ip(Some(ip("198.51.100.1")), &[b"1.2.3.4"], &trusted),
            Some(ip("198.51.100.1"))
        );
        // No header from a trusted peer: the peer.
        assert_eq!(client_ip(peer, &[], &trusted), peer);
        // Garbage: stop at the last good hop.
        assert_eq!(client_ip(peer, &[b"evil, 10.0.0.9"], &trusted), peer);
        assert_eq!(
            client_ip(peer, &[b"10.1.1.1, 10.2.2.2"], &trusted),
            Some(ip("10.1.1.1"))
        );
        assert_eq!(client_ip(None, &[], &trusted), None);
    }
}
