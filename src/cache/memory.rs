//! Bounded in-process storage: whole entries (meta + body) in a map, the
//! least recently used evicted once `max_size` bytes are exceeded, and a
//! per-site index of URLs for PURGE. An entry becomes visible only when its
//! body is complete, so a half-written response is never served.

use super::hooks::HitHeader;
use super::key::split_primary;
use super::lru::Lru;
use super::purge::UrlMatch;
use super::store::{Fresh, MissBody, Store, StoreError};
use crate::metrics;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType,
};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta, Storage};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Bookkeeping bytes counted per entry on top of its meta and body.
const ENTRY_OVERHEAD: usize = 256;

/// A `CacheMeta` kept in pieces: rebuilding one is much cheaper than
/// deserializing it (no zstd, no header parsing) on every hit.
pub(super) struct Meta {
    fresh_until: SystemTime,
    created: SystemTime,
    epoch: Option<SystemTime>,
    swr: u32,
    sie: u32,
    variance: Option<HashBinary>,
    header: ResponseHeader,
    /// What a fresh hit answers with (`super::hooks::hit_header`); None
    /// when the entry cannot answer a plain request as it is (Vary,
    /// variants, no single length).
    hit: Option<Arc<HitHeader>>,
}

impl Meta {
    pub(super) fn of(m: &CacheMeta) -> Meta {
        let variance = m.variance();
        let header = m.response_header_copy();
        let hit = match variance {
            None => super::hooks::hit_header(&header).map(Arc::new),
            Some(_) => None,
        };
        Meta {
            fresh_until: m.fresh_until(),
            created: m.created(),
            epoch: m.epoch_override(),
            swr: m.stale_while_revalidate_sec(),
            sie: m.stale_if_error_sec(),
            variance,
            header,
            hit,
        }
    }

    pub(super) fn rebuild(&self) -> CacheMeta {
        let mut m = CacheMeta::new(
            self.fresh_until,
            self.created,
            self.swr,
            self.sie,
            self.header.clone(),
        );
        if let Some(e) = self.epoch {
            m.set_epoch_override(e);
        }
        if let Some(v) = self.variance {
            m.set_variance_key(v);
        }
        m
    }

    /// The header a fresh hit answers with and the entry's age in seconds,
    /// when the entry can answer a plain request as it is
    /// (`super::serve_fresh_hit`): fresh at `now`, one variant only (no
    /// `Vary`), a single `Content-Length` equal to `body_len`.
    pub(super) fn fresh_header(
        &self,
        now: SystemTime,
        body_len: usize,
    ) -> Option<(Arc<HitHeader>, u64)> {
        // As `CacheMeta::is_fresh`.
        let hit = self.hit.as_ref()?;
        if hit.length != body_len || self.fresh_until < now {
            return None;
        }
        // As `CacheMeta::age` of the rebuilt meta.
        let age = now
            .duration_since(self.epoch.unwrap_or(self.created))
            .unwrap_or_default()
            .as_secs();
        Some((Arc::clone(hit), age))
    }

    /// Bytes counted for it.
    pub(super) fn weight(&self) -> usize {
        fields_weight(&self.header) + self.hit.as_ref().map_or(0, |h| h.weight()) + 128
    }
}

/// Bytes counted for a header's fields.
pub(super) fn fields_weight(h: &ResponseHeader) -> usize {
    h.headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 32)
        .sum()
}

struct Entry {
    meta: Meta,
    body: Bytes,
    site: Arc<str>,
    url: Arc<str>,
}

#[derive(Default)]
struct Inner {
    entries: Lru<Entry>,
    /// site → url → keys (all Vary variants of the URL).
    index: HashMap<Arc<str>, BTreeMap<Arc<str>, HashSet<HashBinary>>>,
}

impl Inner {
    /// Drop `e` (the entry of `key`, just taken out) from the index.
    fn unindex(&mut self, key: &HashBinary, e: &Entry) {
        if let Some(urls) = self.index.get_mut(&e.site) {
            if let Some(keys) = urls.get_mut(&e.url) {
                keys.remove(key);
                if keys.is_empty() {
                    urls.remove(&e.url);
                }
            }
            if urls.is_empty() {
                self.index.remove(&e.site);
            }
        }
    }

    fn remove(&mut self, key: &HashBinary) -> bool {
        match self.entries.remove(key) {
            Some(e) => {
                self.unindex(key, &e);
                true
            }
            None => false,
        }
    }
}

pub(crate) struct MemoryStore {
    inner: Mutex<Inner>,
    max_size: usize,
    max_object_size: usize,
}

impl MemoryStore {
    pub(crate) fn new(max_size: u64, max_object_size: u64) -> MemoryStore {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            max_size: usize::try_from(max_size).unwrap_or(usize::MAX),
            max_object_size: usize::try_from(max_object_size).unwrap_or(usize::MAX),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, key: HashBinary, entry: Entry, size: usize) {
        let mut inner = self.lock();
        inner.remove(&key);
        if size > self.max_size {
            return;
        }
        inner
            .index
            .entry(entry.site.clone())
            .or_default()
            .entry(entry.url.clone())
            .or_default()
            .insert(key);
        inner.entries.insert(key, entry, size);
        while inner.entries.size() > self.max_size {
            let Some((oldest, e)) = inner.entries.pop_oldest() else {
                break;
            };
            inner.unindex(&oldest, &e);
            metrics::CACHE_EVICTIONS.inc();
        }
    }
}

/// Bytes counted for an entry.
fn entry_size(meta: &Meta, body: &Bytes, url: &str) -> usize {
    meta.weight() + body.len() + url.len() + ENTRY_OVERHEAD
}

fn storage_key(key: &CacheKey) -> HashBinary {
    key.combined_bin()
}

#[async_trait]
impl Storage for MemoryStore {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let k = storage_key(key);
        let mut inner = self.lock();
        let Some(e) = inner.entries.get(&k) else {
            return Ok(None);
        };
        let found = (e.meta.rebuild(), e.body.clone());
        drop(inner);
        Ok(Some((found.0, Box::new(BodyHit::new(vec![found.1])))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let (site, url) = split_primary(key.primary_key()).unwrap_or(("", ""));
        Ok(Box::new(MemoryMiss {
            store: self,
            key: storage_key(key),
            meta: Some(Meta::of(meta)),
            site: site.into(),
            url: url.into(),
            body: MissBody::new(self.max_object_size),
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let k = target.key().combined_bin();
        Ok(if self.lock().remove(&k) {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let m = Meta::of(meta);
        let k = storage_key(key);
        Ok(self.lock().entries.update(&k, |e| {
            let size = entry_size(&m, &e.body, &e.url);
            e.meta = m;
            size
        }))
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn fresh(&self, key: &HashBinary, now: SystemTime) -> Option<Fresh> {
        let mut inner = self.lock();
        let e = inner.entries.get(key)?;
        let (hit, age) = e.meta.fresh_header(now, e.body.len())?;
        Some(Fresh {
            hit,
            age,
            body: vec![e.body.clone()],
        })
    }

    async fn purge_urls(
        &'static self,
        site: &str,
        m: &UrlMatch,
    ) -> std::result::Result<usize, StoreError> {
        let mut inner = self.lock();
        let Some(urls) = inner.index.get(site) else {
            return Ok(0);
        };
        let prefix = m.literal_prefix();
        let keys: Vec<HashBinary> = urls
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(u, _)| u.starts_with(prefix))
            .filter(|(u, _)| m.matches(u))
            .flat_map(|(_, keys)| keys.iter().copied())
            .collect();
        let mut n = 0;
        for k in keys {
            if inner.remove(&k) {
                n += 1;
            }
        }
        Ok(n)
    }
}

struct MemoryMiss {
    store: &'static MemoryStore,
    key: HashBinary,
    /// None: nothing is stored (too large).
    meta: Option<Meta>,
    site: Arc<str>,
    url: Arc<str>,
    body: MissBody,
}

#[async_trait]
impl HandleMiss for MemoryMiss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.meta.is_some() && !self.body.push(data) {
            self.meta = None;
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let Some(meta) = self.meta else {
            return Ok(MissFinishType::Created(0));
        };
        let body = match self.body.parts() {
            [one] => one.clone(),
            parts => {
                let mut b = Vec::with_capacity(self.body.len());
                for c in parts {
                    b.extend_from_slice(c);
                }
                Bytes::from(b)
            }
        };
        let size = entry_size(&meta, &body, &self.url);
        self.store.insert(
            self.key,
            Entry {
                meta,
                body,
                site: self.site,
                url: self.url,
            },
            size,
        );
        metrics::CACHE_STORED.with_label_values(&["memory"]).inc();
        Ok(MissFinishType::Created(size))
    }
}

/// Serves a stored body, whole or a byte range of it.
pub(crate) struct BodyHit {
    chunks: Vec<Bytes>,
    total: usize,
    /// Next chunk to send.
    pos: usize,
    range: Option<(usize, usize)>,
    done: bool,
}

impl BodyHit {
    pub(crate) fn new(chunks: Vec<Bytes>) -> BodyHit {
        let total = chunks.iter().map(|c| c.len()).sum();
        BodyHit {
            chunks,
            total,
            pos: 0,
            range: None,
            done: false,
        }
    }
}

#[async_trait]
impl HandleHit for BodyHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        if let Some((start, end)) = self.range {
            self.done = true;
            let mut out = Vec::with_capacity(end - start);
            let mut off = 0;
            for c in &self.chunks {
                let (cs, ce) = (off, off + c.len());
                off = ce;
                if ce <= start || cs >= end {
                    continue;
                }
                out.extend_from_slice(&c[start.max(cs) - cs..end.min(ce) - cs]);
            }
            return Ok(Some(Bytes::from(out)));
        }
        match self.chunks.get(self.pos) {
            Some(c) => {
                self.pos += 1;
                Ok(Some(c.clone()))
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let end = end.unwrap_or(self.total).min(self.total);
        if start > end {
            return Error::e_explain(ErrorType::InternalError, "seek range out of bounds");
        }
        self.range = Some((start, end));
        self.done = false;
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}
