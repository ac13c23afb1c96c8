//! Requests refused before any phase ran: Pingora's HTTP/1 reader could not
//! parse the head (400), it came too slowly (408), its request line or its
//! header fields were too large (414, 431), or the method is not proxied
//! (CONNECT, 405). Framing refusals raised inside the reader come here as
//! well (their `HTTPStatus`). Each one is answered with edgeward's own page
//! (with a new request id), counted, and written to the global access log.

use crate::logs::{AccessLog, Record};
use crate::pages::Page;
use crate::{metrics, request_id};
use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorType};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// Why a request was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The parser refused the head (400).
    Malformed,
    /// The head was not complete within `limits.header_timeout` (408).
    HeaderTimeout,
    /// The request line alone is over `limits.max_header_size` (414).
    LineTooLong,
    /// The head is over `limits.max_header_size` (431).
    HeaderTooLarge,
    /// A method edgeward does not proxy, CONNECT (405).
    Method,
    /// A transfer coding edgeward does not implement (501).
    Coding,
    /// Any other status the reader gave.
    Other(u16),
}

impl Reason {
    /// The reason of a reader's error; None when the connection broke and
    /// there is no one to answer (closed, reset, idle timeout).
    pub(crate) fn of(e: &Error) -> Option<Reason> {
        match e.etype() {
            ErrorType::InvalidHTTPHeader => Some(Reason::Malformed),
            ErrorType::HTTPStatus(status) => Some(match status {
                400 => Reason::Malformed,
                405 => Reason::Method,
                408 => Reason::HeaderTimeout,
                414 => Reason::LineTooLong,
                431 => Reason::HeaderTooLarge,
                501 => Reason::Coding,
                s => Reason::Other(*s),
            }),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::HeaderTimeout => "header_timeout",
            Reason::LineTooLong => "request_line_too_long",
            Reason::HeaderTooLarge => "header_too_large",
            Reason::Method => "method",
            Reason::Coding => "transfer_coding",
            Reason::Other(_) => "other",
        }
    }

    pub(crate) fn page(self) -> Page {
        match self {
            Reason::Malformed => Page::new(400, "The request is not valid HTTP."),
            Reason::HeaderTimeout => Page::new(408, "The request header did not arrive in time."),
            Reason::LineTooLong => Page::new(414, "The request line is too long."),
            Reason::HeaderTooLarge => Page::new(431, "The request header fields are too large."),
            Reason::Method => Page::new(405, "This method is not supported."),
            Reason::Coding => Page::new(
                501,
                "The request uses a transfer coding that is not supported.",
            ),
            Reason::Other(status) if (400..600).contains(&status) => {
                Page::new(status, "The request was refused.")
            }
            Reason::Other(_) => Page::new(400, "The request was refused."),
        }
    }
}

/// Answer a request the reader refused, count it and log it in
/// `access_log` (the global one, when configured).
pub(crate) async fn answer(session: &mut ServerSession, e: &Error, access_log: Option<&AccessLog>) {
    let started = SystemTime::now();
    let Some(reason) = Reason::of(e) else {
        log::debug!("request head not read: {e}");
        return;
    };
    let page = reason.page();
    let id = request_id::generate();
    log::debug!(
        "request refused before routing ({}): {e} [request {id}]",
        reason.as_str()
    );
    metrics::REFUSED_REQUESTS
        .with_label_values(&[reason.as_str()])
        .inc();
    let status = match page.send_refusal(session, &id).await {
        Ok(()) => page.status,
        Err(err) => {
            log::debug!("could not send the {} page: {err}", page.status);
            0
        }
    };
    metrics::UNMATCHED.count(status);
    let Some(log) = access_log else {
        return;
    };
    // The head was parsed when the method is what is refused (CONNECT);
    // otherwise only its first line is known.
    let parsed = (reason == Reason::Method).then(|| session.req_header());
    let (method, target, protocol) = match parsed {
        Some(req) => (
            req.method.as_str().as_bytes(),
            req.raw_path(),
            match req.version {
                http::Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
        ),
        None => split_request_line(session.refused_request_line().unwrap_or_default()),
    };
    let peer: Option<IpAddr> = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    log.log(&Record {
        method,
        raw_path: target,
        request_protocol: protocol,
        request_headers: parsed.map(|r| &r.headers),
        response_headers: None,
        status,
        peer_ip: peer,
        client_ip: peer,
        host: None,
        request_id: &id,
        site: "-",
        scheme: if session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .is_some()
        {
            "https"
        } else {
            "http"
        },
        ssl_version: None,
        started,
        completed: SystemTime::now(),
        duration: Duration::ZERO,
        body_bytes: session.body_bytes_sent() as u64,
    });
}

/// `METHOD TARGET VERSION` as far as it goes (bytes as received; the log
/// escapes them). The version is named only when it is one edgeward speaks.
pub(crate) fn split_request_line(line: &[u8]) -> (&[u8], &[u8], &'static str) {
    let mut parts = line.splitn(3, |b| *b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let protocol = match parts.next().map(<[u8]>::trim_ascii) {
        Some(b"HTTP/1.1") => "HTTP/1.1",
        Some(b"HTTP/1.0") => "HTTP/1.0",
        _ => "-",
    };
    (method, target, protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        let e = Error::new(ErrorType::InvalidHTTPHeader);
        assert_eq!(Reason::of(&e), Some(Reason::Malformed));
        for (s, r) in [
            (408, Reason::HeaderTimeout),
            (414, Reason::LineTooLong),
            (431, Reason::HeaderTooLarge),
            (405, Reason::Method),
            (501, Reason::Coding),
        ] {
            let reason = Reason::of(&Error::new(ErrorType::HTTPStatus(s))).unwrap();
            assert_eq!(reason, r);
            assert_eq!(reason.page().status, s);
        }
        assert_eq!(Reason::of(&Error::new(ErrorType::ReadError)), None);
        assert_eq!(Reason::Other(200).page().status, 400);
    }

    #[test]
    fn request_lines() {
        assert_eq!(
            split_request_line(b"GET /a b HTTP/1.1"),
            (&b"GET"[..], &b"/a"[..], "-")
        );
        assert_eq!(
            split_request_line(b"GET /a HTTP/1.1"),
            (&b"GET"[..], &b"/a"[..], "HTTP/1.1")
        );
        assert_eq!(split_request_line(b""), (&b""[..], &b""[..], "-"));
    }
}
