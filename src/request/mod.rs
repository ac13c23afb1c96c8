//! The front of every request, before routing: is it well-formed, which
//! host is it for, and who is the client (the socket peer, or the address a
//! trusted proxy forwarded). Each piece is plain functions over the request
//! header, unit-tested here; `proxy.rs` calls [`front`].

mod checks;
pub(crate) mod forwarded;
mod host;

pub(crate) use checks::{Malformed, ambiguous_framing, malformed};
pub(crate) use forwarded::{client_ip, forwarded_for};
use pingora::http::TitledHeaderName;

/// `X-Forwarded-For`, as written upstream; `.name()` for lookups (a `&str`
/// lookup parses the name each time).
pub(crate) static X_FORWARDED_FOR: TitledHeaderName =
    TitledHeaderName::new("X-Forwarded-For", "x-forwarded-for");
/// `X-Forwarded-Proto`, as written upstream.
pub(crate) static X_FORWARDED_PROTO: TitledHeaderName =
    TitledHeaderName::new("X-Forwarded-Proto", "x-forwarded-proto");
pub(crate) use host::{normalize_host, request_host};

use crate::config::Cidr;
use pingora::http::RequestHeader;
use std::net::IpAddr;

/// What the front learns of a well-formed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Front {
    /// The normalized host the request is routed by.
    pub(crate) host: Option<String>,
    /// The socket peer.
    pub(crate) peer_ip: Option<IpAddr>,
    /// The client as defined for logs and the WAF (see [`client_ip`]).
    pub(crate) client_ip: Option<IpAddr>,
}

/// Check `req` from `peer`: the reason it must be refused, or what routing,
/// the WAF and the logs need of it. `length_and_coding`: the parser saw a
/// Content-Length beside a Transfer-Encoding (and dropped it).
pub(crate) fn front(
    req: &RequestHeader,
    length_and_coding: bool,
    peer: Option<IpAddr>,
    trusted: &[Cidr],
) -> Result<Front, Malformed> {
    if let Some(why) = ambiguous_framing(req, length_and_coding).or_else(|| malformed(req)) {
        log::debug!("request refused before routing: {}", why.as_str());
        return Err(why);
    }
    let xff: Vec<&[u8]> = if trusted.is_empty() {
        Vec::new()
    } else {
        req.headers
            .get_all(X_FORWARDED_FOR.name())
            .iter()
            .map(|v| v.as_bytes())
            .collect()
    };
    Ok(Front {
        host: request_host(req),
        peer_ip: peer,
        client_ip: client_ip(peer, &xff, trusted),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_of_a_request() {
        let mut req = RequestHeader::build("GET", b"/a?b", None).unwrap();
        req.insert_header("host", "Blog.Example.org:8080").unwrap();
        req.insert_header("x-forwarded-for", "203.0.113.9").unwrap();
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let f = front(&req, false, Some(peer), &trusted).unwrap();
        assert_eq!(f.host.as_deref(), Some("blog.example.org"));
        assert_eq!(f.peer_ip, Some(peer));
        assert_eq!(f.client_ip, Some("203.0.113.9".parse().unwrap()));
        // Without trusted proxies the header is not even read.
        let f = front(&req, false, Some(peer), &[]).unwrap();
        assert_eq!(f.client_ip, Some(peer));
        let bad = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(front(&bad, false, Some(peer), &[]), Err(Malformed::NoHost));
        assert_eq!(
            front(&req, true, Some(peer), &[]),
            Err(Malformed::LengthAndCoding)
        );
    }
}
