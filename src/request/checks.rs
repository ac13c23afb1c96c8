//! Requests Pingora's parser accepted that no origin server should see
//! (RFC 9112 sections 3.2 and 3.2.2; what nginx refuses too).

use pingora::http::RequestHeader;

/// Why a request is refused with a 400 before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Not origin-form (`/path`), absolute-form, `*` for OPTIONS or CONNECT.
    Target,
    /// HTTP/1.1 without `Host` (and not absolute-form).
    NoHost,
    TwoHosts,
    EmptyHost,
}

impl Malformed {
    /// A word for logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Malformed::Target => "target",
            Malformed::NoHost => "no_host",
            Malformed::TwoHosts => "two_hosts",
            Malformed::EmptyHost => "empty_host",
        }
    }

    /// The sentence on the 400 page.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Malformed::Target => "The request target must be a path starting with '/'.",
            Malformed::NoHost => "An HTTP/1.1 request must carry a Host header.",
            Malformed::TwoHosts => "The request carries more than one Host header.",
            Malformed::EmptyHost => "The request's Host header is empty.",
        }
    }
}

/// Why `req` must be refused with a 400, if it must.
pub(crate) fn malformed(req: &RequestHeader) -> Option<Malformed> {
    let target = req.raw_path();
    let absolute = target.iter().position(|&b| b == b':').is_some_and(|i| {
        i > 0
            && target[..i]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            && target[i..].starts_with(b"://")
    });
    let origin = target.first() == Some(&b'/');
    let asterisk = target == b"*" && req.method == http::Method::OPTIONS;
    if !(origin || absolute || asterisk || req.method == http::Method::CONNECT) {
        return Some(Malformed::Target);
    }
    if req.version == http::Version::HTTP_11 {
        let mut hosts = req.headers.get_all(http::header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) if !absolute => {
                return Some(Malformed::NoHost);
            }
            (Some(_), Some(_)) => return Some(Malformed::TwoHosts),
            (Some(h), None) if h.as_bytes().iter().all(|b| b.is_ascii_whitespace()) => {
                return Some(Malformed::EmptyHost);
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &[u8], hosts: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build(method, target, None).unwrap();
        for h in hosts {
            r.append_header("host", *h).unwrap();
        }
        r
    }

    #[test]
    fn targets() {
        assert_eq!(malformed(&req("GET", b"/x", &["a.test"])), None);
        assert_eq!(
            malformed(&req("GET", b"http://a.test/x", &[])),
            None,
            "absolute form carries its host"
        );
        assert_eq!(malformed(&req("OPTIONS", b"*", &["a.test"])), None);
        assert_eq!(
            malformed(&req("GET", b"*", &["a.test"])),
            Some(Malformed::Target)
        );
        assert_eq!(
            malformed(&req("GET", b"x/y", &["a.test"])),
            Some(Malformed::Target)
        );
        assert_eq!(
            malformed(&req("GET", b"://x", &["a.test"])),
            Some(Malformed::Target)
        );
    }

    #[test]
    fn host_fields() {
        assert_eq!(malformed(&req("GET", b"/", &[])), Some(Malformed::NoHost));
        assert_eq!(
            malformed(&req("GET", b"/", &["a.test", "b.test"])),
            Some(Malformed::TwoHosts)
        );
        assert_eq!(
            malformed(&req("GET", b"/", &[" "])),
            Some(Malformed::EmptyHost)
        );
        let mut old = req("GET", b"/", &[]);
        old.set_version(http::Version::HTTP_10);
        assert_eq!(malformed(&old), None, "HTTP/1.0 needs no Host");
        assert_eq!(
            Malformed::NoHost.message(),
            "An HTTP/1.1 request must carry a Host header."
        );
        assert_eq!(Malformed::EmptyHost.as_str(), "empty_host");
    }
}
