//! Cache keys: the site id (length-prefixed) and the request URL (host +
//! path + query), so two sites never share an entry.

use super::SiteCache;
use pingora::cache::CacheKey;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::fmt::Write as _;

/// The cache key's primary part: `<len>:<site id><url>`.
pub(crate) fn primary_key(site: &str, url: &str) -> String {
    format!("{}:{site}{url}", site.len())
}

/// Split a primary key back into (site id, url).
pub(crate) fn split_primary(p: &[u8]) -> Option<(&str, &str)> {
    let p = std::str::from_utf8(p).ok()?;
    let (len, rest) = p.split_once(':')?;
    let len: usize = len.parse().ok()?;
    if rest.len() < len || !rest.is_char_boundary(len) {
        return None;
    }
    Some(rest.split_at(len))
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
    primary.push_str(host);
    primary.push_str(pq);
    debug_assert_eq!(primary, primary_key(&site.id, &format!("{host}{pq}")));
    Ok(CacheKey::new(primary, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_keys_are_unambiguous() {
        let a = primary_key("a/b", "x.org/");
        let b = primary_key("a/bx", ".org/");
        assert_ne!(a, b);
        assert_eq!(split_primary(a.as_bytes()), Some(("a/b", "x.org/")));
        assert_eq!(split_primary(b"junk"), None);
        assert_eq!(split_primary(b"99:short"), None);
    }
}
