// edgeward patch (whole file): the keep-alive pool of `TransportConnector`
// without a watcher task per idle connection.
//
// pingora-pool's `ConnectionPool` wraps every released stream in an
// `Arc<Mutex<_>>`, allocates an LRU node, a oneshot and a `Notify`, and
// spawns a task per release that watches the idle stream (read readiness,
// idle timeout, eviction); every reuse then signals that task and waits for
// it to hand the stream back. That is about 10k instructions per proxied
// request (release ~4.8k, reuse ~2k, the watcher task's polls ~3k).
//
// This pool keeps idle streams in plain per-peer stacks under one short
// lock, as nginx keeps its idle upstream connections in a queue:
// - reuse pops the most recently released stream of the peer, drops it if
//   its idle timeout passed, and lets the caller test it for EOF or
//   unexpected data (`test_reusable_stream`: tokio keeps read readiness for
//   a registered socket even with no task waiting, so a close by the peer
//   is seen there);
// - release pushes the stream and, above the pool's size, evicts the oldest
//   idle stream of any peer (LRU across peers, as pingora-pool's);
// - a sweeper task per pool (one, started at the first release) wakes every
//   `SWEEP_INTERVAL` and closes streams whose idle timeout passed or whose
//   peer closed them or sent data, so idle connections do not linger
//   unused for long. It holds a `Weak` and ends with the pool.
//
// Streams are dropped (closed) outside the lock.

use crate::protocols::Stream;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the sweeper closes expired or dead idle streams.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

struct Idle {
    stream: Stream,
    /// Release order across peers, for LRU eviction.
    seq: u64,
    since: Instant,
    deadline: Option<Instant>,
}

/// The pool's keys are already hashes (`Peer::reuse_hash`); hashing them
/// again with the map's default SipHash cost about 150 instructions per
/// take and per put. This only spreads the key's bits (one multiplication,
/// a rotation): the low bits pick the bucket, the high ones the tag, and a
/// `reuse_hash` that varies only in its low bits still spreads over both.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(32);
    }

    // Not used for `u64` keys; correct for any other input all the same.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(self.0 ^ u64::from(*b));
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Idle streams per peer (reuse hash), oldest first.
    by_key: HashMap<u64, VecDeque<Idle>, BuildHasherDefault<KeyHasher>>,
    count: usize,
    next_seq: u64,
}

/// An idle stream that left the pool without being reused, and how long
/// it was idle (for `PoolCallback`).
pub(crate) struct Departed {
    pub(crate) stream: Stream,
    pub(crate) idle: Duration,
}

pub(crate) struct IdlePool {
    size: usize,
    inner: Mutex<Inner>,
    sweeper_started: AtomicBool,
}

impl IdlePool {
    pub(crate) fn new(size: usize) -> Self {
        IdlePool {
            size,
            inner: Mutex::new(Inner::default()),
            sweeper_started: AtomicBool::new(false),
        }
    }

    /// The most recently released stream for `key` whose idle timeout has
    /// not passed. Expired ones met on the way are returned in `expired`
    /// for the caller to drop outside the lock.
    pub(crate) fn take(
        &self,
        key: u64,
        now: Instant,
        expired: &mut Vec<Departed>,
    ) -> Option<Stream> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let list = inner.by_key.get_mut(&key)?;
        let mut found = None;
        while let Some(idle) = list.pop_back() {
            inner.count -= 1;
            if idle.deadline.is_some_and(|d| d <= now) {
                expired.push(Departed {
                    idle: now.saturating_duration_since(idle.since),
                    stream: idle.stream,
                });
                continue;
            }
            found = Some(idle.stream);
            break;
        }
        if list.is_empty() {
            inner.by_key.remove(&key);
        }
        found
    }

    /// Keep `stream` idle for `key`. Returns the streams evicted to stay
    /// within the pool's size (to be dropped by the caller, outside the
    /// lock).
    pub(crate) fn put(
        &self,
        key: u64,
        stream: Stream,
        idle_timeout: Option<Duration>,
        now: Instant,
    ) -> Vec<Departed> {
        let mut evicted = Vec::new();
        if self.size == 0 {
            evicted.push(Departed {
                stream,
                idle: Duration::ZERO,
            });
            return evicted;
        }
        let mut inner = self.inner.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.by_key.entry(key).or_default().push_back(Idle {
            stream,
            seq,
            since: now,
            deadline: idle_timeout.map(|t| now + t),
        });
        inner.count += 1;
        while inner.count > self.size {
            // The oldest idle stream of any peer: each list is oldest first.
            let Some(oldest_key) = inner
                .by_key
                .iter()
                .filter_map(|(k, list)| list.front().map(|i| (i.seq, *k)))
                .min()
                .map(|(_, k)| k)
            else {
                break;
            };
            let Some(list) = inner.by_key.get_mut(&oldest_key) else {
                break;
            };
            if let Some(idle) = list.pop_front() {
                evicted.push(Departed {
                    idle: now.saturating_duration_since(idle.since),
                    stream: idle.stream,
                });
            }
            if list.is_empty() {
                inner.by_key.remove(&oldest_key);
            }
            inner.count -= 1;
        }
        evicted
    }

    /// Remove the idle streams whose idle timeout passed or that `dead`
    /// says are no longer usable (closed by the peer, unexpected data).
    /// The caller drops them, outside the lock.
    pub(crate) fn sweep(
        &self,
        now: Instant,
        mut dead: impl FnMut(&mut Stream) -> bool,
    ) -> Vec<Departed> {
        let mut gone = Vec::new();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for list in inner.by_key.values_mut() {
            let mut kept = VecDeque::with_capacity(list.len());
            for mut idle in list.drain(..) {
                if idle.deadline.is_some_and(|d| d <= now) || dead(&mut idle.stream) {
                    gone.push(Departed {
                        idle: now.saturating_duration_since(idle.since),
                        stream: idle.stream,
                    });
                } else {
                    kept.push_back(idle);
                }
            }
            *list = kept;
        }
        inner.by_key.retain(|_, list| !list.is_empty());
        inner.count -= gone.len();
        gone
    }

    /// How many streams are idle (all peers).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().count
    }

    /// Start the sweeper once, on the current runtime. Called on every
    /// release: after the first, one relaxed load and nothing else.
    pub(crate) fn start_sweeper(
        self: &Arc<Self>,
        unexpected_data_conn_count: &Arc<AtomicU64>,
        on_departure: &Option<super::PoolCallback>,
    ) {
        if self.sweeper_started.load(Ordering::Relaxed)
            || self.sweeper_started.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let unexpected_data_conn_count = unexpected_data_conn_count.clone();
        let on_departure = on_departure.clone();
        let pool: Weak<IdlePool> = Arc::downgrade(self);
        pingora_runtime::current_handle().spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_INTERVAL).await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                let gone = pool.sweep(Instant::now(), |stream| {
                    !super::test_reusable_stream(stream, &unexpected_data_conn_count)
                });
                drop(pool);
                for departed in gone {
                    if let Some(callback) = &on_departure {
                        callback(departed.idle);
                    }
                    drop(departed.stream);
                }
            }
        });
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::protocols::l4::stream::Stream as L4Stream;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected stream (its server side is kept open in `keep`).
    async fn stream(keep: &mut Vec<TcpStream>) -> Stream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        keep.push(server);
        Box::new(L4Stream::from(client))
    }

    #[tokio::test]
    async fn reuse_is_newest_first_per_peer() {
        let mut keep = Vec::new();
        let pool = IdlePool::new(8);
        let now = Instant::now();
        let (a, b, c) = (
            stream(&mut keep).await,
            stream(&mut keep).await,
            stream(&mut keep).await,
        );
        let (ida, idb, idc) = (a.id(), b.id(), c.id());
        assert!(pool.put(1, a, None, now).is_empty());
        assert!(pool.put(1, b, None, now).is_empty());
        assert!(pool.put(2, c, None, now).is_empty());
        assert_eq!(pool.len(), 3);
        let mut expired = Vec::new();
        assert_eq!(pool.take(1, now, &mut expired).unwrap().id(), idb);
        assert_eq!(pool.take(1, now, &mut expired).unwrap().id(), ida);
        assert!(pool.take(1, now, &mut expired).is_none());
        assert_eq!(pool.take(2, now, &mut expired).unwrap().id(), idc);
        assert!(expired.is_empty());
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn the_oldest_idle_stream_of_any_peer_is_evicted_above_the_size() {
        let mut keep = Vec::new();
        let pool = IdlePool::new(2);
        let now = Instant::now();
        let (a, b, c) = (
            stream(&mut keep).await,
            stream(&mut keep).await,
            stream(&mut keep).await,
        );
        let (ida, idb, idc) = (a.id(), b.id(), c.id());
        assert!(pool.put(1, a, None, now).is_empty());
        assert!(pool.put(2, b, None, now).is_empty());
        let evicted = pool.put(2, c, None, now + Duration::from_secs(3));
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].stream.id(), ida);
        assert_eq!(evicted[0].idle, Duration::from_secs(3));
        assert_eq!(pool.len(), 2);
        let mut expired = Vec::new();
        assert!(pool.take(1, now, &mut expired).is_none());
        assert_eq!(pool.take(2, now, &mut expired).unwrap().id(), idc);
        assert_eq!(pool.take(2, now, &mut expired).unwrap().id(), idb);
    }

    #[tokio::test]
    async fn expired_streams_are_not_reused_and_are_swept() {
        let mut keep = Vec::new();
        let pool = IdlePool::new(8);
        let now = Instant::now();
        let (a, b, c) = (
            stream(&mut keep).await,
            stream(&mut keep).await,
            stream(&mut keep).await,
        );
        let idc = c.id();
        pool.put(1, a, Some(Duration::from_secs(60)), now);
        pool.put(1, b, Some(Duration::from_secs(1)), now);
        pool.put(2, c, Some(Duration::from_secs(60)), now);
        let later = now + Duration::from_secs(2);
        // The newest of peer 1 expired: skipped (handed back), the older one reused.
        let mut expired = Vec::new();
        assert!(pool.take(1, later, &mut expired).is_some());
        assert_eq!(expired.len(), 1);
        // The sweep removes what expired and what `dead` rejects, only that.
        let gone = pool.sweep(later, |_| false);
        assert!(gone.is_empty());
        assert_eq!(pool.len(), 1);
        let gone = pool.sweep(now + Duration::from_secs(61), |_| false);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].stream.id(), idc);
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn the_sweep_drops_streams_the_peer_closed() {
        let mut keep = Vec::new();
        let pool = IdlePool::new(8);
        let now = Instant::now();
        let (a, b) = (stream(&mut keep).await, stream(&mut keep).await);
        let ida = a.id();
        pool.put(1, a, None, now);
        pool.put(1, b, None, now);
        let gone = pool.sweep(now, |s| s.id() == ida);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].stream.id(), ida);
        assert_eq!(pool.len(), 1);
    }

    #[tokio::test]
    async fn a_pool_of_size_zero_keeps_nothing() {
        let mut keep = Vec::new();
        let pool = IdlePool::new(0);
        let gone = pool.put(1, stream(&mut keep).await, None, Instant::now());
        assert_eq!(gone.len(), 1);
        assert_eq!(pool.len(), 0);
    }
}
