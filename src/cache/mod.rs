//! The HTTP cache. For now only the part of its contract that must hold even
//! without stored entries: a `PURGE` is answered by edgeward itself and never
//! reaches an upstream. Only allowed clients (by socket address, never by a
//! header) may purge; the default allow-list is loopback. With no cache
//! storage yet, nothing ever matches, so an allowed purge answers 404.

use crate::pages;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::net::IpAddr;

/// Whether this request is a PURGE (which edgeward must answer itself).
pub fn is_purge(session: &Session) -> bool {
    session.req_header().method.as_str() == "PURGE"
}

/// Default `cache.purge_allow`: loopback only.
fn purge_allowed(ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    })
}

/// Answer a PURGE; returns the status sent.
pub async fn purge(session: &mut Session, request_id: &str) -> Result<u16> {
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    if !purge_allowed(ip) {
        pages::respond(session, 403, "This client may not purge.", request_id).await?;
        return Ok(403);
    }
    pages::respond_text(
        session,
        404,
        "0 entries purged: nothing matched\n",
        request_id,
    )
    .await?;
    Ok(404)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_may_purge_by_default() {
        for ok in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(purge_allowed(ok.parse().ok()), "{ok}");
        }
        for no in ["10.0.0.1", "203.0.113.7", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert!(!purge_allowed(no.parse().ok()), "{no}");
        }
        assert!(!purge_allowed(None), "unix socket peers have no IP");
    }
}
