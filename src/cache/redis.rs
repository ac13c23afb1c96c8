//! Redis storage, shared by every edgeward instance that points at the same
//! Redis. One hash per entry (meta + body in chunks), written with MULTI/EXEC
//! so that a reader sees the whole entry or none of it; one sorted set per
//! site indexes its URLs for PURGE (no SCAN of the keyspace).
//!
//! Redis failing (down, slow, restarted) never fails a request: every
//! operation has a deadline; a failed lookup is a miss, a failed write is
//! dropped, and both are counted in `edgeward_cache_storage_errors_total`.
//! The connection manager reconnects by itself.
//!
//! With `cache.redis.local_size` (the default) hits are served from a near
//! cache in this process, kept coherent by Redis client tracking (`near`).

use super::key::split_primary;
use super::memory::BodyHit;
use super::near::Near;
use super::purge::UrlMatch;
use super::store::{Fresh, MissBody, Store, StoreError};
use crate::metrics;
use async_trait::async_trait;
use bytes::Bytes;
use log::warn;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::storage::{
    HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget, PurgeType,
};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta, Storage};
use pingora::prelude::*;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Body bytes per hash field.
const CHUNK: usize = 512 * 1024;
/// Kept past the end of freshness/stale windows so that a 304 revalidation
/// still finds the entry (only for responses with a validator).
const REVALIDATION_WINDOW: Duration = Duration::from_secs(3600);
/// Kept past the end of freshness for entries without a validator
/// (`max-stale` requests may still use them).
const STALE_GRACE: Duration = Duration::from_secs(60);
/// Entries fetched per ZSCAN round of a purge.
const SCAN_COUNT: usize = 500;

/// Refresh stored meta only if the entry is still there (never create a
/// body-less entry).
const UPDATE_META: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'i', ARGV[1], 'h', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
  redis.call('SADD', KEYS[3], ARGV[6])
  if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[3], ARGV[3])
  end
  return 1
end
return 0
"#;

/// Add an entry to its URL's set of variants; the set lives as long as its
/// longest-lived entry.
const URL_SET_ADD: &str = r#"
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"#;

pub(crate) struct RedisStore {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    max_object_size: usize,
    conn: OnceLock<ConnectionManager>,
    near: Option<Arc<Near>>,
    /// Last time an error was logged (seconds since the epoch), so that a
    /// Redis outage does not flood the log.
    last_warn: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedisStore {
    pub(crate) fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        max_object_size: u64,
        local_size: u64,
    ) -> std::result::Result<RedisStore, StoreError> {
        let mut client = redis::Client::open(url)?;
        let near = (local_size > 0).then(|| Arc::new(Near::new(local_size)));
        if near.is_some() {
            // Invalidation messages arrive as RESP3 pushes on the same
            // connection.
            let info = client.get_connection_info().clone();
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP3);
            client = redis::Client::open(info.set_redis_settings(settings))?;
        }
        Ok(RedisStore {
            client,
            prefix: prefix.to_string(),
            timeout,
            max_object_size: usize::try_from(max_object_size).unwrap_or(usize::MAX),
            conn: OnceLock::new(),
            near,
            last_warn: AtomicU64::new(0),
        })
    }

    fn conn(&self) -> Option<ConnectionManager> {
        if let Some(c) = self.conn.get() {
            return Some(c.clone());
        }
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.timeout))
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(200))))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let cfg = match &self.near {
            Some(near) => {
                let near = near.clone();
                cfg.set_push_sender(move |info: redis::PushInfo| {
                    near.on_push(&info);
                    Ok::<(), std::convert::Infallible>(())
                })
            }
            None => cfg,
        };
        match ConnectionManager::new_lazy_with_config(self.client.clone(), cfg) {
            Ok(c) => Some(self.conn.get_or_init(|| c).clone()),
            Err(e) => {
                self.failed("connect", &e.to_string());
                None
            }
        }
    }

    fn failed(&self, op: &'static str, why: &str) {
        // The connection may be replaced: its tracking (and so the
        // invalidations of what the near cache holds) goes with it.
        if let Some(near) = &self.near {
            near.clear();
        }
        metrics::CACHE_STORAGE_ERRORS
            .with_label_values(&["redis", op])
            .inc();
        let now = now_ms() / 1000;
        let last = self.last_warn.load(Ordering::Relaxed);
        if now > last
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!("cache: redis {op} failed, serving without the cache: {why}");
        }
    }

    /// Run one Redis command/pipeline with the deadline; None on any failure.
    async fn run<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        f: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Option<T> {
        self.run_within(self.timeout, op, f).await
    }

    async fn run_within<T: redis::FromRedisValue>(
        &self,
        deadline: Duration,
        op: &'static str,
        f: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Option<T> {
        let mut conn = self.conn()?;
        match tokio::time::timeout(deadline, f(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.failed(op, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(op, &format!("no answer within {deadline:?}"));
                None
            }
        }
    }

    fn site_part(site: &str) -> String {
        format!("{}:{}", site.len(), site)
    }

    /// An entry's key; `hex` is its cache key's `combined()` hash.
    fn entry_key(&self, site: &str, hex: &str) -> String {
        format!("{}e:{}:{hex}", self.prefix, Self::site_part(site))
    }

    /// The set of entries (Vary variants) of one URL, for exact purges.
    fn url_key(&self, site: &str, url: &str) -> String {
        let h = pingora::cache::key::hash_key(url);
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}u:{}:{hex}", self.prefix, Self::site_part(site))
    }

    /// Purge deadline: not on a request's path to its response, so it may
    /// take longer than a lookup.
    fn purge_timeout(&self) -> Duration {
        self.timeout.max(Duration::from_secs(2))
    }

    fn index_key(&self, site: &str) -> String {
        format!("{}i:{}", self.prefix, Self::site_part(site))
    }

    /// How long Redis keeps an entry.
    fn ttl(meta: &CacheMeta) -> Duration {
        let now = SystemTime::now();
        let fresh = meta.fresh_until().duration_since(now).unwrap_or_default();
        let stale = Duration::from_secs(
            meta.stale_while_revalidate_sec()
                .max(meta.stale_if_error_sec()) as u64,
        );
        let h = meta.headers();
        let keep =
            if h.contains_key(http::header::ETAG) || h.contains_key(http::header::LAST_MODIFIED) {
                REVALIDATION_WINDOW
            } else {
                STALE_GRACE
            };
        (fresh + stale + keep).max(Duration::from_secs(1))
    }
}

#[async_trait]
impl Storage for RedisStore {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some((site, _)) = split_primary(key.primary_key()) else {
            return Ok(None);
        };
        let hash = key.combined_bin();
        let seq = match &self.near {
            Some(near) => {
                if let Some((meta, chunks)) = near.get(&hash) {
                    return Ok(Some((meta, Box::new(BodyHit::new(chunks)))));
                }
                Some(near.seq())
            }
            None => None,
        };
        let ek = self.entry_key(site, &key.combined());
        let Some(mut fields) = self
            .run::<HashMap<String, Vec<u8>>>("lookup", async |c| {
                if seq.is_some() {
                    // Tracking is per connection: enabling it with every
                    // read covers a reconnected one too.
                    let (fields,): (HashMap<String, Vec<u8>>,) = redis::pipe()
                        .cmd("CLIENT")
                        .arg("TRACKING")
                        .arg("ON")
                        .ignore()
                        .cmd("HGETALL")
                        .arg(&ek)
                        .query_async(c)
                        .await?;
                    Ok(fields)
                } else {
                    redis::cmd("HGETALL").arg(&ek).query_async(c).await
                }
            })
            .await
        else {
            return Ok(None);
        };
        if fields.is_empty() {
            return Ok(None);
        }
        let n: usize = fields
            .get("n")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX);
        let (Some(internal), Some(header)) = (fields.remove("i"), fields.remove("h")) else {
            return Ok(None);
        };
        if n > fields.len() {
            return Ok(None);
        }
        let mut chunks = Vec::with_capacity(n);
        for i in 0..n {
            match fields.remove(&format!("c{i}")) {
                Some(c) => chunks.push(Bytes::from(c)),
                None => return Ok(None),
            }
        }
        match CacheMeta::deserialize(&internal, &header) {
            Ok(meta) => {
                if let (Some(near), Some(seq)) = (&self.near, seq) {
                    near.insert(seq, hash, &meta, &chunks, Self::ttl(&meta));
                }
                Ok(Some((meta, Box::new(BodyHit::new(chunks)))))
            }
            Err(e) => {
                self.failed("decode", &e.to_string());
                Ok(None)
            }
        }
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let (site, url) = split_primary(key.primary_key()).unwrap_or(("", ""));
        let ready = !site.is_empty();
        let hex = key.combined();
        Ok(Box::new(RedisMiss {
            store: self,
            entry_key: self.entry_key(site, &hex),
            index_key: self.index_key(site),
            member: format!("{url}\n{hex}"),
            url_key: self.url_key(site, url),
            hex,
            meta: if ready { meta.serialize().ok() } else { None },
            ttl: Self::ttl(meta),
            body: MissBody::new(self.max_object_size),
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        // Pingora's own purge path is not used (PURGE is answered by
        // `cache::purge` through the index); nothing to do without the site.
        let _ = target;
        Ok(PurgeOutcome::NotFound)
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let Some((site, url)) = split_primary(key.primary_key()) else {
            return Ok(false);
        };
        let Ok((internal, header)) = meta.serialize() else {
            return Ok(false);
        };
        let ttl = Self::ttl(meta);
        let hex = key.combined();
        let ek = self.entry_key(site, &hex);
        let ik = self.index_key(site);
        let member = format!("{url}\n{hex}");
        let uk = self.url_key(site, url);
        let score = now_ms() + ttl.as_millis() as u64;
        let updated = self
            .run::<i64>("update_meta", async |c| {
                redis::cmd("EVAL")
                    .arg(UPDATE_META)
                    .arg(3)
                    .arg(&ek)
                    .arg(&ik)
                    .arg(&uk)
                    .arg(internal)
                    .arg(header)
                    .arg(ttl.as_millis() as u64)
                    .arg(score)
                    .arg(&member)
                    .arg(&hex)
                    .query_async(c)
                    .await
            })
            .await;
        // As in `RedisMiss::finish`: the near copy holds the old header.
        if let Some(near) = &self.near {
            near.forget([ek.as_str()]);
        }
        Ok(updated == Some(1))
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    /// Only from the near cache: a Redis round trip takes the full path.
    fn fresh(&self, key: &HashBinary, now: SystemTime) -> Option<Fresh> {
        self.near.as_ref()?.fresh(key, now)
    }

    async fn purge_urls(
        &'static self,
        site: &str,
        m: &UrlMatch,
    ) -> std::result::Result<usize, StoreError> {
        let ik = self.index_key(site);
        let deadline = self.purge_timeout();
        let unavailable = || StoreError::Unavailable("redis");
        if let UrlMatch::Exact(url) = m {
            // One URL: its set of variants, no index scan.
            let uk = self.url_key(site, url);
            let hexes = self
                .run_within::<Vec<String>>(deadline, "purge", async |c| {
                    redis::cmd("SMEMBERS").arg(&uk).query_async(c).await
                })
                .await
                .ok_or_else(unavailable)?;
            if hexes.is_empty() {
                return Ok(0);
            }
            let keys: Vec<String> = hexes.iter().map(|h| self.entry_key(site, h)).collect();
            let members: Vec<String> = hexes.iter().map(|h| format!("{url}\n{h}")).collect();
            let (deleted, _, _) = self
                .run_within::<(usize, usize, usize)>(deadline, "purge", async |c| {
                    redis::pipe()
                        .atomic()
                        .cmd("DEL")
                        .arg(&keys)
                        .cmd("DEL")
                        .arg(&uk)
                        .cmd("ZREM")
                        .arg(&ik)
                        .arg(&members)
                        .query_async(c)
                        .await
                })
                .await
                .ok_or_else(unavailable)?;
            if let Some(near) = &self.near {
                near.forget(keys.iter().map(String::as_str));
            }
            return Ok(deleted);
        }
        let mut cursor: u64 = 0;
        let mut removed = 0usize;
        loop {
            let (next, page) = self
                .run_within::<(u64, Vec<(String, f64)>)>(deadline, "purge", async |c| {
                    redis::cmd("ZSCAN")
                        .arg(&ik)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(c)
                        .await
                })
                .await
                .ok_or_else(unavailable)?;
            let members: Vec<&str> = page
                .iter()
                .map(|(m, _)| m.as_str())
                .filter(|member| {
                    member
                        .rsplit_once('\n')
                        .is_some_and(|(url, _)| m.matches(url))
                })
                .collect();
            if !members.is_empty() {
                let keys: Vec<String> = members
                    .iter()
                    .filter_map(|member| member.rsplit_once('\n'))
                    .map(|(_, hex)| self.entry_key(site, hex))
                    .collect();
                let (deleted, _) = self
                    .run_within::<(usize, usize)>(deadline, "purge", async |c| {
                        redis::pipe()
                            .atomic()
                            .cmd("DEL")
                            .arg(&keys)
                            .cmd("ZREM")
                            .arg(&ik)
                            .arg(&members)
                            .query_async(c)
                            .await
                    })
                    .await
                    .ok_or_else(unavailable)?;
                if let Some(near) = &self.near {
                    near.forget(keys.iter().map(String::as_str));
                }
                removed += deleted;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(removed)
    }
}

struct RedisMiss {
    store: &'static RedisStore,
    entry_key: String,
    index_key: String,
    member: String,
    url_key: String,
    hex: String,
    /// None: nothing is stored (too large, or no site in the key).
    meta: Option<(Vec<u8>, Vec<u8>)>,
    ttl: Duration,
    body: MissBody,
}

#[async_trait]
impl HandleMiss for RedisMiss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.meta.is_some() && !self.body.push(data) {
            self.meta = None;
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let Some((internal, header)) = self.meta else {
            return Ok(MissFinishType::Created(0));
        };
        // Re-cut the body into fixed-size chunks.
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut cur: Vec<u8> = Vec::new();
        for b in self.body.parts() {
            let mut rest = &b[..];
            while !rest.is_empty() {
                let take = (CHUNK - cur.len()).min(rest.len());
                cur.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if cur.len() == CHUNK {
                    chunks.push(std::mem::take(&mut cur));
                }
            }
        }
        if !cur.is_empty() {
            chunks.push(cur);
        }
        let ttl_ms = self.ttl.as_millis() as u64;
        let now = now_ms();
        let store = self.store;
        let (ek, ik, member) = (&self.entry_key, &self.index_key, &self.member);
        let (uk, hex) = (&self.url_key, &self.hex);
        let written = store
            .run::<()>("store", async |c| {
                let mut hset = redis::cmd("HSET");
                hset.arg(ek)
                    .arg("i")
                    .arg(&internal)
                    .arg("h")
                    .arg(&header)
                    .arg("n")
                    .arg(chunks.len());
                for (i, ch) in chunks.iter().enumerate() {
                    hset.arg(format!("c{i}")).arg(ch);
                }
                redis::pipe()
                    .atomic()
                    .cmd("DEL")
                    .arg(ek)
                    .ignore()
                    .add_command(hset)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(ek)
                    .arg(ttl_ms)
                    .ignore()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(ik)
                    .arg("-inf")
                    .arg(now)
                    .ignore()
                    .cmd("ZADD")
                    .arg(ik)
                    .arg(now + ttl_ms)
                    .arg(member)
                    .ignore()
                    .cmd("EVAL")
                    .arg(URL_SET_ADD)
                    .arg(1)
                    .arg(uk)
                    .arg(hex)
                    .arg(ttl_ms)
                    .ignore()
                    .query_async(c)
                    .await
            })
            .await;
        if written.is_some() {
            metrics::CACHE_STORED.with_label_values(&["redis"]).inc();
        }
        // This instance's near copy of the entry just overwritten goes now,
        // not when Redis's invalidation push arrives (a request right after
        // a refetch must see the new response).
        if let Some(near) = &store.near {
            near.forget([ek.as_str()]);
        }
        Ok(MissFinishType::Created(self.body.len()))
    }
}
