//! Requests Pingora's parser accepted that no origin server should see
//! (RFC 9112 sections 3.2 and 3.2.2; what nginx refuses too).

use pingora::http::RequestHeader;

/// Why `req` must be refused with a 400, if it must.
pub(crate) fn malformed(req: &RequestHeader) -> Option<&'static str> {
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
        return Some("The request target must be a path starting with '/'.");
    }
    if req.version == http::Version::HTTP_11 {
        let mut hosts = req.headers.get_all(http::header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) if !absolute => {
                return Some("An HTTP/1.1 request must carry a Host header.");
            }
            (Some(_), Some(_)) => return Some("The request carries more than one Host header."),
            (Some(h), None) if h.as_bytes().iter().all(|b| b.is_ascii_whitespace()) => {
                return Some("The request's Host header is empty.");
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
            Some("The request target must be a path starting with '/'.")
        );
        assert_eq!(
            malformed(&req("GET", b"x/y", &["a.test"])),
            Some("The request target must be a path starting with '/'.")
        );
        assert_eq!(
            malformed(&req("GET", b"://x", &["a.test"])),
            Some("The request target must be a path starting with '/'.")
        );
    }

    #[test]
    fn host_fields() {
        assert_eq!(
            malformed(&req("GET", b"/", &[])),
            Some("An HTTP/1.1 request must carry a Host header.")
        );
        assert_eq!(
            malformed(&req("GET", b"/", &["a.test", "b.test"])),
            Some("The request carries more than one Host header.")
        );
        assert_eq!(
            malformed(&req("GET", b"/", &[" "])),
            Some("The request's Host header is empty.")
        );
        let mut old = req("GET", b"/", &[]);
        old.set_version(http::Version::HTTP_10);
        assert_eq!(malformed(&old), None, "HTTP/1.0 needs no Host");
    }
}
