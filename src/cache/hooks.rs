//! The cache's hooks, one per pingora-cache phase that `proxy.rs` calls:
//! enable the cache for a request, answer fresh hits from memory, apply the
//! request's directives, decide what is stored (RFC 9111 in `policy`), and
//! mark every response of a cache-enabled site with `Cache-Status`
//! (RFC 9211) and `Age`.

use super::invalidation;
use super::key::{build_key, site_url};
use super::policy::{self, NotStored, RequestDirectives};
use super::settings::CacheResult;
use super::store::{LOCK, store};
use super::{CacheSettings, SiteCache};
use crate::pages;
use crate::request::normalize_host;
use bytes::{Bytes, BytesMut};
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::storage::Storage;
use pingora::cache::{
    CacheKey, CacheMeta, CachePhase, ForcedFreshness, NoCacheReason, RespCacheable,
};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::time::SystemTime;

/// The cache's part of a request's context.
#[derive(Debug, Default)]
pub(crate) struct CacheCtx {
    /// The cache was enabled for this request (site, method).
    enabled: bool,
    req: RequestDirectives,
    /// Why the response was not stored, for Cache-Status.
    not_stored: Option<NotStored>,
    /// A request directive made us go to the origin.
    forced: bool,
    /// The header fields of the origin's 304, to update the stored ones.
    revalidation: Option<http::HeaderMap>,
    /// The key `serve_fresh_hit` built, for `cache_key` when it fell through.
    key: Option<CacheKey>,
    /// The request came over HTTPS: its responses are stored apart.
    https: bool,
}

impl CacheCtx {
    /// The state of a request that came over HTTPS (`https`) or plain HTTP.
    pub(crate) fn new(https: bool) -> CacheCtx {
        CacheCtx {
            https,
            ..CacheCtx::default()
        }
    }
}

/// The cache answers GET and HEAD, never an upgrade (WebSocket).
fn cache_applies(req: &pingora::http::RequestHeader) -> bool {
    matches!(req.method, http::Method::GET | http::Method::HEAD)
        && !req.headers.contains_key(http::header::UPGRADE)
}

/// `request_cache_filter`: enable the cache for GET/HEAD of a cache-enabled
/// site.
pub(crate) fn request_cache_filter(
    session: &mut Session,
    settings: &CacheSettings,
    site: Option<&SiteCache>,
    host: Option<&str>,
    cc: &mut CacheCtx,
) {
    if !site.is_some_and(|s| s.enabled) {
        return;
    }
    let req = session.req_header();
    if !cache_applies(req) {
        return;
    }
    if let Some(site) = site
        && invalidation::is_pending(&site.id, || site_url(host, session))
    {
        // The client's own write may not have reached the storage yet.
        return;
    }
    let req = session.req_header();
    cc.req = RequestDirectives::parse(req);
    cc.enabled = true;
    let store = store(settings);
    let storage: &'static (dyn Storage + Sync) = store;
    session.cache.enable(storage, None, None, Some(*LOCK), None);
    session
        .cache
        .set_max_file_size_bytes(usize::try_from(settings.max_object_size).unwrap_or(usize::MAX));
}

/// `cache_key_callback`: the key `serve_fresh_hit` already built, or a new one.
pub(crate) fn cache_key(
    session: &Session,
    site: Option<&SiteCache>,
    host: Option<&str>,
    cc: &mut CacheCtx,
) -> Result<CacheKey> {
    match cc.key.take() {
        Some(key) => Ok(key),
        None => build_key(session, site, host, cc.https),
    }
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
/// the key built here. `logged`: the response fields the site's access log
/// shows (see `HitHeader::recorded`).
pub(crate) async fn serve_fresh_hit(
    session: &mut Session,
    settings: &CacheSettings,
    site: &SiteCache,
    host: Option<&str>,
    request_id: &str,
    logged: &[http::header::HeaderName],
    cc: &mut CacheCtx,
) -> Result<bool> {
    let req = session.req_header();
    if !site.enabled
        || !cache_applies(req)
        || FULL_PATH_FIELDS.iter().any(|f| req.headers.contains_key(f))
        || invalidation::is_pending(&site.id, || site_url(host, session))
    {
        return Ok(false);
    }
    let key = build_key(session, Some(site), host, cc.https)?;
    let found = store(settings).fresh(&key.combined_bin(), SystemTime::now());
    let Some(found) = found else {
        cc.key = Some(key);
        return Ok(false);
    };
    // Written as it is below: a request id is made or checked by
    // `request_id`, and this is the check.
    if !crate::request_id::is_valid(request_id.as_bytes()) {
        return Error::e_explain(InternalError, "a request id that is not a field value");
    }
    let hit = &found.hit;
    site.requests.count(&site.id, CacheResult::Hit);
    let header_only = session.req_header().method == http::Method::HEAD
        || found.body.iter().all(|b| b.is_empty());
    if session.takes_response_fields() {
        // HTTP/1: the stored fields were serialized once, with the entry
        // (`hit_header`); the two set here follow them, then the session's
        // `Date` and `Connection`.
        let header = Box::new(hit.recorded(found.age, request_id, logged)?);
        let age = crate::decimal::Decimal::new(found.age);
        let fields: [&[u8]; 6] = [
            &hit.fields,
            b"Age: ",
            age.as_bytes(),
            b"\r\nX-Request-Id: ",
            request_id.as_bytes(),
            b"\r\n",
        ];
        session
            .write_response_header_with_fields(header, &fields)
            .await?;
    } else {
        // `hit_header` put both fields in: each insertion replaces a value.
        let mut header = Box::new(hit.header.clone());
        header.insert_header(http::header::AGE, found.age)?;
        header.insert_header(&crate::request_id::NAME, request_id)?;
        session.write_response_header(header, header_only).await?;
    }
    if !header_only {
        let n = found.body.len();
        for (i, part) in found.body.into_iter().enumerate() {
            session.write_response_body(Some(part), i + 1 == n).await?;
        }
    }
    Ok(true)
}

/// What `serve_fresh_hit` answers with, built once per stored entry
/// (`hit_header`).
pub(crate) struct HitHeader {
    /// The whole header of a hit, with placeholders for the fields set on
    /// every hit (`Age`, `X-Request-Id`, `Date`, `Connection`).
    header: ResponseHeader,
    /// `header`'s fields serialized for HTTP/1, without those set on every
    /// hit: `Age` and `X-Request-Id` (by `serve_fresh_hit`), `Date` and
    /// `Connection` (by Pingora's session).
    fields: Bytes,
    /// Its one `Content-Length`.
    content_length: http::HeaderValue,
    /// The same as a number: the hit compares it with the stored body.
    pub(super) length: usize,
}

impl HitHeader {
    /// Bytes it holds, about.
    pub(crate) fn weight(&self) -> usize {
        super::memory::fields_weight(&self.header) + self.fields.len() + 128
    }

    /// The header handed to Pingora's session with `fields`: what the
    /// session frames the answer by (status, `Content-Length`) and reports
    /// as written (to the access log, through `response_written`). Of the
    /// other fields it holds those `logged` names (a site's access log
    /// shows nothing else), with this hit's `Age` and request id; the
    /// session adds `Date` and `Connection`. A whole copy of the stored
    /// header, built and dropped on every hit, cost more than writing it.
    fn recorded(
        &self,
        age: u64,
        request_id: &str,
        logged: &[http::header::HeaderName],
    ) -> Result<ResponseHeader> {
        let mut h = ResponseHeader::build_no_case(self.header.status, Some(3 + logged.len()))?;
        h.set_version(http::Version::HTTP_11);
        h.insert_header(http::header::CONTENT_LENGTH, self.content_length.clone())?;
        for name in logged {
            if *name == http::header::AGE {
                h.insert_header(http::header::AGE, age)?;
            } else if name == crate::request_id::NAME.name() {
                h.insert_header(&crate::request_id::NAME, request_id)?;
            } else if !SET_ON_EVERY_HIT.contains(name) && *name != http::header::CONTENT_LENGTH {
                for v in self.header.headers.get_all(name) {
                    h.append_header(name.clone(), v.clone())?;
                }
            }
        }
        Ok(h)
    }
}

/// Fields of a hit not in `HitHeader::fields`.
const SET_ON_EVERY_HIT: [http::header::HeaderName; 3] = [
    http::header::AGE,
    http::header::DATE,
    http::header::CONNECTION,
];

/// What `serve_fresh_hit` answers with from an entry stored with `stored`:
/// built once per stored entry, not on every hit. None when the entry cannot
/// answer a plain request as it is: `Vary`, or not exactly one
/// `Content-Length` (the hit compares it with the stored body). Over HTTP/1
/// a hit writes `HitHeader::fields`; over HTTP/2 a copy of the header.
/// `Age` and `X-Request-Id` hold placeholders, set on every hit, and so do
/// `Date` and `Connection` when the stored response has none (Pingora's
/// session sets both on every response); they are in the header already
/// so that setting them replaces a value rather than growing the copy's
/// map (a clone keeps no spare room: one more field reallocated it, about
/// 800 instructions). It keeps no case map: one
/// read back from Redis has one, which doubled the cost of each copy and
/// insertion; it only held the title case that edgeward writes anyway
/// (responses are parsed without one, `src/upstream.rs`).
pub(super) fn hit_header(stored: &ResponseHeader) -> Option<HitHeader> {
    let h = &stored.headers;
    // Neither is usual in a stored response; the full path answers them.
    // (`HitHeader::recorded` frames by `Content-Length` alone and writes
    // the canonical reason phrase.)
    if h.contains_key(http::header::VARY)
        || h.contains_key(http::header::TRANSFER_ENCODING)
        || stored.get_reason_phrase() != stored.status.canonical_reason()
    {
        return None;
    }
    let mut lengths = h.get_all(http::header::CONTENT_LENGTH).iter();
    let content_length = lengths.next()?.clone();
    let length = content_length.to_str().ok()?.parse::<usize>().ok()?;
    if lengths.next().is_some() {
        return None;
    }
    let mut header = stored.clone_without_case();
    header.set_version(http::Version::HTTP_11);
    header.insert_header(http::header::AGE, 0).ok()?;
    if header.status == http::StatusCode::OK {
        header
            .insert_header(http::header::ACCEPT_RANGES, "bytes")
            .ok()?;
    }
    set_cache_status(&mut header, "edgeward; hit").ok()?;
    header.insert_header(&crate::request_id::NAME, "-").ok()?;
    if !header.headers.contains_key(http::header::DATE) {
        header
            .insert_header(
                http::header::DATE,
                httpdate::fmt_http_date(SystemTime::now()),
            )
            .ok()?;
    }
    header
        .insert_header(http::header::CONNECTION, "keep-alive")
        .ok()?;
    // Serialized as Pingora's session serializes a header (title case), in
    // the same order (removing fields from a copy would not keep it: a
    // `HeaderMap` moves its last field into the place of one removed).
    let mut rest = ResponseHeader::build_no_case(header.status, Some(header.headers.len())).ok()?;
    for (name, value) in &header.headers {
        if !SET_ON_EVERY_HIT.contains(name) && name != crate::request_id::NAME.name() {
            rest.append_header(name.clone(), value.clone()).ok()?;
        }
    }
    let mut fields = BytesMut::with_capacity(512);
    rest.header_to_h1_wire(&mut fields);
    Some(HitHeader {
        header,
        fields: fields.freeze(),
        content_length,
        length,
    })
}

/// `cache_hit_filter`: the request's own directives.
pub(crate) fn hit_filter(
    meta: &CacheMeta,
    is_fresh: bool,
    cc: &mut CacheCtx,
) -> Option<ForcedFreshness> {
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
pub(crate) async fn proxy_upstream_filter(
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
        cc.not_stored = Some(NotStored::Range);
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
pub(crate) fn upstream_response_filter(resp: &ResponseHeader, cc: &mut CacheCtx) {
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
pub(crate) fn response_cache_filter(
    session: &Session,
    resp: &ResponseHeader,
    site: Option<&SiteCache>,
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
    match policy::storable(session.req_header(), resp, site, SystemTime::now()) {
        Ok(meta) => {
            cc.not_stored = None;
            RespCacheable::Cacheable(meta)
        }
        Err(why) => {
            cc.not_stored = Some(why);
            RespCacheable::Uncacheable(NoCacheReason::Custom(why.as_str()))
        }
    }
}

/// `cache_vary_filter`.
pub(crate) fn vary_filter(
    meta: &CacheMeta,
    req: &pingora::http::RequestHeader,
) -> Option<HashBinary> {
    policy::variance(meta, req)
}

/// `should_serve_stale`: stale-while-revalidate (no error) within the
/// response's window, stale-if-error for upstream failures.
pub(crate) fn should_serve_stale(session: &Session, cc: &CacheCtx, error: Option<&Error>) -> bool {
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
pub(crate) async fn response_filter(
    session: &mut Session,
    resp: &mut ResponseHeader,
    settings: &CacheSettings,
    site: Option<&SiteCache>,
    host: Option<&str>,
    cc: &CacheCtx,
) -> Result<()> {
    let Some(site) = site.filter(|s| s.enabled) else {
        return Ok(());
    };
    let method = session.req_header().method.clone();
    if !cc.enabled {
        if !method.is_safe() && (200..400).contains(&resp.status.as_u16()) {
            invalidate(session, resp, settings, site, host).await;
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
        CachePhase::Hit => ("edgeward; hit".to_string(), CacheResult::Hit),
        CachePhase::StaleUpdating => (
            "edgeward; hit; detail=stale-while-revalidate".to_string(),
            CacheResult::Stale,
        ),
        CachePhase::Stale => (
            "edgeward; hit; detail=stale-if-error".to_string(),
            CacheResult::Stale,
        ),
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => (
            format!(
                "edgeward; fwd={}; fwd-status=304",
                if cc.forced { "request" } else { "stale" }
            ),
            CacheResult::Revalidated,
        ),
        CachePhase::Expired => (
            format!(
                "edgeward; fwd={}; fwd-status={status}; stored",
                if cc.forced { "request" } else { "stale" }
            ),
            CacheResult::Expired,
        ),
        CachePhase::Miss => ("edgeward; fwd=miss; stored".to_string(), CacheResult::Miss),
        CachePhase::Bypass => ("edgeward; fwd=bypass".to_string(), CacheResult::Bypass),
        _ => {
            let detail = cc
                .not_stored
                .map(|d| format!("; detail={}", d.as_str()))
                .unwrap_or_default();
            (
                format!(
                    "edgeward; fwd={}{detail}",
                    if cc.forced { "request" } else { "miss" }
                ),
                CacheResult::Uncacheable,
            )
        }
    };
    site.requests.count(&site.id, result);
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

/// `Cache-Status` (RFC 9211), as written; inserting by `&str` parses it again.
static CACHE_STATUS: pingora::http::TitledHeaderName =
    pingora::http::TitledHeaderName::new("Cache-Status", "cache-status");

/// Put ours first in an upstream's Cache-Status list.
fn set_cache_status(resp: &mut ResponseHeader, ours: &str) -> Result<()> {
    let theirs: Vec<String> = resp
        .headers
        .get_all(CACHE_STATUS.name())
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
    resp.insert_header(&CACHE_STATUS, value)?;
    Ok(())
}

/// RFC 9111 4.4: a successful unsafe request invalidates the stored
/// responses of its URL, and of Location/Content-Location on the same host
/// (off the response path: see `invalidation`).
async fn invalidate(
    session: &Session,
    resp: &ResponseHeader,
    settings: &CacheSettings,
    site: &SiteCache,
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
    invalidation::invalidate(store(settings), &site.id, urls).await;
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

#[cfg(test)]
mod tests {
    use super::*;

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
