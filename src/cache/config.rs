//! The cache's part of the configuration: the global `cache:` section and a
//! site's `cache:`, validated and built into [`CacheSettings`] and
//! [`SiteCache`].

use super::settings::{
    CacheSettings, DEFAULT_KEY_PREFIX, DEFAULT_MAX_SIZE, DEFAULT_REDIS_LOCAL_SIZE,
    DEFAULT_REDIS_TIMEOUT, SiteCache, StorageSettings, valid_media_range,
};
use crate::config::file::{CacheFile, SiteCacheFile};
use crate::config::{Cidr, Section};

/// Validate the global `cache:` section (None: not in the file).
pub(crate) fn global(file: Option<&CacheFile>, sec: &mut Section<'_>) -> Option<CacheSettings> {
    let Some(c) = file else {
        return Some(CacheSettings::default());
    };
    let mut out = CacheSettings::default();
    match c.storage.as_deref().unwrap_or("memory") {
        "memory" => {
            if c.redis.is_some() {
                sec.error_key(&["redis"], "cache.redis: only used with `storage: redis`");
            }
            let max_size = c
                .memory
                .as_ref()
                .and_then(|m| m.max_size)
                .map_or(DEFAULT_MAX_SIZE, |s| s.0);
            if max_size == 0 {
                sec.error(
                    &["memory", "max_size"],
                    "cache.memory.max_size: must be more than 0",
                );
            }
            out.storage = StorageSettings::Memory { max_size };
        }
        "redis" => {
            if c.memory.is_some() {
                sec.error_key(
                    &["memory"],
                    "cache.memory: only used with `storage: memory`",
                );
            }
            match &c.redis {
                None => sec.error(
                    &["storage"],
                    "cache.redis: required with `storage: redis` (give at least redis.url)",
                ),
                Some(r) => {
                    let url_ok = (r.url.starts_with("redis://")
                        || r.url.starts_with("rediss://")
                        || r.url.starts_with("redis+unix://")
                        || r.url.starts_with("unix://"))
                        && redis::Client::open(r.url.as_str()).is_ok();
                    if !url_ok {
                        sec.error(
                            &["redis", "url"],
                            format!(
                                "cache.redis.url: {:?} is not a Redis URL (e.g. \"redis://127.0.0.1:6379/0\")",
                                r.url
                            ),
                        );
                    }
                    let timeout = r.timeout.map_or(DEFAULT_REDIS_TIMEOUT, |d| d.0);
                    if timeout.is_zero() {
                        sec.error(
                            &["redis", "timeout"],
                            "cache.redis.timeout: must be more than 0",
                        );
                    }
                    out.storage = StorageSettings::Redis {
                        url: r.url.clone(),
                        key_prefix: r
                            .key_prefix
                            .clone()
                            .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string()),
                        timeout,
                        local_size: r.local_size.map_or(DEFAULT_REDIS_LOCAL_SIZE, |s| s.0),
                    };
                }
            }
        }
        other => sec.error(
            &["storage"],
            format!("cache.storage: {other:?} is not a storage; expected memory or redis"),
        ),
    }
    if let Some(m) = c.max_object_size {
        if m.0 == 0 {
            sec.error(
                &["max_object_size"],
                "cache.max_object_size: must be more than 0",
            );
        }
        out.max_object_size = m.0;
    }
    if let Some(list) = &c.purge_allow {
        out.purge_allow.clear();
        for (i, t) in list.iter().enumerate() {
            match t.parse::<Cidr>() {
                Ok(c) => out.purge_allow.push(c),
                Err(why) => {
                    sec.error_item(&["purge_allow"], i, format!("cache.purge_allow: {why}"))
                }
            }
        }
    }
    sec.done(|| out)
}

/// Validate site `site`'s `cache:` section (None: not in the file, the
/// cache is off for the site).
pub(crate) fn site(
    site: &str,
    file: Option<&SiteCacheFile>,
    sec: &mut Section<'_>,
) -> Option<SiteCache> {
    let Some(c) = file else {
        return Some(SiteCache {
            id: site.to_string(),
            ..SiteCache::default()
        });
    };
    if let Some(ttl) = c.ttl
        && ttl.0.is_zero()
    {
        sec.error(
            &["ttl"],
            "cache.ttl: must be more than 0 (leave it out to use only the origin's freshness)",
        );
    }
    let content_types = match &c.content_types {
        None => None,
        Some(list) if list.is_empty() => {
            sec.error(
                &["content_types"],
                "cache.content_types: give at least one media type (e.g. \"text/*\"), or leave the key out to store any",
            );
            None
        }
        Some(list) => {
            let mut out = Vec::new();
            for (i, t) in list.iter().enumerate() {
                let t = t.trim().to_ascii_lowercase();
                if valid_media_range(&t) {
                    out.push(t);
                } else {
                    sec.error_item(
                        &["content_types"],
                        i,
                        format!("cache.content_types: {t:?} is not a media type such as \"text/html\" or \"text/*\""),
                    );
                }
            }
            Some(out)
        }
    };
    sec.done(|| SiteCache {
        id: site.to_string(),
        enabled: c.enabled.unwrap_or(false),
        ttl: c.ttl.map(|d| d.0),
        content_types,
        store_set_cookie: c.store_set_cookie.unwrap_or(false),
        requests: Default::default(),
    })
}
