//! The process's one cache storage (memory or Redis, chosen by the first
//! configuration) and the trait both storages implement.

use super::hooks::HitHeader;
use super::purge::UrlMatch;
use super::settings::{self, CacheSettings, StorageSettings};
use super::{memory, redis};
use async_trait::async_trait;
use bytes::Bytes;
use log::{info, warn};
use pingora::cache::key::HashBinary;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::storage::Storage;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, SystemTime};

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

/// A storage the cache can use: pingora's `Storage`, plus purge by URL
/// through the storage's per-site index.
#[async_trait]
pub(crate) trait Store: Storage + Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    /// The entry of `key` (a cache key hash) when it can answer a plain
    /// request as it is, from this process's memory (see `serve_fresh_hit`); None
    /// sends the request through pingora-cache.
    fn fresh(&self, _key: &HashBinary, _now: SystemTime) -> Option<Fresh> {
        None
    }
    /// Remove every entry (all variants) of `site` whose URL matches; the
    /// number removed.
    async fn purge_urls(&'static self, site: &str, m: &UrlMatch) -> Result<usize, StoreError>;
}

/// A stored response found by `Store::fresh`: the header to answer with
/// (`hooks::hit_header`: `Age` and `X-Request-Id` still to set), its age
/// in seconds and its body.
pub(crate) struct Fresh {
    pub(crate) hit: Arc<HitHeader>,
    pub(crate) age: u64,
    pub(crate) body: Vec<Bytes>,
}

/// Why a storage could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The storage did not answer in time (or at all).
    #[error("the cache storage ({0}) did not answer")]
    Unavailable(&'static str),
    #[error("{0}")]
    Redis(#[from] ::redis::RedisError),
}

pub(super) static STORE: OnceLock<&'static dyn Store> = OnceLock::new();

/// Readers wait for the one request filling an entry (no stampede); a
/// writer that takes longer than this loses the lock.
pub(super) static LOCK: LazyLock<&'static CacheKeyLockImpl> =
    LazyLock::new(|| Box::leak(CacheLock::new_boxed(Duration::from_secs(10))));

/// The process's storage, created from the first configuration that needs
/// it (a storage change takes effect at the next restart).
pub(crate) fn store(settings: &CacheSettings) -> &'static dyn Store {
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
                        // The configuration validated the URL; should it still fail, cache
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
