//! A site's upstream: its `upstream:` section (validated and built here),
//! the peer of each request, retries, and what a failure means to a client.

use crate::config::Section;
use crate::config::file::UpstreamFile;
use crate::config::units::ConfDuration;
use crate::supervisor::{self, ProgramSpec};
use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a site's requests go, and the time allowed for each step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upstream {
    pub(crate) target: UpstreamTarget,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
}

/// Where a site's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpstreamTarget {
    /// `host:port`, resolved when the configuration was loaded.
    Tcp { addr: SocketAddr, authority: String },
    /// `unix:/path/to/socket`.
    Unix(PathBuf),
    /// A program edgeward starts on demand (`upstream.command`).
    Program(Arc<ProgramSpec>),
}

impl std::fmt::Display for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamTarget::Tcp { authority, .. } => f.write_str(authority),
            UpstreamTarget::Unix(p) => write!(f, "unix:{}", p.display()),
            UpstreamTarget::Program(p) => write!(f, "program {:?}", p.command),
        }
    }
}

/// Why an `upstream.address` is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AddressError {
    #[error("{0:?}: a Unix socket path must be absolute")]
    RelativeSocket(String),
    #[error("{0:?} has no port; write host:port or unix:/path")]
    NoPort(String),
    #[error("{0:?} is not host:port or unix:/path")]
    Malformed(String),
    #[error("cannot resolve {host:?}: {why}")]
    Resolve { host: String, why: String },
    #[error("{0:?} resolves to no address")]
    NoAddress(String),
}

/// Validate a site's `upstream:` section and build its runtime part.
pub(crate) fn from_config(u: &UpstreamFile, sec: &mut Section<'_>) -> Option<Upstream> {
    if u.command.is_none() {
        for (key, set) in [
            ("working_dir", u.working_dir.is_some()),
            ("environment", u.environment.is_some()),
            ("idle_timeout", u.idle_timeout.is_some()),
            ("start_timeout", u.start_timeout.is_some()),
            ("user", u.user.is_some()),
            ("group", u.group.is_some()),
            ("max_open_files", u.max_open_files.is_some()),
        ] {
            if set {
                sec.error_key(
                    &[key],
                    format!("upstream.{key}: only valid together with upstream.command"),
                );
            }
        }
    }
    let target = match (&u.address, &u.command) {
        (Some(_), Some(_)) => {
            sec.error(&[], "upstream: give either address or command, not both");
            None
        }
        (None, None) => {
            sec.error(&[], "upstream: give an address (host:port or unix:/path)");
            None
        }
        (Some(a), None) => match parse_address(a) {
            Ok(t) => Some(t),
            Err(why) => {
                sec.error(&["address"], format!("upstream.address: {why}"));
                None
            }
        },
        (None, Some(cmd)) => {
            supervisor::program_from_config(u, cmd, sec).map(UpstreamTarget::Program)
        }
    };
    let mut timeout = |key: &str, v: Option<ConfDuration>, default: Duration| match v {
        Some(ConfDuration(d)) if d.is_zero() => {
            sec.error(&[key], format!("upstream.{key}: must be more than 0"));
            default
        }
        Some(ConfDuration(d)) => d,
        None => default,
    };
    let connect_timeout = timeout(
        "connect_timeout",
        u.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    );
    let read_timeout = timeout("read_timeout", u.read_timeout, DEFAULT_IO_TIMEOUT);
    let write_timeout = timeout("write_timeout", u.write_timeout, DEFAULT_IO_TIMEOUT);
    let target = target?;
    sec.done(|| Upstream {
        target,
        connect_timeout,
        read_timeout,
        write_timeout,
    })
}

/// `host:port`, `[v6]:port` or `unix:/absolute/path`. Host names are
/// resolved now, when the configuration is loaded.
fn parse_address(a: &str) -> Result<UpstreamTarget, AddressError> {
    if let Some(path) = a.strip_prefix("unix:") {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(AddressError::RelativeSocket(a.to_string()));
        }
        return Ok(UpstreamTarget::Unix(p.to_path_buf()));
    }
    if let Ok(addr) = a.parse::<SocketAddr>() {
        return Ok(UpstreamTarget::Tcp {
            addr,
            authority: a.to_string(),
        });
    }
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err(AddressError::NoPort(a.to_string()));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(AddressError::Malformed(a.to_string()));
    };
    if host.is_empty() {
        return Err(AddressError::Malformed(a.to_string()));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| AddressError::Resolve {
            host: host.to_string(),
            why: e.to_string(),
        })?
        .collect();
    // Prefer IPv4 like most resolvers' defaults for loopback names.
    let addr = addrs
        .iter()
        .find(|s| s.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| AddressError::NoAddress(host.to_string()))?;
    Ok(UpstreamTarget::Tcp {
        addr,
        authority: a.to_string(),
    })
}

/// How long an idle pooled connection to an upstream is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The peer for one request to `u`; `program` is where a supervised
/// program listens (see `supervisor::Lease`).
pub(crate) fn peer(u: &Upstream, program: Option<SocketAddr>) -> Result<Box<HttpPeer>> {
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
    // A response with Content-Length beside Transfer-Encoding, or a repeated
    // or listed Content-Length, is a 502 and its connection is dropped
    // (vendor/README.md; docs/framing.md).
    peer.options.strict_h1_response_framing = true;
    // Response header names are not kept in the upstream's case: written to
    // the client in title case (`Content-Type`, `X-Powered-By`), as most
    // servers spell them; each field then costs one header map, not two.
    peer.options.drop_h1_response_header_case = true;
    // The parsed response header goes to the proxy without a copy kept in
    // the upstream session (which keeps status, version and the keep-alive
    // fields only): nothing reads the session's copy.
    peer.options.hand_off_h1_response_header = true;
    Ok(Box::new(peer))
}

/// An upstream response edgeward must not pass on: a 101 (Switching
/// Protocols) to a request that did not ask for an upgrade (edgeward
/// removed an `Upgrade: h2c`, or there was none). Passed on, it would turn
/// the client connection into a tunnel to the upstream, past every check
/// (h2c smuggling). The error is a 502 (`bad_response`) and the upstream
/// connection is dropped.
pub(crate) fn check_response(status: u16, upgrade_requested: bool) -> Result<()> {
    if status == 101 && !upgrade_requested {
        let mut e = Error::explain(
            ErrorType::InvalidHTTPHeader,
            "101 Switching Protocols to a request without an upgrade",
        );
        e.as_up();
        return Err(e);
    }
    Ok(())
}

/// Make `peer` use a new connection: a retry after a pooled connection
/// failed must not pick another pooled one (an upstream that drops the
/// request would otherwise see it once per idle connection in the pool).
pub(crate) fn fresh_connection(peer: &mut HttpPeer) {
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
pub(crate) fn retry_decision(
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

/// Why a proxy attempt failed: a metric label and a log word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The error carried an HTTP status (e.g. a body phase stop).
    Status,
    Refused,
    ConnectTimeout,
    Timeout,
    ConnectError,
    BadResponse,
    /// The client went away.
    Client,
    /// The client paused longer than `limits.body_timeout` in its body.
    ClientTimeout,
    BadRequest,
    Internal,
}

impl Cause {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cause::Status => "status",
            Cause::Refused => "refused",
            Cause::ConnectTimeout => "connect_timeout",
            Cause::Timeout => "timeout",
            Cause::ConnectError => "connect_error",
            Cause::BadResponse => "bad_response",
            Cause::Client => "client",
            Cause::ClientTimeout => "client_timeout",
            Cause::BadRequest => "bad_request",
            Cause::Internal => "internal",
        }
    }

    /// What the tenant reads in the sites log (None: not the upstream's fault).
    pub(crate) fn sites_log_message(self) -> Option<&'static str> {
        Some(match self {
            Cause::Refused => "Connection to upstream refused",
            Cause::ConnectTimeout => "Connection to upstream timed out",
            Cause::Timeout => "Upstream did not answer in time",
            Cause::ConnectError => "Connection to upstream failed",
            Cause::BadResponse => "Upstream sent an invalid or incomplete response",
            Cause::Status
            | Cause::Client
            | Cause::ClientTimeout
            | Cause::BadRequest
            | Cause::Internal => return None,
        })
    }
}

/// What a failed proxy attempt means: the status the client gets, its
/// cause, and the sentence shown on the error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) status: u16,
    pub(crate) cause: Cause,
    pub(crate) page: &'static str,
}

pub(crate) fn classify(e: &Error) -> Failure {
    use ErrorType::*;
    let upstream = matches!(e.esource(), ErrorSource::Upstream);
    let (status, cause, page) = match e.etype() {
        HTTPStatus(code) => (*code, Cause::Status, "The request could not be served."),
        ConnectRefused => (
            502,
            Cause::Refused,
            "The site's application refused the connection.",
        ),
        ConnectTimedout => (
            504,
            Cause::ConnectTimeout,
            "The site's application did not accept the connection in time.",
        ),
        ReadTimedout | WriteTimedout if upstream => (
            504,
            Cause::Timeout,
            "The site's application did not answer in time.",
        ),
        ConnectNoRoute | ConnectError | BindError | SocketError | ConnectProxyFailure => (
            502,
            Cause::ConnectError,
            "The site's application cannot be reached.",
        ),
        _ if upstream => (
            502,
            Cause::BadResponse,
            "The site's application sent an invalid or incomplete response.",
        ),
        ReadTimedout if matches!(e.esource(), ErrorSource::Downstream) => (
            408,
            Cause::ClientTimeout,
            "The request body did not arrive in time.",
        ),
        // The client went away, or reset its HTTP/2 stream or connection
        // (h2 errors end the stream: no page can be sent on it).
        ReadError | WriteError | ConnectionClosed | WriteTimedout | H2Error
            if matches!(e.esource(), ErrorSource::Downstream) =>
        {
            (0, Cause::Client, "")
        }
        _ if matches!(e.esource(), ErrorSource::Downstream) => {
            (400, Cause::BadRequest, "The request is malformed.")
        }
        _ => (
            500,
            Cause::Internal,
            "edgeward failed to process the request.",
        ),
    };
    Failure {
        status,
        cause,
        page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unasked_switch_of_protocols_is_a_bad_response() {
        let e = check_response(101, false).unwrap_err();
        assert_eq!(classify(&e).status, 502);
        assert!(check_response(101, true).is_ok() && check_response(200, false).is_ok());
    }

    #[test]
    fn failures_are_classified() {
        let refused = Error::new(ErrorType::ConnectRefused);
        let f = classify(&refused);
        assert_eq!((f.status, f.cause.as_str()), (502, "refused"));
        assert_eq!(
            f.cause.sites_log_message(),
            Some("Connection to upstream refused")
        );
        let mut timeout = Error::new(ErrorType::ReadTimedout);
        timeout.as_up();
        let f = classify(&timeout);
        assert_eq!((f.status, f.cause), (504, Cause::Timeout));
        let mut gone = Error::new(ErrorType::ConnectionClosed);
        gone.as_down();
        let f = classify(&gone);
        assert_eq!((f.status, f.cause.sites_log_message()), (0, None));
        // An HTTP/2 client that reset its stream gets no 400 page.
        let mut reset = Error::new(ErrorType::H2Error);
        reset.as_down();
        assert_eq!(classify(&reset).cause, Cause::Client);
        let mut bad = Error::new(ErrorType::InvalidHTTPHeader);
        bad.as_down();
        assert_eq!(classify(&bad).status, 400);
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("unix:relative.sock"),
            Err(AddressError::RelativeSocket("unix:relative.sock".into()))
        );
        assert_eq!(
            parse_address("example.org").unwrap_err().to_string(),
            "\"example.org\" has no port; write host:port or unix:/path"
        );
        assert!(matches!(
            parse_address("127.0.0.1:8080"),
            Ok(UpstreamTarget::Tcp { .. })
        ));
        assert_eq!(
            parse_address("localhost:x").unwrap_err().to_string(),
            "\"localhost:x\" is not host:port or unix:/path"
        );
    }
}
