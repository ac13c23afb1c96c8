//! Limits on what a client may hold of edgeward: how long a request head,
//! a pause in a body or an idle keep-alive connection may take, how large a
//! head or a body may be, how many connections may be open at once
//! (`limits:` in the configuration, a site's `limits.max_body_size`).
//!
//! The head limits are enforced by Pingora's HTTP/1 reader (patched, see
//! `vendor/README.md`) with the values [`Limits::start_session`] sets on
//! each session; what it refuses is answered by [`refused`]; the body size
//! is checked here ([`BodyCount`]); connections are counted by
//! [`connections::Limited`], around the proxy.

pub(crate) mod config;
pub(crate) mod connections;
pub(crate) mod refused;

use crate::pages::Page;
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;
use std::time::Duration;

pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_MAX_HEADER_SIZE: usize = 32 * 1024;
pub(crate) const DEFAULT_MAX_BODY_SIZE: u64 = 64 * 1024 * 1024;
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// The global `limits:`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The whole request head, from its first byte (HTTP/1).
    pub(crate) header_timeout: Duration,
    /// The longest pause between two reads of a request body (HTTP/1).
    pub(crate) body_timeout: Duration,
    /// An idle keep-alive connection is closed after this (whole seconds).
    pub(crate) keepalive_timeout: Duration,
    /// Request line and header fields (HTTP/1).
    pub(crate) max_header_size: usize,
    /// Request body; 0 = no limit. A site may set its own.
    pub(crate) max_body_size: u64,
    /// Client connections open at once (plain and TLS together).
    pub(crate) max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Limits {
    /// Set the limits on a downstream session before its request head is
    /// read (each request of a keep-alive connection gets the values of the
    /// configuration live at that moment).
    pub(crate) fn start_session(&self, session: &mut ServerSession) {
        session.set_header_timeout(Some(self.header_timeout));
        session.set_max_header_size(self.max_header_size);
        // Between two reads of the body (Pingora's read timeout applies to
        // body reads; the head has its own deadline).
        session.set_read_timeout(Some(self.body_timeout));
        // The wait for the next request's first byte. None: the connection
        // is not to be reused (e.g. shutting down): keep it so.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(keepalive_seconds(self.keepalive_timeout)));
        }
    }
}

/// Pingora counts keep-alive in whole seconds (and 0 means forever).
fn keepalive_seconds(d: Duration) -> u64 {
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    whole.max(1)
}

/// The request body counted against its limit.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BodyCount {
    /// 0: no limit.
    limit: u64,
    read: u64,
}

impl BodyCount {
    /// Check the announced length against `limit`: the 413 page when it is
    /// larger, else the count for the body as it arrives.
    pub(crate) fn start(req: &RequestHeader, limit: u64) -> Result<BodyCount, Page> {
        let count = BodyCount { limit, read: 0 };
        let announced = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match announced {
            Some(n) if count.over(n) => Err(too_large()),
            _ => Ok(count),
        }
    }

    /// Count `n` more bytes: false once the body is over the limit.
    pub(crate) fn add(&mut self, n: usize) -> bool {
        self.read = self.read.saturating_add(n as u64);
        !self.over(self.read)
    }

    fn over(&self, n: u64) -> bool {
        self.limit > 0 && n > self.limit
    }
}

/// The page for a body over the limit.
pub(crate) fn too_large() -> Page {
    Page::new(413, "The request body is larger than this site accepts.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cl: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        if let Some(cl) = cl {
            r.insert_header("content-length", cl).unwrap();
        }
        r
    }

    #[test]
    fn body_over_the_limit() {
        assert_eq!(
            BodyCount::start(&req(Some("11")), 10).unwrap_err().status,
            413
        );
        let mut c = BodyCount::start(&req(Some("10")), 10).unwrap();
        assert!(c.add(6));
        assert!(c.add(4));
        assert!(!c.add(1));
        // Chunked (no length): counted as it comes.
        let mut c = BodyCount::start(&req(None), 10).unwrap();
        assert!(!c.add(11));
        // 0: no limit.
        let mut c = BodyCount::start(&req(Some("99999999999")), 0).unwrap();
        assert!(c.add(usize::MAX));
    }

    #[test]
    fn keepalive_in_whole_seconds() {
        assert_eq!(keepalive_seconds(Duration::from_millis(250)), 1);
        assert_eq!(keepalive_seconds(Duration::from_secs(60)), 60);
        assert_eq!(keepalive_seconds(Duration::from_millis(1500)), 2);
    }
}
