//! RFC 9111 4.4: a successful unsafe request (POST, PUT, DELETE...)
//! invalidates the stored responses of its URL and of its same-host
//! `Location`/`Content-Location`. The purges run in a task of their own, off
//! the response path: the client's answer never waits for the storage (up
//! to three purges of two Redis round trips each).
//!
//! Until a purge has finished, its URL is *pending*: a GET or HEAD of it on
//! this instance skips the cache (`request_cache_filter` and the fresh-hit
//! path ask [`is_pending`]) and is neither served from nor stored in it, so
//! a client that reads right after its own write never gets the old
//! response. Other instances sharing Redis see the purge when it lands.
//!
//! At most [`MAX_TASKS`] invalidation tasks run at once; beyond that the
//! purge is awaited on the response path (bounded memory, nothing dropped).

use super::purge::UrlMatch;
use super::store::Store;
use crate::metrics;
use log::warn;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use tokio::sync::Semaphore;

/// Invalidation tasks in flight at most.
pub(crate) const MAX_TASKS: usize = 1024;

/// URLs being purged, by (site id, URL), with how many purges of each are
/// in flight; `count` is their total, so a lookup with nothing pending
/// takes no lock.
struct Pending {
    count: AtomicUsize,
    urls: Mutex<HashMap<(String, String), usize>>,
}

static PENDING: LazyLock<Pending> = LazyLock::new(|| Pending {
    count: AtomicUsize::new(0),
    urls: Mutex::new(HashMap::new()),
});
static TASKS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(MAX_TASKS)));

/// Whether `url` of `site` has a purge in flight (its stored responses must
/// not be used).
pub(crate) fn is_pending(site: &str, url: impl FnOnce() -> String) -> bool {
    if PENDING.count.load(Ordering::Acquire) == 0 {
        return false;
    }
    let key = (site.to_string(), url());
    PENDING
        .urls
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains_key(&key)
}

fn mark(site: &str, urls: &[String]) {
    let mut map = PENDING.urls.lock().unwrap_or_else(PoisonError::into_inner);
    for u in urls {
        *map.entry((site.to_string(), u.clone())).or_insert(0) += 1;
    }
    PENDING.count.fetch_add(urls.len(), Ordering::Release);
}

fn unmark(site: &str, url: String) {
    let mut map = PENDING.urls.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (site.to_string(), url);
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
    PENDING.count.fetch_sub(1, Ordering::Release);
}

async fn purge_all(store: &'static dyn Store, site: String, urls: Vec<String>, inline: bool) {
    for u in urls {
        let result = match store.purge_urls(&site, &UrlMatch::Exact(u.clone())).await {
            Ok(_) if inline => "inline",
            Ok(_) => "done",
            Err(e) => {
                warn!("site {site}: cache invalidation of {u:?} failed: {e}");
                "failed"
            }
        };
        metrics::CACHE_INVALIDATIONS
            .with_label_values(&[site.as_str(), result])
            .inc();
        unmark(&site, u);
    }
}

/// Purge `urls` of `site`: in a task when one is free, else here.
pub(crate) async fn invalidate(store: &'static dyn Store, site: &str, urls: Vec<String>) {
    if urls.is_empty() {
        return;
    }
    mark(site, &urls);
    let site = site.to_string();
    match TASKS.clone().try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                purge_all(store, site, urls, false).await;
                drop(permit);
            });
        }
        Err(_) => purge_all(store, site, urls, true).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_urls_are_counted_per_purge() {
        let urls = vec!["a.test/x".to_string(), "a.test/x".to_string()];
        mark("s/1", &urls);
        assert!(is_pending("s/1", || "a.test/x".into()));
        assert!(!is_pending("s/2", || "a.test/x".into()), "another site");
        assert!(!is_pending("s/1", || "a.test/y".into()));
        unmark("s/1", "a.test/x".into());
        assert!(is_pending("s/1", || "a.test/x".into()), "one purge left");
        unmark("s/1", "a.test/x".into());
        assert!(!is_pending("s/1", || "a.test/x".into()));
    }
}
