//! PURGE: answered here, from `cache.purge_allow` only (socket address,
//! never a header), and never proxied. Exact URL, prefix
//! (`X-Cache-Purge-Match: startswith`) or `*` wildcard.

use super::key::site_url;
use super::store::{STORE, store};
use super::{CacheSettings, SiteCache};
use crate::pages;
use log::warn;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Which stored URLs a PURGE (or an invalidation) removes. URLs are
/// `host` + path and query, e.g. `blog.example.org/a?b=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlMatch {
    Exact(String),
    Prefix(String),
    /// `*` matches any run of characters.
    Wildcard(String),
}

impl UrlMatch {
    pub(crate) fn matches(&self, url: &str) -> bool {
        match self {
            UrlMatch::Exact(u) => u == url,
            UrlMatch::Prefix(p) => url.starts_with(p.as_str()),
            UrlMatch::Wildcard(p) => glob(p.as_bytes(), url.as_bytes()),
        }
    }

    /// The part every matching URL starts with.
    pub(crate) fn literal_prefix(&self) -> &str {
        match self {
            UrlMatch::Exact(u) | UrlMatch::Prefix(u) => u,
            UrlMatch::Wildcard(p) => &p[..p.find('*').unwrap_or(p.len())],
        }
    }
}

/// `*`-only glob, iterative (no backtracking blow-up).
fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while i < s.len() {
        if p < pat.len() && pat[p] != b'*' && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// Whether this request is a PURGE (which edgeward must answer itself).
pub(crate) fn is_purge(session: &Session) -> bool {
    session.req_header().method.as_str() == "PURGE"
}

/// Answer a PURGE; returns the status sent.
pub(crate) async fn purge(
    session: &mut Session,
    settings: &CacheSettings,
    site: &SiteCache,
    host: Option<&str>,
    request_id: &str,
) -> Result<u16> {
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    if !settings.purge_allowed(ip) {
        pages::respond(session, 403, "This client may not purge.", request_id).await?;
        return Ok(403);
    }
    let url = site_url(host, session);
    let mode = session
        .req_header()
        .headers
        .get("x-cache-purge-match")
        .map(|v| v.as_bytes().to_ascii_lowercase());
    let m = match mode.as_deref() {
        None | Some(b"exact") => UrlMatch::Exact(url),
        Some(b"wildcard") => UrlMatch::Wildcard(url),
        Some(b"startswith") => UrlMatch::Prefix(url),
        Some(_) => {
            pages::respond_text(
                session,
                400,
                "X-Cache-Purge-Match: expected wildcard or startswith\n",
                request_id,
            )
            .await?;
            return Ok(400);
        }
    };
    // A site without the cache, and no storage yet: nothing can match.
    let purged = if !site.enabled && STORE.get().is_none() {
        Ok(0)
    } else {
        store(settings).purge_urls(&site.id, &m).await
    };
    match purged {
        Ok(0) => {
            let text = "0 entries purged: nothing matched\n";
            pages::respond_text(session, 404, text, request_id).await?;
            Ok(404)
        }
        Ok(n) => {
            let s = if n == 1 { "entry" } else { "entries" };
            pages::respond_text(session, 200, &format!("{n} {s} purged\n"), request_id).await?;
            Ok(200)
        }
        Err(e) => {
            warn!("site {}: purge failed: {e}", site.id);
            pages::respond(
                session,
                503,
                "The cache storage is not available; nothing was purged.",
                request_id,
            )
            .await?;
            Ok(503)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_matching() {
        let w = UrlMatch::Wildcard("blog.org/*.css".into());
        assert!(w.matches("blog.org/a/b.css"));
        assert!(!w.matches("blog.org/a/b.js"));
        assert_eq!(w.literal_prefix(), "blog.org/");
        assert!(UrlMatch::Wildcard("blog.org/*".into()).matches("blog.org/"));
        assert!(UrlMatch::Prefix("blog.org/foo".into()).matches("blog.org/foobar"));
        assert!(!UrlMatch::Exact("blog.org/foo".into()).matches("blog.org/foobar"));
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
    }
}
