//! `limits.max_connections`: client connections open at once. [`Limited`]
//! wraps the proxy's application: a connection over the limit is closed
//! at once (after its TLS handshake, which Pingora does before the
//! application sees it), counted in `edgeward_connections_refused_total`.
//! The limit is read at each accept, so a reload applies to the next
//! connection.

use crate::metrics;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

static OPEN: AtomicUsize = AtomicUsize::new(0);
static MAX: AtomicUsize = AtomicUsize::new(super::DEFAULT_MAX_CONNECTIONS);

/// Make `max` the limit for connections accepted from now on.
pub(crate) fn install(max: usize) {
    MAX.store(max, Ordering::Relaxed);
}

/// One open client connection; the count goes down when it is dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        let max = MAX.load(Ordering::Relaxed);
        OPEN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
        metrics::CLIENT_CONNECTIONS.inc();
        Some(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
        metrics::CLIENT_CONNECTIONS.dec();
    }
}

/// The proxy's application, behind the connection limit.
pub(crate) struct Limited<A> {
    app: Arc<A>,
}

impl<A> Limited<A> {
    pub(crate) fn new(app: A) -> Limited<A> {
        Limited { app: Arc::new(app) }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Limited<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(_slot) = Slot::take() else {
            metrics::CONNECTIONS_REFUSED.inc();
            log::debug!("connection refused: limits.max_connections reached");
            return None;
        };
        // The slot is held until the application is done with the
        // connection (every request of it, keep-alive included).
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}
