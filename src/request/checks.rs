//! Requests Pingora's parser accepted that no origin server should see
//! (RFC 9112 sections 3.2 and 3.2.2; what nginx refuses too), and framing
//! that is not one unambiguous length (RFC 9112 section 6; issue #15): the
//! parser (vendor/pingora-core) refuses what it cannot frame at all, these
//! checks what it would frame one way and another parser another way.

use pingora::http::RequestHeader;

/// Why a request is refused (400, or 501 for a transfer coding) before
/// routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Content-Length beside Transfer-Encoding (Pingora dropped the first).
    LengthAndCoding,
    /// Transfer-Encoding other than one field `chunked`, with no coding
    /// but `chunked` (`chunked, chunked`, two fields, empty elements).
    CodingList,
    /// A transfer coding other than `chunked` (501).
    UnknownCoding,
    /// More than one Content-Length field, or a list in one.
    LengthList,
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
            Malformed::LengthAndCoding => "length_and_coding",
            Malformed::CodingList => "coding_list",
            Malformed::UnknownCoding => "unknown_coding",
            Malformed::LengthList => "length_list",
            Malformed::Target => "target",
            Malformed::NoHost => "no_host",
            Malformed::TwoHosts => "two_hosts",
            Malformed::EmptyHost => "empty_host",
        }
    }

    /// The sentence on the 400 page.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Malformed::LengthAndCoding => {
                "The request carries both Content-Length and Transfer-Encoding."
            }
            Malformed::CodingList => "Transfer-Encoding must be exactly 'chunked'.",
            Malformed::UnknownCoding => "The request's transfer coding is not supported.",
            Malformed::LengthList => "The request carries more than one Content-Length.",
            Malformed::Target => "The request target must be a path starting with '/'.",
            Malformed::NoHost => "An HTTP/1.1 request must carry a Host header.",
            Malformed::TwoHosts => "The request carries more than one Host header.",
            Malformed::EmptyHost => "The request's Host header is empty.",
        }
    }
}

impl Malformed {
    /// The status of the answer.
    pub(crate) fn status(self) -> u16 {
        match self {
            Malformed::UnknownCoding => 501,
            _ => 400,
        }
    }
}

/// Whether the framing of `req` is other than one unambiguous length:
/// `length_and_coding` says whether the parser saw (and dropped) a
/// Content-Length beside a Transfer-Encoding. Two map look-ups on the
/// common path, no allocation.
pub(crate) fn ambiguous_framing(req: &RequestHeader, length_and_coding: bool) -> Option<Malformed> {
    if length_and_coding {
        return Some(Malformed::LengthAndCoding);
    }
    let codings = req.headers.get_all(http::header::TRANSFER_ENCODING);
    let mut fields = codings.iter();
    if let Some(first) = fields.next()
        && (fields.next().is_some() || !first.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        let unknown = codings
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"chunked"));
        return Some(if unknown {
            Malformed::UnknownCoding
        } else {
            Malformed::CodingList
        });
    }
    let mut lengths = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next()
        && (lengths.next().is_some() || first.as_bytes().contains(&b','))
    {
        return Some(Malformed::LengthList);
    }
    None
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

    fn framed(fields: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        for (k, v) in fields {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    /// Header fields, whether the parser dropped a Content-Length beside a
    /// Transfer-Encoding, and the refusal expected.
    type FramingCase<'a> = (&'a [(&'a str, &'a str)], bool, Option<Malformed>);

    #[test]
    fn framing() {
        use Malformed::*;
        let cases: &[FramingCase] = &[
            (&[], false, None),
            (&[("content-length", "5")], false, None),
            (&[("transfer-encoding", "chunked")], false, None),
            (&[("transfer-encoding", "CHUNKED")], false, None),
            (
                &[("transfer-encoding", "chunked")],
                true,
                Some(LengthAndCoding),
            ),
            (
                &[("transfer-encoding", "chunked, chunked")],
                false,
                Some(CodingList),
            ),
            (
                &[("transfer-encoding", ",chunked")],
                false,
                Some(CodingList),
            ),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                false,
                Some(CodingList),
            ),
            (
                &[("transfer-encoding", "gzip, chunked")],
                false,
                Some(UnknownCoding),
            ),
            (
                &[("transfer-encoding", "identity, chunked")],
                false,
                Some(UnknownCoding),
            ),
            (
                &[("transfer-encoding", "x"), ("transfer-encoding", "chunked")],
                false,
                Some(UnknownCoding),
            ),
            (&[("content-length", "5, 5")], false, Some(LengthList)),
            (
                &[("content-length", "5"), ("content-length", "5")],
                false,
                Some(LengthList),
            ),
        ];
        for (fields, both, want) in cases {
            assert_eq!(
                ambiguous_framing(&framed(fields), *both),
                *want,
                "{fields:?}"
            );
        }
        assert_eq!((UnknownCoding.status(), CodingList.status()), (501, 400));
        assert_eq!(LengthAndCoding.as_str(), "length_and_coding");
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
