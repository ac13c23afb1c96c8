//! The live configuration: one `Arc<Config>` behind an `ArcSwap`. Each request
//! takes a snapshot when it starts and keeps it to its end; a reload builds
//! and validates a whole new `Config` off the request path, then swaps.

use crate::config::ConfigErrors;
use crate::metrics;
use crate::sites::{self, Config};
use arc_swap::ArcSwap;
use log::{error, info, warn};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub(crate) struct Live {
    current: ArcSwap<Config>,
    path: PathBuf,
    reload_lock: Mutex<()>,
}

impl Live {
    pub(crate) fn new(path: PathBuf, config: Config) -> Live {
        metrics::SITES.set(config.sites.len() as i64);
        crate::tls::install(config.certificates.clone(), config.certificate_expiries());
        crate::limits::connections::install(config.limits.max_connections);

        crate::tls::acme::apply(config.tls.acme.as_ref(), config.acme_names());
        Live {
            current: ArcSwap::from_pointee(config),
            path,
            reload_lock: Mutex::new(()),
        }
    }

    /// The configuration a new request uses until it ends.
    pub(crate) fn snapshot(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Re-read the file. On success the new configuration serves every request
    /// that starts from now on; on any error the old one stays, the errors are
    /// logged (file:line:col) and counted. Blocking: call it off the proxy's
    /// worker threads.
    pub(crate) fn reload(&self) -> Result<Arc<Config>, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        match sites::load(&self.path) {
            Ok(new) => {
                let old = self.current.load();
                warn_static_changes(&old, &new);
                let new = Arc::new(new);
                metrics::SITES.set(new.sites.len() as i64);
                self.current.store(new.clone());
                // New handshakes get the new certificates.
                crate::tls::install(new.certificates.clone(), new.certificate_expiries());
                // New connections count against the new limit.
                crate::limits::connections::install(new.limits.max_connections);

                // ACME keeps certificates for the new set of names.
                crate::tls::acme::apply(new.tls.acme.as_ref(), new.acme_names());
                // New files for new sites, removed sites' files closed.
                crate::logs::reopen();
                // Programs of removed or changed sites are stopped.
                crate::supervisor::SUPERVISOR.apply(&new.supervisor, new.programs());
                metrics::RELOADS.with_label_values(&["success"]).inc();
                info!(
                    "configuration reloaded from {}: {} site(s)",
                    self.path.display(),
                    new.sites.len()
                );
                Ok(new)
            }
            Err(errors) => {
                metrics::RELOADS.with_label_values(&["failure"]).inc();
                // One record, so the header and its errors stay together.
                let mut msg = format!(
                    "configuration reload failed, still serving the previous configuration ({} error(s)):",
                    errors.0.len()
                );
                for e in &errors.0 {
                    msg.push_str("\n  ");
                    msg.push_str(&e.to_string());
                }
                error!("{msg}");
                Err(errors)
            }
        }
    }
}

/// Settings bound at start-up (listeners, threads) need a restart.
fn warn_static_changes(old: &Config, new: &Config) {
    if old.tls.listen != new.tls.listen {
        warn!("reload: `tls.listen` changed; the new addresses take effect at the next restart");
    }
    if old.listen != new.listen {
        warn!("reload: `listen` changed; the new addresses take effect at the next restart");
    }
    if old.threads != new.threads {
        warn!("reload: `threads` changed; takes effect at the next restart");
    }
    if old.admin_listen != new.admin_listen {
        warn!("reload: `admin.listen` changed; takes effect at the next restart");
    }
    if old.cache.storage != new.cache.storage
        || old.cache.max_object_size != new.cache.max_object_size
    {
        warn!("reload: `cache` storage settings changed; they take effect at the next restart");
    }
    if old.grace_period != new.grace_period {
        warn!("reload: `grace_period` changed; takes effect at the next restart");
    }
}

/// Counts a request as in flight for as long as it lives.
pub(crate) struct InFlight(());

impl InFlight {
    pub(crate) fn enter() -> InFlight {
        metrics::IN_FLIGHT.inc();
        InFlight(())
    }

    pub(crate) fn count() -> i64 {
        metrics::IN_FLIGHT.get()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::IN_FLIGHT.dec();
    }
}
