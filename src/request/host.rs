//! The host a request is for, normalized for routing.

use pingora::http::RequestHeader;

/// The host a request is for: `:authority` / absolute-form authority, else
/// `Host`.
pub(crate) fn request_host(req: &RequestHeader) -> Option<String> {
    if let Some(a) = req.uri.authority() {
        return normalize_host(a.as_str());
    }
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(normalize_host)
}

/// Normalize a Host header / :authority value for routing: lower case, port
/// and trailing dot removed. Returns None for an empty or malformed value.
pub(crate) fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: [::1]:8080
        let end = rest.find(']')?;
        &raw[..end + 2]
    } else {
        match raw.rfind(':') {
            Some(i) if raw[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || host.len() > 253
        || !host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        })
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_normalization() {
        assert_eq!(
            normalize_host("Blog.Example.ORG:8080").as_deref(),
            Some("blog.example.org")
        );
        assert_eq!(
            normalize_host("example.org.").as_deref(),
            Some("example.org")
        );
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host("evil.org:80x"), None);
    }

    #[test]
    fn authority_wins_over_host() {
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.set_uri("http://A.test:81/x".parse().unwrap());
        req.insert_header("host", "b.test").unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("a.test"));
        let mut req = RequestHeader::build("GET", b"/x", None).unwrap();
        req.insert_header("host", "B.test.").unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("b.test"));
    }
}
