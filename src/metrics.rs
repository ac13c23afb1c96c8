//! Prometheus metrics, served by the admin listener (`GET /metrics`).
//! Per-site handles are resolved once per configuration load and kept in the
//! `Site`, so the request path does no label lookups.

use pingora_prometheus::prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};
use std::sync::LazyLock;

/// Metrics live in the prometheus crate's default registry, which
/// `GET /metrics` gathers.
fn register<C: pingora_prometheus::prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    pingora_prometheus::prometheus::default_registry()
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

pub(crate) static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "edgeward_requests_total",
                "Requests answered, by site and status class (site \"-\": no site matched).",
            ),
            &["site", "code_class"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static UPSTREAM_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "edgeward_upstream_response_seconds",
                "Time from choosing the upstream to its response header (connect + time to first byte).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["site"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static UPSTREAM_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "edgeward_upstream_errors_total",
                "Requests that failed at the upstream, by site and cause.",
            ),
            &["site", "cause"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "edgeward_config_reloads_total",
                "Configuration reloads, by result (success | failure).",
            ),
            &["result"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static IN_FLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "edgeward_requests_in_flight",
            "Requests being processed right now.",
        )
        .expect("valid metric"),
    )
});

pub(crate) static LOG_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "edgeward_log_dropped_lines_total",
            "Log lines lost: the writer's queue was full, or the file could not be written.",
        )
        .expect("valid metric"),
    )
});

pub(crate) static LOG_WRITE_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "edgeward_log_write_errors_total",
            "Failed attempts to open or write a log file (ENOSPC, EACCES, ...).",
        )
        .expect("valid metric"),
    )
});

pub(crate) static SITES: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new("edgeward_sites", "Sites in the live configuration.").expect("valid metric"),
    )
});

pub(crate) static CLIENT_CONNECTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "edgeward_client_connections",
            "Client connections open now (limits.max_connections).",
        )
        .expect("valid metric"),
    )
});

pub(crate) static CONNECTIONS_REFUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "edgeward_connections_refused_total",
            "Client connections closed at once because limits.max_connections was reached.",
        )
        .expect("valid metric"),
    )
});

pub(crate) static REFUSED_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "edgeward_refused_requests_total",
                "Requests refused before any site saw them (unparsable, too slow, too large), by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static TLS_HANDSHAKE_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "edgeward_tls_handshake_failures_total",
                "TLS handshakes refused by edgeward, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static ACME_ORDERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "edgeward_acme_orders_total",
                "ACME certificate orders by this instance, by result (issued, failed).",
            ),
            &["result"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static TLS_CERTIFICATE_EXPIRY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "edgeward_tls_certificate_expiry_timestamp_seconds",
                "When each site's certificate expires (notAfter, Unix time); site \"-\" is tls.default_certificate.",
            ),
            &["site"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static WAF_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "edgeward_waf_requests_total",
                "Requests seen by the WAF, by profile and result (inspected | blocked | detected | error | excluded).",
            ),
            &["profile", "result"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static WAF_ENGINE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "edgeward_waf_engine_seconds",
                "Time spent in the WAF engine per request phase (headers | body), on the WAF's engine threads.",
            )
            .buckets(vec![
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 1.0,
            ]),
            &["phase"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static WAF_HANDOFF_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new(
                "edgeward_waf_handoff_seconds",
                "Wall time of a WAF phase minus its engine time: the handoff to the WAF's engine threads and back (queueing included).",
            )
            .buckets(vec![
                0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005,
                0.025,
            ]),
        )
        .expect("valid metric"),
    )
});

pub(crate) static CACHE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "edgeward_cache_requests_total",
                "Cacheable requests of cache-enabled sites, by site and result (hit | stale | miss | expired | revalidated | uncacheable | bypass).",
            ),
            &["site", "result"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static CACHE_STORED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "edgeward_cache_stored_total",
                "Responses written to the cache storage, by storage (memory | redis).",
            ),
            &["storage"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static CACHE_STORAGE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "edgeward_cache_storage_errors_total",
                "Cache storage operations that failed or timed out (the request went on as a miss), by storage and operation.",
            ),
            &["storage", "op"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static CACHE_INVALIDATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "edgeward_cache_invalidations_total",
                "URLs invalidated after a successful unsafe request, by site and result (done, failed; inline: awaited on the response path because too many were in flight).",
            ),
            &["site", "result"],
        )
        .expect("valid metric"),
    )
});

pub(crate) static CACHE_EVICTIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "edgeward_cache_evictions_total",
            "Entries evicted from the memory storage to stay within cache.memory.max_size.",
        )
        .expect("valid metric"),
    )
});

pub(crate) static CACHE_NEAR_HITS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "edgeward_cache_redis_local_hits_total",
            "Redis storage lookups answered from this process's copy (cache.redis.local_size) without a round trip.",
        )
        .expect("valid metric"),
    )
});

/// Touch every metric so that all of them appear from the first scrape.
pub(crate) fn init() {
    LazyLock::force(&REQUESTS);
    LazyLock::force(&UPSTREAM_SECONDS);
    LazyLock::force(&UPSTREAM_ERRORS);
    for r in ["success", "failure"] {
        RELOADS.with_label_values(&[r]);
    }
    LazyLock::force(&IN_FLIGHT);
    LazyLock::force(&SITES);
    LazyLock::force(&LOG_DROPPED);
    LazyLock::force(&LOG_WRITE_ERRORS);
    LazyLock::force(&CACHE_REQUESTS);
    LazyLock::force(&CACHE_STORED);
    LazyLock::force(&CACHE_STORAGE_ERRORS);
    LazyLock::force(&CACHE_EVICTIONS);
    LazyLock::force(&CACHE_NEAR_HITS);
    LazyLock::force(&WAF_REQUESTS);
    for p in ["headers", "body"] {
        WAF_ENGINE_SECONDS.with_label_values(&[p]);
    }
    LazyLock::force(&WAF_HANDOFF_SECONDS);
    for r in crate::tls::Failure::labels() {
        TLS_HANDSHAKE_FAILURES.with_label_values(&[r]);
    }
    LazyLock::force(&TLS_CERTIFICATE_EXPIRY);
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// One site's metric handles.
#[derive(Debug, Clone)]
pub(crate) struct SiteMetrics {
    requests: [IntCounter; 6],
    pub(crate) upstream_seconds: Histogram,
}

impl SiteMetrics {
    pub(crate) fn new(site: &str) -> SiteMetrics {
        SiteMetrics {
            requests: CLASSES.map(|c| REQUESTS.with_label_values(&[site, c])),
            upstream_seconds: UPSTREAM_SECONDS.with_label_values(&[site]),
        }
    }

    /// Count one answered request with its status (0 = no response was sent).
    pub(crate) fn count(&self, status: u16) {
        let class = match status {
            100..=599 => (status / 100 - 1) as usize,
            _ => 5,
        };
        self.requests[class].inc();
    }
}

/// Metrics of requests that matched no site.
pub(crate) static UNMATCHED: LazyLock<SiteMetrics> = LazyLock::new(|| SiteMetrics::new("-"));
