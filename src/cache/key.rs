//! Cache keys: the site id (length-prefixed) and the request URL (host +
//! path + query), so two sites never share an entry.

use super::SiteCache;
use pingora::cache::CacheKey;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::fmt::Write as _;

/// The cache key's primary part: `<len>:<site id><url>`.
pub(crate) fn primary_key(site: &str, https: bool, url: &str) -> String {
    format!(
        "{}:{site}{}{url}",
        site.len(),
        if https { HTTPS } else { "" }
    )
}

/// Marks the URL of a response to an HTTPS request: `~` never starts a
/// normalized host, so the two schemes never share an entry, while both are
/// indexed (and purged) under the same URL.
const HTTPS: &str = "~";

/// Split a primary key back into (site id, url), whatever the scheme.
pub(crate) fn split_primary(p: &[u8]) -> Option<(&str, &str)> {
    let p = std::str::from_utf8(p).ok()?;
    let (len, rest) = p.split_once(':')?;
    let len: usize = len.parse().ok()?;
    if rest.len() < len || !rest.is_char_boundary(len) {
        return None;
    }
    let (site, url) = rest.split_at(len);
    Some((site, url.strip_prefix(HTTPS).unwrap_or(url)))
}

/// The URL a request is stored under: host + path + query.
pub(crate) fn site_url(host: Option<&str>, session: &Session) -> String {
    let req = session.req_header();
    let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{}{pq}", host.unwrap_or(""))
}

/// The key of a request to `site`.
pub(crate) fn build_key(
    session: &Session,
    site: Option<&SiteCache>,
    host: Option<&str>,
    https: bool,
) -> Result<CacheKey> {
    let Some(site) = site else {
        return Error::e_explain(ErrorType::InternalError, "no site for the cache key");
    };
    let req = session.req_header();
    let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let host = host.unwrap_or("");
    let mut primary = String::with_capacity(24 + site.id.len() + host.len() + pq.len());
    let _ = write!(primary, "{}:", site.id.len());
    primary.push_str(&site.id);
    if https {
        primary.push_str(HTTPS);
    }
    primary.push_str(host);
    primary.push_str(pq);
    debug_assert_eq!(
        primary,
        primary_key(&site.id, https, &format!("{host}{pq}"))
    );
    Ok(CacheKey::new(primary, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_keys_are_unambiguous() {
        let a = primary_key("a/b", false, "x.org/");
        let b = primary_key("a/bx", false, ".org/");
        assert_ne!(a, b);
        assert_eq!(split_primary(a.as_bytes()), Some(("a/b", "x.org/")));
        // The schemes differ in the key, not in the URL a purge matches.
        let s = primary_key("a/b", true, "x.org/");
        assert_ne!(a, s);
        assert_eq!(split_primary(s.as_bytes()), Some(("a/b", "x.org/")));
        assert_eq!(split_primary(b"junk"), None);
        assert_eq!(split_primary(b"99:short"), None);
    }
}
