//! Cache keys: the site id (length-prefixed) and the request URL (host +
//! path + query), so two sites never share an entry.

use super::SiteCache;
use pingora::cache::CacheKey;
use pingora::cache::key::HashBinary;
use pingora::prelude::*;
use pingora::proxy::Session;

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
    // `primary_key`'s prefix, without `fmt` (on every cacheable request).
    let len = u64::try_from(site.id.len()).unwrap_or(u64::MAX);
    primary.push_str(crate::decimal::Decimal::new(len).as_str());
    primary.push(':');
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
    let mut key = CacheKey::new(primary, "");
    key.set_primary_bin_override(primary_hash(key.primary_key()));
    Ok(key)
}

/// The hash pingora-cache gives a primary key (BLAKE2b with a 16-byte
/// digest, `CacheKey::primary_bin`), from `blake2b_simd`, which uses the
/// CPU's vector instructions: the `blake2` crate's portable code took
/// about 1,900 instructions for one 128-byte block, on every cacheable
/// request. Same value, so stored entries and Redis keys stay valid.
fn primary_hash(primary: &[u8]) -> HashBinary {
    let hash = blake2b_simd::Params::new().hash_length(16).hash(primary);
    let mut out = HashBinary::default();
    out.copy_from_slice(hash.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_hash_is_pingoras() {
        use pingora::cache::key::CacheHashKey;
        let long = "x".repeat(300);
        for primary in ["", "10:alice/blogblog.test/a?b=c", long.as_str()] {
            let ours = primary_hash(primary.as_bytes());
            assert_eq!(ours, pingora::cache::key::hash_key(primary), "{primary}");
            assert_eq!(ours, CacheKey::new(primary, "").primary_bin(), "{primary}");
        }
    }

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
