//! The cache's validated settings, built by `config.rs` and kept in the
//! runtime `Config` (global) and `Site` (per site).

use crate::config::{Cidr, canonical};
use crate::metrics;
use pingora_prometheus::prometheus::IntCounter;
use std::sync::OnceLock;
use std::time::Duration;

pub(crate) const DEFAULT_MAX_SIZE: u64 = 256 * 1024 * 1024;
pub(crate) const DEFAULT_MAX_OBJECT_SIZE: u64 = 8 * 1024 * 1024;
pub(crate) const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
pub(crate) const DEFAULT_KEY_PREFIX: &str = "edgeward:";
/// Near cache of the Redis storage (`cache.redis.local_size`).
pub(crate) const DEFAULT_REDIS_LOCAL_SIZE: u64 = 64 * 1024 * 1024;

/// Global `cache:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheSettings {
    pub(crate) storage: StorageSettings,
    /// Largest response stored; larger ones stream through uncached.
    pub(crate) max_object_size: u64,
    /// Who may send PURGE (socket address).
    pub(crate) purge_allow: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StorageSettings {
    Memory {
        max_size: u64,
    },
    Redis {
        url: String,
        key_prefix: String,
        /// Time allowed for one Redis operation before the request goes on
        /// as a miss.
        timeout: Duration,
        /// Bytes of recently read entries kept in this process, coherent
        /// through Redis client tracking; 0 = every lookup reads Redis.
        local_size: u64,
    },
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            storage: StorageSettings::Memory {
                max_size: DEFAULT_MAX_SIZE,
            },
            max_object_size: DEFAULT_MAX_OBJECT_SIZE,
            purge_allow: default_purge_allow(),
        }
    }
}

pub(crate) fn default_purge_allow() -> Vec<Cidr> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect()
}

impl CacheSettings {
    pub(crate) fn purge_allowed(&self, ip: Option<std::net::IpAddr>) -> bool {
        let Some(ip) = ip else { return false };
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = canonical(ip);
        self.purge_allow.iter().any(|c| c.contains(ip))
    }
}

/// A site's `cache:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SiteCache {
    /// The site (`account/site`): the first part of every key it stores.
    pub(crate) id: String,
    pub(crate) enabled: bool,
    /// Freshness for cacheable responses that carry none of their own.
    pub(crate) ttl: Option<Duration>,
    /// Media types that may be stored (lower case; `text/*` allowed); None:
    /// any.
    pub(crate) content_types: Option<Vec<String>>,
    pub(crate) store_set_cookie: bool,
    /// The site's `edgeward_cache_requests_total` counters.
    pub(crate) requests: CacheRequests,
}

/// What the cache did with a request of a cache-enabled site: the `result`
/// label of `edgeward_cache_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheResult {
    Hit,
    Stale,
    Miss,
    Expired,
    Revalidated,
    Uncacheable,
    Bypass,
}

impl CacheResult {
    const COUNT: usize = 7;

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Stale => "stale",
            CacheResult::Miss => "miss",
            CacheResult::Expired => "expired",
            CacheResult::Revalidated => "revalidated",
            CacheResult::Uncacheable => "uncacheable",
            CacheResult::Bypass => "bypass",
        }
    }
}

/// A site's `edgeward_cache_requests_total` counters, one per result, each
/// resolved the first time that result is counted (so `/metrics` shows the
/// series it showed before): counting does no label lookup, as for the
/// other per-site metrics (`metrics.rs`). Not configuration: two sets compare
/// equal.
#[derive(Clone, Default)]
pub(crate) struct CacheRequests([OnceLock<IntCounter>; CacheResult::COUNT]);

impl CacheRequests {
    pub(crate) fn count(&self, site: &str, result: CacheResult) {
        self.0[result as usize]
            .get_or_init(|| metrics::CACHE_REQUESTS.with_label_values(&[site, result.as_str()]))
            .inc();
    }
}

impl PartialEq for CacheRequests {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for CacheRequests {}

impl std::fmt::Debug for CacheRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheRequests")
    }
}

impl SiteCache {
    /// Whether a response with this Content-Type may be stored.
    pub(crate) fn content_type_allowed(&self, content_type: &str) -> bool {
        let Some(list) = &self.content_types else {
            return true;
        };
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        list.iter().any(|allowed| match allowed.strip_suffix("/*") {
            Some(top) => media
                .split_once('/')
                .is_some_and(|(t, sub)| t == top && !sub.is_empty()),
            None => *allowed == media,
        })
    }
}

/// Validate one `content_types` entry: `type/subtype` or `type/*`.
pub(crate) fn valid_media_range(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match s.split_once('/') {
        Some((t, "*")) => token(t),
        Some((t, sub)) => token(t) && token(sub),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each result goes to its own series, labelled with the site; a result
    /// never counted has no series, as when every count looked its labels up.
    #[test]
    fn cache_requests_count_into_their_series() {
        use pingora_prometheus::prometheus::core::Collector;
        use pingora_prometheus::prometheus::{Encoder, TextEncoder};
        let site = "unit-test/cache-requests";
        let requests = CacheRequests::default();
        requests.count(site, CacheResult::Hit);
        requests.clone().count(site, CacheResult::Hit);
        requests.count(site, CacheResult::Miss);
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&metrics::CACHE_REQUESTS.collect(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        let mut lines: Vec<&str> = text.lines().filter(|l| l.contains(site)).collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                "edgeward_cache_requests_total{result=\"hit\",site=\"unit-test/cache-requests\"} 2",
                "edgeward_cache_requests_total{result=\"miss\",site=\"unit-test/cache-requests\"} 1",
            ]
        );
    }

    #[test]
    fn content_type_allow_list() {
        let s = SiteCache {
            content_types: Some(vec!["text/*".into(), "application/json".into()]),
            ..Default::default()
        };
        assert!(s.content_type_allowed("text/html; charset=utf-8"));
        assert!(s.content_type_allowed("Application/JSON"));
        assert!(!s.content_type_allowed("image/png"));
        assert!(!s.content_type_allowed("text"));
        assert!(SiteCache::default().content_type_allowed("image/png"));
        assert!(valid_media_range("text/*"));
        assert!(!valid_media_range("*/*x"));
        assert!(!valid_media_range("text"));
    }

    #[test]
    fn purge_allow_default_is_loopback() {
        let s = CacheSettings::default();
        for ok in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(s.purge_allowed(ok.parse().ok()), "{ok}");
        }
        for no in ["10.0.0.1", "203.0.113.7", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert!(!s.purge_allowed(no.parse().ok()), "{no}");
        }
        assert!(!s.purge_allowed(None));
    }
}
