//! The HTTP cache, on pingora-cache. `proxy.rs` calls the thin hooks below;
//! the decisions of RFC 9111 live in `policy`, the storages in `memory` and
//! `redis`, the validated settings in `settings`.
//!
//! - Keys: the site id (length-prefixed) and the request URL (host + path +
//!   query), so two sites never share an entry; `Vary` variants are
//!   separate entries under the same URL.
//! - PURGE is answered here, from `cache.purge_allow` only (socket address,
//!   never a header), and never reaches an upstream.
//! - Responses of a cache-enabled site carry `Cache-Status` (RFC 9211) and,
//!   when served from the cache, `Age`.

mod lru;
pub mod memory;
mod near;
pub mod policy;
pub mod redis;
pub mod settings;

/// A response body collected while it streams to the client, to be stored
/// at the end; given up (and freed) once it outgrows `max_object_size`, so
/// that larger responses stream through uncached.
pub(crate) struct MissBody {
    parts: Vec<bytes::Bytes>,
    len: usize,
    max: usize,
}

impl MissBody {
    pub(crate) fn new(max: usize) -> MissBody {
        MissBody {
            parts: Vec::new(),
            len: 0,
            max,
        }
    }

    /// Add a chunk; false (and nothing kept) once the body is too large.
    pub(crate) fn push(&mut self, data: bytes::Bytes) -> bool {
        self.len += data.len();
        if self.len > self.max {
            self.parts = Vec::new();
            return false;
        }
        if !data.is_empty() {
            self.parts.push(data);
        }
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn parts(&self) -> &[bytes::Bytes] {
        &self.parts
    }
}

pub use settings::{CacheSettings, SiteCache, StorageSettings};

use crate::config::{Config, Site, normalize_host};
use crate::{metrics, pages};
use async_trait::async_trait;
use bytes::Bytes;
use log::{info, warn};
use once_cell::sync::Lazy;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::{
    CacheKey, CacheMeta, CachePhase, ForcedFreshness, NoCacheReason, RespCacheable, Storage,
};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use policy::RequestDirectives;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// A storage the cache can use: pingora's `Storage`, plus purge by URL
/// through the storage's per-site index.
#[async_trait]
pub trait Store: Storage + Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    /// The entry of `key` (a cache key hash) when it can answer a plain
    /// request as it is, from this process's memory (see `serve_fresh_hit`); None
    /// sends the request through pingora-cache.
    fn fresh(&self, _key: &HashBinary, _now: SystemTime) -> Option<Fresh> {
        None
    }
    /// Remove every entry (all variants) of `site` whose URL matches; the
    /// number removed.
    async fn purge_urls(&'static self, site: &str, m: &UrlMatch) -> Result<usize, String>;
}

/// A stored response found by `Store::fresh`: its header as stored, its age
/// in seconds and its body.
pub struct Fresh {
    header: ResponseHeader,
    age: u64,
    body: Vec<Bytes>,
}

/// Which stored URLs a PURGE (or an invalidation) removes. URLs are
/// `host` + path and query, e.g. `blog.example.org/a?b=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlMatch {
    Exact(String),
    Prefix(String),
    /// `*` matches any run of characters.
    Wildcard(String),
}

impl UrlMatch {
    pub fn matches(&self, url: &str) -> bool {
        match self {
            UrlMatch::Exact(u) => u == url,
            UrlMatch::Prefix(p) => url.starts_with(p.as_str()),
            UrlMatch::Wildcard(p) => glob(p.as_bytes(), url.as_bytes()),
        }
    }

    /// The part every matching URL starts with.
    pub fn literal_prefix(&self) -> &str {
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

/// The cache key's primary part: `<len>:<site id><url>`.
pub fn primary_key(site: &str, url: &str) -> String {
    format!("{}:{site}{url}", site.len())
}

/// Split a primary key back into (site id, url).
pub fn split_primary(p: &[u8]) -> Option<(&str, &str)> {
    let p = std::str::from_utf8(p).ok()?;
    let (len, rest) = p.split_once(':')?;
    let len: usize = len.parse().ok()?;
    if rest.len() < len || !rest.is_char_boundary(len) {
        return None;
    }
    Some(rest.split_at(len))
}

// ------------------------------------------------------------ storage

static STORE: OnceLock<&'static dyn Store> = OnceLock::new();

/// Readers wait for the one request filling an entry (no stampede); a
/// writer that takes longer than this loses the lock.
static LOCK: Lazy<&'static CacheKeyLockImpl> =
    Lazy::new(|| Box::leak(CacheLock::new_boxed(Duration::from_secs(10))));

/// The process's storage, created from the first configuration that needs
/// it (a storage change takes effect at the next restart).
pub fn store(settings: &CacheSettings) -> &'static dyn Store {
    *STORE.get_or_init(|| {
        let store: &'static dyn Store = match &settings.storage {
            StorageSettings::Memory { max_size } => Box::leak(Box::new(memory::MemoryStore::new(
                *max_size,
                settings.max_object_size,
            ))),
            StorageSettings::Redis {
                url,
                key_prefix,
                timeout,
                local_size,
            } => {
                match redis::RedisStore::new(
                    url,
                    key_prefix,
                    *timeout,
                    settings.max_object_size,
                    *local_size,
                ) {
                    Ok(r) => Box::leak(Box::new(r)),
                    Err(e) => {
                        // load.rs validated the URL; should it still fail, cache
                        // in memory rather than not at all.
                        warn!("cache: redis storage unusable ({e}); caching in memory instead");
                        Box::leak(Box::new(memory::MemoryStore::new(
                            settings::DEFAULT_MAX_SIZE,
                            settings.max_object_size,
                        )))
                    }
                }
            }
        };
        info!("cache: {} storage", store.kind());
        store
    })
}

// ------------------------------------------------------- per request

/// The cache's part of a request's context.
#[derive(Debug, Default)]
pub struct CacheCtx {
    /// The cache was enabled for this request (site, method).
    enabled: bool,
    req: RequestDirectives,
    /// Why the response was not stored, for Cache-Status.
    not_stored: Option<&'static str>,
    /// A request directive made us go to the origin.
    forced: bool,
    /// The header fields of the origin's 304, to update the stored ones.
    revalidation: Option<http::HeaderMap>,
    /// The key `serve_fresh_hit` built, for `cache_key` when it fell through.
    key: Option<CacheKey>,
}

fn site_url(host: Option<&str>, session: &Session) -> String {
    let req = session.req_header();
    let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{}{pq}", host.unwrap_or(""))
}

/// The cache answers GET and HEAD, never an upgrade (WebSocket).
fn cache_applies(req: &pingora::http::RequestHeader) -> bool {
    matches!(req.method, http::Method::GET | http::Method::HEAD)
        && !req.headers.contains_key(http::header::UPGRADE)
}

/// `request_cache_filter`: enable the cache for GET/HEAD of a cache-enabled
/// site.
pub fn request_cache_filter(
    session: &mut Session,
    config: &Config,
    site: Option<&Site>,
    cc: &mut CacheCtx,
) {
    if !site.is_some_and(|s| s.cache.enabled) {
        return;
    }
    let req = session.req_header();
    if !cache_applies(req) {
        return;
    }
    cc.req = RequestDirectives::parse(req);
    cc.enabled = true;
    let store = store(&config.cache);
    let storage: &'static (dyn Storage + Sync) = store;
    session.cache.enable(storage, None, None, Some(*LOCK), None);
    session.cache.set_max_file_size_bytes(
        usize::try_from(config.cache.max_object_size).unwrap_or(usize::MAX),
    );
}

/// `cache_key_callback`: the key `serve_fresh_hit` already built, or a new one.
pub fn cache_key(
    session: &Session,
    site: Option<&Site>,
    host: Option<&str>,
    cc: &mut CacheCtx,
) -> Result<CacheKey> {
    match cc.key.take() {
        Some(key) => Ok(key),
        None => build_key(session, site, host),
    }
}

fn build_key(session: &Session, site: Option<&Site>, host: Option<&str>) -> Result<CacheKey> {
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

/// Request fields that may change what a stored response answers: a
/// request with any of them takes the full path (pingora-cache and the hooks
/// below).
const FULL_PATH_FIELDS: &[http::header::HeaderName] = &[
    http::header::CACHE_CONTROL,
    http::header::PRAGMA,
    http::header::RANGE,
    http::header::IF_RANGE,
    http::header::IF_NONE_MATCH,
    http::header::IF_MODIFIED_SINCE,
    http::header::IF_MATCH,
    http::header::IF_UNMODIFIED_SINCE,
    http::header::AUTHORIZATION,
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
];

/// The common case answered without pingora-cache's state machine: a GET
/// or HEAD with no request directive, precondition, range, credentials or
/// body, for a fresh stored response of a single variant held in this
/// process's memory (the memory storage, or Redis's near cache). The answer
/// is the one the full path gives: the stored header with `Age`,
/// `Accept-Ranges` (as Pingora's range filter), `Cache-Status: edgeward;
/// hit` and the request id, counted as a hit. Anything else (stale, `Vary`,
/// not in memory...) returns false and takes the full path, which reuses
/// the key built here.
pub async fn serve_fresh_hit(
    session: &mut Session,
    config: &Config,
    site: &Site,
    host: Option<&str>,
    request_id: &str,
    cc: &mut CacheCtx,
) -> Result<bool> {
    let req = session.req_header();
    if !site.cache.enabled
        || !cache_applies(req)
        || FULL_PATH_FIELDS.iter().any(|f| req.headers.contains_key(f))
    {
        return Ok(false);
    }
    let key = build_key(session, Some(site), host)?;
    let found = store(&config.cache).fresh(&key.combined_bin(), SystemTime::now());
    let Some(found) = found else {
        cc.key = Some(key);
        return Ok(false);
    };
    let mut header = Box::new(found.header);
    header.set_version(http::Version::HTTP_11);
    header.insert_header(http::header::AGE, found.age)?;
    if header.status == http::StatusCode::OK {
        header.insert_header(http::header::ACCEPT_RANGES, "bytes")?;
    }
    set_cache_status(&mut header, "edgeward; hit")?;
    header.insert_header(crate::request_id::HEADER, request_id)?;
    metrics::CACHE_REQUESTS
        .with_label_values(&[site.id.as_str(), "hit"])
        .inc();
    let header_only = session.req_header().method == http::Method::HEAD
        || found.body.iter().all(|b| b.is_empty());
    session.write_response_header(header, header_only).await?;
    if !header_only {
        let n = found.body.len();
        for (i, part) in found.body.into_iter().enumerate() {
            session.write_response_body(Some(part), i + 1 == n).await?;
        }
    }
    Ok(true)
}

/// `cache_hit_filter`: the request's own directives.
pub fn hit_filter(meta: &CacheMeta, is_fresh: bool, cc: &mut CacheCtx) -> Option<ForcedFreshness> {
    let decision = policy::hit_decision(meta, is_fresh, &cc.req, SystemTime::now());
    if cc.req.only_if_cached {
        let usable = match decision {
            None => is_fresh,
            Some(ForcedFreshness::ForceFresh) => true,
            _ => false,
        };
        if !usable {
            return Some(ForcedFreshness::ForceMiss);
        }
    }
    if matches!(decision, Some(ForcedFreshness::ForceExpired)) {
        cc.forced = true;
    }
    decision
}

/// `proxy_upstream_filter`: `only-if-cached` never goes to the origin; a
/// range request that missed goes to the origin as it is (with its `Range`)
/// and is not stored, rather than fetching the whole object (which may be
/// too large to store) for a few bytes.
pub async fn proxy_upstream_filter(
    session: &mut Session,
    cc: &mut CacheCtx,
    request_id: &str,
) -> Result<bool> {
    if cc.enabled
        && session.cache.enabled()
        && session
            .req_header()
            .headers
            .contains_key(http::header::RANGE)
    {
        session.cache.disable(NoCacheReason::Custom("range"));
        cc.not_stored = Some("range");
    }
    if cc.enabled && cc.req.only_if_cached {
        pages::respond(
            session,
            504,
            "The response is not in the cache (only-if-cached).",
            request_id,
        )
        .await?;
        return Ok(false);
    }
    Ok(true)
}

/// `upstream_response_filter`: keep a 304's fields for the stored entry.
pub fn upstream_response_filter(resp: &ResponseHeader, cc: &mut CacheCtx) {
    if cc.enabled && resp.status == http::StatusCode::NOT_MODIFIED {
        cc.revalidation = Some(resp.headers.clone());
    }
}

/// Fields a 304 does not update in the stored response (RFC 9111 3.2).
const NOT_UPDATED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "content-range",
    "connection",
    "keep-alive",
];

/// `response_cache_filter`.
pub fn response_cache_filter(
    session: &Session,
    resp: &ResponseHeader,
    site: Option<&Site>,
    cc: &mut CacheCtx,
) -> RespCacheable {
    let Some(site) = site else {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("no site"));
    };
    // After a 304, `resp` is the stored header with a few fields merged by
    // pingora; RFC 9111 3.2 wants every field of the 304 to replace the
    // stored one.
    let updated;
    let resp = match cc.revalidation.take() {
        Some(fields) => {
            let mut merged = resp.clone();
            for name in fields.keys() {
                if NOT_UPDATED.contains(&name.as_str()) {
                    continue;
                }
                merged.remove_header(name);
                for v in fields.get_all(name) {
                    let _ = merged.append_header(name.clone(), v.clone());
                }
            }
            if !fields.contains_key(http::header::AGE) {
                merged.remove_header(&http::header::AGE);
            }
            updated = merged;
            &updated
        }
        None => resp,
    };
    match policy::storable(session.req_header(), resp, &site.cache, SystemTime::now()) {
        Ok(meta) => {
            cc.not_stored = None;
            RespCacheable::Cacheable(meta)
        }
        Err(why) => {
            cc.not_stored = Some(why);
            RespCacheable::Uncacheable(NoCacheReason::Custom(why))
        }
    }
}

/// `cache_vary_filter`.
pub fn vary_filter(meta: &CacheMeta, req: &pingora::http::RequestHeader) -> Option<HashBinary> {
    policy::variance(meta, req)
}

/// `should_serve_stale`: stale-while-revalidate (no error) within the
/// response's window, stale-if-error for upstream failures.
pub fn should_serve_stale(session: &Session, cc: &CacheCtx, error: Option<&Error>) -> bool {
    match error {
        None => !cc.forced,
        // The origin answered with an error status: only if the response
        // said stale-if-error.
        Some(e) if matches!(e.etype(), ErrorType::HTTPStatus(_)) => session
            .cache
            .maybe_cache_meta()
            .is_some_and(|m| policy::stale_if_error_allows(m, SystemTime::now())),
        // Disconnected (refused, reset, timed out): within the window.
        Some(e) => e.esource() == &ErrorSource::Upstream,
    }
}

/// `response_filter`: Cache-Status, Age, invalidation after unsafe methods.
pub async fn response_filter(
    session: &mut Session,
    resp: &mut ResponseHeader,
    config: &Config,
    site: Option<&Site>,
    host: Option<&str>,
    cc: &CacheCtx,
) -> Result<()> {
    let Some(site) = site.filter(|s| s.cache.enabled) else {
        return Ok(());
    };
    let method = session.req_header().method.clone();
    if !cc.enabled {
        if !method.is_safe() && (200..400).contains(&resp.status.as_u16()) {
            invalidate(session, resp, config, site, host).await;
        }
        let detail = if method.is_safe() && method != http::Method::OPTIONS {
            "fwd=bypass"
        } else {
            "fwd=method"
        };
        set_cache_status(resp, &format!("edgeward; {detail}"))?;
        return Ok(());
    }
    let phase = session.cache.phase();
    let status = resp.status.as_u16();
    let (value, result) = match phase {
        CachePhase::Hit => ("edgeward; hit".to_string(), "hit"),
        CachePhase::StaleUpdating => (
            "edgeward; hit; detail=stale-while-revalidate".to_string(),
            "stale",
        ),
        CachePhase::Stale => ("edgeward; hit; detail=stale-if-error".to_string(), "stale"),
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => (
            format!(
                "edgeward; fwd={}; fwd-status=304",
                if cc.forced { "request" } else { "stale" }
            ),
            "revalidated",
        ),
        CachePhase::Expired => (
            format!(
                "edgeward; fwd={}; fwd-status={status}; stored",
                if cc.forced { "request" } else { "stale" }
            ),
            "expired",
        ),
        CachePhase::Miss => ("edgeward; fwd=miss; stored".to_string(), "miss"),
        CachePhase::Bypass => ("edgeward; fwd=bypass".to_string(), "bypass"),
        _ => {
            let detail = cc
                .not_stored
                .map(|d| format!("; detail={d}"))
                .unwrap_or_default();
            (
                format!(
                    "edgeward; fwd={}{detail}",
                    if cc.forced { "request" } else { "miss" }
                ),
                "uncacheable",
            )
        }
    };
    metrics::CACHE_REQUESTS
        .with_label_values(&[site.id.as_str(), result])
        .inc();
    set_cache_status(resp, &value)?;
    if matches!(
        phase,
        CachePhase::Hit
            | CachePhase::Stale
            | CachePhase::StaleUpdating
            | CachePhase::Revalidated
            | CachePhase::RevalidatedNoCache(_)
    ) && let Some(meta) = session.cache.maybe_cache_meta()
    {
        resp.insert_header(http::header::AGE, meta.age().as_secs().to_string())?;
    }
    Ok(())
}

/// Put ours first in an upstream's Cache-Status list.
fn set_cache_status(resp: &mut ResponseHeader, ours: &str) -> Result<()> {
    let theirs: Vec<String> = resp
        .headers
        .get_all("cache-status")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.starts_with("edgeward"))
        .map(str::to_string)
        .collect();
    let mut value = ours.to_string();
    for t in theirs {
        value.push_str(", ");
        value.push_str(&t);
    }
    resp.insert_header("cache-status", value)?;
    Ok(())
}

/// RFC 9111 4.4: a successful unsafe request invalidates the stored
/// responses of its URL, and of Location/Content-Location on the same host.
async fn invalidate(
    session: &Session,
    resp: &ResponseHeader,
    config: &Config,
    site: &Site,
    host: Option<&str>,
) {
    let Some(host) = host else { return };
    let mut urls = vec![site_url(Some(host), session)];
    for h in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let Some(v) = resp.headers.get(&h).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if let Some(u) = same_host_url(v, host) {
            urls.push(u);
        }
    }
    let store = store(&config.cache);
    for u in urls {
        if let Err(e) = store.purge_urls(&site.id, &UrlMatch::Exact(u)).await {
            warn!("site {}: cache invalidation failed: {e}", site.id);
        }
    }
}

/// The cache URL of a Location/Content-Location value when it is on `host`.
fn same_host_url(v: &str, host: &str) -> Option<String> {
    let uri: http::Uri = v.trim().parse().ok()?;
    match uri.authority() {
        Some(a) => {
            if normalize_host(a.as_str()).as_deref() != Some(host) {
                return None;
            }
        }
        None => {
            if !v.trim().starts_with('/') {
                return None;
            }
        }
    }
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    Some(format!("{host}{pq}"))
}

// -------------------------------------------------------------- PURGE

/// Whether this request is a PURGE (which edgeward must answer itself).
pub fn is_purge(session: &Session) -> bool {
    session.req_header().method.as_str() == "PURGE"
}

/// Answer a PURGE; returns the status sent.
pub async fn purge(
    session: &mut Session,
    config: &Config,
    site: &Site,
    host: Option<&str>,
    request_id: &str,
) -> Result<u16> {
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    if !config.cache.purge_allowed(ip) {
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
    if !site.cache.enabled && STORE.get().is_none() {
        pages::respond_text(
            session,
            404,
            "0 entries purged: nothing matched\n",
            request_id,
        )
        .await?;
        return Ok(404);
    }
    match store(&config.cache).purge_urls(&site.id, &m).await {
        Ok(0) => {
            pages::respond_text(
                session,
                404,
                "0 entries purged: nothing matched\n",
                request_id,
            )
            .await?;
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
    fn primary_keys_are_unambiguous() {
        let a = primary_key("a/b", "x.org/");
        let b = primary_key("a/bx", ".org/");
        assert_ne!(a, b);
        assert_eq!(split_primary(a.as_bytes()), Some(("a/b", "x.org/")));
        assert_eq!(split_primary(b"junk"), None);
        assert_eq!(split_primary(b"99:short"), None);
    }

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

    #[test]
    fn location_same_host_only() {
        assert_eq!(
            same_host_url("http://Blog.org/x?y", "blog.org").as_deref(),
            Some("blog.org/x?y")
        );
        assert_eq!(
            same_host_url("/x", "blog.org").as_deref(),
            Some("blog.org/x")
        );
        assert_eq!(same_host_url("http://evil.org/x", "blog.org"), None);
        assert_eq!(same_host_url("x", "blog.org"), None);
    }
}
