//! RFC 9111 decisions, as pure functions of headers and time: what may be
//! stored and for how long (with the site's rules), the age of a response,
//! the request's own directives, and how `Vary` splits entries.

use super::settings::SiteCache;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheMeta, ForcedFreshness, VarianceBuilder};
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// Longest freshness the heuristic (10% of the Last-Modified age) gives.
const HEURISTIC_CAP: Duration = Duration::from_secs(24 * 3600);
/// Delta-seconds larger than this are taken as this (RFC 9111 1.2.2).
const DELTA_MAX: u64 = 2_147_483_648;

/// How long after its freshness a stored response may still be served
/// while the origin cannot be reached (connection refused, reset, timeout).
pub(crate) const DISCONNECTED_STALE: Duration = Duration::from_secs(300);

/// Statuses the provider stores (PRODUCT.md, "not stored" list), minus 206:
/// a partial response is never stored as if it were the whole object.
const STORABLE_STATUS: &[u16] = &[200, 203, 204, 300, 301, 404, 405, 410, 414, 501];
/// Statuses that may get heuristic freshness (RFC 9110 15.1).
const HEURISTIC_STATUS: &[u16] = &[200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// One Cache-Control directive: lower-case name, optional unquoted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
}

/// Parse every `name` header (Cache-Control, Pragma) into directives.
/// Malformed parts are skipped, never an error.
pub(crate) fn directives(headers: &http::HeaderMap, name: &str) -> Vec<Directive> {
    let mut out = Vec::new();
    for v in headers.get_all(name) {
        let Ok(s) = std::str::from_utf8(v.as_bytes()) else {
            continue;
        };
        let mut rest = s;
        while !rest.is_empty() {
            // name
            let end = rest.find([',', '=']).unwrap_or(rest.len());
            let dname = rest[..end].trim().to_ascii_lowercase();
            rest = &rest[end..];
            let mut value = None;
            if let Some(r) = rest.strip_prefix('=') {
                let r = r.trim_start();
                if let Some(q) = r.strip_prefix('"') {
                    // quoted-string, with backslash escapes
                    let mut val = String::new();
                    let mut chars = q.char_indices();
                    let mut consumed = q.len();
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some((_, n)) = chars.next() {
                                    val.push(n);
                                }
                            }
                            '"' => {
                                consumed = i + 1;
                                break;
                            }
                            c => val.push(c),
                        }
                    }
                    value = Some(val);
                    rest = &q[consumed.min(q.len())..];
                    let skip = rest.find(',').unwrap_or(rest.len());
                    rest = &rest[skip..];
                } else {
                    let end = r.find(',').unwrap_or(r.len());
                    value = Some(r[..end].trim().to_string());
                    rest = &r[end..];
                }
            }
            rest = rest.strip_prefix(',').unwrap_or(rest);
            if !dname.is_empty() {
                out.push(Directive { name: dname, value });
            }
        }
    }
    out
}

/// `CDN-Cache-Control` (RFC 9213), a Structured Fields dictionary. None
/// when absent or not a valid dictionary (then it is ignored as a whole);
/// members of the wrong type are dropped.
pub(crate) fn cdn_directives(headers: &http::HeaderMap) -> Option<Vec<Directive>> {
    let mut joined = String::new();
    for v in headers.get_all("cdn-cache-control") {
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(v.to_str().ok()?);
    }
    if joined.is_empty() && !headers.contains_key("cdn-cache-control") {
        return None;
    }
    let key_ok = |k: &str| {
        let b = k.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0] == b'*')
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(c))
    };
    let mut out = Vec::new();
    for member in joined.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            return None;
        }
        // parameters (;a=b) are allowed and ignored
        let item = member.split(';').next().unwrap_or("");
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        if !key_ok(key) {
            return None;
        }
        let value = match value {
            None => None,
            Some(v)
                if !v.is_empty() && v.len() <= 16 && {
                    let d = v.strip_prefix('-').unwrap_or(v);
                    !d.is_empty() && d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit())
                } =>
            {
                Some(v.to_string())
            }
            Some(v) if v.starts_with('"') && v.len() >= 2 && v.ends_with('"') => {
                // a string: valid, but no directive we use takes one
                if matches!(
                    key,
                    "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error"
                ) {
                    continue;
                }
                Some(v[1..v.len() - 1].to_string())
            }
            Some("?0") | Some("?1") => continue,
            Some(v)
                if v.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'*')
                    && v.bytes()
                        .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"') =>
            {
                if matches!(
                    key,
                    "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error"
                ) {
                    continue;
                }
                Some(v.to_string())
            }
            Some(_) => return None,
        };
        out.push(Directive {
            name: key.to_string(),
            value,
        });
    }
    Some(out)
}

/// The directives edgeward obeys for a response: `CDN-Cache-Control` when
/// present and valid (it targets caches like this one), else
/// `Cache-Control`.
pub(crate) fn response_directives(headers: &http::HeaderMap) -> Vec<Directive> {
    cdn_directives(headers).unwrap_or_else(|| directives(headers, "cache-control"))
}

fn find<'a>(d: &'a [Directive], name: &str) -> Option<&'a Directive> {
    d.iter().find(|x| x.name == name)
}

fn has(d: &[Directive], name: &str) -> bool {
    find(d, name).is_some()
}

/// delta-seconds: digits only; huge values saturate.
fn delta_seconds(v: Option<&str>) -> Option<u64> {
    let v = v?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(DELTA_MAX).min(DELTA_MAX))
}

/// A `delta-seconds` directive; Err(()) when present but malformed.
fn seconds(d: &[Directive], name: &str) -> Result<Option<u64>, ()> {
    match find(d, name) {
        None => Ok(None),
        Some(x) => delta_seconds(x.value.as_deref()).map(Some).ok_or(()),
    }
}

/// The request's own cache directives (RFC 9111 5.2.1, Pragma 5.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestDirectives {
    pub(crate) no_cache: bool,
    pub(crate) no_store: bool,
    pub(crate) max_age: Option<u64>,
    pub(crate) min_fresh: Option<u64>,
    /// Some(None): any staleness accepted.
    pub(crate) max_stale: Option<Option<u64>>,
    pub(crate) only_if_cached: bool,
}

impl RequestDirectives {
    pub(crate) fn parse(req: &RequestHeader) -> RequestDirectives {
        let cc = directives(&req.headers, "cache-control");
        let mut r = RequestDirectives {
            no_cache: has(&cc, "no-cache"),
            no_store: has(&cc, "no-store"),
            max_age: seconds(&cc, "max-age").unwrap_or(None),
            min_fresh: seconds(&cc, "min-fresh").unwrap_or(None),
            max_stale: find(&cc, "max-stale").map(|d| delta_seconds(d.value.as_deref())),
            only_if_cached: has(&cc, "only-if-cached"),
        };
        // Pragma: no-cache counts only when there is no Cache-Control.
        if !req.headers.contains_key(http::header::CACHE_CONTROL)
            && has(&directives(&req.headers, "pragma"), "no-cache")
        {
            r.no_cache = true;
        }
        r
    }
}

/// Whether a stored response may be used as it is, must be revalidated, or
/// (with `max-stale`) may be used although stale.
pub(crate) fn hit_decision(
    meta: &CacheMeta,
    is_fresh: bool,
    req: &RequestDirectives,
    now: SystemTime,
) -> Option<ForcedFreshness> {
    if req.no_cache {
        return Some(ForcedFreshness::ForceExpired);
    }
    let age = now.duration_since(meta.epoch()).unwrap_or_default();
    // Precise age: `max-age=0` accepts nothing already stored.
    if req
        .max_age
        .is_some_and(|max| age > Duration::from_secs(max))
    {
        return Some(ForcedFreshness::ForceExpired);
    }
    if let Some(min_fresh) = req.min_fresh {
        let left = meta
            .fresh_until()
            .duration_since(now)
            .unwrap_or_default()
            .as_secs();
        if !is_fresh || left < min_fresh {
            return Some(ForcedFreshness::ForceExpired);
        }
    }
    if !is_fresh && let Some(limit) = req.max_stale {
        let resp_cc = response_directives(&meta.response_header().headers);
        let forbidden = has(&resp_cc, "must-revalidate")
            || has(&resp_cc, "proxy-revalidate")
            || has(&resp_cc, "s-maxage")
            || has(&resp_cc, "no-cache");
        let stale_for = now
            .duration_since(meta.fresh_until())
            .unwrap_or_default()
            .as_secs();
        if !forbidden && limit.is_none_or(|l| stale_for <= l) {
            return Some(ForcedFreshness::ForceFresh);
        }
    }
    None
}

/// Whether the stored response allows serving it stale because the origin
/// answered with an error status (its own `stale-if-error=N` window).
pub(crate) fn stale_if_error_allows(meta: &CacheMeta, now: SystemTime) -> bool {
    let cc = response_directives(&meta.response_header().headers);
    match seconds(&cc, "stale-if-error") {
        Ok(Some(n)) => meta
            .fresh_until()
            .checked_add(Duration::from_secs(n))
            .is_some_and(|until| now <= until),
        _ => false,
    }
}

fn header_str<'a>(h: &'a ResponseHeader, name: &str) -> Option<&'a str> {
    h.headers.get(name).and_then(|v| v.to_str().ok())
}

/// An HTTP date; tolerant of the letter case of day, month and zone names
/// (RFC 9110 5.6.7: recipients SHOULD be lenient).
fn http_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Ok(t) = httpdate::parse_http_date(s) {
        return Some(t);
    }
    if s.len() > 64 {
        return None;
    }
    let fixed: String = s
        .split(' ')
        .map(|w| {
            let (word, comma) = match w.strip_suffix(',') {
                Some(x) => (x, ","),
                None => (w, ""),
            };
            if word.eq_ignore_ascii_case("gmt") {
                format!("GMT{comma}")
            } else if word.len() >= 3 && word.bytes().all(|b| b.is_ascii_alphabetic()) {
                let lower = word.to_ascii_lowercase();
                let mut c = lower.chars();
                let first = c.next().map(|f| f.to_ascii_uppercase()).unwrap_or_default();
                format!("{first}{}{comma}", c.as_str())
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if let Ok(t) = httpdate::parse_http_date(&fixed) {
        return Some(t);
    }
    // A weekday that does not match the date is not worth rejecting it.
    let rest = fixed.get(3..)?;
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .find_map(|wd| httpdate::parse_http_date(&format!("{wd}{rest}")).ok())
}

/// Why a response is not stored (shown in `Cache-Status: ...; detail=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStored {
    Partial,
    Status,
    RequestNoStore,
    NoStore,
    Private,
    NoCache,
    NoTransform,
    VaryStar,
    NoContentType,
    ContentType,
    SetCookie,
    Authorization,
    Stale,
    NoFreshness,
    Range,
}

impl NotStored {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NotStored::Partial => "partial",
            NotStored::Status => "status",
            NotStored::RequestNoStore => "request-no-store",
            NotStored::NoStore => "no-store",
            NotStored::Private => "private",
            NotStored::NoCache => "no-cache",
            NotStored::NoTransform => "no-transform",
            NotStored::VaryStar => "vary-star",
            NotStored::NoContentType => "no-content-type",
            NotStored::ContentType => "content-type",
            NotStored::SetCookie => "set-cookie",
            NotStored::Authorization => "authorization",
            NotStored::Stale => "stale",
            NotStored::NoFreshness => "no-freshness",
            NotStored::Range => "range",
        }
    }
}

/// Decide whether `resp` (the answer to `req`) may be stored, and build its
/// cache metadata: freshness (s-maxage, max-age, Expires, the site's ttl,
/// then the Last-Modified heuristic), the age it already had (RFC 9111
/// 4.2.3: Age and Date), and its stale-while-revalidate/if-error windows.
pub(crate) fn storable(
    req: &RequestHeader,
    resp: &ResponseHeader,
    site: &SiteCache,
    now: SystemTime,
) -> Result<CacheMeta, NotStored> {
    let status = resp.status.as_u16();
    if status == 206 {
        return Err(NotStored::Partial);
    }
    if !STORABLE_STATUS.contains(&status) {
        return Err(NotStored::Status);
    }
    let req_cc = directives(&req.headers, "cache-control");
    if has(&req_cc, "no-store") {
        return Err(NotStored::RequestNoStore);
    }
    let cc = response_directives(&resp.headers);
    for d in ["no-store", "private", "no-cache", "no-transform"] {
        if has(&cc, d) {
            return Err(match d {
                "no-store" => NotStored::NoStore,
                "private" => NotStored::Private,
                "no-cache" => NotStored::NoCache,
                _ => NotStored::NoTransform,
            });
        }
    }
    let vary = resp
        .headers
        .get_all(http::header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|f| f.trim_ascii() == b"*");
    if vary {
        return Err(NotStored::VaryStar);
    }
    let Some(content_type) = header_str(resp, "content-type") else {
        return Err(NotStored::NoContentType);
    };
    if !site.content_type_allowed(content_type) {
        return Err(NotStored::ContentType);
    }
    if !site.store_set_cookie && resp.headers.contains_key(http::header::SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    let s_maxage = seconds(&cc, "s-maxage");
    if req.headers.contains_key(http::header::AUTHORIZATION)
        && !(has(&cc, "public")
            || has(&cc, "must-revalidate")
            || has(&cc, "proxy-revalidate")
            || has(&cc, "s-maxage"))
    {
        return Err(NotStored::Authorization);
    }

    // Age (4.2.3): the larger of what the origin says and what Date shows.
    let date = header_str(resp, "date").and_then(http_date);
    let apparent_age = date
        .and_then(|d| now.duration_since(d).ok())
        .map_or(0, |d| d.as_secs());
    // The first value of the first line counts ("7200, 0" is 7200).
    let age_value = resp
        .headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| delta_seconds(v.split(',').next().map(str::trim)))
        .unwrap_or(0);
    let initial_age = apparent_age.max(age_value);
    let epoch = now
        .checked_sub(Duration::from_secs(initial_age))
        .unwrap_or(now);

    // Freshness lifetime (4.2.1).
    let mut explicit = true;
    let lifetime: Option<Duration> = match (s_maxage, seconds(&cc, "max-age")) {
        (Ok(Some(s)), _) => Some(Duration::from_secs(s)),
        (Err(()), _) => Some(Duration::ZERO),
        (Ok(None), Ok(Some(m))) => Some(Duration::from_secs(m)),
        (Ok(None), Err(())) => Some(Duration::ZERO),
        (Ok(None), Ok(None)) => {
            let mut expires = resp.headers.get_all(http::header::EXPIRES).iter();
            match (expires.next(), expires.next()) {
                (Some(e), None) => {
                    // An invalid Expires means "already expired".
                    let at = e.to_str().ok().and_then(http_date);
                    Some(match at {
                        Some(at) => at.duration_since(date.unwrap_or(now)).unwrap_or_default(),
                        None => Duration::ZERO,
                    })
                }
                (Some(_), Some(_)) => Some(Duration::ZERO),
                _ => None,
            }
        }
    };
    let lifetime = match lifetime {
        Some(l) => l,
        None => {
            explicit = false;
            if let Some(ttl) = site.ttl {
                ttl
            } else if let Some(lm) = header_str(resp, "last-modified").and_then(http_date)
                && (HEURISTIC_STATUS.contains(&status) || has(&cc, "public"))
            {
                let since = date.unwrap_or(now).duration_since(lm).unwrap_or_default();
                (since / 10).min(HEURISTIC_CAP)
            } else {
                Duration::ZERO
            }
        }
    };
    let has_validator = resp.headers.contains_key(http::header::ETAG)
        || resp.headers.contains_key(http::header::LAST_MODIFIED);

    let no_stale = has(&cc, "must-revalidate")
        || has(&cc, "proxy-revalidate")
        || matches!(s_maxage, Ok(Some(_)));
    let (swr, sie) = if no_stale {
        (0, 0)
    } else {
        (
            seconds(&cc, "stale-while-revalidate")
                .ok()
                .flatten()
                .unwrap_or(0),
            // Also the time a stale entry may be used while the origin
            // cannot be reached at all (RFC 9111 4.2.4, "disconnected"); an
            // origin's 5xx uses it only when the response said
            // stale-if-error (see `stale_if_error_allows`).
            seconds(&cc, "stale-if-error")
                .ok()
                .flatten()
                .unwrap_or(0)
                .max(DISCONNECTED_STALE.as_secs()),
        )
    };
    let fresh_until = if lifetime.is_zero() {
        epoch.checked_sub(Duration::from_secs(1)).unwrap_or(epoch)
    } else {
        // capped: an absurd lifetime (Expires in year 9999, a huge ttl)
        // must not overflow the clock
        epoch
            .checked_add(lifetime.min(Duration::from_secs(DELTA_MAX)))
            .unwrap_or(epoch)
    };
    // Something we could never use again is not worth storing.
    let explicit_sie = !no_stale && matches!(seconds(&cc, "stale-if-error"), Ok(Some(n)) if n > 0);
    if fresh_until < now && !has_validator && swr == 0 && !explicit_sie {
        return Err(if explicit {
            NotStored::Stale
        } else {
            NotStored::NoFreshness
        });
    }

    let mut header = resp.clone();
    // Hop-by-hop fields (and those the Connection field lists) are not
    // stored; Age is recomputed when the entry is used.
    let listed: Vec<String> = resp
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|n| String::from_utf8_lossy(n.trim_ascii()).to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    for h in listed.iter().map(String::as_str).chain([
        "connection",
        "keep-alive",
        "proxy-connection",
        "cache-status",
        "age",
    ]) {
        header.remove_header(h);
    }
    let mut meta = CacheMeta::new(
        fresh_until,
        now,
        swr.min(u32::MAX as u64) as u32,
        sie.min(u32::MAX as u64) as u32,
        header,
    );
    meta.set_epoch_override(epoch);
    Ok(meta)
}

/// The variant of a stored response a request selects (`Vary`), or None
/// when the response does not vary.
pub(crate) fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
    let mut names: Vec<String> = meta
        .headers()
        .get_all(http::header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|n| String::from_utf8_lossy(n.trim_ascii()).to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return None;
    }
    let mut vb = VarianceBuilder::new();
    for name in names {
        let mut values = req.headers.get_all(name.as_str()).iter().peekable();
        let value = if values.peek().is_none() {
            // Absent differs from empty.
            vec![0u8]
        } else {
            // Combine field lines; whitespace around commas is not significant.
            let joined: Vec<Vec<u8>> = values
                .flat_map(|v| v.as_bytes().split(|b| *b == b','))
                .map(|p| {
                    // language and coding tokens are case-insensitive
                    if matches!(
                        name.as_str(),
                        "accept-language" | "accept-encoding" | "accept-charset"
                    ) {
                        p.trim_ascii().to_ascii_lowercase()
                    } else {
                        p.trim_ascii().to_vec()
                    }
                })
                .collect();
            joined.join(&b","[..])
        };
        vb.add_owned_name_value(name, value);
    }
    vb.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        r.append_header("content-type", "text/plain").unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn parses_directives() {
        let r = req(&[("cache-control", "Max-Age=5, no-cache=\"a, b\", private,x")]);
        let d = directives(&r.headers, "cache-control");
        assert_eq!(d.len(), 4, "{d:?}");
        assert_eq!(d[0].value.as_deref(), Some("5"));
        assert_eq!(d[1].value.as_deref(), Some("a, b"));
        assert_eq!(d[2].name, "private");
        assert_eq!(d[3].name, "x");
        // garbage never panics
        for junk in [
            "=",
            ",,,",
            "\"",
            "a=\"",
            "a=\"\\",
            "max-age=99999999999999999999",
        ] {
            let r = req(&[("cache-control", junk)]);
            let _ = RequestDirectives::parse(&r);
        }
    }

    #[test]
    fn not_stored_list() {
        let site = SiteCache::default();
        let now = SystemTime::now();
        let ok = |r: &RequestHeader, p: &ResponseHeader| {
            storable(r, p, &site, now).map_err(NotStored::as_str)
        };
        let plain = req(&[]);
        assert!(ok(&plain, &resp(200, &[("cache-control", "max-age=60")])).is_ok());
        for (h, why) in [
            (("cache-control", "max-age=60, private"), "private"),
            (("cache-control", "no-store"), "no-store"),
            (("cache-control", "max-age=60, no-cache"), "no-cache"),
            (
                ("cache-control", "max-age=60, no-transform"),
                "no-transform",
            ),
            (("vary", "accept, *"), "vary-star"),
            (("set-cookie", "a=b"), "set-cookie"),
        ] {
            let mut r = resp(200, &[("cache-control", "max-age=60")]);
            r.append_header(h.0, h.1).unwrap();
            assert_eq!(ok(&plain, &r).err(), Some(why), "{h:?}");
        }
        assert_eq!(
            ok(&plain, &resp(302, &[("cache-control", "max-age=60")])).err(),
            Some("status")
        );
        assert_eq!(
            ok(&plain, &resp(206, &[("cache-control", "max-age=60")])).err(),
            Some("partial")
        );
        let mut no_ct = ResponseHeader::build(200, None).unwrap();
        no_ct.append_header("cache-control", "max-age=60").unwrap();
        assert_eq!(ok(&plain, &no_ct).err(), Some("no-content-type"));
        let auth = req(&[("authorization", "Basic x")]);
        assert_eq!(
            ok(&auth, &resp(200, &[("cache-control", "max-age=60")])).err(),
            Some("authorization")
        );
        assert!(
            ok(
                &auth,
                &resp(200, &[("cache-control", "max-age=60, public")])
            )
            .is_ok()
        );
        assert!(ok(&auth, &resp(200, &[("cache-control", "s-maxage=60")])).is_ok());
        // no freshness, no validator: useless
        assert_eq!(ok(&plain, &resp(200, &[])).err(), Some("no-freshness"));
        let cookie_site = SiteCache {
            store_set_cookie: true,
            ..Default::default()
        };
        assert!(
            storable(
                &plain,
                &resp(
                    200,
                    &[("cache-control", "max-age=1"), ("set-cookie", "a=b")]
                ),
                &cookie_site,
                now
            )
            .is_ok()
        );
    }

    #[test]
    fn freshness_and_age() {
        let site = SiteCache::default();
        let now = SystemTime::now();
        let m = storable(
            &req(&[]),
            &resp(200, &[("cache-control", "max-age=100"), ("age", "30")]),
            &site,
            now,
        )
        .unwrap();
        assert_eq!(
            m.fresh_until(),
            now - Duration::from_secs(30) + Duration::from_secs(100)
        );
        let ttl_site = SiteCache {
            ttl: Some(Duration::from_secs(7)),
            ..Default::default()
        };
        let m = storable(&req(&[]), &resp(200, &[]), &ttl_site, now).unwrap();
        assert_eq!(m.fresh_until(), now + Duration::from_secs(7));
        // origin wins over the site's ttl
        let m = storable(
            &req(&[]),
            &resp(200, &[("cache-control", "max-age=2")]),
            &ttl_site,
            now,
        )
        .unwrap();
        assert_eq!(m.fresh_until(), now + Duration::from_secs(2));
        // heuristic: 10% of the Last-Modified age
        let lm = httpdate::fmt_http_date(now - Duration::from_secs(1000));
        let m = storable(&req(&[]), &resp(200, &[("last-modified", &lm)]), &site, now).unwrap();
        let f = m.fresh_until().duration_since(now).unwrap().as_secs();
        assert!((99..=100).contains(&f), "{f}");
    }

    #[test]
    fn request_directives() {
        let site = SiteCache::default();
        let now = SystemTime::now();
        let m = storable(
            &req(&[]),
            &resp(200, &[("cache-control", "max-age=100"), ("age", "30")]),
            &site,
            now,
        )
        .unwrap();
        let d = |h: &str| RequestDirectives::parse(&req(&[("cache-control", h)]));
        assert_eq!(hit_decision(&m, true, &d(""), now), None);
        assert_eq!(
            hit_decision(&m, true, &d("no-cache"), now),
            Some(ForcedFreshness::ForceExpired)
        );
        assert_eq!(
            hit_decision(&m, true, &d("max-age=10"), now),
            Some(ForcedFreshness::ForceExpired)
        );
        assert_eq!(hit_decision(&m, true, &d("max-age=40"), now), None);
        assert_eq!(
            hit_decision(&m, true, &d("min-fresh=80"), now),
            Some(ForcedFreshness::ForceExpired)
        );
        let pragma = RequestDirectives::parse(&req(&[("pragma", "no-cache")]));
        assert!(pragma.no_cache);
        let later = now + Duration::from_secs(100);
        assert_eq!(
            hit_decision(&m, false, &d("max-stale=60"), later),
            Some(ForcedFreshness::ForceFresh)
        );
        assert_eq!(hit_decision(&m, false, &d("max-stale=5"), later), None);
    }

    #[test]
    fn lenient_dates() {
        for d in [
            "Thu, 18 Aug 2050 02:01:18 GMT",
            "THU, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 aug 2050 02:01:18 gMT",
            "Thu Aug  8 02:01:18 2050",
        ] {
            assert!(http_date(d).is_some(), "{d}");
        }
        for d in [
            "",
            "x",
            "Thu, 99 Aug 2050 02:01:18 GMT",
            "\u{e9}\u{e9}\u{e9}\u{e9}",
        ] {
            assert!(http_date(d).is_none(), "{d}");
        }
    }

    #[test]
    fn absurd_lifetimes_do_not_overflow() {
        let now = SystemTime::now();
        let site = SiteCache {
            ttl: Some(Duration::from_secs(u64::MAX / 4)),
            ..Default::default()
        };
        assert!(storable(&req(&[]), &resp(200, &[]), &site, now).is_ok());
        let far = resp(200, &[("expires", "Fri, 31 Dec 9999 23:59:59 GMT")]);
        assert!(storable(&req(&[]), &far, &SiteCache::default(), now).is_ok());
        let huge = resp(
            200,
            &[(
                "cache-control",
                "max-age=99999999999999999999, stale-if-error=99999999999",
            )],
        );
        let m = storable(&req(&[]), &huge, &SiteCache::default(), now).unwrap();
        assert!(stale_if_error_allows(&m, now));
    }

    #[test]
    fn vary_variants() {
        let m = storable(
            &req(&[]),
            &resp(
                200,
                &[
                    ("cache-control", "max-age=100"),
                    ("vary", "Accept-Language"),
                ],
            ),
            &SiteCache::default(),
            SystemTime::now(),
        )
        .unwrap();
        let en = variance(&m, &req(&[("accept-language", "en")]));
        let en2 = variance(&m, &req(&[("accept-language", " en")]));
        let fr = variance(&m, &req(&[("accept-language", "fr")]));
        let none = variance(&m, &req(&[]));
        let empty = variance(&m, &req(&[("accept-language", "")]));
        assert!(en.is_some());
        assert_eq!(en, en2);
        assert_ne!(en, fr);
        assert_ne!(none, empty);
    }
}
