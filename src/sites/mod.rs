//! The runtime configuration: what the proxy reads on every request. One
//! place assembles it: [`load`] reads the file into plain data
//! (`crate::config`), hands each section to the capability that owns it
//! (upstream, supervisor, cache, WAF, logs), and puts the parts together
//! into [`Site`]s. Built off the request path at start and on every reload,
//! then shared read-only behind an `Arc` (see `crate::live`).

mod router;

pub(crate) use router::Router;

use crate::cache::{self, CacheSettings, SiteCache};
use crate::config::{
    self, ACCESS_LOG, CACHE, ConfigErrors, Document, LIMITS, Report, SUPERVISOR, SiteDoc, TLS, WAF,
};
use crate::config::{Cidr, Place};
use crate::logs::{self, AccessLog, SitesLog};
use crate::metrics::SiteMetrics;
use crate::upstream::{self, Upstream, UpstreamTarget};
use crate::{limits, supervisor, tls, waf};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) listen: Vec<String>,
    pub(crate) threads: usize,
    pub(crate) grace_period: Duration,
    pub(crate) admin_listen: Option<String>,
    pub(crate) sites: Vec<Arc<Site>>,
    router: Router,
    /// Where a Host that matches no site goes (index into `sites`).
    default_site: Option<usize>,
    /// Peers whose `X-Forwarded-For` is believed for the client address.
    pub(crate) trusted_proxies: Vec<Cidr>,
    /// Global `supervisor:` settings.
    pub(crate) supervisor: supervisor::Settings,
    /// Global `cache:` settings.
    pub(crate) cache: CacheSettings,
    /// Global `tls:` settings.
    pub(crate) tls: tls::Settings,
    /// Global `limits:`.
    pub(crate) limits: limits::Limits,
    /// The top-level `access_log:`: requests no site owns.
    pub(crate) access_log: Option<AccessLog>,
    /// The certificate of each name, for handshakes.
    pub(crate) certificates: Arc<tls::CertIndex>,
}

impl Config {
    /// The site that serves `host` (already normalized by
    /// `request::normalize_host`).
    pub(crate) fn site_for_host(&self, host: Option<&str>) -> Option<&Arc<Site>> {
        host.and_then(|h| self.router.route(h))
            .or(self.default_site)
            .map(|i| &self.sites[i])
    }

    /// The number of accounts with at least one site.
    pub(crate) fn accounts(&self) -> usize {
        let names: std::collections::BTreeSet<&str> =
            self.sites.iter().map(|s| s.account.as_str()).collect();
        names.len()
    }

    /// Each certificate's notAfter by site (`-`: the default certificate).
    pub(crate) fn certificate_expiries(&self) -> impl Iterator<Item = (&str, i64)> {
        let default = self.tls.default.as_ref().map(|c| ("-", c.not_after));
        let sites = self.sites.iter().filter_map(|s| {
            s.tls
                .certificate
                .as_ref()
                .map(|c| (s.id.as_str(), c.not_after))
        });
        default.into_iter().chain(sites)
    }

    /// The names ACME keeps certificates for (exact addresses of sites
    /// with `tls.acme: true`).
    pub(crate) fn acme_names(&self) -> Vec<tls::acme::AcmeName> {
        self.sites
            .iter()
            .filter(|s| s.tls.acme)
            .flat_map(|s| {
                s.addresses
                    .iter()
                    .filter(|a| !a.starts_with("*."))
                    .map(|a| tls::acme::AcmeName {
                        name: a.clone(),
                        site: s.id.clone(),
                        sites_log: s.sites_log.clone(),
                    })
            })
            .collect()
    }

    /// The port plain requests are redirected to (the first HTTPS listener's).
    pub(crate) fn https_port(&self) -> u16 {
        self.tls
            .listen
            .first()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map_or(443, |a| a.port())
    }

    /// Every supervised program, by site id.
    pub(crate) fn programs(&self) -> impl Iterator<Item = (&str, &Arc<supervisor::ProgramSpec>)> {
        self.sites.iter().filter_map(|s| match &s.upstream.target {
            UpstreamTarget::Program(p) => Some((s.id.as_str(), p)),
            _ => None,
        })
    }
}

/// One hosted site.
#[derive(Debug)]
pub(crate) struct Site {
    /// `account/site`, unique; used in logs and metrics.
    pub(crate) id: String,
    pub(crate) account: String,
    pub(crate) addresses: Vec<String>,
    pub(crate) upstream: Upstream,
    pub(crate) metrics: SiteMetrics,
    /// None when `access_log.enabled: false`.
    pub(crate) access_log: Option<AccessLog>,
    pub(crate) sites_log: SitesLog,
    /// The site's `cache:` section.
    pub(crate) cache: SiteCache,
    /// None when the profile inspects nothing (`disabled`).
    pub(crate) waf: Option<Arc<waf::SiteWaf>>,
    /// Certificate, redirect to HTTPS, HSTS.
    pub(crate) tls: tls::SiteTls,
    /// The site's own `limits.max_body_size` (None: the global one).
    pub(crate) max_body_size: Option<u64>,
}

/// Read, validate and build the configuration file at `path`: every error
/// of the file at once, or a configuration ready to serve.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = config::read(path)?;
    parse(path, &text)
}

/// [`load`] for text already read; `path` names it in errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let (doc, mut report) = config::parse(path, text)?;
    let cache = cache::config::global(
        doc.cache.as_ref(),
        &mut report.section(Place::new(CACHE, "")),
    );
    let waf = waf::config::global(doc.waf.as_ref(), &mut report.section(Place::new(WAF, "")));
    let supervisor = supervisor::settings(
        doc.supervisor.as_ref(),
        &mut report.section(Place::new(SUPERVISOR, "")),
    );
    let limits = limits::config::global(
        doc.limits.as_ref(),
        &mut report.section(Place::new(LIMITS, "")),
    );
    let access_log = logs::config::global_access_log(
        doc.access_log.as_ref(),
        &mut report.section(Place::new(ACCESS_LOG, "")),
    );
    let plain: Vec<String> = doc
        .listen
        .iter()
        .chain(&doc.admin_listen)
        .cloned()
        .collect();
    let tls = tls::config::global(
        doc.tls.as_ref(),
        &plain,
        &mut report.section(Place::new(TLS, "")),
    );
    let waf = waf.unwrap_or_default();
    let tls = tls.unwrap_or_default();
    let mut sites = Vec::with_capacity(doc.sites.len());
    let mut router = Router::default();
    let mut certificates = tls::CertIndex::with_default(tls.default.clone());
    for s in &doc.sites {
        if let Some(site) = assemble(s, &waf, &tls, &mut report) {
            let index = sites.len();
            for a in &site.addresses {
                match a.strip_prefix("*.") {
                    Some(domain) => router.insert_wildcard(domain.to_string(), index),
                    None => router.insert_exact(a.clone(), index),
                };
                if let Some(c) = &site.tls.certificate {
                    certificates.insert(a, c.clone());
                } else if site.tls.acme && !a.starts_with("*.") {
                    certificates.insert_acme(a, &site.id);
                }
            }
            sites.push(Arc::new(site));
        }
    }
    let config = build(doc, sites, router, cache, supervisor, tls, certificates);
    let config = config.and_then(|mut c| {
        c.limits = limits?;
        c.access_log = access_log?;
        Some(c)
    });
    report.finish(config)
}

fn build(
    doc: Document,
    sites: Vec<Arc<Site>>,
    router: Router,
    cache: Option<CacheSettings>,
    supervisor: Option<supervisor::Settings>,
    tls: tls::Settings,
    certificates: tls::CertIndex,
) -> Option<Config> {
    let default_site = match &doc.default_site {
        Some(id) => Some(sites.iter().position(|s| s.id == *id)?),
        None => None,
    };
    Some(Config {
        listen: doc.listen,
        threads: doc.threads,
        grace_period: doc.grace_period,
        admin_listen: doc.admin_listen,
        sites,
        router,
        default_site,
        trusted_proxies: doc.trusted_proxies,
        supervisor: supervisor?,
        cache: cache?,
        tls,
        certificates: Arc::new(certificates),
        limits: limits::Limits::default(),
        access_log: None,
    })
}

/// One site from its sections, each validated by its capability; None (and
/// the errors in `report`) when any is wrong.
fn assemble(
    s: &SiteDoc,
    waf_settings: &waf::Settings,
    tls_settings: &tls::Settings,
    report: &mut Report,
) -> Option<Site> {
    let upstream = s
        .upstream
        .as_ref()
        .and_then(|u| upstream::from_config(u, &mut report.section(s.at.child("upstream"))));
    let access_log = logs::config::access_log(
        &s.name,
        &s.log_dir,
        s.access_log.as_ref(),
        &mut report.section(s.at.child("access_log")),
    );
    let cache = cache::config::site(
        &s.id,
        s.cache.as_ref(),
        &mut report.section(s.at.child("cache")),
    );
    let sites_log = SitesLog::new(&s.log_dir, &s.name);
    let waf = waf::config::site(
        &s.id,
        s.waf.as_ref(),
        waf_settings,
        &sites_log,
        &mut report.section(s.at.child("waf")),
    );
    let max_body_size =
        limits::config::site(s.limits.as_ref(), &mut report.section(s.at.child("limits")));
    let addresses = s.addresses.clone()?;
    let tls = tls::config::site(
        &addresses,
        s.tls.as_ref(),
        s.https_redirect,
        s.hsts,
        tls_settings,
        &mut report.section(s.at.clone()),
    );
    Some(Site {
        metrics: SiteMetrics::new(&s.id),
        id: s.id.clone(),
        account: s.account.clone(),
        addresses,
        upstream: upstream?,
        access_log: access_log?,
        sites_log,
        cache: cache?,
        waf: waf?,
        tls: tls?,
        max_body_size: max_body_size?,
    })
}
