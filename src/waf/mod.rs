//! The Web Application Firewall: per site, one of the profiles on the OWASP
//! Core Rule Set, run by libmodsecurity (behind the `engine` traits).
//!
//! The proxy calls three things: [`Inspection::start`] in `request_filter`
//! (headers phase, and the body phase at once when there is no body),
//! [`Inspection::body`] in `request_body_filter` (buffers up to
//! `waf.body_limit`, then inspects and releases the body), and
//! [`Inspection::finish`] in `logging`. Engine calls run on the blocking
//! pool, never on the async worker threads. A block is a 403 page; every
//! request that matched a rule is one line in the JSON event log; a block is
//! one sites-log line per matched rule.

pub(crate) mod config;
mod engine;
mod modsec;
mod paths;
mod profile;

use crate::config::Cidr;
use crate::logs::{LogFile, SitesLog, escape};
use crate::metrics;
use crate::pages::Page;
use bytes::{Bytes, BytesMut};
use engine::{EngineError, Request, RuleMatch, Ruleset, Transaction, Verdict};
use log::warn;
#[cfg(test)]
pub(crate) use paths::normalize as normalize_path;
use pingora::proxy::Session;
use pingora_prometheus::prometheus::IntCounter;
pub(crate) use profile::{Mode, ProfileSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Default `waf.crs_dir`: Debian's `modsecurity-crs` package.
pub(crate) const DEFAULT_CRS_DIR: &str = "/usr/share/modsecurity-crs";
/// Default `waf.body_limit`.
pub(crate) const DEFAULT_BODY_LIMIT: usize = 128 * 1024;

/// The global `waf:` section, validated.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) crs_dir: PathBuf,
    pub(crate) profiles: Arc<ProfileSet>,
    pub(crate) event_log: Option<LogFile>,
    pub(crate) body_limit: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            crs_dir: PathBuf::from(DEFAULT_CRS_DIR),
            profiles: Arc::new(ProfileSet::builtin()),
            event_log: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

/// A site's `waf:` section, as given (before compiling).
pub(crate) struct SiteSpec<'a> {
    pub(crate) site: &'a str,
    pub(crate) profile: &'a str,
    pub(crate) paranoia_level: Option<u8>,
    pub(crate) anomaly_threshold: Option<u32>,
    pub(crate) mode: Mode,
    pub(crate) exclude_rules: Vec<u32>,
    pub(crate) exclude_paths: Vec<String>,
    pub(crate) exclude_ips: Vec<Cidr>,
    pub(crate) sites_log: SitesLog,
}

/// `edgeward_waf_requests_total` for one profile, resolved once per load
/// (no label lookup per request).
struct Counters {
    inspected: IntCounter,
    blocked: IntCounter,
    detected: IntCounter,
    excluded: IntCounter,
    error: IntCounter,
}

impl Counters {
    fn new(profile: &str) -> Counters {
        let c = |result: &str| metrics::WAF_REQUESTS.with_label_values(&[profile, result]);
        Counters {
            inspected: c("inspected"),
            blocked: c("blocked"),
            detected: c("detected"),
            excluded: c("excluded"),
            error: c("error"),
        }
    }
}

/// A site's WAF, ready to inspect requests.
pub(crate) struct SiteWaf {
    pub(crate) site: String,
    pub(crate) profile: String,
    pub(crate) mode: Mode,
    ruleset: Arc<dyn Ruleset>,
    exclude_paths: Vec<String>,
    exclude_ips: Vec<Cidr>,
    body_limit: usize,
    event_log: Option<LogFile>,
    sites_log: SitesLog,
    counters: Counters,
}

impl std::fmt::Debug for SiteWaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteWaf")
            .field("profile", &self.profile)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Why a site's WAF could not be built (shown as `waf.<this>`).
#[derive(Debug, thiserror::Error)]
enum SiteWafError {
    #[error("profile: unknown profile {name:?}; expected one of: {known}")]
    UnknownProfile { name: String, known: String },
    #[error("profile {name}: {why}")]
    Compile {
        name: String,
        why: profile::ProfileError,
    },
}

/// Build a site's WAF: `Ok(None)` when its profile inspects nothing.
/// Compiles the rule set (or reuses an identical one).
fn site_waf(settings: &Settings, spec: SiteSpec<'_>) -> Result<Option<Arc<SiteWaf>>, SiteWafError> {
    let Some(profile) = settings.profiles.get(spec.profile) else {
        return Err(SiteWafError::UnknownProfile {
            name: spec.profile.to_string(),
            known: settings.profiles.names().join(", "),
        });
    };
    if !profile.inspects() {
        return Ok(None);
    }
    let ruleset = profile::compile(&profile::RulesetSpec {
        set: &settings.profiles,
        profile,
        crs_dir: &settings.crs_dir,
        paranoia_level: spec.paranoia_level,
        anomaly_threshold: spec.anomaly_threshold,
        mode: spec.mode,
        exclude_rules: &spec.exclude_rules,
    })
    .map_err(|why| SiteWafError::Compile {
        name: spec.profile.to_string(),
        why,
    })?;
    Ok(Some(Arc::new(SiteWaf {
        site: spec.site.to_string(),
        profile: spec.profile.to_string(),
        mode: spec.mode,
        ruleset: Arc::new(ruleset),
        exclude_paths: spec.exclude_paths,
        exclude_ips: spec.exclude_ips,
        body_limit: settings.body_limit,
        event_log: settings.event_log.clone(),
        sites_log: spec.sites_log,
        counters: Counters::new(spec.profile),
    })))
}

/// The page of a request the WAF stopped with `status`.
pub(crate) fn block_page(status: u16) -> Page {
    if status == 500 {
        Page::new(
            500,
            "The request could not be checked by the site's web application firewall.",
        )
    } else {
        Page::new(
            status,
            "This request was blocked by the site's web application firewall.",
        )
    }
}

impl Decision {
    /// The status to answer with, if the WAF stops the request.
    pub(crate) fn stop(self) -> Option<u16> {
        match self {
            Decision::Pass => None,
            Decision::Block(status) => Some(status),
            Decision::Error => Some(500),
        }
    }
}

/// What the proxy does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Pass,
    /// Answer with this status (403 for CRS blocks) and the block page.
    Block(u16),
    /// The engine failed: fail closed with a 500.
    Error,
}

/// The request data kept for the logs.
struct Seen {
    client_ip: String,
    method: String,
    uri: Vec<u8>,
    protocol: &'static str,
}

/// An owned copy of what the engine needs (it runs on another thread).
struct OwnedRequest {
    client_ip: String,
    client_port: u16,
    server_ip: String,
    server_port: u16,
    method: String,
    uri: Vec<u8>,
    http_version: &'static str,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl OwnedRequest {
    fn as_request(&self) -> Request<'_> {
        Request {
            client_ip: &self.client_ip,
            client_port: self.client_port,
            server_ip: &self.server_ip,
            server_port: self.server_port,
            method: &self.method,
            uri: &self.uri,
            http_version: self.http_version,
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_slice()))
                .collect(),
        }
    }
}

/// One request's inspection, kept in the request context.
pub(crate) struct Inspection {
    waf: Arc<SiteWaf>,
    request_id: String,
    seen: Seen,
    txn: Option<Box<dyn Transaction>>,
    /// Body bytes held back until the body phase ran.
    held: BytesMut,
    body_done: bool,
    matches: Vec<RuleMatch>,
    blocked: Option<u16>,
    reported: bool,
}

fn inet(addr: Option<&pingora::protocols::l4::socket::SocketAddr>) -> (String, u16) {
    match addr.and_then(|a| a.as_inet()) {
        Some(a) => (a.ip().to_string(), a.port()),
        None => ("127.0.0.1".to_string(), 0),
    }
}

fn version_number(v: http::Version) -> (&'static str, &'static str) {
    match v {
        http::Version::HTTP_09 => ("0.9", "HTTP/0.9"),
        http::Version::HTTP_10 => ("1.0", "HTTP/1.0"),
        http::Version::HTTP_2 => ("2.0", "HTTP/2.0"),
        http::Version::HTTP_3 => ("3.0", "HTTP/3.0"),
        _ => ("1.1", "HTTP/1.1"),
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The WAF's own thread pool: one engine thread per CPU, fed through a
/// bounded queue. Engine work is CPU-bound: more threads than cores would
/// only time-slice requests against each other (Tokio's blocking pool grows
/// to 512 threads under load).
struct Pool {
    tx: tokio::sync::mpsc::Sender<Job>,
}

static POOL: std::sync::LazyLock<Pool> = std::sync::LazyLock::new(|| {
    let threads = std::env::var("EDGEWARD_WAF_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=1024).contains(n))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let (tx, rx) = tokio::sync::mpsc::channel::<Job>(4096);
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for i in 0..threads {
        let rx = rx.clone();
        // A thread that cannot start is logged; with none at all the queue
        // is closed and every inspection fails closed (500), instead of a
        // panic on every later request.
        let started = std::thread::Builder::new()
            .name(format!("waf-{i}"))
            .spawn(move || {
                loop {
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
                    match job {
                        // A panic fails that one request (closed: 500), not
                        // the thread.
                        Some(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        None => return,
                    }
                }
            });
        if let Err(e) = started {
            log::error!("waf: cannot start engine thread {i}: {e}");
        }
    }
    Pool { tx }
});

/// Run `f` on the WAF pool (never on an async worker thread).
async fn on_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    POOL.tx
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .await
        .ok()?;
    rx.await.ok()
}

/// Run engine work on the WAF pool; returns its result and how long the
/// engine itself took.
async fn blocking<T: Send + 'static>(
    phase: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EngineError> {
    let t0 = Instant::now();
    let (out, engine) = on_pool(move || {
        let t = Instant::now();
        let out = f();
        (out, t.elapsed())
    })
    .await
    .ok_or_else(|| EngineError("the WAF engine thread failed".into()))?;
    metrics::WAF_ENGINE_SECONDS
        .with_label_values(&[phase])
        .observe(engine.as_secs_f64());
    metrics::WAF_HANDOFF_SECONDS.observe(t0.elapsed().saturating_sub(engine).as_secs_f64());
    Ok(out)
}

impl Inspection {
    /// Headers phase. `None` when the request is not inspected (excluded
    /// client or path); otherwise the inspection and what to do now.
    pub(crate) async fn start(
        waf: &Arc<SiteWaf>,
        session: &mut Session,
        request_id: &str,
        client_ip: Option<IpAddr>,
    ) -> Option<(Inspection, Decision)> {
        if let Some(ip) = client_ip
            && waf.exclude_ips.iter().any(|c| c.contains(ip))
        {
            waf.counters.excluded.inc();
            return None;
        }
        let req = session.req_header();
        if !waf.exclude_paths.is_empty() {
            let path = paths::normalize(req.raw_path());
            if waf
                .exclude_paths
                .iter()
                .any(|p| paths::glob_match(p.as_bytes(), &path))
            {
                waf.counters.excluded.inc();
                return None;
            }
        }
        let (version, protocol) = version_number(req.version);
        let (peer_ip, peer_port) = inet(session.client_addr());
        let (server_ip, server_port) = inet(session.server_addr());
        let req = session.req_header();
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        // HTTP/2 requests carry the host as :authority only.
        if !req.headers.contains_key(http::header::HOST)
            && let Some(a) = req.uri.authority()
        {
            headers.push((b"host".to_vec(), a.as_str().as_bytes().to_vec()));
        }
        let client = client_ip.map_or(peer_ip, |ip| ip.to_string());
        let owned = OwnedRequest {
            client_ip: client.clone(),
            client_port: peer_port,
            server_ip,
            server_port,
            method: req.method.as_str().to_string(),
            uri: req.raw_path().to_vec(),
            http_version: version,
            headers,
        };
        let seen = Seen {
            client_ip: client,
            method: owned.method.clone(),
            uri: owned.uri.clone(),
            protocol,
        };
        // No body to wait for: run both phases in one handoff. Upgraded
        // (WebSocket) connections' bodies are never inspected.
        let no_body = session.is_upgrade_req() || session.as_mut().is_body_empty();
        let ruleset = waf.ruleset.clone();
        let id = request_id.to_string();
        waf.counters.inspected.inc();
        let result = blocking("headers", move || {
            let mut txn = ruleset.transaction(&id)?;
            let mut verdict = txn.request_headers(&owned.as_request())?;
            if no_body && verdict == Verdict::Pass {
                verdict = txn.request_body(&[])?;
            }
            let done = no_body || verdict != Verdict::Pass;
            let matches = txn.matches().to_vec();
            // Finished transactions are freed here, on the WAF pool.
            let txn = if done { None } else { Some(txn) };
            Ok::<_, EngineError>((txn, verdict, matches))
        })
        .await
        .and_then(|r| r);
        let mut insp = Inspection {
            waf: waf.clone(),
            request_id: request_id.to_string(),
            seen,
            txn: None,
            held: BytesMut::new(),
            body_done: no_body,
            matches: Vec::new(),
            blocked: None,
            reported: false,
        };
        let decision = match result {
            Ok((txn, verdict, matches)) => {
                insp.txn = txn;
                insp.matches = matches;
                insp.decide(verdict)
            }
            Err(e) => insp.failed(&e),
        };
        Some((insp, decision))
    }

    /// Body phase, chunk by chunk: holds the body back (up to the limit),
    /// then inspects it and lets it go on. Blocks before any body byte
    /// reaches the upstream.
    pub(crate) async fn body(&mut self, chunk: &mut Option<Bytes>, end: bool) -> Decision {
        if self.body_done || self.txn.is_none() {
            return Decision::Pass;
        }
        if let Some(data) = chunk.take() {
            self.held.extend_from_slice(&data);
        }
        let limit = self.waf.body_limit;
        if !end && self.held.len() < limit {
            // Hold: an empty chunk is not sent (None would end the body).
            *chunk = Some(Bytes::new());
            return Decision::Pass;
        }
        self.body_done = true;
        let body = std::mem::take(&mut self.held).freeze();
        let inspected = body.slice(..body.len().min(limit));
        let Some(mut txn) = self.txn.take() else {
            return Decision::Pass;
        };
        let result = blocking("body", move || {
            let verdict = txn.request_body(&inspected);
            let matches = txn.matches().to_vec();
            drop(txn);
            verdict.map(|v| (v, matches))
        })
        .await
        .and_then(|r| r);
        let decision = match result {
            Ok((verdict, matches)) => {
                self.matches = matches;
                self.decide(verdict)
            }
            Err(e) => self.failed(&e),
        };
        if decision == Decision::Pass {
            *chunk = if body.is_empty() && end {
                None
            } else {
                Some(body)
            };
        }
        decision
    }

    /// The request ends: report what was not reported yet (e.g. a client
    /// that went away before its body was inspected).
    pub(crate) fn finish(&mut self) {
        if let Some(txn) = self.txn.take() {
            self.matches = txn.matches().to_vec();
            // libmodsecurity frees the transaction on the blocking pool.
            let _ =
                tokio::runtime::Handle::try_current().map(|h| h.spawn_blocking(move || drop(txn)));
        }
        if !self.reported {
            self.report();
        }
    }

    fn decide(&mut self, verdict: Verdict) -> Decision {
        match verdict {
            Verdict::Block { status } => {
                self.blocked = Some(status);
                self.waf.counters.blocked.inc();
                self.report();
                Decision::Block(status)
            }
            Verdict::Pass => {
                if self.txn.is_none() {
                    self.report();
                }
                Decision::Pass
            }
        }
    }

    fn failed(&mut self, e: &EngineError) -> Decision {
        warn!(
            "site {}: WAF engine failed, request refused with 500: {e} [request {}]",
            self.waf.site, self.request_id
        );
        self.waf.counters.error.inc();
        self.txn = None;
        self.reported = true;
        Decision::Error
    }

    fn anomaly_score(&self) -> u32 {
        let number_after = |msg: &str, tag: &str| {
            msg.find(tag).and_then(|i| {
                msg[i + tag.len()..]
                    .trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse::<u32>().ok())
            })
        };
        self.matches
            .iter()
            .filter_map(|m| match m.id {
                949110 => number_after(&m.msg, "Total Score:"),
                id if profile::is_score_rule(id) => number_after(&m.msg, "score"),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Event log line (any match), sites-log lines (blocked, or would have
    /// been in detect mode).
    fn report(&mut self) {
        self.reported = true;
        let rules: Vec<&RuleMatch> = self
            .matches
            .iter()
            .filter(|m| !profile::is_score_rule(m.id))
            .collect();
        if rules.is_empty() && self.blocked.is_none() {
            return;
        }
        let score = self.anomaly_score();
        let would_block = self.blocked.is_some() || rules.iter().any(|m| m.id == 949110);
        let action = if self.blocked.is_some() {
            "blocked"
        } else {
            if would_block {
                self.waf.counters.detected.inc();
            }
            "detected"
        };
        if let Some(log) = &self.waf.event_log {
            log.append(self.event_line(action, score, &rules));
        }
        if would_block {
            let mut request = Vec::with_capacity(self.seen.uri.len() + 16);
            request.extend_from_slice(self.seen.method.as_bytes());
            request.push(b' ');
            escape::text(&mut request, &self.seen.uri);
            request.push(b' ');
            request.extend_from_slice(self.seen.protocol.as_bytes());
            let request = String::from_utf8_lossy(&request);
            let at = SystemTime::now();
            // The rules to exclude, not the score evaluation (unless it is
            // all there is).
            let mut lines: Vec<&RuleMatch> = rules
                .iter()
                .copied()
                .filter(|m| !matches!(m.id / 1000, 949 | 959 | 980))
                .collect();
            if lines.is_empty() {
                lines = rules.clone();
            }
            for m in lines {
                self.waf.sites_log.write_at(
                    at,
                    &format!(
                        "[waf] - {} \"{request}\" - {} | {}' with value: {}",
                        self.seen.client_ip, m.id, m.msg, m.value
                    ),
                );
            }
        }
    }

    fn event_line(&self, action: &str, score: u32, rules: &[&RuleMatch]) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let s = |out: &mut Vec<u8>, v: &[u8]| {
            out.push(b'"');
            escape::json(out, v);
            out.push(b'"');
        };
        out.extend_from_slice(b"{\"time\":");
        s(
            &mut out,
            chrono::Local::now()
                .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
                .to_string()
                .as_bytes(),
        );
        out.extend_from_slice(b",\"request_id\":");
        s(&mut out, self.request_id.as_bytes());
        out.extend_from_slice(b",\"site\":");
        s(&mut out, self.waf.site.as_bytes());
        out.extend_from_slice(b",\"profile\":");
        s(&mut out, self.waf.profile.as_bytes());
        out.extend_from_slice(b",\"client_ip\":");
        s(&mut out, self.seen.client_ip.as_bytes());
        out.extend_from_slice(b",\"method\":");
        s(&mut out, self.seen.method.as_bytes());
        out.extend_from_slice(b",\"uri\":");
        s(&mut out, &self.seen.uri);
        out.extend_from_slice(b",\"action\":");
        s(&mut out, action.as_bytes());
        if let Some(status) = self.blocked {
            out.extend_from_slice(format!(",\"status\":{status}").as_bytes());
        }
        out.extend_from_slice(format!(",\"anomaly_score\":{score},\"rule_ids\":[").as_bytes());
        let mut ids: Vec<u32> = rules.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids.dedup();
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(id.to_string().as_bytes());
        }
        out.extend_from_slice(b"],\"messages\":[");
        for (i, m) in rules.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            s(&mut out, format!("{}: {}", m.id, m.msg).as_bytes());
        }
        out.extend_from_slice(b"]}\n");
        out
    }
}
