//! Near cache of the Redis storage (`cache.redis.local_size`): the entries
//! this process read from Redis recently, kept in memory so that a hit costs
//! no round trip, and kept coherent by Redis itself.
//!
//! Coherence is Redis's server-assisted client-side caching: the connection
//! speaks RESP3 and every lookup that reads Redis enables `CLIENT TRACKING`
//! in the same pipeline, so Redis remembers the keys this connection read and
//! pushes an `invalidate` message when one of them is written, deleted
//! (PURGE from any instance), refreshed by a 304, expires or is evicted.
//! Losing the connection loses that promise, so a disconnection or any
//! failed operation empties the near cache.
//!
//! The race between a read and an invalidation is closed by a sequence
//! number: a lookup notes it before asking Redis and stores what it got only
//! if no invalidation (of any key) was handled in between. An invalidation
//! that arrives after the store removes the entry, as usual.
//!
//! Bounded in bytes (least recently used evicted first); an entry is also
//! dropped after `MAX_AGE` even if no invalidation came, so a lost message
//! costs at most that much staleness, and never outlives its Redis key.

use super::lru::Lru;
use super::memory::Meta;
use super::store::Fresh;
use crate::metrics;
use bytes::Bytes;
use pingora::cache::CacheMeta;
use pingora::cache::key::{HashBinary, str2hex};
use redis::{PushInfo, PushKind, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Longest time an entry is served from memory without reading Redis again.
const MAX_AGE: Duration = Duration::from_secs(60);
/// Bookkeeping bytes counted per entry.
const ENTRY_OVERHEAD: usize = 256;

struct Entry {
    meta: Meta,
    chunks: Vec<Bytes>,
    until: Instant,
}

#[derive(Default)]
struct Inner {
    /// By the entry's cache key hash (the hex end of its Redis key).
    entries: Lru<Entry>,
    /// Invalidations handled so far (see the module docs).
    seq: u64,
}

/// The cache key hash at the end of an entry's Redis key
/// (`...:<32 hex digits>`); None for other keys (indexes, URL sets).
pub(crate) fn key_hash(redis_key: &[u8]) -> Option<HashBinary> {
    let hex = redis_key.rsplit(|b| *b == b':').next()?;
    str2hex(std::str::from_utf8(hex).ok()?)
}

pub(crate) struct Near {
    inner: Mutex<Inner>,
    max_size: usize,
}

impl Near {
    pub(crate) fn new(max_size: u64) -> Near {
        Near {
            inner: Mutex::new(Inner::default()),
            max_size: usize::try_from(max_size).unwrap_or(usize::MAX),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of cache key hash `key`, if held and not too old.
    pub(crate) fn get(&self, key: &HashBinary) -> Option<(CacheMeta, Vec<Bytes>)> {
        self.read(key, |e| Some((e.meta.rebuild(), e.chunks.clone())))
    }

    /// The entry of `key` when it can answer a plain request as it is
    /// (`super::serve_fresh_hit`).
    pub(crate) fn fresh(&self, key: &HashBinary, now: SystemTime) -> Option<Fresh> {
        self.read(key, |e| {
            let len = e.chunks.iter().map(Bytes::len).sum();
            let (hit, age) = e.meta.fresh_header(now, len)?;
            Some(Fresh {
                hit,
                age,
                body: e.chunks.clone(),
            })
        })
    }

    /// `f` of the entry of `key` if held and not too old (an entry too old
    /// is dropped), counted as a near hit when `f` gives something.
    fn read<T>(&self, key: &HashBinary, f: impl FnOnce(&Entry) -> Option<T>) -> Option<T> {
        let mut inner = self.lock();
        let e = inner.entries.get(key)?;
        if e.until <= Instant::now() {
            inner.entries.remove(key);
            return None;
        }
        let found = f(e);
        drop(inner);
        if found.is_some() {
            metrics::CACHE_NEAR_HITS.inc();
        }
        found
    }

    /// The sequence number to hand back to `insert`.
    pub(crate) fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// Keep what a lookup read from Redis, unless an invalidation was
    /// handled since `seq` was taken. `keep` bounds its life (the Redis
    /// key's own).
    pub(crate) fn insert(
        &self,
        seq: u64,
        key: HashBinary,
        meta: &CacheMeta,
        chunks: &[Bytes],
        keep: Duration,
    ) {
        let meta = Meta::of(meta);
        let size = ENTRY_OVERHEAD + meta.weight() + chunks.iter().map(Bytes::len).sum::<usize>();
        // One object never takes more than a quarter of the space.
        if size > self.max_size / 4 {
            return;
        }
        let until = Instant::now() + keep.min(MAX_AGE);
        let mut inner = self.lock();
        if inner.seq != seq {
            return;
        }
        let entry = Entry {
            meta,
            chunks: chunks.to_vec(),
            until,
        };
        inner.entries.insert(key, entry, size);
        while inner.entries.size() > self.max_size {
            if inner.entries.pop_oldest().is_none() {
                break;
            }
        }
    }

    /// Forget everything (connection lost, or an operation failed).
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.seq += 1;
        inner.entries.clear();
    }

    /// Forget the entries of these Redis keys, as an invalidation would: a
    /// PURGE by this process does not wait for Redis's push to stop serving
    /// them.
    pub(crate) fn forget<'a>(&self, redis_keys: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.lock();
        inner.seq += 1;
        for k in redis_keys {
            if let Some(h) = key_hash(k.as_bytes()) {
                inner.entries.remove(&h);
            }
        }
    }

    /// A RESP3 push from the Redis connection.
    pub(crate) fn on_push(&self, info: &PushInfo) {
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(keys)) => {
                    let mut inner = self.lock();
                    inner.seq += 1;
                    for k in keys {
                        if let Value::BulkString(k) = k
                            && let Some(h) = key_hash(k)
                        {
                            inner.entries.remove(&h);
                        }
                    }
                }
                // FLUSHALL / FLUSHDB, or anything unexpected: forget all.
                _ => self.clear(),
            },
            PushKind::Disconnection => self.clear(),
            _ => {}
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    fn size(&self) -> usize {
        self.lock().entries.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::http::ResponseHeader;
    use std::time::SystemTime;

    fn meta() -> CacheMeta {
        let now = SystemTime::now();
        CacheMeta::new(
            now + Duration::from_secs(60),
            now,
            0,
            0,
            ResponseHeader::build(200, None).unwrap(),
        )
    }

    fn h(n: u8) -> HashBinary {
        [n; 16]
    }

    fn redis_key(k: &HashBinary) -> String {
        let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
        format!("edgeward:e:9:acct/site:{hex}")
    }

    fn invalidate(keys: &[HashBinary]) -> PushInfo {
        PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(
                keys.iter()
                    .map(|k| Value::BulkString(redis_key(k).into_bytes()))
                    .collect(),
            )],
        }
    }

    #[test]
    fn invalidation_before_the_store_wins() {
        let near = Near::new(1 << 20);
        let body = [Bytes::from_static(b"hello")];
        let seq = near.seq();
        near.on_push(&invalidate(&[h(1)]));
        near.insert(seq, h(1), &meta(), &body, MAX_AGE);
        assert!(
            near.get(&h(1)).is_none(),
            "stored although invalidated meanwhile"
        );
        let seq = near.seq();
        near.insert(seq, h(1), &meta(), &body, MAX_AGE);
        assert_eq!(near.get(&h(1)).unwrap().1, body.to_vec());
        near.on_push(&invalidate(&[h(2), h(1)]));
        assert!(near.get(&h(1)).is_none());
        assert_eq!(near.size(), 0);
        assert_eq!(key_hash(redis_key(&h(0xab)).as_bytes()), Some(h(0xab)));
        assert_eq!(key_hash(b"edgeward:i:9:acct/site"), None);
    }

    #[test]
    fn fresh_entries_and_forget() {
        let near = Near::new(1 << 20);
        let body = [Bytes::from_static(b"hello")];
        let now = SystemTime::now();
        near.insert(near.seq(), h(1), &meta(), &body, MAX_AGE);
        assert!(
            near.fresh(&h(1), now).is_none(),
            "no Content-Length: the full path"
        );
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("content-length", "5").unwrap();
        let m = CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header);
        near.insert(near.seq(), h(2), &m, &body, MAX_AGE);
        let f = near.fresh(&h(2), now + Duration::from_secs(3)).unwrap();
        assert_eq!((f.body, f.age), (body.to_vec(), 3));
        assert!(
            near.fresh(&h(2), now + Duration::from_secs(61)).is_none(),
            "stale: the full path"
        );
        let seq = near.seq();
        near.forget([redis_key(&h(2)).as_str()]);
        assert!(near.get(&h(2)).is_none());
        assert_ne!(near.seq(), seq, "a read racing the purge is not kept");
    }

    #[test]
    fn disconnection_and_flush_forget_everything() {
        let near = Near::new(1 << 20);
        let body = [Bytes::from_static(b"x")];
        for push in [
            PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            },
            PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Nil],
            },
        ] {
            near.insert(near.seq(), h(1), &meta(), &body, MAX_AGE);
            assert!(near.get(&h(1)).is_some());
            near.on_push(&push);
            assert!(near.get(&h(1)).is_none());
        }
    }

    #[test]
    fn bounded_in_bytes_oldest_out_and_expiry() {
        let near = Near::new(64 * 1024);
        let body = [Bytes::from(vec![0u8; 10 * 1024])];
        for i in 0..20 {
            near.insert(near.seq(), h(i), &meta(), &body, MAX_AGE);
            assert!(near.size() <= 64 * 1024);
        }
        assert!(near.get(&h(0)).is_none());
        assert!(near.get(&h(19)).is_some());
        // Too large for the space: not kept.
        let big = [Bytes::from(vec![0u8; 20 * 1024])];
        near.insert(near.seq(), h(100), &meta(), &big, MAX_AGE);
        assert!(near.get(&h(100)).is_none());
        // Past its life: gone.
        near.insert(near.seq(), h(101), &meta(), &body, Duration::ZERO);
        assert!(near.get(&h(101)).is_none());
    }
}
