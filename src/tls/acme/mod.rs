//! Automatic certificates (ACME, RFC 8555, HTTP-01) for every exact
//! address of a site with `tls.acme: true`.
//!
//! Everything here runs on one thread of its own (`edgeward-acme`, a
//! current-thread Tokio runtime), never on Pingora's workers: one task per
//! name (load the stored certificate, serve it, sleep until a third of its
//! lifetime is left, then order under the name's lock; back off on
//! failure), and with a shared storage a watcher that loads certificates
//! other instances stored. The proxy's only call is [`answer_challenge`],
//! whose storage lookup is handed to this thread too.
//!
//! Certificates reach handshakes through `accept::set_acme` (no reload);
//! a reload calls [`apply`] with the new names: tasks of removed names
//! stop and their certificates are no longer served, new names start.

mod order;
mod seal;
mod storage;

pub(crate) use seal::{KeyBytes, read_key_file};

use super::certs::CertKey;
use crate::logs::SitesLog;
use crate::metrics;
use log::{info, warn};
use order::{OrderError, Session};
use pingora::prelude::*;
use pingora::proxy::Session as HttpSession;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use storage::{Lock, Storage, Stored};
use tokio::task::AbortHandle;

/// The global `tls.acme` and `tls.storage` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcmeSettings {
    pub(crate) directory: String,
    pub(crate) email: Option<String>,
    pub(crate) ca_roots: Option<PathBuf>,
    pub(crate) storage: StorageSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageSettings {
    pub(crate) kind: StorageKind,
    /// `encryption_key_file`'s key (required with Redis).
    pub(crate) encryption_key: Option<KeyBytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StorageKind {
    Dir(PathBuf),
    Redis { url: String, prefix: String },
}

/// A name to keep a certificate for, and the site that claims it.
#[derive(Debug, Clone)]
pub(crate) struct AcmeName {
    pub(crate) name: String,
    pub(crate) site: String,
    pub(crate) sites_log: SitesLog,
}

/// How an order ended (`edgeward_acme_orders_total{result}`).
#[derive(Debug, Clone, Copy)]
enum OrderResult {
    Issued,
    Failed,
}

impl OrderResult {
    fn as_str(self) -> &'static str {
        match self {
            OrderResult::Issued => "issued",
            OrderResult::Failed => "failed",
        }
    }
}

/// First retry after a failure; doubles up to `BACKOFF_MAX`.
const BACKOFF_MIN: Duration = Duration::from_secs(60);
const BACKOFF_MAX: Duration = Duration::from_secs(6 * 3600);
/// A Retry-After further away than this is not believed.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(24 * 3600);
/// While another instance orders a name: how often to look for its result.
const WAIT_POLL: Duration = Duration::from_secs(1);
/// With a shared storage: how often the watcher looks for certificates
/// other instances stored.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// A name with a good certificate is looked at again at least this often.
const RECHECK: Duration = Duration::from_secs(3600);

/// The ACME thread's runtime.
fn runtime() -> &'static tokio::runtime::Handle {
    static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("edgeward-acme".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = tx.send(Some(rt.handle().clone()));
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        warn!("ACME: cannot start its runtime: {e}");
                        let _ = tx.send(None);
                    }
                }
            });
        let handle = spawned.ok().and_then(|_| rx.recv().ok().flatten());
        handle.unwrap_or_else(|| {
            // No thread: a runtime that is never driven (orders never run,
            // challenge lookups time out); logged above.
            #[allow(clippy::expect_used)]
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a bare runtime");
            let h = rt.handle().clone();
            std::mem::forget(rt);
            h
        })
    })
}

/// Opened once the plain listeners accept connections: no order starts
/// before (the CA's validation would find nobody listening).
static LISTENING: LazyLock<tokio::sync::watch::Sender<bool>> =
    LazyLock::new(|| tokio::sync::watch::channel(false).0);

/// Open the gate for orders once every address of `listen` accepts a TCP
/// connection (a wildcard address is probed on loopback); after 30 s
/// anyway, logged.
pub(crate) fn open_when_listening(listen: Vec<String>) {
    runtime().spawn(async move {
        let probes: Vec<std::net::SocketAddr> = listen
            .iter()
            .filter_map(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|mut a| {
                if a.ip().is_unspecified() {
                    a.set_ip(match a {
                        std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                a
            })
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut all = true;
            for a in &probes {
                all &= tokio::net::TcpStream::connect(a).await.is_ok();
            }
            if all {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                warn!("ACME: the plain listeners do not accept connections yet; ordering anyway");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        LISTENING.send_replace(true);
    });
}

/// The state shared by the tasks of one set of settings.
struct Ctx {
    settings: Arc<AcmeSettings>,
    storage: Storage,
    /// The names of the live configuration.
    names: Mutex<HashMap<String, AcmeName>>,
    /// Fingerprint of the certificate served for each name.
    served: Mutex<HashMap<String, String>>,
}

struct Running {
    ctx: Arc<Ctx>,
    tasks: HashMap<String, AbortHandle>,
    watcher: Option<AbortHandle>,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);
/// The context the proxy's challenge lookups use.
static CURRENT: LazyLock<arc_swap::ArcSwapOption<Ctx>> =
    LazyLock::new(arc_swap::ArcSwapOption::empty);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keep certificates for `names` from now on (at start and after each
/// reload). Settings that changed restart every task.
pub(crate) fn apply(settings: Option<&Arc<AcmeSettings>>, names: Vec<AcmeName>) {
    let mut running = lock(&RUNNING);
    let restart = match (&*running, settings) {
        (Some(r), Some(s)) => r.ctx.settings != *s,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let wanted: HashMap<String, AcmeName> =
        names.into_iter().map(|n| (n.name.clone(), n)).collect();
    if restart && let Some(old) = running.take() {
        for (name, task) in old.tasks {
            task.abort();
            if !wanted.contains_key(&name) || settings.is_none() {
                super::accept::set_acme(&name, None);
            }
        }
        if let Some(w) = old.watcher {
            w.abort();
        }
        CURRENT.store(None);
    }
    let Some(settings) = settings else {
        return;
    };
    if running.is_none() {
        let storage = match Storage::open(&settings.storage) {
            Ok(s) => s,
            Err(e) => {
                warn!("ACME: cannot open tls.storage: {e}; no certificate is ordered");
                return;
            }
        };
        if let StorageKind::Dir(dir) = &settings.storage.kind {
            info!("ACME: storage in {}", dir.display());
        }
        let ctx = Arc::new(Ctx {
            settings: settings.clone(),
            storage,
            names: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
        });
        CURRENT.store(Some(ctx.clone()));
        let watcher = ctx
            .storage
            .is_shared()
            .then(|| runtime().spawn(watch(ctx.clone())).abort_handle());
        *running = Some(Running {
            ctx,
            tasks: HashMap::new(),
            watcher,
        });
    }
    let Some(r) = running.as_mut() else {
        return;
    };
    let removed: Vec<String> = r
        .tasks
        .keys()
        .filter(|n| !wanted.contains_key(*n))
        .cloned()
        .collect();
    for name in removed {
        if let Some(t) = r.tasks.remove(&name) {
            t.abort();
        }
        lock(&r.ctx.served).remove(&name);
        super::accept::set_acme(&name, None);
    }
    *lock(&r.ctx.names) = wanted.clone();
    for name in wanted.into_keys() {
        if !r.tasks.contains_key(&name) {
            let task = runtime().spawn(keep(r.ctx.clone(), name.clone()));
            r.tasks.insert(name, task.abort_handle());
        }
    }
}

/// The path of an HTTP-01 challenge: its token.
fn challenge_token(path: &str) -> Option<&str> {
    let token = path.strip_prefix("/.well-known/acme-challenge/")?;
    let ok = !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(token)
}

/// The CA's `GET /.well-known/acme-challenge/<token>` on plain HTTP for a
/// name ACME keeps: answered here with the key authorization (any
/// instance's, from the storage), 404 for an unknown token. Some(status)
/// when answered; None: not a challenge, the request goes on.
pub(crate) async fn answer_challenge(
    session: &mut HttpSession,
    site_acme: bool,
    host: Option<&str>,
    request_id: &str,
) -> Result<Option<u16>> {
    if !site_acme || session.digest().is_some_and(|d| d.ssl_digest.is_some()) {
        return Ok(None);
    }
    let req = session.req_header();
    if !matches!(req.method, http::Method::GET | http::Method::HEAD) {
        return Ok(None);
    }
    let Some(token) = challenge_token(req.uri.path()).map(str::to_string) else {
        return Ok(None);
    };
    let Some(ctx) = CURRENT.load_full() else {
        return Ok(None);
    };
    if !host.is_some_and(|h| lock(&ctx.names).contains_key(h)) {
        return Ok(None);
    }
    let lookup = runtime().spawn(async move { ctx.storage.token(&token).await });
    let found = match tokio::time::timeout(Duration::from_secs(5), lookup).await {
        Ok(Ok(Ok(v))) => v,
        Ok(Ok(Err(e))) => {
            warn!("ACME: challenge lookup failed: {e}");
            None
        }
        _ => None,
    };
    let status = match found {
        Some(key_auth) => {
            crate::pages::respond_text(session, 200, &key_auth, request_id).await?;
            200
        }
        None => {
            crate::pages::respond_text(session, 404, "no such ACME challenge\n", request_id)
                .await?;
            404
        }
    };
    Ok(Some(status))
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A stable spread in [0, 1) per name (FNV-1a), so that names issued
/// together are not all renewed in the same minute.
fn spread(name: &str, salt: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % 10_000) as f64 / 10_000.0
}

/// When `cert` is due for renewal: a third of its lifetime left, minus up
/// to a twentieth of the lifetime of jitter.
fn renew_at(cert: &CertKey, name: &str) -> i64 {
    let lifetime = (cert.not_after - cert.not_before).max(0);
    let jitter = (lifetime as f64 / 20.0 * spread(name, 0)) as i64;
    cert.not_after - lifetime / 3 - jitter
}

/// The pause after the `failures`-th failure in a row: doubling from a
/// minute up to 6 hours, ±10 %, or the CA's Retry-After when later.
fn backoff(failures: u32, name: &str, retry_after: Option<SystemTime>) -> Duration {
    let doubled = BACKOFF_MIN.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let base = doubled.min(BACKOFF_MAX);
    let jitter = 0.9 + 0.2 * spread(name, u64::from(failures));
    let mut d = base.mul_f64(jitter);
    if let Some(at) = retry_after
        && let Ok(ra) = at.duration_since(SystemTime::now())
    {
        d = d.max(ra.min(RETRY_AFTER_MAX));
    }
    d
}

fn date(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Ctx {
    /// A line in the sites log of the site that claims `name` (and in the
    /// diagnostics log, with the site).
    fn site_log(&self, name: &str, message: &str, failed: bool) {
        let Some(n) = lock(&self.names).get(name).cloned() else {
            return;
        };
        if failed {
            warn!("site {}: {message}", n.site);
        } else {
            info!("site {}: {message}", n.site);
        }
        n.sites_log.write(message);
    }

    /// Serve `cert` for `name` (if the configuration still has the name).
    fn serve(&self, name: &str, cert: Arc<CertKey>) {
        if !lock(&self.names).contains_key(name) {
            return;
        }
        lock(&self.served).insert(name.to_string(), cert.fingerprint());
        super::accept::set_acme(name, Some(cert));
    }

    fn served_fingerprint(&self, name: &str) -> Option<String> {
        lock(&self.served).get(name).cloned()
    }
}

fn parse(name: &str, s: &Stored) -> Result<CertKey, super::certs::CertError> {
    let label = PathBuf::from(format!("acme:{name}"));
    CertKey::from_pem(&s.cert, &s.key, &label, &label)
}

/// Keep `name` certified, forever (aborted when the name goes away).
async fn keep(ctx: Arc<Ctx>, name: String) {
    let mut listening = LISTENING.subscribe();
    let _ = listening.wait_for(|open| *open).await;
    let mut failures = 0u32;
    loop {
        let pause = step(&ctx, &name, &mut failures).await;
        tokio::time::sleep(pause).await;
    }
}

/// One look at `name`: serve what is stored; order when nothing good is
/// stored or renewal is due. Returns the pause before the next look.
async fn step(ctx: &Ctx, name: &str, failures: &mut u32) -> Duration {
    let current = match ctx.storage.certificate(name).await {
        Ok(Some(s)) => match parse(name, &s) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                warn!(
                    "ACME: the stored certificate for {name} is not usable ({e}); ordering a new one"
                );
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            warn!("ACME: cannot read the certificate of {name} from tls.storage: {e}");
            return Duration::from_secs(10);
        }
    };
    if let Some(c) = &current {
        if ctx.served_fingerprint(name).as_deref() != Some(c.fingerprint().as_str()) {
            ctx.serve(name, c.clone());
        }
        let due = renew_at(c, name);
        let now = unix(SystemTime::now());
        if now < due {
            return Duration::from_secs((due - now).unsigned_abs()).min(RECHECK);
        }
    }
    let lock = match ctx.storage.try_lock(name).await {
        Ok(Some(l)) => l,
        // Another instance orders: its result shows up in the storage.
        Ok(None) => return WAIT_POLL,
        Err(e) => {
            warn!("ACME: cannot take the lock of {name}: {e}");
            return Duration::from_secs(10);
        }
    };
    // Another instance may have stored a certificate between our read and
    // our lock: look again before ordering a duplicate.
    if ctx.storage.is_shared()
        && let Ok(Some(s)) = ctx.storage.certificate(name).await
        && let Ok(c) = parse(name, &s)
        && current
            .as_ref()
            .is_none_or(|old| old.fingerprint() != c.fingerprint())
    {
        let _ = ctx.storage.release(&lock).await;
        ctx.serve(name, Arc::new(c));
        return Duration::ZERO;
    }
    let renewal = current.is_some();
    let (result, retry_after) = order_locked(ctx, name, &lock).await;
    let _ = ctx.storage.release(&lock).await;
    match result {
        Ok(cert) => {
            *failures = 0;
            metrics::ACME_ORDERS
                .with_label_values(&[OrderResult::Issued.as_str()])
                .inc();
            let expires = UNIX_EPOCH + Duration::from_secs(cert.not_after.max(0).unsigned_abs());
            let what = if renewal { "renewed" } else { "issued" };
            ctx.site_log(
                name,
                &format!(
                    "[tls] certificate for {name} {what}, expires {}",
                    date(expires)
                ),
                false,
            );
            let due = renew_at(&cert, name);
            ctx.serve(name, cert);
            Duration::from_secs((due - unix(SystemTime::now())).max(1).unsigned_abs()).min(RECHECK)
        }
        Err(e) => {
            *failures = failures.saturating_add(1);
            metrics::ACME_ORDERS
                .with_label_values(&[OrderResult::Failed.as_str()])
                .inc();
            let pause = backoff(*failures, name, retry_after);
            let reason = one_line(&e.to_string());
            ctx.site_log(
                name,
                &format!(
                    "[tls] order for {name} failed: {reason}; next try at {}",
                    date(SystemTime::now() + pause)
                ),
                true,
            );
            pause
        }
    }
}

/// At most 300 characters of `s`, on one line.
fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &flat[..i]),
        None => flat,
    }
}

/// Order under `lock`, renewing it while the order runs; the certificate
/// is stored (while the lock holds) before this returns.
async fn order_locked(
    ctx: &Ctx,
    name: &str,
    lock: &Lock,
) -> (Result<Arc<CertKey>, OrderError>, Option<SystemTime>) {
    let renew = async {
        loop {
            tokio::time::sleep(storage::LOCK_TTL / 3).await;
            if let Err(e) = ctx.storage.renew_lock(lock).await {
                return e;
            }
        }
    };
    let slot = order::RetrySlot::default();
    let work = async {
        let session = Session::open(&ctx.settings, &ctx.storage, slot.clone()).await?;
        let stored = order::order(&session, &ctx.storage, name).await?;
        let cert = parse(name, &stored).map_err(|e| OrderError::Other(e.to_string()))?;
        ctx.storage
            .put_certificate(name, &stored, &cert.fingerprint(), Some(lock))
            .await?;
        Ok(Arc::new(cert))
    };
    let result = tokio::select! {
        r = work => r,
        e = renew => Err(OrderError::Storage(e)),
    };
    (result, order::retry_after_in(&slot))
}

/// Shared storage: load the certificates other instances stored.
async fn watch(ctx: Arc<Ctx>) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let names: Vec<String> = lock(&ctx.names).keys().cloned().collect();
        let fps = match ctx.storage.fingerprints(&names).await {
            Ok(f) => f,
            Err(e) => {
                warn!("ACME: cannot poll tls.storage: {e}");
                continue;
            }
        };
        for (name, fp) in names.iter().zip(fps) {
            let Some(fp) = fp else { continue };
            if ctx.served_fingerprint(name).as_deref() == Some(fp.as_str()) {
                continue;
            }
            match ctx.storage.certificate(name).await {
                Ok(Some(s)) => match parse(name, &s) {
                    Ok(c) => {
                        info!("ACME: loaded the certificate for {name} stored by another instance");
                        ctx.serve(name, Arc::new(c));
                    }
                    Err(e) => warn!("ACME: the stored certificate for {name} is not usable: {e}"),
                },
                Ok(None) => {}
                Err(e) => warn!("ACME: cannot read the certificate of {name}: {e}"),
            }
        }
    }
}

/// The names `check` lists: exact addresses of `tls.acme` sites.
pub(crate) fn describe(names: &[AcmeName]) -> String {
    let mut v: Vec<&str> = names.iter().map(|n| n.name.as_str()).collect();
    v.sort_unstable();
    v.join(", ")
}

/// Where a `dir` storage keeps things (for messages).
pub(crate) fn storage_place(s: &AcmeSettings) -> String {
    match &s.storage.kind {
        StorageKind::Dir(d) => d.display().to_string(),
        StorageKind::Redis { prefix, .. } => format!("redis ({prefix}*)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_paths() {
        assert_eq!(
            challenge_token("/.well-known/acme-challenge/abc_D-9"),
            Some("abc_D-9")
        );
        assert_eq!(challenge_token("/.well-known/acme-challenge/"), None);
        assert_eq!(challenge_token("/.well-known/acme-challenge/a/b"), None);
        assert_eq!(challenge_token("/.well-known/acme-challenge/a%2e"), None);
        assert_eq!(challenge_token("/other"), None);
    }

    #[test]
    fn backoff_doubles_up_to_a_cap_and_honours_retry_after() {
        let b1 = backoff(1, "a.test", None);
        assert!(b1 >= Duration::from_secs(54) && b1 <= Duration::from_secs(66));
        let b3 = backoff(3, "a.test", None);
        assert!(b3 >= Duration::from_secs(216) && b3 <= Duration::from_secs(264));
        assert!(backoff(40, "a.test", None) <= BACKOFF_MAX.mul_f64(1.1));
        let later = SystemTime::now() + Duration::from_secs(3 * 3600);
        assert!(backoff(1, "a.test", Some(later)) > Duration::from_secs(3 * 3600 - 5));
        let absurd = SystemTime::now() + Duration::from_secs(30 * 86_400);
        assert!(backoff(1, "a.test", Some(absurd)) <= RETRY_AFTER_MAX);
    }
}
