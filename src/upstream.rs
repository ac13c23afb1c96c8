//! Upstream peers and what their failures mean to a client.

use crate::config::{Upstream, UpstreamTarget};
use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long an idle pooled connection to an upstream is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The peer for one request to `u`; `program` is where a supervised
/// program listens (see `supervisor::Lease`).
pub fn peer(u: &Upstream, program: Option<SocketAddr>) -> Result<Box<HttpPeer>> {
    let mut peer = match &u.target {
        UpstreamTarget::Tcp { addr, .. } => HttpPeer::new(*addr, false, String::new()),
        UpstreamTarget::Program(_) => {
            let addr = program.ok_or_else(|| {
                Error::explain(ErrorType::InternalError, "the program was not started")
            })?;
            HttpPeer::new(addr, false, String::new())
        }
        UpstreamTarget::Unix(path) => {
            let path = path.to_str().ok_or_else(|| {
                Error::explain(ErrorType::InternalError, "unix socket path is not UTF-8")
            })?;
            HttpPeer::new_uds(path, false, String::new())?
        }
    };
    peer.options.connection_timeout = Some(u.connect_timeout);
    peer.options.read_timeout = Some(u.read_timeout);
    peer.options.write_timeout = Some(u.write_timeout);
    peer.options.idle_timeout = Some(POOL_IDLE);
    Ok(Box::new(peer))
}

/// Make `peer` use a new connection: a retry after a pooled connection
/// failed must not pick another pooled one (an upstream that drops the
/// request would otherwise see it once per idle connection in the pool).
pub fn fresh_connection(peer: &mut HttpPeer) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    // The pool is keyed by a hash that includes the group key.
    peer.group_key = NEXT.fetch_add(1, Ordering::Relaxed);
}

/// Whether a request that failed on an upstream connection after it was
/// sent is tried again: once, on a fresh connection, when the failed
/// connection was a pooled one (the upstream may have closed it as we sent:
/// closed, reset, or a write that failed) and the request can be replayed
/// (idempotent method, body still held, nothing sent to the client yet).
/// As nginx: never more than one retry, never for POST/PATCH.
pub fn retry_decision(
    e: Box<Error>,
    peer: &HttpPeer,
    replayable: bool,
    attempts: u8,
    pooled: bool,
) -> Box<Error> {
    let mut e = e.more_context(format!("Peer: {peer}"));
    let transport = *e.esource() == ErrorSource::Upstream
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        );
    e.set_retry(replayable && attempts < 2 && pooled && transport);
    e
}

/// What a failed proxy attempt means: the status the client gets, a short
/// cause for logs and metrics, and the sentence shown on the error page.
pub struct Failure {
    pub status: u16,
    pub cause: &'static str,
    pub page: &'static str,
}

impl Failure {
    /// What the tenant reads in the sites log (None: not the upstream's fault).
    pub fn sites_log_message(&self) -> Option<&'static str> {
        Some(match self.cause {
            "refused" => "Connection to upstream refused",
            "connect_timeout" => "Connection to upstream timed out",
            "timeout" => "Upstream did not answer in time",
            "connect_error" => "Connection to upstream failed",
            "bad_response" => "Upstream sent an invalid or incomplete response",
            _ => return None,
        })
    }
}

pub fn classify(e: &Error) -> Failure {
    use ErrorType::*;
    let upstream = matches!(e.esource(), ErrorSource::Upstream);
    match e.etype() {
        HTTPStatus(code) => Failure {
            status: *code,
            cause: "status",
            page: "The request could not be served.",
        },
        ConnectRefused => Failure {
            status: 502,
            cause: "refused",
            page: "The site's application refused the connection.",
        },
        ConnectTimedout => Failure {
            status: 504,
            cause: "connect_timeout",
            page: "The site's application did not accept the connection in time.",
        },
        ReadTimedout | WriteTimedout if upstream => Failure {
            status: 504,
            cause: "timeout",
            page: "The site's application did not answer in time.",
        },
        ConnectNoRoute | ConnectError | BindError | SocketError | ConnectProxyFailure => Failure {
            status: 502,
            cause: "connect_error",
            page: "The site's application cannot be reached.",
        },
        _ if upstream => Failure {
            status: 502,
            cause: "bad_response",
            page: "The site's application sent an invalid or incomplete response.",
        },
        ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout
            if matches!(e.esource(), ErrorSource::Downstream) =>
        {
            Failure {
                status: 0,
                cause: "client",
                page: "",
            }
        }
        _ if matches!(e.esource(), ErrorSource::Downstream) => Failure {
            status: 400,
            cause: "bad_request",
            page: "The request is malformed.",
        },
        _ => Failure {
            status: 500,
            cause: "internal",
            page: "edgeward failed to process the request.",
        },
    }
}
